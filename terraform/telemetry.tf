# Telemetry delivered in the deployment: an OpenTelemetry Collector sidecar in every instance
# (the Google-Built OpenTelemetry Collector, Google's documented pattern for Cloud Run) receives the
# service's traces over OTLP for Cloud Trace and scrapes its /metrics for Managed Service for
# Prometheus. Its configuration is deploy/otel-collector.yaml, handed over through Secret Manager.

locals {
  otel_collector = {
    name              = "otel-collector"
    config_dir        = "/etc/otelcol-google"
    metrics_token_dir = "/etc/observing-jobs/metrics-token"
    # The collector's health_check extension (deploy/otel-collector.yaml).
    health_port = 13133
  }

  # The service's OpenTelemetry SDK: traces over OTLP/HTTP to the sidecar. Metrics are scraped from
  # /metrics and logs are JSON lines on stdout (Cloud Logging), so neither goes through the SDK.
  otel_environment = {
    OTEL_SERVICE_NAME           = var.service_name
    OTEL_TRACES_EXPORTER        = "otlp"
    OTEL_EXPORTER_OTLP_PROTOCOL = "http/protobuf"
    OTEL_EXPORTER_OTLP_ENDPOINT = "http://localhost:4318"
    OTEL_METRICS_EXPORTER       = "none"
    OTEL_LOGS_EXPORTER          = "none"
  }
}

resource "google_secret_manager_secret" "otel_collector_config" {
  project   = var.project_id
  secret_id = "${var.service_name}-otel-collector-config"

  replication {
    auto {}
  }
}

# A change to the file makes a new version, and the service's volume names that version, so the
# change rolls out as a new revision.
resource "google_secret_manager_secret_version" "otel_collector_config" {
  secret      = google_secret_manager_secret.otel_collector_config.id
  secret_data = file("${path.module}/../deploy/otel-collector.yaml")

  # Older revisions (a rollback, an instance starting late) keep the version they were deployed with.
  deletion_policy = "ABANDON"

  lifecycle {
    create_before_destroy = true
  }
}

resource "google_secret_manager_secret_iam_member" "otel_collector_config" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.otel_collector_config.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.service.email}"
}
