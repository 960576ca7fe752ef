# The pre-deploy migration: the same image, running `migrate` as the migrator database role.
# The deploy runs it with `gcloud run jobs execute ... --wait` before the new revision is deployed
# (see README); the service's startup probe keeps a revision on an older schema from taking traffic.
resource "google_cloud_run_v2_job" "migrate" {
  name                = "${var.service_name}-migrate"
  location            = var.region
  deletion_protection = var.deletion_protection

  template {
    task_count  = 1
    parallelism = 1

    template {
      service_account = google_service_account.migrate.email
      # A failed migration is looked at, not retried blindly; migrations are idempotent either way.
      max_retries = 0
      timeout     = "600s"

      volumes {
        name = "cloudsql"

        cloud_sql_instance {
          instances = [var.cloud_sql_instance]
        }
      }

      containers {
        image   = var.image
        command = ["node"]
        args    = ["bin/observing-jobs.js", "migrate"]

        resources {
          limits = {
            cpu    = "1"
            memory = "512Mi"
          }
        }

        volume_mounts {
          name       = "cloudsql"
          mount_path = "/cloudsql"
        }

        env {
          name = "DATABASE_URL"

          value_source {
            secret_key_ref {
              secret  = var.migrate_database_url_secret.id
              version = var.migrate_database_url_secret.version
            }
          }
        }
      }
    }
  }

  depends_on = [
    google_project_iam_member.migrate,
    google_secret_manager_secret_iam_member.migrate,
  ]
}
