#!/usr/bin/env bash
# The image built from the Dockerfile and run the way Kubernetes runs it, on this machine,
# with no image registry (docs/deployment.md, The container smoke test). Run as root from
# anywhere; .ci/run calls it after scripts/check-deploy.sh, whose kubectl and PyYAML it uses.
#
#   1. podman, runc, debootstrap and nginx from Debian; podman configured for this kind of
#      machine (scripts/container/containers.conf) with a storage of its own under $WORK.
#   2. Stand-in base images from debootstrap (scripts/container/stand-in-bases.sh: the builder
#      with this machine's Rust toolchain, CA bundle and the crates of Cargo.lock; the runtime
#      with what distroless holds), then the project's Dockerfile, unchanged, built with
#      BUILDER_IMAGE and RUNTIME_IMAGE naming them, without network (a real compile inside).
#   3. The production overlay rendered (kubectl kustomize) and turned into podman arguments
#      (scripts/container/pod.py): the Deployment's and the CronJob's security context,
#      environment, mounts, resource limits and probes, the grace period; the Secrets made
#      here (a JWT secret; the database and Redis URLs of this machine's servers, on a
#      database of the test's own and Redis keys under a prefix of its own).
#   4. Replica A on an empty database (ingest, train, promote), probed as the kubelet does;
#      /predict with and without a token; nginx configured from the Ingress (pod.py) in front;
#      replica B; the per-address limit behind the proxy; the CronJob's `train --promote`,
#      served by both replicas; a rolling replacement of A by C under light load through the
#      proxy (no request may fail); SIGTERM to every replica, each exiting 0.
#   5. Reports image and binary size, start-up times and memory, and the time each part took.
#
# Containers use the host's network (the machine's PostgreSQL and Redis listen on loopback),
# so each replica gets a port of its own and listens on 127.0.0.1 (TITANIC__SERVER__PORT and
# TITANIC__SERVER__HOST override the overlay's 0.0.0.0:8080, which a pod has to itself).
# TLS on the Ingress is not reproduced. Everything made is removed at the end, also on
# failure: containers, images (unless --keep-images), nginx, the database, the Redis keys.
#
#   scripts/container-smoke.sh [--keep-images]
#
# --keep-images keeps the stand-in bases and the image in $WORK/storage for the next run
# (which then skips debootstrap and reuses the dependency layer). WORK defaults to
# /var/tmp/titanic-container-smoke.

# api_* and train_* come from the pod.sh files that scripts/container/pod.py writes.
# shellcheck disable=SC2154
set -euo pipefail
cd "$(dirname "$0")/.."

keep_images=0
[ "${1:-}" = "--keep-images" ] && keep_images=1

WORK="${TITANIC_SMOKE_DIR:-/var/tmp/titanic-container-smoke}"
CACHE="${TITANIC_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/titanic-deploy-tools}"
BUILDER=localhost/titanic-stand-in/rust:1.95-slim-bookworm
RUNTIME=localhost/titanic-stand-in/distroless-cc-debian12:nonroot
IMAGE=localhost/titanic:container-smoke
DATABASE=titanic_container_smoke
ADMIN_URL="${TITANIC_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
REDIS_PREFIX="titanic-container-smoke:$$:"
HOST=titanic.example.com # the Ingress host, sent as Host through the proxy

start=$SECONDS
phase_start=$SECONDS
timings=()
phase() {
  if [ -n "${phase_name:-}" ]; then
    timings+=("$phase_name: $((SECONDS - phase_start)) s")
  fi
  phase_name=$1
  phase_start=$SECONDS
  echo "-- $1"
}
fail() {
  echo "FAIL $*" >&2
  exit 1
}

echo "== container smoke test (scripts/container-smoke.sh)"
[ "$(id -u)" = 0 ] || fail "run as root (podman storage, nginx, debootstrap)"

phase "tools"
need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v nginx >/dev/null || need+=(nginx)
command -v psql >/dev/null || need+=(postgresql-client)
command -v redis-cli >/dev/null || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} from Debian"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
PYTHON="$CACHE/tools/bin/python"
KUBECTL="${KUBECTL:-$CACHE/kubectl/kubectl}"
if ! { [ -x "$PYTHON" ] && "$PYTHON" -c 'import yaml' 2>/dev/null; }; then
  fail "no $PYTHON with PyYAML: run scripts/check-deploy.sh once (it installs it)"
