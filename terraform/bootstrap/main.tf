# One-time setup for the pipeline (run once by a project owner): the APIs, the image repository, the state
# bucket, a role-less runtime identity, a deployer with only the rights each pipeline step uses, and Workload
# Identity Federation that admits one repository's protected branch, in one GitHub Environment, and nothing else.

locals {
  # Every API the pipeline and this bootstrap call. Everything below depends on them being enabled first:
  # cloudresourcemanager serves project IAM policies, iam the service accounts, roles and the identity pool.
  services = [
    "artifactregistry.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "iam.googleapis.com",
    "iamcredentials.googleapis.com",
    "run.googleapis.com",
    "secretmanager.googleapis.com",
    "serviceusage.googleapis.com",
    "storage.googleapis.com",
    "sts.googleapis.com",
  ]

  # Cloud Run does not recognise resource attributes in IAM Conditions, so roles/run.admin cannot be limited to
  # this pipeline's services by a condition. This custom role is the narrower grant: services and their
  # revisions only (no jobs, worker pools or builds), with the IAM policy rights public access needs.
  cloud_run_deployer_permissions = [
    "run.operations.get",
    "run.revisions.get",
    "run.revisions.list",
    "run.services.create",
    "run.services.delete",
    "run.services.get",
    "run.services.getIamPolicy",
    "run.services.list",
    "run.services.setIamPolicy",
    "run.services.update",
  ]

  deployer_member = "serviceAccount:${google_service_account.deployer.email}"
}

resource "google_project_service" "enabled" {
  for_each           = toset(local.services)
  service            = each.value
  disable_on_destroy = false
}

# ---- where images and state live ----------------------------------------------------------------------------

resource "google_artifact_registry_repository" "images" {
  repository_id = "tiny-llm"
  location      = var.region
  format        = "DOCKER"
  description   = "Images built, scanned and pushed by the tiny-llm pipeline; each is deleted with its environment."

  # A backstop for images whose destroy never ran: every image is ephemeral, none outlives a week.
  cleanup_policies {
    id     = "delete-after-a-week"
    action = "DELETE"
    condition {
      tag_state  = "ANY"
      older_than = "604800s"
    }
  }

  depends_on = [google_project_service.enabled]
}

resource "google_storage_bucket" "state" {
  name                        = var.state_bucket_name
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = false

  # Old versions let a person recover a state that a failed write damaged; they are kept for a while, not forever.
  versioning {
    enabled = true
  }

  lifecycle_rule {
    condition {
      with_state                 = "ARCHIVED"
      days_since_noncurrent_time = var.state_versions_kept_days
    }
    action {
      type = "Delete"
    }
  }

  depends_on = [google_project_service.enabled]
}

# ---- identities -----------------------------------------------------------------------------------------------

# The identity every environment's Cloud Run service runs as. Its one right: reading the API key secret below
# (Cloud Run reads it as this account when an instance starts). No project role: the app calls no Google API.
resource "google_service_account" "runtime" {
  account_id   = "tiny-llm-runtime"
  display_name = "tiny-llm runtime"
  description  = "Runtime identity of the pipeline's ephemeral Cloud Run services; may read the API key secret, nothing else."

  depends_on = [google_project_service.enabled]
}

# The identity the pipeline's cloud jobs act as.
resource "google_service_account" "deployer" {
  account_id   = "tiny-llm-deployer"
  display_name = "tiny-llm pipeline deployer"
  description  = "Pushes, deploys and destroys the pipeline's ephemeral environments; see docs/deploy.md for each right."

  depends_on = [google_project_service.enabled]
}

# ---- the deployer's rights, each bound where it is used ------------------------------------------------------

resource "google_project_iam_custom_role" "cloud_run_deployer" {
  role_id     = "tinyLlmCloudRunDeployer"
  title       = "tiny-llm Cloud Run deployer"
  description = "Create, update and delete Cloud Run services and set their invoker policy; nothing else."
  permissions = local.cloud_run_deployer_permissions

  depends_on = [google_project_service.enabled]
}

# deploy (terraform apply), destroy and the janitor: the Cloud Run services of each environment.
resource "google_project_iam_member" "deployer_cloud_run" {
  project = var.project_id
  role    = google_project_iam_custom_role.cloud_run_deployer.name
  member  = local.deployer_member

  depends_on = [google_project_service.enabled]
}

