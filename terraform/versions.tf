# Terraform and provider versions for the per-run Cloud Run environment; state lives in GCS (see docs/deploy.md).
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # 6.8.0 added invoker_iam_disabled to google_cloud_run_v2_service; 6.x keeps deletion_protection.
      # .terraform.lock.hcl pins the exact release and its hashes.
      version = "~> 6.8"
    }
  }

  # Bucket and prefix come from `terraform init -backend-config=...`; nothing project-specific lives here.
  backend "gcs" {}
}

provider "google" {
  project = var.project_id
  region  = var.region

  default_labels = {
    app       = "tiny-llm"
    ephemeral = "true"
  }
}
