output "server_url" {
  description = "The REST API's URL: callers send Google ID tokens for this audience."
  value       = google_cloud_run_v2_service.server["rest"].uri
}

output "grpc_url" {
  description = "The gRPC API's URL (port 443, TLS)."
  value       = google_cloud_run_v2_service.server["grpc"].uri
}

output "worker_url" {
  description = "The workers' URL (internal ingress)."
  value       = google_cloud_run_v2_service.worker.uri
}

output "bucket" {
  description = "The objects bucket, as skein names it: gs://NAME."
  value       = "gs://${google_storage_bucket.objects.name}"
}

output "engine_service_account" {
  description = "The server's and bridge's identity."
  value       = local.engine_email
}

output "worker_service_account" {
  description = "The workers' identity."
  value       = local.worker_email
}

output "database_instance" {
  description = "The Cloud SQL instance's connection name."
  value       = google_sql_database_instance.journal.connection_name
}
