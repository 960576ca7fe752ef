# Two identities, each with only what it needs. The service never sees the migrator's credentials.

resource "google_service_account" "service" {
  account_id   = var.service_name
  display_name = "observing-jobs service (runner, crontab, HTTP)"
}

resource "google_service_account" "migrate" {
  account_id   = "${var.service_name}-migrate"
  display_name = "observing-jobs migrate job"
}

locals {
  # Cloud SQL connections, structured logs, traces (Cloud Trace) and metrics (Managed Service for
  # Prometheus), the last two written by the collector sidecar; secrets are granted one by one below.
  service_roles = toset([
    "roles/cloudsql.client",
    "roles/logging.logWriter",
    "roles/cloudtrace.agent",
    "roles/monitoring.metricWriter",
  ])
  migrate_roles = toset([
    "roles/cloudsql.client",
    "roles/logging.logWriter",
  ])
}

resource "google_project_iam_member" "service" {
  for_each = local.service_roles

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.service.email}"
}

resource "google_project_iam_member" "migrate" {
  for_each = local.migrate_roles

  project = var.project_id
  role    = each.value
  member  = "serviceAccount:${google_service_account.migrate.email}"
}

# Secret access per secret, never project-wide.
resource "google_secret_manager_secret_iam_member" "service" {
  for_each = local.service_secrets

  project   = var.project_id
  secret_id = each.value.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.service.email}"
}

resource "google_secret_manager_secret_iam_member" "migrate" {
  for_each = toset([var.migrate_database_url_secret.id])

  project   = var.project_id
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.migrate.email}"
}
