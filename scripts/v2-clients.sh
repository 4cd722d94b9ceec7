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

source "$root/scripts/lib/serve.sh"
titanic_binary

cache=${TITANIC_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/titanic}
venv="$cache/tritonclient-$TRITONCLIENT_VERSION"
if ! "$venv/bin/python" -c "import tritonclient.http, numpy" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "tritonclient[http]==$TRITONCLIENT_VERSION"
fi

titanic_start 30
token=$(titanic_token v2-client predict)

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
