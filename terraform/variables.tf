variable "project_id" {
  description = "Google Cloud project that runs the service, its migrate job and its service accounts."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the Cloud Run service and job; the Cloud SQL instance's region keeps database round trips short."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region such as europe-west1."
  }
}

variable "service_name" {
  description = "Name of the Cloud Run service; the migrate job and the service accounts are named after it."
  type        = string
  default     = "observing-jobs"

  validation {
    # 22 characters at most so that "<name>-migrate" is still a valid service account id (30).
    condition     = can(regex("^[a-z][a-z0-9-]{4,20}[a-z0-9]$", var.service_name))
    error_message = "service_name must be 6-22 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "image" {
  description = "Container image built from the repository's Dockerfile, by digest (REGISTRY/PATH@sha256:...), so the migrate job and the service run the same build."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be an image reference by digest, e.g. europe-west1-docker.pkg.dev/PROJECT/REPO/observing-jobs@sha256:<64 hex digits>."
  }
}

variable "cloud_sql_instance" {
  description = "Connection name (PROJECT:REGION:INSTANCE) of the Cloud SQL instance holding the app's database; mounted as a Unix socket under /cloudsql."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]*(:[a-z][a-z0-9-]*)?:[a-z]+-[a-z]+[0-9]+:[a-z][a-z0-9-]*$", var.cloud_sql_instance))
    error_message = "cloud_sql_instance must be a Cloud SQL connection name, PROJECT:REGION:INSTANCE."
  }
}

variable "database_url_secret" {
  description = "Secret Manager secret (id in this project) and version holding the service's DATABASE_URL: the runtime database role, no DDL (see README, Database roles)."
  type        = object({ id = string, version = string })

  validation {
    # A version number, never "latest": a revision then always starts with the secret it was deployed with.
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.database_url_secret.id)) && can(regex("^[1-9][0-9]*$", var.database_url_secret.version))
    error_message = "database_url_secret must be { id = SECRET_ID, version = \"N\" }: a Secret Manager secret id (letters, digits, - and _) and a version number (not latest)."
  }
}

variable "dashboard_session_secret" {
  description = "Secret Manager secret and version holding DASHBOARD_SESSION_SECRET, at least 32 random characters that sign the dashboard's session cookies on every instance."
  type        = object({ id = string, version = string })

  validation {
    # A version number, never "latest": a revision then always starts with the secret it was deployed with.
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.dashboard_session_secret.id)) && can(regex("^[1-9][0-9]*$", var.dashboard_session_secret.version))
    error_message = "dashboard_session_secret must be { id = SECRET_ID, version = \"N\" }: a Secret Manager secret id (letters, digits, - and _) and a version number (not latest)."
  }
}

variable "migrate_database_url_secret" {
  description = "Secret Manager secret and version holding the migrate job's DATABASE_URL: the migrator database role that owns the job schemas. Only the migrate job's service account can read it."
  type        = object({ id = string, version = string })

  validation {
    # A version number, never "latest": a revision then always starts with the secret it was deployed with.
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.migrate_database_url_secret.id)) && can(regex("^[1-9][0-9]*$", var.migrate_database_url_secret.version))
    error_message = "migrate_database_url_secret must be { id = SECRET_ID, version = \"N\" }: a Secret Manager secret id (letters, digits, - and _) and a version number (not latest)."
  }
}

variable "iucn_api_token_secret" {
  description = "Secret Manager secret and version holding IUCN_API_TOKEN (IUCN Red List API v4); null leaves the variable unset."
  type        = object({ id = string, version = string })
  default     = null

  validation {
    # A version number, never "latest": a revision then always starts with the secret it was deployed with.
    condition     = var.iucn_api_token_secret == null || (can(regex("^[A-Za-z0-9_-]{1,255}$", var.iucn_api_token_secret.id)) && can(regex("^[1-9][0-9]*$", var.iucn_api_token_secret.version)))
    error_message = "iucn_api_token_secret must be null or { id = SECRET_ID, version = \"N\" }: a Secret Manager secret id (letters, digits, - and _) and a version number (not latest)."
  }
}

variable "api_tokens_secret" {
  description = "Secret Manager secret and version holding API_TOKENS, static bearer tokens for callers that cannot present a Google ID token; null leaves the variable unset."
  type        = object({ id = string, version = string })
  default     = null

  validation {
    # A version number, never "latest": a revision then always starts with the secret it was deployed with.
    condition     = var.api_tokens_secret == null || (can(regex("^[A-Za-z0-9_-]{1,255}$", var.api_tokens_secret.id)) && can(regex("^[1-9][0-9]*$", var.api_tokens_secret.version)))
    error_message = "api_tokens_secret must be null or { id = SECRET_ID, version = \"N\" }: a Secret Manager secret id (letters, digits, - and _) and a version number (not latest)."
  }
}

variable "metrics_token_secret" {
  description = "Secret Manager secret and version holding METRICS_TOKEN: one token (16 characters or more) that opens GET /metrics and nothing else. The service checks it; the OpenTelemetry Collector sidecar scrapes with it."
  type        = object({ id = string, version = string })

  validation {
    # A version number, never "latest": a revision then always starts with the secret it was deployed with.
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.metrics_token_secret.id)) && can(regex("^[1-9][0-9]*$", var.metrics_token_secret.version))
    error_message = "metrics_token_secret must be { id = SECRET_ID, version = \"N\" }: a Secret Manager secret id (letters, digits, - and _) and a version number (not latest)."
  }
}

