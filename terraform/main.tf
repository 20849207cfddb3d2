# One ephemeral environment: the Cloud Run v2 service, sized for its model and running as the bootstrap's runtime
# account, its optional API key read from Secret Manager, and public access.
locals {
  name       = "tiny-llm-${var.environment_id}"
  expires_at = var.created_at + var.ttl_hours * 3600

  # Label values: lowercase letters, digits, - and _ only. expires-at (Unix seconds) tells a person looking at the
  # console when the environment goes; the janitor decides from the inputs recorded next to the state, which carry
  # the same created_at and ttl_hours.
  labels = {
    app            = "tiny-llm"
    ephemeral      = "true"
    environment-id = var.environment_id
    expires-at     = tostring(local.expires_at)
  }
}

resource "google_cloud_run_v2_service" "app" {
  name     = local.name
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"
  labels   = local.labels

  # The provider defaults this to true since 6.0, which makes `terraform destroy` fail.
  deletion_protection = false

  # Public access without an allUsers binding (Google's recommended way, and the one domain-restricted sharing allows).
  invoker_iam_disabled = var.public_access && var.public_access_mode == "invoker_check_disabled"

  template {
    service_account                  = var.runtime_service_account
    labels                           = local.labels
    max_instance_request_concurrency = var.concurrency
    timeout                          = "60s"

    scaling {
      min_instance_count = 0
      max_instance_count = var.max_instances
    }

    containers {
      name  = "tiny-llm"
      image = var.image

      ports {
        container_port = 8000
      }

      # One generation worker per vCPU: the memory rule (sizing.tf) counts them.
      env {
        name  = "WORKERS"
        value = var.cpu
      }

      # The optional API key: Cloud Run reads it from Secret Manager when an instance starts, at the version this
      # deploy added. Only the secret's name and version are in the state, never its value.
      dynamic "env" {
        for_each = var.api_key_secret == "" ? [] : [var.api_key_secret]
        content {
          name = "API_KEY"
          value_source {
            secret_key_ref {
              secret  = env.value
              version = var.api_key_secret_version
            }
          }
        }
      }

      resources {
        limits = {
          cpu    = var.cpu
          memory = var.memory
        }
        cpu_idle          = true
        startup_cpu_boost = true
      }

      # Traffic only once the model is loaded.
      startup_probe {
        initial_delay_seconds = 0
        period_seconds        = 2
        timeout_seconds       = 2
        failure_threshold     = 30
        http_get {
          path = "/ready"
          port = 8000
        }
      }

      # Restart an instance whose event loop stopped answering.
      liveness_probe {
        period_seconds    = 15
        timeout_seconds   = 3
        failure_threshold = 3
        http_get {
          path = "/health"
          port = 8000
        }
      }
    }
  }

  # Refused at plan time, before anything is created or changed.
  lifecycle {
    precondition {
      condition     = local.memory_fits_cpu
      error_message = "memory ${var.memory} does not suit ${var.cpu} vCPU: Cloud Run allows ${local.cpu_memory_mib[var.cpu].min}-${local.cpu_memory_mib[var.cpu].max} MiB with it."
    }
    precondition {
      condition     = local.memory_fits_model
      error_message = local.model_memory_mib == null ? "model_weights_bytes and model_worker_bytes must be given: the memory is checked against the model before it is deployed." : "memory ${var.memory} is too small for the model: with ${local.workers} worker(s) it needs ${local.model_memory_mib} MiB (${var.model_weights_bytes} bytes of weights, see sizing.tf)."
    }
    precondition {
      condition     = var.api_key_secret == "" || var.api_key_secret_version != ""
      error_message = "api_key_secret_version must name the secret's version when api_key_secret is set."
    }
  }
}

# Public access through an allUsers binding of roles/run.invoker, only when asked for: organisations with
# domain-restricted sharing reject it.
resource "google_cloud_run_v2_service_iam_member" "public_invoker" {
  count = var.public_access && var.public_access_mode == "iam_binding" ? 1 : 0

  project  = google_cloud_run_v2_service.app.project
  location = google_cloud_run_v2_service.app.location
  name     = google_cloud_run_v2_service.app.name
  role     = "roles/run.invoker"
  member   = "allUsers"
}
