# What the GitHub Environment needs: each output names the variable it goes into (see docs/deploy.md).
output "github_variables" {
  description = "Variables of the GitHub Environment the cloud jobs run in (name = value)."
  value = {
    GCP_PROJECT_ID                 = var.project_id
    GCP_REGION                     = var.region
    GCP_ARTIFACT_REGISTRY          = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.images.repository_id}"
    TF_STATE_BUCKET                = google_storage_bucket.state.name
    GCP_WORKLOAD_IDENTITY_PROVIDER = google_iam_workload_identity_pool_provider.github.name
    GCP_SERVICE_ACCOUNT            = google_service_account.deployer.email
    GCP_RUNTIME_SERVICE_ACCOUNT    = google_service_account.runtime.email
    GCP_API_KEY_SECRET             = google_secret_manager_secret.api_key.secret_id
  }
}

output "github_environment" {
  description = "Name of the GitHub Environment to create, with a deployment branch rule for github_branch only."
  value       = var.github_environment
}

output "workload_identity_condition" {
  description = "The condition every GitHub token must meet before it can impersonate the deployer."
  value       = google_iam_workload_identity_pool_provider.github.attribute_condition
}