variable "otel_collector_image" {
  description = "Image of the OpenTelemetry Collector sidecar: the Google-Built OpenTelemetry Collector, pinned by version (or digest) so a revision always runs the collector it was tested with."
  type        = string
  default     = "us-docker.pkg.dev/cloud-ops-agents-artifacts/google-cloud-opentelemetry-collector/otelcol-google:0.160.0"

  validation {
    condition     = can(regex("^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+(:[0-9]+\\.[0-9]+\\.[0-9]+|@sha256:[0-9a-f]{64})$", var.otel_collector_image))
    error_message = "otel_collector_image must name a version (otelcol-google:0.160.0) or a digest (@sha256:...), never latest."
  }
}

variable "invokers" {
  description = "Principals allowed to call the service, as serviceAccount:EMAIL or user:EMAIL. Each gets roles/run.invoker, and their emails form the service's caller allowlist (AUTH_ALLOWED_CALLERS)."
  type        = list(string)
  default     = []

  validation {
    # Named identities only: public principals, groups and domains cannot be checked against an email allowlist.
    condition     = alltrue([for member in var.invokers : can(regex("^(serviceAccount|user):[^@:\\s]+@[^@:\\s]+\\.[a-z]+$", member))])
    error_message = "Each invoker must be serviceAccount:EMAIL or user:EMAIL; public principals, groups and domains are not accepted."
  }
}

variable "oidc_audience" {
  description = "Audience callers put in their Google ID tokens. Registered as the service's custom audience, so Cloud Run accepts it, and checked again by the service (AUTH_OIDC_AUDIENCE)."
  type        = string
  default     = "observing-jobs"

  validation {
    condition     = length(trimspace(var.oidc_audience)) > 0 && !can(regex("[\\s,]", var.oidc_audience))
    error_message = "oidc_audience must be a non-empty string without spaces or commas."
  }
}

variable "min_instances" {
  description = "Instances kept running at all times: the runner and the crontab live in the instances, so at least one."
  type        = number
  default     = 1

  validation {
    condition     = var.min_instances >= 1 && floor(var.min_instances) == var.min_instances
    error_message = "min_instances must be a whole number of at least 1: with no instance, no job and no cron tick runs."
  }
}

variable "max_instances" {
  description = "Upper bound on instances. Each holds WORKER_CONCURRENCY + 5 database connections, so this bounds the service's share of the database's connections."
  type        = number
  default     = 3

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 100 && floor(var.max_instances) == var.max_instances
    error_message = "max_instances must be a whole number from 1 to 100."
  }
}

variable "worker_concurrency" {
  description = "Jobs one instance runs at once (WORKER_CONCURRENCY)."
  type        = number
  default     = 10

  validation {
    condition     = var.worker_concurrency >= 1 && var.worker_concurrency <= 200 && floor(var.worker_concurrency) == var.worker_concurrency
    error_message = "worker_concurrency must be a whole number from 1 to 200 (the service's own limit)."
  }
}

variable "cpu" {
  description = "vCPUs of one instance; always allocated, since the runner works between requests."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "8"], var.cpu)
    error_message = "cpu must be 1, 2, 4 or 8 (Cloud Run needs at least 1 vCPU with CPU always allocated)."
  }
}

variable "memory" {
  description = "Memory of one instance, e.g. 512Mi or 1Gi."
  type        = string
  default     = "512Mi"

  validation {
    condition     = can(regex("^[0-9]+(Mi|Gi)$", var.memory))
    error_message = "memory must be a quantity in Mi or Gi, e.g. 512Mi."
  }
}

variable "environment" {
  description = "Further plain settings of the service (LOG_LEVEL, GBIF_USER_AGENT, WIKIDATA_BASE_URL, OTEL_TRACES_SAMPLER, ...). Secrets never go here: they come from Secret Manager."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.environment) : can(regex("^[A-Z][A-Z0-9_]*$", name))])
    error_message = "environment keys must be upper-case variable names."
  }

  validation {
    # These are set by this module (or by Cloud Run); a second definition would be ambiguous.
    condition     = length(setintersection(keys(var.environment), ["DATABASE_URL", "IUCN_API_TOKEN", "API_TOKENS", "METRICS_TOKEN", "DASHBOARD_SESSION_SECRET", "AUTH_ALLOWED_CALLERS", "AUTH_OIDC_AUDIENCE", "WORKER_CONCURRENCY", "NODE_ENV", "PORT", "GOOGLE_CLOUD_PROJECT", "OTEL_SERVICE_NAME", "OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL"])) == 0
    error_message = "environment must not set what this module sets (secrets, AUTH_ALLOWED_CALLERS, AUTH_OIDC_AUDIENCE, WORKER_CONCURRENCY, NODE_ENV, PORT, GOOGLE_CLOUD_PROJECT, the OTEL_* exporter settings); use the dedicated variables."
  }
}

variable "deletion_protection" {
  description = "Refuse to destroy the service and the migrate job. Set false and apply before removing them."
  type        = bool
  default     = true
}
