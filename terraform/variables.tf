# Inputs of the per-run environment; the pipeline passes every one of them, nothing project-specific is defaulted.
variable "project_id" {
  description = "Google Cloud project that hosts the ephemeral environment."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 characters, lowercase letters, digits and hyphens."
  }
}

variable "region" {
  description = "Cloud Run region, e.g. europe-west1."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[1-9][0-9]*$", var.region))
    error_message = "region must be a Google Cloud region name such as europe-west1, europe-west10 or northamerica-northeast2."
  }
}

variable "environment_id" {
  description = "Suffix that makes every resource name unique per pipeline run (the pipeline uses <run id>-<attempt>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,18}[a-z0-9]$", var.environment_id))
    error_message = "environment_id must be 2-20 characters of lowercase letters, digits and hyphens, not starting or ending with a hyphen."
  }
}

variable "image" {
  description = "Container image to run, pinned by digest: REGION-docker.pkg.dev/PROJECT/REPO/NAME@sha256:..."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9.-]+/[^@\\s]+@sha256:[0-9a-f]{64}$", var.image))
    error_message = "image must be pinned by digest (…@sha256:<64 hex>) so the deployed image is exactly the scanned one."
  }
}

variable "runtime_service_account" {
  description = "Email of the role-less service account the service runs as (the bootstrap's tiny-llm-runtime); the deployer may act as it and as no other."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\\.iam\\.gserviceaccount\\.com$", var.runtime_service_account))
    error_message = "runtime_service_account must be a service account email: NAME@PROJECT.iam.gserviceaccount.com."
  }
}

variable "public_access" {
  description = "Let anyone call the service (the original's behaviour). When false, callers need roles/run.invoker."
  type        = bool
  default     = true
}

variable "public_access_mode" {
  description = "How public access is granted: \"invoker_check_disabled\" turns off Cloud Run's invoker IAM check (Google's recommendation, allowed under domain-restricted sharing); \"iam_binding\" gives allUsers roles/run.invoker, which domain-restricted sharing rejects."
  type        = string
  default     = "invoker_check_disabled"

  validation {
    condition     = contains(["iam_binding", "invoker_check_disabled"], var.public_access_mode)
    error_message = "public_access_mode must be \"iam_binding\" or \"invoker_check_disabled\"."
  }
}

variable "ttl_hours" {
  description = "Hours after which the scheduled janitor destroys this environment if the pipeline did not."
  type        = number
  default     = 3

  validation {
    condition     = var.ttl_hours >= 1 && var.ttl_hours <= 72 && floor(var.ttl_hours) == var.ttl_hours
    error_message = "ttl_hours must be a whole number between 1 and 72."
  }
}

variable "created_at" {
  description = "Creation time as Unix seconds (the pipeline passes the run's start); the expires-at label is derived from it."
  type        = number

  validation {
    condition     = var.created_at > 1600000000 && floor(var.created_at) == var.created_at
    error_message = "created_at must be Unix seconds."
  }
}

variable "cpu" {
  description = "vCPUs per instance, one generation worker each; the pipeline computes it from the model (.github/scripts/size-service.mjs)."
  type        = string
  default     = "1"

  validation {
    condition     = contains(["1", "2", "4", "6", "8"], var.cpu)
    error_message = "cpu must be a vCPU count Cloud Run offers for a service: 1, 2, 4, 6 or 8."
  }
}

variable "memory" {
  description = "Memory limit per instance (NMi or NGi, 512Mi to 32Gi); the pipeline computes it from the model. It must hold the model (see sizing.tf) and suit the CPU count."
  type        = string
  default     = "512Mi"

  validation {
    condition = (can(regex("^[1-9][0-9]*(Mi|Gi)$", var.memory))
      ? tonumber(regex("^[0-9]+", var.memory)) * (endswith(var.memory, "Gi") ? 1024 : 1) >= 512 && tonumber(regex("^[0-9]+", var.memory)) * (endswith(var.memory, "Gi") ? 1024 : 1) <= 32768
    : false)
    error_message = "memory must be a quantity such as 512Mi or 2Gi, between 512Mi and 32Gi (Cloud Run's range)."
  }
}

variable "model_weights_bytes" {
  description = "Bytes the served model's weights take in memory at their peak (float32: parameters × 8, the load and the placed copy; q8_0: parameters × 5.0625), from .github/scripts/size-service.mjs. Apply refuses a memory setting too small for the model."
  type        = number
  default     = null

  validation {
    condition     = var.model_weights_bytes == null ? true : var.model_weights_bytes > 0 && floor(var.model_weights_bytes) == var.model_weights_bytes
    error_message = "model_weights_bytes must be a whole number of bytes."
  }
}

variable "model_worker_bytes" {
  description = "Bytes one generation worker needs besides the weights (its session, KV cache and activations for the whole context, and its thread), from .github/scripts/size-service.mjs."
  type        = number
  default     = null

  validation {
    condition     = var.model_worker_bytes == null ? true : var.model_worker_bytes > 0 && floor(var.model_worker_bytes) == var.model_worker_bytes
    error_message = "model_worker_bytes must be a whole number of bytes."
  }
}

variable "api_key_secret" {
  description = "Secret Manager secret (its id, e.g. tiny-llm-api-key) whose value the service requires as a Bearer token; empty: the API is open."
  type        = string
  default     = ""

  validation {
    condition     = var.api_key_secret == "" || can(regex("^[A-Za-z0-9_-]{1,255}$", var.api_key_secret))
    error_message = "api_key_secret must be a secret id (letters, digits, '_' and '-') or empty."
  }
}

variable "api_key_secret_version" {
  description = "The secret's version the service reads, pinned (Cloud Run reads an environment secret when an instance starts; 'latest' could change under a running service). Required with api_key_secret."
  type        = string
  default     = ""

  validation {
    condition     = can(regex("^([1-9][0-9]*)?$", var.api_key_secret_version))
    error_message = "api_key_secret_version must be a version number such as 3, or empty."
  }
}

variable "max_instances" {
  description = "Upper bound on instances: the cost guard for a public demo."
  type        = number
  default     = 2

  validation {
    condition     = var.max_instances >= 1 && var.max_instances <= 10
    error_message = "max_instances must be between 1 and 10."
  }
}

variable "concurrency" {
  description = "Requests one instance accepts at a time; the server queues the rest and answers 503 when full."
  type        = number
  default     = 16

  validation {
    condition     = var.concurrency >= 1 && var.concurrency <= 1000
    error_message = "concurrency must be between 1 and 1000."
  }
}
