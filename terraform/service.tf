locals {
  # The emails of the invokers: the HTTP layer admits Google ID tokens from these callers only.
  allowed_callers = [for member in var.invokers : split(":", member)[1]]

  optional_secrets = {
    IUCN_API_TOKEN = var.iucn_api_token_secret
    API_TOKENS     = var.api_tokens_secret
  }
  # Environment variables of the service that come from Secret Manager: name => { id, version }.
  service_secrets = merge(
    { DATABASE_URL = var.database_url_secret, DASHBOARD_SESSION_SECRET = var.dashboard_session_secret, METRICS_TOKEN = var.metrics_token_secret },
    { for name, secret in local.optional_secrets : name => secret if secret != null },
  )
}

resource "google_cloud_run_v2_service" "service" {
  name                = var.service_name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = var.deletion_protection

  # A stable audience for callers' ID tokens, instead of the URL Cloud Run assigns.
  custom_audiences = [var.oidc_audience]

  template {
    service_account = google_service_account.service.email
    # Requests are short (health, enqueue, status); jobs run in the runner, not in requests.
    timeout = "60s"

    scaling {
      min_instance_count = var.min_instances
      max_instance_count = var.max_instances
    }

    volumes {
      name = "cloudsql"

      cloud_sql_instance {
        instances = [var.cloud_sql_instance]
      }
    }

    volumes {
      name = "otel-collector-config"

      secret {
        secret = google_secret_manager_secret.otel_collector_config.secret_id

        items {
          version = google_secret_manager_secret_version.otel_collector_config.version
          path    = "config.yaml"
        }
      }
    }

    volumes {
      name = "metrics-token"

      secret {
        secret = var.metrics_token_secret.id

        items {
          version = var.metrics_token_secret.version
          path    = "token"
        }
      }
    }

    containers {
      name = "service"
      # The image's own CMD starts the service (node, exec form, so SIGTERM reaches it).
      image = var.image
      # The collector starts first, so the first spans and scrapes have somewhere to go.
      depends_on = [local.otel_collector.name]

      ports {
        container_port = 8080
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        # The runner polls, fires cron ticks and finishes jobs between requests: CPU always allocated.
        cpu_idle          = false
        startup_cpu_boost = true
      }

      volume_mounts {
        name       = "cloudsql"
        mount_path = "/cloudsql"
      }

      env {
        name  = "WORKER_CONCURRENCY"
        value = tostring(var.worker_concurrency)
      }

      env {
        name  = "AUTH_OIDC_AUDIENCE"
        value = var.oidc_audience
      }

      env {
        name  = "AUTH_ALLOWED_CALLERS"
        value = join(",", local.allowed_callers)
      }

      # Full Cloud Trace names in log lines (logging.googleapis.com/trace), so logs and traces link.
      env {
        name  = "GOOGLE_CLOUD_PROJECT"
        value = var.project_id
      }

      # The OpenTelemetry SDK's settings: traces to the collector beside it (terraform/telemetry.tf).
      dynamic "env" {
        for_each = local.otel_environment

        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = var.environment

        content {
          name  = env.key
          value = env.value
        }
      }

      dynamic "env" {
        for_each = local.service_secrets

        content {
          name = env.key

          value_source {
            secret_key_ref {
              secret  = env.value.id
              version = env.value.version
            }
          }
        }
      }

      # Traffic reaches a revision only once /ready answers 200: database up, runner running and
      # the schema at least what this build needs, so a revision whose migration has not run stays out.
      startup_probe {
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 24

        http_get {
          path = "/ready"
        }
      }

      # Liveness asks only whether the process serves: a database outage must not restart every instance.
      liveness_probe {
        period_seconds    = 15
        timeout_seconds   = 3
        failure_threshold = 4

        http_get {
          path = "/health"
        }
      }
    }

    # The OpenTelemetry Collector sidecar: OTLP traces in, Cloud Trace out; scrapes /metrics for
    # Managed Service for Prometheus (deploy/otel-collector.yaml).
    containers {
      name  = local.otel_collector.name
      image = var.otel_collector_image
      args  = ["--config=${local.otel_collector.config_dir}/config.yaml"]

      resources {
        limits = {
          cpu    = "1"
          memory = "256Mi"
        }
        # Scrapes and exports run between requests, like the runner.
        cpu_idle = false
      }

      volume_mounts {
        name       = "otel-collector-config"
        mount_path = local.otel_collector.config_dir
      }

      volume_mounts {
        name       = "metrics-token"
        mount_path = local.otel_collector.metrics_token_dir
      }

      startup_probe {
        period_seconds    = 5
        timeout_seconds   = 3
        failure_threshold = 12

        http_get {
          path = "/"
          port = local.otel_collector.health_port
        }
      }

      liveness_probe {
        period_seconds    = 30
        timeout_seconds   = 5
        failure_threshold = 3

        http_get {
          path = "/"
          port = local.otel_collector.health_port
        }
      }
    }
  }

  lifecycle {
    precondition {
      condition     = var.min_instances <= var.max_instances
      error_message = "min_instances must not exceed max_instances."
    }
  }

  depends_on = [
    google_project_iam_member.service,
    google_secret_manager_secret_iam_member.service,
    google_secret_manager_secret_iam_member.otel_collector_config,
  ]
}

# Who may call the service: the named invokers, nobody else.
resource "google_cloud_run_v2_service_iam_member" "invokers" {
  for_each = toset(var.invokers)

  project  = google_cloud_run_v2_service.service.project
  location = google_cloud_run_v2_service.service.location
  name     = google_cloud_run_v2_service.service.name
  role     = "roles/run.invoker"
  member   = each.value
}
