output "service_url" {
  description = "HTTPS URL of the service; callers present a Google ID token with this audience."
  value       = google_cloud_run_v2_service.service.uri
}

output "service_account_email" {
  description = "Identity the service runs as."
  value       = google_service_account.service.email
}

output "migrate_job_name" {
  description = "Cloud Run Job to execute (with --wait) before each deploy."
  value       = google_cloud_run_v2_job.migrate.name
}

output "migrate_service_account_email" {
  description = "Identity the migrate job runs as."
  value       = google_service_account.migrate.email
}
