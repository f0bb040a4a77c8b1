# skein on Cloud Run with Cloud SQL: the server (REST and gRPC services sharing one
# PostgreSQL), workers, an optional bridge, a bucket, secrets, two least-privilege
# service accounts, invoker bindings and alerts. docs/deploy/cloud-run.md walks through it.

locals {
  engine_email = google_service_account.engine.email
  worker_email = google_service_account.worker.email
  server_env = {
    SKEIN_OIDC_ISSUER             = "https://accounts.google.com"
    SKEIN_OIDC_RULE               = join(",", var.oidc_rules)
    SKEIN_LOG_FORMAT              = "json"
    SKEIN_WORKERS                 = google_cloud_run_v2_service.worker.uri
    SKEIN_WORKER_GOOGLE_ID_TOKENS = "true"
    GOOGLE_CLOUD_PROJECT          = var.project
  }
  # Variables the servers read from Secret Manager.
  server_secrets = {
    SKEIN_DATABASE     = google_secret_manager_secret.database_url.secret_id
    SKEIN_WORKER_TOKEN = google_secret_manager_secret.worker_token.secret_id
  }
  labels = { app = var.name }
}

# ---- Identities: the engine (server and bridge) and the workers, each with only what it uses.

resource "google_service_account" "engine" {
  project      = var.project
  account_id   = "${var.name}-engine"
  display_name = "skein server and bridge"
}

resource "google_service_account" "worker" {
  project      = var.project
  account_id   = "${var.name}-worker"
  display_name = "skein workers"
}

resource "google_project_iam_member" "engine" {
  for_each = toset([
    "roles/cloudsql.client",
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/cloudtrace.agent",
  ])
  project = var.project
  role    = each.value
  member  = "serviceAccount:${local.engine_email}"
}

resource "google_project_iam_member" "worker" {
  for_each = toset([
    "roles/logging.logWriter",
    "roles/cloudtrace.agent",
  ])
  project = var.project
  role    = each.value
  member  = "serviceAccount:${local.worker_email}"
}

# ---- Objects: chunks, videos and archives, private, deleted after a while.

