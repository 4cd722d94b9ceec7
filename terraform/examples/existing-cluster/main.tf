# Deploys the module on the cluster of the current kubeconfig context, with the JWT secret in a
# Secret made beforehand (so it never enters the Terraform state):
#
#   kubectl create namespace titanic
#   kubectl -n titanic create secret generic titanic-auth --from-literal=jwt-secret="$(openssl rand -hex 48)"
#   kubectl -n titanic create secret generic titanic-redis --from-literal=redis-password="$(openssl rand -hex 32)"
#   terraform init && terraform apply -var image=REGISTRY/titanic@sha256:...
#
# With the namespace made beforehand, import it first:
#   terraform import module.titanic.kubernetes_namespace_v1.this titanic

variable "image" {
  description = "The titanic image."
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
