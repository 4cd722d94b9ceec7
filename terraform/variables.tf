variable "namespace" {
  description = "Namespace to create and deploy into."
  type        = string
  default     = "titanic"
}

variable "image" {
  description = "The titanic image, by digest in production (REGISTRY/titanic@sha256:...) or by a fixed tag."
  type        = string

  validation {
    condition     = can(regex("(@sha256:[0-9a-f]{64}|:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$", var.image)) && !endswith(var.image, ":latest")
    error_message = "image needs a digest (@sha256:...) or a fixed tag other than latest."
  }
}

variable "image_pull_secret" {
  description = "Name of an existing docker-registry Secret in the namespace for a private registry, or null."
  type        = string
  default     = null
}

variable "settings" {
  description = "Extra non-secret TITANIC__SECTION__KEY settings for the ConfigMap (README.md, Configuration)."
  type        = map(string)
  default     = {}
}

variable "resources" {
  description = "Requests and limits of the API container."
  type = object({
    cpu_request    = string
    memory_request = string
    cpu_limit      = string
    memory_limit   = string
  })
  default = {
    cpu_request    = "250m"
    memory_request = "256Mi"
    cpu_limit      = "2"
    memory_limit   = "512Mi"
  }
}

# --- Database -----------------------------------------------------------------------------------

variable "database" {
  description = "\"sqlite\": one SQLite file on a ReadWriteOnce volume, one replica, Recreate. \"postgres\": a PostgreSQL database shared by every replica (URL from database_url_secret), RollingUpdate, no volume. Switching an existing deployment from sqlite deletes the volume: move the data first (docs/operations.md)."
  type        = string
  default     = "sqlite"

  validation {
    condition     = contains(["sqlite", "postgres"], var.database)
    error_message = "database must be \"sqlite\" or \"postgres\"."
  }
}

variable "replicas" {
  description = "API replicas; null for the default of the database: 1 with sqlite (the only value allowed), 2 with postgres."
  type        = number
  default     = null
}

variable "database_url_secret" {
  description = "database = \"postgres\": an existing Secret in the namespace holding the URL postgres://USER:PASSWORD@HOST:5432/DATABASE (the module never sees the password)."
  type        = string
  default     = null
}

variable "database_url_secret_key" {
  description = "The key of database_url_secret holding the URL."
  type        = string
  default     = "url"
}

variable "database_egress" {
  description = "database = \"postgres\": where the API may connect on database_port. cidrs (ipBlock: a managed database's private range), or namespace and pod_labels (an in-cluster server); one of the two is required."
  type = object({
    cidrs      = optional(list(string), [])
    namespace  = optional(string)
    pod_labels = optional(map(string), {})
  })
  default = {}
}

variable "database_port" {
  description = "database = \"postgres\": the PostgreSQL port the NetworkPolicy opens."
  type        = number
  default     = 5432
}

variable "storage_size" {
  description = "database = \"sqlite\": size of the ReadWriteOnce volume holding the SQLite database."
  type        = string
  default     = "5Gi"
}

variable "storage_class" {
  description = "database = \"sqlite\": StorageClass of the database volume; null for the cluster's default."
  type        = string
  default     = null
}

# --- JWT secret ---------------------------------------------------------------------------------

variable "existing_auth_secret" {
  description = "Name of an existing Secret in the namespace with the key jwt-secret (preferred: the secret never enters Terraform state). Null to create one from jwt_secret."
  type        = string
  default     = null
}

variable "jwt_secret" {
  description = "The HS256 signing secret (at least 32 bytes), when existing_auth_secret is null. Stored in the Terraform state: use an encrypted remote backend."
  type        = string
  default     = null
  sensitive   = true

  validation {
    condition     = var.jwt_secret == null || length(coalesce(var.jwt_secret, "x")) >= 32
    error_message = "jwt_secret must be at least 32 bytes (openssl rand -hex 48)."
  }
}

variable "jwt_key_id" {
  description = "The kid of the current JWT secret (TITANIC__AUTH__KEY_ID); change it on every rotation (docs/security.md)."
  type        = string
  default     = "key-1"
}

# --- Redis --------------------------------------------------------------------------------------

variable "redis_mode" {
  description = "\"helm\": install Redis in the namespace with the Helm chart below; \"external\": use the URL in external_redis_secret."
  type        = string
  default     = "helm"

  validation {
    condition     = contains(["helm", "external"], var.redis_mode)
    error_message = "redis_mode must be \"helm\" or \"external\"."
  }
}

variable "redis_chart" {
  description = "The Redis Helm chart (redis_mode = \"helm\"). Its values are set for a non-persistent, password-protected standalone Redis; override with redis_chart_values."
  type = object({
    repository = string
    name       = string
    version    = string
  })
  default = {
    repository = "oci://registry-1.docker.io/bitnamicharts"
    name       = "redis"
    version    = "20.6.0"
  }
}

variable "redis_chart_values" {
  description = "Extra YAML values for the Redis chart (for example an image mirror)."
  type        = list(string)
  default     = []
}

variable "existing_redis_secret" {
  description = "redis_mode = \"helm\": an existing Secret with the key redis-password, or null to create one from redis_password."
  type        = string
  default     = null
}

variable "redis_password" {
  description = "redis_mode = \"helm\" without existing_redis_secret: the Redis password. Stored in the Terraform state."
  type        = string
  default     = null
  sensitive   = true
}

variable "external_redis_secret" {
  description = "redis_mode = \"external\": an existing Secret with the key url (redis://user:password@host:6379/0 or rediss://...)."
  type        = string
  default     = null
}

# --- Ingress and network ------------------------------------------------------------------------

variable "ingress" {
  description = "Expose the client routes through an Ingress: host, ingress class and TLS Secret (null: no Ingress)."
  type = object({
    host        = string
    class_name  = string
    tls_secret  = string
    annotations = map(string)
  })
  default = null
}

variable "ingress_namespace" {
  description = "Namespace of the ingress controller, allowed to reach the API."
  type        = string
  default     = "ingress-nginx"
}

variable "monitoring_namespace" {
  description = "Namespace of Prometheus, allowed to scrape /metrics."
  type        = string
  default     = "monitoring"
}