resource "google_storage_bucket" "objects" {
  project                     = var.project
  name                        = "${var.project}-${var.name}-objects"
  location                    = var.region
  force_destroy               = false
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  labels                      = local.labels

  versioning {
    enabled = true
  }

  dynamic "lifecycle_rule" {
    for_each = var.object_retention_days > 0 ? [var.object_retention_days] : []
    content {
      condition {
        age = lifecycle_rule.value
      }
      action {
        type = "Delete"
      }
    }
  }

  # Old versions go a week after they were replaced.
  lifecycle_rule {
    condition {
      days_since_noncurrent_time = 7
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  logging {
    log_bucket = var.access_log_bucket
  }
}

resource "google_storage_bucket_iam_member" "engine_objects" {
  bucket = google_storage_bucket.objects.name
  role   = "roles/storage.objectAdmin"
  member = "serviceAccount:${local.engine_email}"
}

resource "google_storage_bucket_iam_member" "worker_objects" {
  bucket = google_storage_bucket.objects.name
  role   = "roles/storage.objectUser"
  member = "serviceAccount:${local.worker_email}"
}

# ---- PostgreSQL: private IP only, TLS required, backups and point-in-time recovery.

resource "google_sql_database_instance" "journal" {
  #checkov:skip=CKV_GCP_79:PostgreSQL 15 is the version skein is tested on (its CI runs Debian's PostgreSQL 15)
  #checkov:skip=CKV_GCP_6:ssl_mode ENCRYPTED_ONLY refuses every connection without TLS; the check wants client certificates too, which skein's database URL (sqlx, sslmode=require) does not carry
  #checkov:skip=CKV_GCP_110:pgAudit needs the extension created in the database; turn it on with your audit policy
  project             = var.project
  name                = "${var.name}-journal"
  region              = var.region
  database_version    = "POSTGRES_15"
  deletion_protection = var.database_deletion_protection

  settings {
    tier              = var.database_tier
    availability_type = "REGIONAL"
    user_labels       = local.labels

    ip_configuration {
      ipv4_enabled    = false
      private_network = var.database_network
      ssl_mode        = "ENCRYPTED_ONLY"
    }

    backup_configuration {
      enabled                        = true
      point_in_time_recovery_enabled = true
    }

    database_flags {
      name  = "log_checkpoints"
      value = "on"
    }
    database_flags {
      name  = "log_connections"
      value = "on"
    }
    database_flags {
      name  = "log_disconnections"
      value = "on"
    }
    database_flags {
      name  = "log_lock_waits"
      value = "on"
    }
    database_flags {
      name  = "log_min_messages"
      value = "error"
    }
    database_flags {
      name  = "log_temp_files"
      value = "0"
    }
    database_flags {
      name  = "log_min_duration_statement"
      value = "-1"
    }
    database_flags {
      name  = "log_min_error_statement"
      value = "error"
    }
    database_flags {
      name  = "log_statement"
      value = "ddl"
    }
    database_flags {
      name  = "log_duration"
      value = "on"
    }
    database_flags {
      name  = "log_hostname"
      value = "on"
    }
    database_flags {
      name  = "log_parser_stats"
      value = "off"
    }
    database_flags {
      name  = "log_planner_stats"
      value = "off"
    }
    database_flags {
      name  = "log_executor_stats"
      value = "off"
    }
    database_flags {
      name  = "log_statement_stats"
      value = "off"
    }
  }
}

resource "google_sql_database" "skein" {
  project  = var.project
  instance = google_sql_database_instance.journal.name
  name     = "skein"
}

resource "random_password" "database" {
  length  = 32
  special = false
}

resource "google_sql_user" "skein" {
  project  = var.project
  instance = google_sql_database_instance.journal.name
  name     = "skein"
  password = random_password.database.result
}

# ---- Secrets: the database URL and the workers' token, read by the services at start.

resource "google_secret_manager_secret" "database_url" {
  project   = var.project
  secret_id = "${var.name}-database-url"
  labels    = local.labels
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "database_url" {
  secret      = google_secret_manager_secret.database_url.id
  secret_data = "postgres://skein:${random_password.database.result}@${google_sql_database_instance.journal.private_ip_address}:5432/skein?sslmode=require"
}

resource "random_password" "worker_token" {
  length  = 48
  special = false
}

resource "google_secret_manager_secret" "worker_token" {
  project   = var.project
  secret_id = "${var.name}-worker-token"
  labels    = local.labels
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_version" "worker_token" {
  secret      = google_secret_manager_secret.worker_token.id
  secret_data = random_password.worker_token.result
}

resource "google_secret_manager_secret_iam_member" "engine" {
  for_each  = { database = google_secret_manager_secret.database_url.id, worker = google_secret_manager_secret.worker_token.id }
  secret_id = each.value
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${local.engine_email}"
}

resource "google_secret_manager_secret_iam_member" "worker" {
  secret_id = google_secret_manager_secret.worker_token.id
  role      = "roles/secretmanager.secretAccessor"
  member    = "serviceAccount:${local.worker_email}"
}

# ---- Cloud Run: the server's REST and gRPC services, the workers and the bridge.

# The server twice: the REST API (HTTP/1) and the gRPC APIs (end-to-end HTTP/2, `h2c`),
# as Cloud Run serves one port per container. Both share the database, so either takes
# any execution over.
locals {
  server_services = {
    rest = {
      name = "${var.name}-server"
      args = ["server", "--lease", "15"]
      port = { name = "http1", number = 8080 }
    }
    grpc = {
      name = "${var.name}-server-grpc"
      args = ["server", "--listen", "127.0.0.1:8080", "--grpc-listen", "0.0.0.0:9090", "--grpc-plaintext", "--lease", "15"]
      port = { name = "h2c", number = 9090 }
    }
  }
}

resource "google_cloud_run_v2_service" "server" {
  for_each            = local.server_services
  project             = var.project
  name                = each.value.name
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_ALL"
  deletion_protection = false
  labels              = local.labels

  template {
    service_account                  = local.engine_email
    max_instance_request_concurrency = 250
    timeout                          = "3600s"
    scaling {
      min_instance_count = var.server_min_instances
      max_instance_count = var.server_max_instances
    }
    vpc_access {
      egress = "ALL_TRAFFIC"
      network_interfaces {
        network = var.database_network
      }
    }
    containers {
      image = var.image
      args  = each.value.args
      ports {
        name           = each.value.port.name
        container_port = each.value.port.number
      }
      resources {
        limits = {
          cpu    = "2"
          memory = "1Gi"
        }
        cpu_idle          = false
        startup_cpu_boost = true
      }
      dynamic "env" {
        for_each = local.server_env
        content {
          name  = env.key
          value = env.value
        }
      }
      env {
        name  = "SKEIN_OIDC_AUDIENCE"
        value = "https://${each.value.name}-${data.google_project.this.number}.${var.region}.run.app"
      }
      dynamic "env" {
        for_each = local.server_secrets
        content {
          name = env.key
          value_source {
            secret_key_ref {
              secret  = env.value
              version = "latest"
            }
          }
        }
      }
      # /healthz over HTTP for the REST service; the gRPC health service for the other.
      startup_probe {
        period_seconds    = 2
        failure_threshold = 30
        dynamic "http_get" {
          for_each = each.key == "rest" ? [8080] : []
          content {
            path = "/healthz"
            port = http_get.value
          }
        }
        dynamic "grpc" {
          for_each = each.key == "grpc" ? [9090] : []
          content {
            port = grpc.value
          }
        }
      }
      dynamic "liveness_probe" {
        for_each = each.key == "rest" ? [8080] : []
        content {
          period_seconds = 15
          http_get {
            path = "/healthz"
            port = liveness_probe.value
          }
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.engine]
}

resource "google_cloud_run_v2_service" "worker" {
  project             = var.project
  name                = "${var.name}-worker"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = false
  labels              = local.labels

  template {
    service_account                  = local.worker_email
    max_instance_request_concurrency = 1
    timeout                          = "3600s"
    scaling {
      min_instance_count = 0
      max_instance_count = var.worker_max_instances
    }
    containers {
      image = var.image
      args  = ["worker", "--concurrency", "1", "--grace", "8"]
      ports {
        name           = "http1"
        container_port = 8080
      }
      resources {
        limits = {
          cpu    = "2"
          memory = "2Gi"
        }
        cpu_idle = false
      }
      env {
        name = "SKEIN_WORKER_TOKEN"
        value_source {
          secret_key_ref {
            secret  = google_secret_manager_secret.worker_token.secret_id
            version = "latest"
          }
        }
      }
      startup_probe {
        http_get {
          path = "/healthz"
          port = 8080
        }
      }
    }
  }

  depends_on = [google_secret_manager_secret_iam_member.worker]
}

resource "google_cloud_run_v2_service" "bridge" {
  count               = var.bridge == null ? 0 : 1
  project             = var.project
  name                = "${var.name}-bridge"
  location            = var.region
  ingress             = "INGRESS_TRAFFIC_INTERNAL_ONLY"
  deletion_protection = false
  labels              = local.labels

  template {
    service_account = local.engine_email
    scaling {
      min_instance_count = 1
      max_instance_count = 1
    }
    containers {
      image = var.image
      args  = ["bridge"]
      resources {
        cpu_idle = false
      }
      env {
        name  = "WORKFLOWS_BASE_URL"
        value = google_cloud_run_v2_service.server["rest"].uri
      }
      env {
        name  = "CONSUMER_BASE_URL"
        value = var.bridge.consumer_base_url
      }
      env {
        name  = "X_USER_ID"
        value = var.bridge.user_id
      }
      env {
        name  = "X_PROJECT_ID"
        value = var.bridge.project_id
      }
      env {
        name  = "WORK_ROOT"
        value = "/tmp/work"
      }
      startup_probe {
        http_get {
          path = "/healthz"
          port = 8080
        }
      }
    }
  }
}

data "google_project" "this" {
  project_id = var.project
}

# ---- Who may call what: the API for the invokers, the workers for the engine.

resource "google_cloud_run_v2_service_iam_member" "server_invokers" {
  for_each = {
    for pair in setproduct(keys(local.server_services), var.invokers) : "${pair[0]} ${pair[1]}" => pair
  }
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.server[each.value[0]].name
  role     = "roles/run.invoker"
  member   = each.value[1]
}

# The bridge calls skein's API as the engine.
resource "google_cloud_run_v2_service_iam_member" "bridge_invokes_server" {
  count    = var.bridge == null ? 0 : 1
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.server["rest"].name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${local.engine_email}"
}

# Workers: private, reached from inside the VPC (internal ingress) by the engine only,
# which sends a Google ID token for their URL (SKEIN_WORKER_GOOGLE_ID_TOKENS) beside the
# worker token.
resource "google_cloud_run_v2_service_iam_member" "engine_invokes_workers" {
  project  = var.project
  location = var.region
  name     = google_cloud_run_v2_service.worker.name
  role     = "roles/run.invoker"
  member   = "serviceAccount:${local.engine_email}"
}

# ---- Alerts, from skein's own metrics (Managed Prometheus) and Cloud Run's.

resource "google_monitoring_alert_policy" "failed_executions" {
  project               = var.project
  display_name          = "${var.name}: executions failing"
  combiner              = "OR"
  notification_channels = var.notification_channels
  conditions {
    display_name = "more than ${var.failed_executions_per_minute} failed executions a minute"
    condition_prometheus_query_language {
      query    = "sum(rate(skein_lifecycle_events_total{event=\"workflow.faulted\"}[5m])) * 60 > ${var.failed_executions_per_minute}"
      duration = "300s"
    }
  }
  documentation {
    content   = "Executions are faulting. `skein exec list --status faulted` shows which; docs/deploy/cloud-run.md#alerts says where to look."
    mime_type = "text/markdown"
  }
}

resource "google_monitoring_alert_policy" "runaway_requests" {
  project               = var.project
  display_name          = "${var.name}: runaway requests"
  combiner              = "OR"
  notification_channels = var.notification_channels
  conditions {
    display_name = "workers get more than ${var.worker_requests_per_second} requests a second"
    condition_threshold {
      filter          = "resource.type = \"cloud_run_revision\" AND resource.labels.service_name = \"${google_cloud_run_v2_service.worker.name}\" AND metric.type = \"run.googleapis.com/request_count\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.worker_requests_per_second
      duration        = "300s"
      aggregations {
        alignment_period     = "60s"
        per_series_aligner   = "ALIGN_RATE"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }
  conditions {
    display_name = "requests refused for quotas"
    condition_prometheus_query_language {
      query    = "sum(rate(skein_quota_refusals_total[5m])) > 1"
      duration = "300s"
    }
  }
  documentation {
    content   = "Far more requests than usual: a fan-out or a retry loop running away, or a caller over its quota. Pause the execution (`skein exec pause ID`) while you look."
    mime_type = "text/markdown"
  }
}