fi
[ -x "$KUBECTL" ] || KUBECTL=kubectl
command -v "$KUBECTL" >/dev/null || fail "no kubectl: run scripts/check-deploy.sh once (it installs it)"
echo "$(podman --version), $(runc --version | head -n 1), nginx $(nginx -v 2>&1 | sed 's/.*nginx\///'), debootstrap $(dpkg-query -W -f '${Version}' debootstrap)"

# podman on this kind of machine: runc (crun refuses the hybrid cgroup layout), cgroupfs (no
# systemd), explicit ulimits (root lacks CAP_SYS_RESOURCE, so podman's default of raising
# nofile past the hard limit fails), and a storage of its own.
mkdir -p "$WORK"
chmod 0755 "$WORK"
if [ "$keep_images" = 0 ]; then
  podman --root "$WORK/storage" --runroot "$WORK/run" rm -a -f >/dev/null 2>&1 || true
  rm -rf "$WORK/storage" "$WORK/run"
fi
rm -rf "$WORK/tmp"
mkdir -p "$WORK/tmp"
sed "s/@NOFILE@/$(ulimit -Hn)/g" scripts/container/containers.conf >"$WORK/containers.conf"
export CONTAINERS_CONF="$WORK/containers.conf"
export TMPDIR="$WORK/tmp"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the checkout
pm() { podman --root "$WORK/storage" --runroot "$WORK/run" "$@"; }
export PODMAN="podman --root $WORK/storage --runroot $WORK/run"

