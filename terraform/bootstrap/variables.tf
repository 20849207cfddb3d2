# Inputs of the bootstrap: the project, and the one GitHub repository, branch and environment that may deploy.
variable "project_id" {
  description = "Google Cloud project that hosts the pipeline's environments."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project id: 6-30 characters, lowercase letters, digits and hyphens."
  }
}

variable "region" {
  description = "Region of the Artifact Registry repository, the state bucket and the Cloud Run services, e.g. europe-west1."
  type        = string
  default     = "europe-west1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[1-9][0-9]*$", var.region))
    error_message = "region must be a Google Cloud region name such as europe-west1, europe-west10 or northamerica-northeast2."
  }
}

variable "github_repository_id" {
  description = "Numeric id of the GitHub repository whose workflows may deploy (gh api repos/OWNER/REPO --jq .id). Ids survive renames and cannot be re-registered, names can."
  type        = string

  validation {
    condition     = can(regex("^[1-9][0-9]*$", var.github_repository_id))
    error_message = "github_repository_id must be the repository's numeric id, e.g. 123456789."
  }
}

variable "github_repository_owner_id" {
  description = "Numeric id of the repository's owner, user or organisation (gh api repos/OWNER/REPO --jq .owner.id)."
  type        = string

  validation {
    condition     = can(regex("^[1-9][0-9]*$", var.github_repository_owner_id))
    error_message = "github_repository_owner_id must be the owner's numeric id, e.g. 987654321."
  }
}

variable "github_branch" {
  description = "The protected branch whose workflow runs may deploy; tokens from any other ref are refused."
  type        = string
  default     = "main"

  validation {
    condition     = can(regex("^[A-Za-z0-9._/-]+$", var.github_branch))
    error_message = "github_branch must be a branch name such as main."
  }
}

variable "github_environment" {
  description = "GitHub Environment every cloud job runs in (its deployment branch rule admits only github_branch); must match the workflows' environment."
  type        = string
  default     = "google-cloud"

  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+$", var.github_environment))
    error_message = "github_environment must be an environment name of letters, digits, '.', '_' or '-'."
  }
}

variable "state_bucket_name" {
  description = "Globally unique name of the GCS bucket that holds every environment's Terraform state."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9_.-]{1,61}[a-z0-9]$", var.state_bucket_name))
    error_message = "state_bucket_name must be a valid bucket name: 3-63 lowercase letters, digits, '-', '_' or '.'."
  }
}

variable "state_versions_kept_days" {
  description = "Days a replaced or deleted state object version is kept before the bucket deletes it."
  type        = number
  default     = 30

  validation {
    condition     = var.state_versions_kept_days >= 1 && var.state_versions_kept_days <= 365 && floor(var.state_versions_kept_days) == var.state_versions_kept_days
    error_message = "state_versions_kept_days must be a whole number between 1 and 365."
  }
}

variable "api_key_secret_id" {
  description = "Secret Manager secret that holds the service's API key (the pipeline adds a version from the GitHub secret API_KEY; the runtime account may read it)."
  type        = string
  default     = "tiny-llm-api-key"

  validation {
    condition     = can(regex("^[A-Za-z0-9_-]{1,255}$", var.api_key_secret_id))
    error_message = "api_key_secret_id must be 1-255 letters, digits, '_' or '-'."
  }
}
