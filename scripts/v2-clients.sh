#!/usr/bin/env bash
# The Open Inference Protocol (KServe V2) routes against the official Triton HTTP client.
#
#   scripts/v2-clients.sh
#
# Builds the release binary, starts `titanic serve` on a free loopback port with a scratch data
# directory (as scripts/fuzz-api.sh), mints a `predict` token, and runs scripts/v2_client_check.py:
# health, server and model metadata, model configuration, repository index, statistics,
# inference with JSON and binary inputs and outputs (all four, compared with POST
# /predict/batch), gzip and deflate request bodies, a pinned version, and each error path
# raising the client's InferenceServerException with the service's message. Exits non-zero
# on a failed check, on any 5xx the server counted and on any error the server logged.
#
# tritonclient[http] comes from PyPI into a virtualenv under $TITANIC_FUZZ_CACHE (default
# ~/.cache/titanic), made once.
set -euo pipefail

TRITONCLIENT_VERSION=2.73.0
root=$(cd "$(dirname "$0")/.." && pwd)

# From the repository, so that .cargo/config.toml (the bundled SQLite's flags) applies.
(cd "$root" && cargo build --release --locked --quiet)
bin="${CARGO_TARGET_DIR:-$root/target}/release/titanic"

cache=${TITANIC_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/titanic}
venv="$cache/tritonclient-$TRITONCLIENT_VERSION"
if ! "$venv/bin/python" -c "import tritonclient.http, numpy" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "tritonclient[http]==$TRITONCLIENT_VERSION"
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export TITANIC_CONFIG_DIR="$root/config"
export TITANIC_ENV=production
TITANIC__AUTH__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export TITANIC__AUTH__JWT_SECRET
export TITANIC__SERVER__HOST=127.0.0.1
export TITANIC__DATABASE__URL="sqlite://$work/titanic.db"
export TITANIC__DATA__DIR="$work"
export TITANIC__DATA__TRAIN_CSV="$root/data/titanic/train.csv"
export TITANIC__DATA__TEST_CSV="$root/data/titanic/test.csv"
export TITANIC__SERVER__PORT="$port"
export TITANIC__LOG__LEVEL=warn

"$bin" serve >"$work/serve.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
base="http://127.0.0.1:$port"
for _ in $(seq 1 300); do
  curl -sf "$base/health/ready" >/dev/null && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
curl -sf "$base/health/ready" >/dev/null || { cat "$work/serve.log"; exit 1; }

token=$("$bin" token --sub v2-client --scopes predict --ttl 600)

status=0
"$venv/bin/python" "$root/scripts/v2_client_check.py" "$base" "$token" || status=1

server_errors=$(curl -s "$base/metrics" | grep '^titanic_http_requests_total{' | grep 'status="5' || true)
if [ -n "$server_errors" ]; then
  echo "5xx responses:" >&2
  echo "$server_errors" >&2
  status=1
fi
if grep -q '"level":"ERROR"' "$work/serve.log" || grep -q 'panicked' "$work/serve.log"; then
  echo "the server logged errors:" >&2
  grep -E '"level":"ERROR"|panicked' "$work/serve.log" | head -20 >&2
  status=1
fi
[ "$status" -eq 0 ] || { echo "server log:" >&2; tail -50 "$work/serve.log" >&2; }
exit "$status"
