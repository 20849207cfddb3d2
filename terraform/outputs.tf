# What the pipeline reads after apply: the live URL for the smoke test and the names for the logs.
output "cloud_run_url" {
  description = "HTTPS URL of the deployed service."
  value       = google_cloud_run_v2_service.app.uri
}

output "service_name" {
  description = "Name of the Cloud Run service (suffixed with the environment id)."
  value       = google_cloud_run_v2_service.app.name
}

output "runtime_service_account" {
  description = "Email of the service's runtime identity, which holds no roles."
  value       = google_cloud_run_v2_service.app.template[0].service_account
}

output "expires_at" {
  description = "Unix seconds after which the janitor destroys this environment."
  value       = local.expires_at
}

output "image" {
  description = "The image digest this environment runs."
  value       = var.image
}
