terraform {
  # `removed` blocks with `lifecycle { destroy = ... }` need Terraform 1.7.
  required_version = ">= 1.7.0, < 2.0.0"

  required_providers {
    # 7.x, the current major; nothing used here changed from 6.x (see the provider's 7.0.0 upgrade guide).
    google = {
      source  = "hashicorp/google"
      version = "~> 7.0"
    }
  }

  # The state bucket differs per environment: terraform init -backend-config="bucket=..." (see README).
  backend "gcs" {
    prefix = "observing-jobs"
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
