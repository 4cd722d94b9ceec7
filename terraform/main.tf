# The titanic service on an existing cluster: namespace, Secrets (or references to existing
# ones), ConfigMap, the database volume, the API Deployment and Service, an optional Ingress,
# NetworkPolicies, and Redis (redis.tf). The same shape as kubernetes/overlays/production:
# one replica with the SQLite file on a ReadWriteOnce volume, until the service supports a
# shared database (docs/deployment.md).

locals {
  labels = {
    "app.kubernetes.io/name"       = "titanic"
    "app.kubernetes.io/part-of"    = "titanic"
    "app.kubernetes.io/managed-by" = "terraform"
  }
  api_selector = {
    "app.kubernetes.io/name"      = "titanic"
    "app.kubernetes.io/component" = "api"
  }
  namespace   = kubernetes_namespace_v1.this.metadata[0].name
  auth_secret = var.existing_auth_secret != null ? var.existing_auth_secret : kubernetes_secret_v1.auth[0].metadata[0].name

  settings = merge({
    TITANIC_ENV                            = "production"
    TITANIC__SERVER__HOST                  = "0.0.0.0"
    TITANIC__SERVER__PORT                  = "8080"
    TITANIC__SERVER__SHUTDOWN_DRAIN_SECS   = "5"
    TITANIC__SERVER__SHUTDOWN_TIMEOUT_SECS = "30"
    TITANIC__DATABASE__URL                 = "sqlite:///var/lib/titanic/titanic.db"
    TITANIC__DATA__DIR                     = "/var/lib/titanic"
    TITANIC__AUTH__SECRET_FILE             = "/var/run/secrets/titanic/jwt-secret"
    TITANIC__AUTH__KEY_ID                  = var.jwt_key_id
    TITANIC__RATE_LIMIT__CLIENT_IP_HEADER  = "x-forwarded-for"
    TITANIC__LOG__FORMAT                   = "json"
  }, var.settings)

  # Drain (5 s) + in-flight requests (30 s) + request log flush (10 s) < grace period.
  termination_grace_seconds = 60

  client_routes = ["/predict", "/feedback", "/features", "/models", "/monitoring", "/v2"]
}

resource "kubernetes_namespace_v1" "this" {
  metadata {
    name = var.namespace
    labels = merge(local.labels, {
      "pod-security.kubernetes.io/enforce" = "restricted"
      "pod-security.kubernetes.io/warn"    = "restricted"
    })
  }
}

resource "kubernetes_secret_v1" "auth" {
  count = var.existing_auth_secret == null ? 1 : 0

  metadata {
    name      = "titanic-auth"
    namespace = local.namespace
    labels    = local.labels
  }
  data = {
    "jwt-secret" = var.jwt_secret
  }

  lifecycle {
    precondition {
      condition     = var.jwt_secret != null
      error_message = "Set existing_auth_secret, or jwt_secret (sensitive) to create the Secret."
    }
  }
}

resource "kubernetes_service_account_v1" "titanic" {
  metadata {
    name      = "titanic"
    namespace = local.namespace
    labels    = local.labels
  }
  automount_service_account_token = false
}

resource "kubernetes_config_map_v1" "settings" {
  metadata {
    name      = "titanic-config"
    namespace = local.namespace
    labels    = local.labels
  }
  data = local.settings
}

resource "kubernetes_persistent_volume_claim_v1" "data" {
  metadata {
    name      = "titanic-data"
    namespace = local.namespace
    labels    = merge(local.labels, { "app.kubernetes.io/component" = "database" })
  }
  spec {
    access_modes       = ["ReadWriteOnce"]
    storage_class_name = var.storage_class
    resources {
      requests = {
        storage = var.storage_size
      }
    }
  }
  wait_until_bound = false
}

