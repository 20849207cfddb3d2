# Terraform and provider versions for the one-time bootstrap; its state stays local with the project owner.
terraform {
  required_version = ">= 1.6.0, < 2.0.0"

  required_providers {
    google = {
      source = "hashicorp/google"
      # The same constraint as the per-run module; .terraform.lock.hcl pins the exact release and its hashes.
      version = "~> 6.8"
    }
  }
}

provider "google" {
  project = var.project_id
  region  = var.region
}
