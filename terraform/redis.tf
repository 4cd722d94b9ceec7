# Redis, the online store (redis_mode = "helm"): a standalone, non-persistent Redis from a Helm
# chart, password-protected, reachable only from the API pods. The service rebuilds the online
# store from SQLite whenever Redis comes back empty, so nothing is kept on disk.

locals {
  redis_host = "titanic-redis-master"
  redis_secret = var.redis_mode != "helm" ? null : (
    var.existing_redis_secret != null ? var.existing_redis_secret : kubernetes_secret_v1.redis[0].metadata[0].name
  )
}

resource "kubernetes_secret_v1" "redis" {
  count = var.redis_mode == "helm" && var.existing_redis_secret == null ? 1 : 0

  metadata {
    name      = "titanic-redis"
    namespace = local.namespace
    labels    = local.labels
  }
  data = {
    "redis-password" = var.redis_password
  }

  lifecycle {
    precondition {
      condition     = var.redis_password != null
      error_message = "Set existing_redis_secret, or redis_password (sensitive, URL-safe: openssl rand -hex 32)."
    }
  }
}

resource "helm_release" "redis" {
  count = var.redis_mode == "helm" ? 1 : 0

  name       = "titanic-redis"
  namespace  = local.namespace
  repository = var.redis_chart.repository
  chart      = var.redis_chart.name
  version    = var.redis_chart.version
  atomic     = true
  timeout    = 300

  values = concat([
    yamlencode({
      architecture = "standalone"
      auth = {
        enabled                   = true
        existingSecret            = local.redis_secret
        existingSecretPasswordKey = "redis-password"
      }
      master = {
        persistence = { enabled = false }
        resources = {
          requests = { cpu = "100m", memory = "128Mi" }
          limits   = { cpu = "1", memory = "320Mi" }
        }
        extraFlags = ["--maxmemory 200mb", "--maxmemory-policy noeviction"]
      }
      commonConfiguration = "appendonly no\nsave \"\""
      networkPolicy = {
        enabled       = true
        allowExternal = false
        extraIngress = [{
          from = [{ podSelector = { matchLabels = local.api_selector } }]
        }]
      }
    })
  ], var.redis_chart_values)
}