# --- clean-up, also on failure -------------------------------------------------------------
containers=()
nginx_conf=""
load_pid=""
database_made=0
cleanup() {
  local status=$?
  set +e
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid" 2>/dev/null
  if [ -n "$nginx_conf" ] && [ -f "$WORK/nginx/nginx.pid" ]; then
    nginx -c "$nginx_conf" -s stop 2>/dev/null
  fi
  if [ $status -ne 0 ]; then
    if [ -s "$WORK/nginx/error.log" ]; then
      echo "--- last lines of nginx's error log"
      tail -n 20 "$WORK/nginx/error.log"
    fi
    for c in "${containers[@]}"; do
      echo "--- last log lines of $c"
      pm logs --tail 30 "$c" 2>&1
    done
  fi
  for c in "${containers[@]}"; do pm rm -f -t 0 "$c" >/dev/null 2>&1; done
  if [ "$database_made" = 1 ]; then
    psql "$ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null
  fi
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern "$REDIS_PREFIX*" 2>/dev/null |
    xargs -r redis-cli -h 127.0.0.1 -p 6379 del >/dev/null 2>&1
  if [ "$keep_images" = 0 ]; then
    pm system reset -f >/dev/null 2>&1
    rm -rf "$WORK"
  else
    rm -rf "${WORK:?}/tmp" "${WORK:?}/secrets" "${WORK:?}/nginx" "${WORK:?}/dev"
  fi
  if [ $status -ne 0 ]; then
    echo "container smoke test: FAILED after $((SECONDS - start)) s"
  fi
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the image -----------------------------------------------------------------------------
phase "stand-in base images (debootstrap)"
if pm image exists "$BUILDER" && pm image exists "$RUNTIME"; then
  echo "kept from an earlier run: $BUILDER, $RUNTIME"
else
  bash scripts/container/stand-in-bases.sh --crates "$BUILDER" "$RUNTIME"
fi

phase "image build (podman build, no network)"
build_log="$WORK/build.log"
if ! pm build --network=none --pull=never --layers \
  --build-arg BUILDER_IMAGE="$BUILDER" --build-arg RUNTIME_IMAGE="$RUNTIME" \
  --build-arg TITANIC_GIT_COMMIT="$(git rev-parse HEAD)" \
  -t "$IMAGE" . >"$build_log" 2>&1; then
  tail -n 40 "$build_log"
  fail "podman build (log above)"
fi
grep -E '^ *Finished|^Successfully tagged' "$build_log" || true
image_bytes=$(pm image inspect --format '{{.Size}}' "$IMAGE")
mount=$(pm image mount "$IMAGE")
binary_bytes=$(stat -c %s "$mount/usr/local/bin/titanic")
[ -e "$mount/bin/sh" ] && fail "the image has a shell"
pm image unmount "$IMAGE" >/dev/null
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "image $IMAGE: $(mib "$image_bytes"), of which the binary $(mib "$binary_bytes")"
if [ "$keep_images" = 0 ]; then
  # The builder stand-in and the build stage are not needed any more (about 3 GB).
  pm rmi -f "$BUILDER" >/dev/null
  pm image prune -f >/dev/null
fi

# --- the production overlay, as podman arguments -------------------------------------------
phase "production overlay"
"$KUBECTL" kustomize kubernetes/overlays/production >"$WORK/production.yaml"
jwt_secret=$(od -An -N48 -tx1 /dev/urandom | tr -d ' \n')
admin_base=${ADMIN_URL%/*}
database_url="$admin_base/$DATABASE"
psql "$ADMIN_URL" -qAtc "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null
psql "$ADMIN_URL" -qAtc "CREATE DATABASE $DATABASE" >/dev/null
database_made=1
"$PYTHON" scripts/container/pod.py podman "$WORK/production.yaml" "$WORK" \
  --secret "titanic-auth/jwt-secret=$jwt_secret" \
  --secret "titanic-redis/url=redis://127.0.0.1:6379/0" \
  --secret "titanic-database/url=$database_url"
# shellcheck source=/dev/null
source "$WORK/pod.sh"
echo "API: ${api_podman_args[*]} ${api_args[*]}; grace ${api_grace} s"
echo "CronJob: ${train_podman_args[*]} ${train_args[*]}"
env_flags() { # NAME_OF_ASSOCIATIVE_ARRAY -> -e K=V ...
  local -n env=$1
  local k
  for k in "${!env[@]}"; do printf '%s\0' -e "$k=${env[$k]}"; done
}
mapfile -d '' api_env_flags < <(env_flags api_env)
mapfile -d '' train_env_flags < <(env_flags train_env)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
client() { python3 scripts/container/client.py "$@"; }

# run_replica NAME PORT: the API container as the Deployment describes it, detached.
run_replica() {
  containers+=("$1")
  pm run -d --name "$1" --network host --stop-timeout "$api_grace" \
    "${api_podman_args[@]}" "${api_env_flags[@]}" \
    -e TITANIC__SERVER__HOST=127.0.0.1 -e TITANIC__SERVER__PORT="$2" \
    -e TITANIC__REDIS__KEY_PREFIX="$REDIS_PREFIX" \
    "$IMAGE" "${api_args[@]}" >/dev/null
}

# probe KIND PORT: one kubelet probe (path, timeout) of the API container on PORT.
probe() {
  local -n spec="api_$1_probe"
  client probe "http://127.0.0.1:$2${spec[0]}" "${spec[2]}"
}

# wait_started PORT NAME: the startup probe until it passes (at most period x failures),
# then readiness; prints the seconds since $3 (a start time in ms).
wait_started() {
  local -n spec=api_startup_probe
  local limit=$((spec[3] * spec[4])) t0=$SECONDS
  until probe startup "$1" 2>/dev/null; do
    [ "$(pm inspect -f '{{.State.Running}}' "$2")" = true ] || fail "$2 exited during start-up"
    [ $((SECONDS - t0)) -lt "$limit" ] || fail "$2: startup probe still failing after $limit s"
    sleep 0.2
  done
  until probe readiness "$1" 2>/dev/null; do
    [ $((SECONDS - t0)) -lt "$limit" ] || fail "$2: not ready after $limit s"
    sleep 0.2
  done
  probe liveness "$1" || fail "$2: liveness"
  awk -v a="$3" -v b="$(date +%s%3N)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'
}

memory() { # NAME: resident and peak memory of the service's process
  local pid
  pid=$(pm inspect -f '{{.State.Pid}}' "$1")
  awk '/^VmRSS/ { rss = $2 } /^VmHWM/ { peak = $2 }
       END { printf "RSS %.0f MiB (peak %.0f MiB)", rss / 1024, peak / 1024 }' "/proc/$pid/status"
}

# stop_replica NAME PORT: SIGTERM as the kubelet sends it; readiness must turn 503 while it
# drains, and the process exit 0 within the grace period.
stop_replica() {
  local t0=$SECONDS
  pm kill --signal TERM "$1" >/dev/null
  local draining=0
  for _ in $(seq 1 20); do
    if ! probe readiness "$2" 2>/dev/null; then
      draining=1
      break
    fi
    sleep 0.1
  done
  [ "$draining" = 1 ] || fail "$1: readiness still 200 two seconds after SIGTERM"
  local code drain="${api_env[TITANIC__SERVER__SHUTDOWN_DRAIN_SECS]:-5}"
  code=$(timeout "$((api_grace + 5))" podman --root "$WORK/storage" --runroot "$WORK/run" wait "$1") ||
    fail "$1: still running after the grace period ($api_grace s)"
  [ "$code" = 0 ] || fail "$1: exit status $code after SIGTERM"
  # The drain period and little more: nothing waits out a timeout.
  [ $((SECONDS - t0)) -le $((drain + 4)) ] || fail "$1: exit $((SECONDS - t0)) s after SIGTERM (drain: $drain s)"
  if pm logs "$1" 2>&1 | grep -q 'did not finish in time'; then
    fail "$1: something did not finish in time at shutdown"
  fi
  echo "$1: SIGTERM, readiness 503 at once, exit 0 after $((SECONDS - t0)) s (drain $drain s)"
}

# --- replicas, probes, tokens --------------------------------------------------------------
phase "replica A (empty database: ingest, train, promote)"
port_a=$(free_port)
t0=$(date +%s%3N)
run_replica titanic-smoke-a "$port_a"
first_start=$(wait_started "$port_a" titanic-smoke-a "$t0")
mem_a=$(memory titanic-smoke-a)
echo "A ready in $first_start s on an empty database; $mem_a"
[ "$(pm inspect -f '{{.HostConfig.Memory}}' titanic-smoke-a)" -gt 0 ] || fail "no memory limit"
[ "$(pm inspect -f '{{.HostConfig.ReadonlyRootfs}}' titanic-smoke-a)" = true ] || fail "root file system writable"
token=$(pm run --rm --network host "${api_podman_args[@]}" "${api_env_flags[@]}" "$IMAGE" \
  token --sub container-smoke --scopes predict --ttl 3600)
read -r status version < <(client predict "http://127.0.0.1:$port_a" "$token" "")
[ "$status" = 200 ] || fail "/predict with a token: $status"
read -r status _ < <(client predict "http://127.0.0.1:$port_a" - "")
[ "$status" = 401 ] || fail "/predict without a token: $status"
echo "/predict: 200 with a token (model $version), 401 without"

phase "nginx from the Ingress, replica B"
nginx_port=$(free_port)
mkdir -p "$WORK/nginx"
nginx_conf="$WORK/nginx/nginx.conf"
proxy="http://127.0.0.1:$nginx_port"
"$PYTHON" scripts/container/pod.py nginx "$WORK/production.yaml" "$nginx_conf" "$nginx_port" \
  "127.0.0.1:$port_a" --prefix "$WORK/nginx"
nginx -t -c "$nginx_conf" -q
nginx -c "$nginx_conf"
read -r status _ < <(client predict "$proxy" "$token" "$HOST")
[ "$status" = 200 ] || fail "/predict through the proxy: $status"
for path in /metrics /health/live /openapi.json; do
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $HOST" "$proxy$path")
  [ "$code" = 404 ] || fail "$path through the proxy: $code (the Ingress does not route it)"
done
echo "through nginx: /predict 200; /metrics, /health/live, /openapi.json 404 (not in the Ingress)"
port_b=$(free_port)
t0=$(date +%s%3N)
run_replica titanic-smoke-b "$port_b"
second_start=$(wait_started "$port_b" titanic-smoke-b "$t0")
mem_b=$(memory titanic-smoke-b)
echo "B ready in $second_start s (model in the database); $mem_b"
upstreams() { "$PYTHON" scripts/container/pod.py nginx "$WORK/production.yaml" "$nginx_conf" "$nginx_port" "$@" --prefix "$WORK/nginx" && nginx -c "$nginx_conf" -s reload 2>/dev/null && sleep 1; }
upstreams "127.0.0.1:$port_a" "127.0.0.1:$port_b"

phase "per-address rate limit behind the proxy"
client rate-limit "$proxy" "$HOST" || fail "the per-address limit did not apply to the real client"

phase "training CronJob (train --promote), a rollback through one replica"
containers+=(titanic-smoke-train)
t0=$SECONDS
pm run --name titanic-smoke-train --network host "${train_podman_args[@]}" "${train_env_flags[@]}" \
  "$IMAGE" "${train_args[@]}" >"$WORK/train.out" 2>"$WORK/train.err" ||
  { cat "$WORK/train.err"; fail "the CronJob's command failed"; }
promoted=$(sed -n 's/^model version \(v[0-9]*\) (promoted to production)$/\1/p' "$WORK/train.out")
[ -n "$promoted" ] || { cat "$WORK/train.out"; fail "train --promote promoted nothing"; }
echo "${train_args[*]}: $promoted in $((SECONDS - t0)) s ($(grep accuracy "$WORK/train.out" | xargs))"
commit=$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port_a/models/$promoted" |
  "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["artifact"]["training"]["git_commit"])')
[ "$commit" = "$(git rev-parse HEAD)" ] ||
  fail "$promoted records git_commit $commit, not the commit the image was built from"
echo "$promoted records the image's commit, $commit"
for port in "$port_a" "$port_b"; do
  took=$(client served "http://127.0.0.1:$port" "$token" "" "$promoted" 10) ||
    fail "replica on $port does not serve $promoted"
  echo "replica on $port serves $promoted after $took s"
done
# An alias moved through one replica's API (B) is served by both.
admin=$(pm run --rm --network host "${api_podman_args[@]}" "${api_env_flags[@]}" "$IMAGE" \
  token --sub container-smoke --scopes models:write --ttl 600)
read -r status answer < <(client post "http://127.0.0.1:$port_b" "$admin" "" \
  /models/aliases/production/rollback '{"reason":"container smoke test"}')
[ "$status" = 200 ] || fail "rollback through replica B: $status $answer"
for port in "$port_b" "$port_a"; do
  took=$(client served "http://127.0.0.1:$port" "$token" "" "$version" 10) ||
    fail "replica on $port does not serve $version after the rollback through B"
  echo "rolled back to $version through B: the replica on $port serves it after $took s"
done

phase "rolling replacement of A under load through the proxy"
stop_file="$WORK/tmp/stop-load"
client load "$proxy" "$token" "$HOST" "$stop_file" "$WORK/load.json" &
load_pid=$!
sleep 3
port_c=$(free_port)
t0=$(date +%s%3N)
run_replica titanic-smoke-c "$port_c"
third_start=$(wait_started "$port_c" titanic-smoke-c "$t0")
echo "C ready in $third_start s"
# The kubelet's SIGTERM and the endpoint's removal happen together; the drain period covers
# the proxy's update.
upstreams "127.0.0.1:$port_b" "127.0.0.1:$port_c"
stop_replica titanic-smoke-a "$port_a"
sleep 3
touch "$stop_file"
wait "$load_pid"
load_pid=""
python3 - "$WORK/load.json" <<'EOF' || fail "requests failed during the rolling replacement"
import json, sys
r = json.load(open(sys.argv[1]))
print(f"load: {r['requests']} requests, outcomes {r['outcomes']}, versions {r['versions']}")
sys.exit(0 if set(r["outcomes"]) == {"200"} and r["requests"] > 50 else 1)
EOF
peak_b=$(memory titanic-smoke-b)
echo "B after the load: $peak_b"

phase "clean exit"
nginx -c "$nginx_conf" -s quit 2>/dev/null
stop_replica titanic-smoke-b "$port_b"
stop_replica titanic-smoke-c "$port_c"

# --- the dev overlay: SQLite on the data volume ----------------------------------------------
phase "dev overlay: SQLite on the data volume"
mkdir -p "$WORK/dev/data"
"$KUBECTL" kustomize kubernetes/overlays/dev >"$WORK/dev.yaml"
"$PYTHON" scripts/container/pod.py podman "$WORK/dev.yaml" "$WORK/dev" \
  --secret "titanic-auth/jwt-secret=$jwt_secret" \
  --secret "titanic-redis/url=redis://127.0.0.1:6379/0" \
  --pvc "titanic-data=$WORK/dev/data"
# shellcheck source=/dev/null
source "$WORK/dev/pod.sh"
mapfile -d '' api_env_flags < <(env_flags api_env)
mapfile -d '' train_env_flags < <(env_flags train_env)
echo "API: ${api_podman_args[*]} ${api_args[*]}"
# First as a volume nobody prepared for the service (root's, 0755; no fsGroup): refused, with
# the path, the user and the fix in the log.
chown 0:0 "$WORK/dev/data"
chmod 00755 "$WORK/dev/data"
containers+=(titanic-smoke-refused)
port_d=$(free_port)
code=0
pm run --name titanic-smoke-refused --network host "${api_podman_args[@]}" "${api_env_flags[@]}" \
  -e TITANIC__SERVER__HOST=127.0.0.1 -e TITANIC__SERVER__PORT="$port_d" \
  -e TITANIC__REDIS__KEY_PREFIX="$REDIS_PREFIX" "$IMAGE" "${api_args[@]}" >"$WORK/refused.log" 2>&1 || code=$?
[ "$code" = 1 ] || fail "an unwritable data volume: exit status $code, not 1"
grep -q '/var/lib/titanic.*uid 65532.*securityContext.fsGroup: 65532' "$WORK/refused.log" ||
  { cat "$WORK/refused.log"; fail "the refusal does not name the path, the user and the fix"; }
echo "unwritable volume: exit 1, $(grep -o 'this user may not create files in its directory [^;]*' "$WORK/refused.log" | head -n 1)"
# Then as the kubelet leaves it with fsGroup: the volume's group is 65532, group-writable.
chown 0:65532 "$WORK/dev/data"
chmod 2775 "$WORK/dev/data"
t0=$(date +%s%3N)
run_replica titanic-smoke-dev "$port_d"
dev_start=$(wait_started "$port_d" titanic-smoke-dev "$t0")
echo "ready in $dev_start s on an empty SQLite database (the file: $(stat -c 'owner %u:%g, mode %a' "$WORK/dev/data/titanic.db"))"
read -r status _ < <(client predict "http://127.0.0.1:$port_d" "$token" "")
[ "$status" = 200 ] || fail "/predict on SQLite: $status"
containers+=(titanic-smoke-dev-train)
pm run --name titanic-smoke-dev-train --network host "${train_podman_args[@]}" "${train_env_flags[@]}" \
  "$IMAGE" "${train_args[@]}" >"$WORK/train.out" 2>"$WORK/train.err" ||
  { cat "$WORK/train.err"; fail "the dev CronJob's command failed on the shared volume"; }
promoted=$(sed -n 's/^model version \(v[0-9]*\) (promoted to production)$/\1/p' "$WORK/train.out")
took=$(client served "http://127.0.0.1:$port_d" "$token" "" "$promoted" 10) ||
  fail "the dev replica does not serve $promoted"
echo "the CronJob on the same volume promoted $promoted, served after $took s"
stop_replica titanic-smoke-dev "$port_d"
phase "done"

echo "== summary"
echo "image: $(mib "$image_bytes") (binary $(mib "$binary_bytes"))"
echo "start-up to ready: $first_start s on an empty database (ingest, train, promote), $second_start s and $third_start s with the model stored (PostgreSQL); $dev_start s on an empty SQLite volume"
echo "memory: A after its first start (training included): $mem_a; B when ready: $mem_b; B after the CronJob's promotion and the load: $peak_b"
for t in "${timings[@]}"; do echo "  $t"; done
echo "container smoke test: all passed in $((SECONDS - start)) s"