# deploy: a service may run as the runtime account, and as no other (serviceAccountUser on that account only).
resource "google_service_account_iam_member" "deployer_acts_as_runtime" {
  service_account_id = google_service_account.runtime.name
  role               = "roles/iam.serviceAccountUser"
  member             = local.deployer_member

  depends_on = [google_project_service.enabled]
}

# push: upload the scanned image; destroy and the janitor: delete its version and tags (writer cannot).
resource "google_artifact_registry_repository_iam_member" "deployer_images" {
  project    = google_artifact_registry_repository.images.project
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.repoAdmin"
  member     = local.deployer_member

  depends_on = [google_project_service.enabled]
}

# deploy, destroy and the janitor: the recorded inputs, the state and its lock, in this bucket only.
resource "google_storage_bucket_iam_member" "deployer_state" {
  bucket = google_storage_bucket.state.name
  role   = "roles/storage.objectAdmin"
  member = local.deployer_member

  depends_on = [google_project_service.enabled]
}

# ---- the service's API key --------------------------------------------------------------------------------

# The secret only: its versions (the key's values) are added by the pipeline from a GitHub secret with gcloud,
# so no value ever passes through Terraform's state or plan output.
resource "google_secret_manager_secret" "api_key" {
  secret_id = var.api_key_secret_id
  labels = {
    app = "tiny-llm"
  }

  replication {
    auto {}
  }

  depends_on = [google_project_service.enabled]
}

# The service reads the key when an instance starts, as the runtime account: accessor on this secret only.
resource "google_secret_manager_secret_iam_member" "runtime_reads_api_key" {
  project   = google_secret_manager_secret.api_key.project
  secret_id = google_secret_manager_secret.api_key.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${google_service_account.runtime.email}"

  depends_on = [google_project_service.enabled]
}

# deploy: add the run's key as a new version; destroy and the janitor: destroy that version once its service is
# gone. Version rights on this secret only, and no right to read any value.
resource "google_secret_manager_secret_iam_member" "deployer_api_key_versions" {
  project   = google_secret_manager_secret.api_key.project
  secret_id = google_secret_manager_secret.api_key.secret_id
  role      = "roles/secretmanager.secretVersionManager"
  member    = local.deployer_member

  depends_on = [google_project_service.enabled]
}

# ---- Workload Identity Federation: GitHub's OIDC tokens, this repository's protected branch only ------------

resource "google_iam_workload_identity_pool" "github" {
  workload_identity_pool_id = "tiny-llm-github"
  display_name              = "tiny-llm GitHub Actions"

  depends_on = [google_project_service.enabled]
}

resource "google_iam_workload_identity_pool_provider" "github" {
  workload_identity_pool_id          = google_iam_workload_identity_pool.github.workload_identity_pool_id
  workload_identity_pool_provider_id = "github-oidc"
  display_name                       = "GitHub OIDC"

  attribute_mapping = {
    "google.subject"                = "assertion.sub"
    "attribute.repository"          = "assertion.repository"
    "attribute.repository_id"       = "assertion.repository_id"
    "attribute.repository_owner_id" = "assertion.repository_owner_id"
    "attribute.ref"                 = "assertion.ref"
    "attribute.environment"         = "assertion.environment"
  }
  # Only tokens of this repository and its owner (numeric ids: they survive renames and cannot be re-registered,
  # names can), from the protected branch, in the GitHub Environment the cloud jobs run in. Any other repository,
  # branch, pull request or job is refused before any IAM check.
  attribute_condition = "assertion.repository_id == \"${var.github_repository_id}\" && assertion.repository_owner_id == \"${var.github_repository_owner_id}\" && assertion.ref == \"refs/heads/${var.github_branch}\" && assertion.environment == \"${var.github_environment}\""

  oidc {
    issuer_uri = "https://token.actions.githubusercontent.com"
  }

  depends_on = [google_project_service.enabled]
}

resource "google_service_account_iam_member" "github_impersonates_deployer" {
  service_account_id = google_service_account.deployer.name
  role               = "roles/iam.workloadIdentityUser"
  member             = "principalSet://iam.googleapis.com/${google_iam_workload_identity_pool.github.name}/attribute.repository_id/${var.github_repository_id}"

  depends_on = [google_project_service.enabled]
}