resource "kubernetes_deployment_v1" "api" {
  #checkov:skip=CKV_K8S_14:The image is var.image, unknown to a static scan; the variable's validation refuses a missing tag and latest.
  #checkov:skip=CKV_K8S_43:The image is var.image: a digest is what production passes (README.md), a fixed tag is allowed for test clusters; the variable's validation refuses anything else.
  #checkov:skip=CKV_K8S_35:Only the Redis URL (or its password) comes from a Secret through the environment: the service reads the Redis URL from configuration only, with no file variant. The JWT secret is mounted as a file.
  metadata {
    name      = "titanic"
    namespace = local.namespace
    labels    = merge(local.labels, local.api_selector)
  }

  spec {
    # One SQLite file on a ReadWriteOnce volume: one replica, the old pod stopped before the
    # new one mounts the volume.
    replicas               = 1
    revision_history_limit = 5
    strategy {
      type = "Recreate"
    }
    selector {
      match_labels = local.api_selector
    }

    template {
      metadata {
        labels = merge(local.labels, local.api_selector)
        annotations = {
          # Roll the pod when a setting changes.
          "titanic/config-hash" = sha256(jsonencode(local.settings))
        }
      }

      spec {
        service_account_name             = kubernetes_service_account_v1.titanic.metadata[0].name
        automount_service_account_token  = false
        enable_service_links             = false
        termination_grace_period_seconds = local.termination_grace_seconds

        dynamic "image_pull_secrets" {
          for_each = var.image_pull_secret == null ? [] : [var.image_pull_secret]
          content {
            name = image_pull_secrets.value
          }
        }

        security_context {
          run_as_non_root        = true
          run_as_user            = 65532
          run_as_group           = 65532
          fs_group               = 65532
          fs_group_change_policy = "OnRootMismatch"
          seccomp_profile {
            type = "RuntimeDefault"
          }
        }

        container {
          name              = "titanic"
          image             = var.image
          image_pull_policy = "Always"
          args              = ["serve"]

          port {
            name           = "http"
            container_port = 8080
            protocol       = "TCP"
          }

          env_from {
            config_map_ref {
              name = kubernetes_config_map_v1.settings.metadata[0].name
            }
          }

          # The Redis URL carries the Redis password and is read from configuration only.
          dynamic "env" {
            for_each = var.redis_mode == "helm" ? [1] : []
            content {
              name = "REDIS_PASSWORD"
              value_from {
                secret_key_ref {
                  name = local.redis_secret
                  key  = "redis-password"
                }
              }
            }
          }
          dynamic "env" {
            for_each = var.redis_mode == "helm" ? [1] : []
            content {
              name  = "TITANIC__REDIS__URL"
              value = "redis://:$(REDIS_PASSWORD)@${local.redis_host}:6379/0"
            }
          }
          dynamic "env" {
            for_each = var.redis_mode == "external" ? [1] : []
            content {
              name = "TITANIC__REDIS__URL"
              value_from {
                secret_key_ref {
                  name = var.external_redis_secret
                  key  = "url"
                }
              }
            }
          }

          startup_probe {
            http_get {
              path = "/health/live"
              port = "http"
            }
            period_seconds    = 5
            timeout_seconds   = 2
            failure_threshold = 60
          }
          liveness_probe {
            http_get {
              path = "/health/live"
              port = "http"
            }
            period_seconds    = 10
            timeout_seconds   = 2
            failure_threshold = 3
          }
          readiness_probe {
            http_get {
              path = "/health/ready"
              port = "http"
            }
            period_seconds    = 5
            timeout_seconds   = 3
            failure_threshold = 2
          }

          resources {
            requests = {
              cpu    = var.resources.cpu_request
              memory = var.resources.memory_request
            }
            limits = {
              cpu    = var.resources.cpu_limit
              memory = var.resources.memory_limit
            }
          }

          security_context {
            allow_privilege_escalation = false
            privileged                 = false
            read_only_root_filesystem  = true
            run_as_non_root            = true
            run_as_user                = 65532
            run_as_group               = 65532
            capabilities {
              drop = ["ALL"]
            }
            seccomp_profile {
              type = "RuntimeDefault"
            }
          }

          volume_mount {
            name       = "auth"
            mount_path = "/var/run/secrets/titanic"
            read_only  = true
          }
          volume_mount {
            name       = "data"
            mount_path = "/var/lib/titanic"
          }
          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }
        }

        volume {
          name = "auth"
          secret {
            secret_name  = local.auth_secret
            default_mode = "0440"
          }
        }
        volume {
          name = "data"
          persistent_volume_claim {
            claim_name = kubernetes_persistent_volume_claim_v1.data.metadata[0].name
          }
        }
        volume {
          name = "tmp"
          empty_dir {
            medium     = "Memory"
            size_limit = "64Mi"
          }
        }
      }
    }
  }

  depends_on = [helm_release.redis]
}

