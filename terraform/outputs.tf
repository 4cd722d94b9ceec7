output "namespace" {
  description = "The namespace the service runs in."
  value       = kubernetes_namespace_v1.this.metadata[0].name
}

output "service_url" {
  description = "The API inside the cluster."
  value       = "http://${kubernetes_service_v1.api.metadata[0].name}.${kubernetes_namespace_v1.this.metadata[0].name}.svc.cluster.local"
}

output "ingress_host" {
  description = "The public host, when an Ingress is created."
  value       = var.ingress == null ? null : var.ingress.host
}

output "auth_secret_name" {
  description = "The Secret holding the JWT secret (key jwt-secret)."
  value       = local.auth_secret
}

output "redis_host" {
  description = "The Redis the service uses (helm mode), or null for an external one."
  value       = var.redis_mode == "helm" ? local.redis_host : null
}
