# Deploys the module on the cluster of the current kubeconfig context, with PostgreSQL as the
# shared database (two replicas), and every secret in a Secret made beforehand (so none enters
# the Terraform state):
#
#   kubectl create namespace titanic
#   kubectl -n titanic create secret generic titanic-auth --from-literal=jwt-secret="$(openssl rand -hex 48)"
#   kubectl -n titanic create secret generic titanic-redis --from-literal=redis-password="$(openssl rand -hex 32)"
#   kubectl -n titanic create secret generic titanic-database \
#     --from-literal=url='postgres://titanic:PASSWORD@10.20.0.5:5432/titanic'
#   terraform init && terraform apply -var image=REGISTRY/titanic@sha256:... -var database_cidr=10.20.0.5/32
#
# With the namespace made beforehand, import it first:
#   terraform import module.titanic.kubernetes_namespace_v1.this titanic

variable "image" {
  description = "The titanic image."
  type        = string
}

variable "database_cidr" {
  description = "Where the PostgreSQL server is (its address /32, or its private subnet)."
  type        = string
}

variable "kube_context" {
  description = "kubeconfig context of the target cluster."
  type        = string
  default     = null
}

provider "kubernetes" {
  config_path    = "~/.kube/config"
  config_context = var.kube_context
}

provider "helm" {
  kubernetes {
    config_path    = "~/.kube/config"
    config_context = var.kube_context
  }
}

module "titanic" {
  source = "../.."

  image                 = var.image
  existing_auth_secret  = "titanic-auth"
  existing_redis_secret = "titanic-redis"
  database              = "postgres"
  database_url_secret   = "titanic-database"
  database_egress       = { cidrs = [var.database_cidr] }
  ingress = {
    host        = "titanic.example.com"
    class_name  = "nginx"
    tls_secret  = "titanic-tls"
    annotations = { "cert-manager.io/cluster-issuer" = "letsencrypt" }
  }
}

output "service_url" {
  value = module.titanic.service_url
}