resource "kubernetes_service_v1" "api" {
  metadata {
    name      = "titanic"
    namespace = local.namespace
    labels    = merge(local.labels, local.api_selector)
  }
  spec {
    type     = "ClusterIP"
    selector = local.api_selector
    port {
      name         = "http"
      port         = 80
      target_port  = "http"
      protocol     = "TCP"
      app_protocol = "http"
    }
  }
}

resource "kubernetes_ingress_v1" "api" {
  count = var.ingress == null ? 0 : 1

  metadata {
    name        = "titanic"
    namespace   = local.namespace
    labels      = merge(local.labels, local.api_selector)
    annotations = var.ingress.annotations
  }
  spec {
    ingress_class_name = var.ingress.class_name
    tls {
      hosts       = [var.ingress.host]
      secret_name = var.ingress.tls_secret
    }
    rule {
      host = var.ingress.host
      http {
        # Only the client routes: /metrics and /health/* stay inside the cluster.
        dynamic "path" {
          for_each = local.client_routes
          content {
            path      = path.value
            path_type = "Prefix"
            backend {
              service {
                name = kubernetes_service_v1.api.metadata[0].name
                port {
                  name = "http"
                }
              }
            }
          }
        }
      }
    }
  }
}

# Default deny, then: ingress controller and Prometheus -> API :8080; API -> Redis, DNS.
resource "kubernetes_network_policy_v1" "default_deny" {
  metadata {
    name      = "default-deny"
    namespace = local.namespace
    labels    = local.labels
  }
  spec {
    pod_selector {}
    policy_types = ["Ingress", "Egress"]
  }
}

resource "kubernetes_network_policy_v1" "api" {
  metadata {
    name      = "titanic-api"
    namespace = local.namespace
    labels    = local.labels
  }
  spec {
    pod_selector {
      match_labels = local.api_selector
    }
    policy_types = ["Ingress", "Egress"]

    ingress {
      from {
        namespace_selector {
          match_labels = { "kubernetes.io/metadata.name" = var.ingress_namespace }
        }
      }
      from {
        namespace_selector {
          match_labels = { "kubernetes.io/metadata.name" = var.monitoring_namespace }
        }
      }
      ports {
        port     = "8080"
        protocol = "TCP"
      }
    }

    # Redis: in the namespace (helm mode) or wherever the external URL points.
    egress {
      dynamic "to" {
        for_each = var.redis_mode == "helm" ? [1] : []
        content {
          pod_selector {
            match_labels = { "app.kubernetes.io/instance" = "titanic-redis" }
          }
        }
      }
      ports {
        port     = "6379"
        protocol = "TCP"
      }
    }
    egress {
      to {
        namespace_selector {
          match_labels = { "kubernetes.io/metadata.name" = "kube-system" }
        }
        pod_selector {
          match_labels = { "k8s-app" = "kube-dns" }
        }
      }
      ports {
        port     = "53"
        protocol = "UDP"
      }
      ports {
        port     = "53"
        protocol = "TCP"
      }
    }
  }
}
