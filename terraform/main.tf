# The titanic service on an existing cluster: namespace, Secrets (or references to existing
# ones), ConfigMap, the database (a SQLite volume, or a reference to a PostgreSQL URL in a
# Secret), the API Deployment and Service, a PodDisruptionBudget with PostgreSQL, an optional
# Ingress, NetworkPolicies, and Redis (redis.tf).
#   database = "sqlite"   (default): one replica, Recreate, the file on a ReadWriteOnce volume;
#   database = "postgres": the shape of kubernetes/overlays/production: several replicas on one
#                          shared database, RollingUpdate, no volume (docs/deployment.md).

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

  sqlite   = var.database == "sqlite"
  replicas = var.replicas != null ? var.replicas : (local.sqlite ? 1 : 2)
  # With PostgreSQL the URL (and its password) comes from a Secret, never from the ConfigMap.
  database_settings = {
    for k, v in {
      TITANIC__DATABASE__URL = "sqlite:///var/lib/titanic/titanic.db"
      TITANIC__DATA__DIR     = "/var/lib/titanic"
    } : k => v if local.sqlite
  }

  settings = merge({
    TITANIC_ENV                            = "production"
    TITANIC__SERVER__HOST                  = "0.0.0.0"
    TITANIC__SERVER__PORT                  = "8080"
    TITANIC__SERVER__SHUTDOWN_DRAIN_SECS   = "5"
    TITANIC__SERVER__SHUTDOWN_TIMEOUT_SECS = "30"
    TITANIC__AUTH__SECRET_FILE             = "/var/run/secrets/titanic/jwt-secret"
    TITANIC__AUTH__KEY_ID                  = var.jwt_key_id
    TITANIC__RATE_LIMIT__CLIENT_IP_HEADER  = "x-forwarded-for"
    TITANIC__LOG__FORMAT                   = "json"
  }, local.database_settings, var.settings)

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
  count = local.sqlite ? 1 : 0

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
  #checkov:skip=CKV_K8S_35:Only the Redis URL (or its password) and, with PostgreSQL, the database URL come from Secrets through the environment: the service reads these URLs from configuration only, with no file variant. The JWT secret is mounted as a file.
  metadata {
    name      = "titanic"
    namespace = local.namespace
    labels    = merge(local.labels, local.api_selector)
  }

  spec {
    # SQLite: one file on a ReadWriteOnce volume, so one replica, the old pod stopped before
    # the new one mounts the volume. PostgreSQL: a new pod starts before an old one stops.
    replicas               = local.replicas
    revision_history_limit = 5
    strategy {
      type = local.sqlite ? "Recreate" : "RollingUpdate"
      dynamic "rolling_update" {
        for_each = local.sqlite ? [] : [1]
        content {
          max_surge       = "1"
          max_unavailable = "0"
        }
      }
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

          # postgres://USER:PASSWORD@HOST:5432/DATABASE; messages show the password as ***.
          dynamic "env" {
            for_each = local.sqlite ? [] : [1]
            content {
              name = "TITANIC__DATABASE__URL"
              value_from {
                secret_key_ref {
                  name = var.database_url_secret
                  key  = var.database_url_secret_key
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
          dynamic "volume_mount" {
            for_each = local.sqlite ? [1] : []
            content {
              name       = "data"
              mount_path = "/var/lib/titanic"
            }
          }
          volume_mount {
            name       = "tmp"
            mount_path = "/tmp"
          }
        }

        volume {
          name = "auth"
          # Root's files, read through fs_group: the service refuses a secret file others can
          # read (docs/security.md).
          secret {
            secret_name  = local.auth_secret
            default_mode = "0440"
          }
        }
        dynamic "volume" {
          for_each = kubernetes_persistent_volume_claim_v1.data
          content {
            name = "data"
            persistent_volume_claim {
              claim_name = volume.value.metadata[0].name
            }
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

  lifecycle {
    precondition {
      condition     = !local.sqlite || local.replicas == 1
      error_message = "database = \"sqlite\" runs exactly one replica (one writing host): use database = \"postgres\" to scale out."
    }
    precondition {
      condition     = local.sqlite || local.replicas >= 1
      error_message = "replicas must be at least 1."
    }
    precondition {
      condition     = local.sqlite || var.database_url_secret != null
      error_message = "database = \"postgres\" needs database_url_secret: an existing Secret whose key database_url_secret_key holds postgres://USER:PASSWORD@HOST:5432/DATABASE."
    }
    precondition {
      condition     = local.sqlite || length(var.database_egress.cidrs) > 0 || var.database_egress.namespace != null
      error_message = "database = \"postgres\" needs database_egress: cidrs, or namespace (and pod_labels), where the database is."
    }
  }
}

# With PostgreSQL: at most one API pod evicted at a time (node drains, cluster upgrades).
resource "kubernetes_pod_disruption_budget_v1" "api" {
  count = local.sqlite ? 0 : 1

  metadata {
    name      = "titanic"
    namespace = local.namespace
    labels    = merge(local.labels, local.api_selector)
  }
  spec {
    max_unavailable = "1"
    selector {
      match_labels = local.api_selector
    }
  }
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

# Default deny, then: ingress controller and Prometheus -> API :8080; API -> Redis, DNS, and
# with PostgreSQL the database (database_egress, database_port).
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
    dynamic "egress" {
      for_each = local.sqlite ? [] : [1]
      content {
        dynamic "to" {
          for_each = var.database_egress.cidrs
          content {
            ip_block {
              cidr = to.value
            }
          }
        }
        dynamic "to" {
          for_each = var.database_egress.namespace == null ? [] : [var.database_egress.namespace]
          content {
            namespace_selector {
              match_labels = { "kubernetes.io/metadata.name" = to.value }
            }
            dynamic "pod_selector" {
              for_each = length(var.database_egress.pod_labels) == 0 ? [] : [1]
              content {
                match_labels = var.database_egress.pod_labels
              }
            }
          }
        }
        ports {
          port     = tostring(var.database_port)
          protocol = "TCP"
        }
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
