# The old cron infrastructure that resolve_taxa ran on: Cloud Scheduler starting a Cloud Run Job.
# The service's crontab line `resolve_taxa ?id=resolve_taxa_nightly` replaces both. Applying these
# destroys them: follow the cut-over runbook in README.md, in order, so the job neither runs twice
# nor stops running.

removed {
  from = google_cloud_scheduler_job.resolve_taxa

  lifecycle {
    destroy = true
  }
}

removed {
  from = google_cloud_run_v2_job.resolve_taxa

  lifecycle {
    destroy = true
  }
}
