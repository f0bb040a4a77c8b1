variable "project" {
  description = "The Google Cloud project to deploy into."
  type        = string
}

variable "region" {
  description = "The region of the Cloud Run services, the Cloud SQL instance and the bucket."
  type        = string
}

variable "name" {
  description = "A prefix for every resource's name, so that several deployments share a project."
  type        = string
  default     = "skein"
}

variable "image" {
  description = "The skein image (deploy/Dockerfile), preferably by digest: REGION-docker.pkg.dev/PROJECT/REPO/skein@sha256:…"
  type        = string
}

variable "invokers" {
  description = "Principals allowed to call skein's API (roles/run.invoker): such as serviceAccount:ci@PROJECT.iam.gserviceaccount.com or group:team@example.com."
  type        = list(string)
  default     = []
}

variable "oidc_rules" {
  description = "Which callers act in which project with which role, as CLAIM=GLOB:PROJECT:ROLE (first match wins); for example email=*@example.com:default:run."
  type        = list(string)
}

variable "server_min_instances" {
  description = "Server instances kept running: at least 1, since executions run between requests."
  type        = number
  default     = 1
}

variable "server_max_instances" {
  description = "The most server instances."
  type        = number
  default     = 10
}

variable "worker_max_instances" {
  description = "The most worker instances, each running one task at a time."
  type        = number
  default     = 50
}

variable "database_tier" {
  description = "The Cloud SQL machine tier."
  type        = string
  default     = "db-custom-2-7680"
}

variable "database_network" {
  description = "The VPC network (self link) the Cloud SQL instance gets its private IP in, and that the services reach it and each other through."
  type        = string
}

variable "database_deletion_protection" {
  description = "Refuse to delete the database instance (turn off only to tear a test deployment down)."
  type        = bool
  default     = true
}

variable "object_retention_days" {
  description = "Objects in the bucket (render chunks, videos, archives) are deleted after this many days; 0 keeps them."
  type        = number
  default     = 30
}

variable "access_log_bucket" {
  description = "An existing bucket that receives the objects bucket's access logs."
  type        = string
}

variable "bridge" {
  description = "Deploy `skein bridge`, with the consumer's URL and the scope it serves; null deploys none."
  type = object({
    consumer_base_url = string
    user_id           = string
    project_id        = string
  })
  default = null
}

variable "notification_channels" {
  description = "Cloud Monitoring notification channels (ids) the alerts go to."
  type        = list(string)
  default     = []
}

variable "failed_executions_per_minute" {
  description = "Alert when more executions than this fail per minute, over 5 minutes."
  type        = number
  default     = 1
}

variable "worker_requests_per_second" {
  description = "Alert when the workers get more requests per second than this (a runaway fan-out), over 5 minutes."
  type        = number
  default     = 50
}
