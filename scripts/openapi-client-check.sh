#!/usr/bin/env bash
# The served OpenAPI document, validated and turned into a working Python client.
#
#   scripts/openapi-client-check.sh [PATH_TO_TITANIC_BINARY]
#
# Starts `titanic serve` on a free loopback port with a scratch data directory (as
# scripts/feast-client-check.sh), mints a token with the scopes `predict`, `features:write` and
# `feedback:write`, and runs scripts/openapi_client_check.py, which fetches GET /openapi.json,
# validates it with openapi-spec-validator, checks that operation ids are unique, generates a
# client with openapi-python-client (any generator warning fails the check) and calls POST
# /predict, POST /predict/batch, POST /features/online, POST /features/push and POST /feedback
# through the generated functions, plus one error path. Exits non-zero on a failed check, on any
# 5xx the server counted and on any error the server logged.
#
# The binary: the argument, else $TITANIC_BIN, else the release build of this checkout (built
# here, in ${CARGO_TARGET_DIR:-target}). openapi-spec-validator and openapi-python-client come
# from PyPI (pinned) into a virtualenv under $TITANIC_FUZZ_CACHE (default ~/.cache/titanic),
# made once; the generated client needs only what the generator itself depends on (httpx,
# attrs). Bounded in time; kills what it starts.
set -euo pipefail

SPEC_VALIDATOR_VERSION=0.9.0
CLIENT_GENERATOR_VERSION=0.29.1
root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/serve.sh"
TITANIC_BIN=${1:-${TITANIC_BIN:-}}
titanic_binary
[ -x "$bin" ] || { echo "no titanic binary at $bin" >&2; exit 1; }

cache=${TITANIC_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/titanic}
venv="$cache/openapi-client-$SPEC_VALIDATOR_VERSION-$CLIENT_GENERATOR_VERSION"
if ! "$venv/bin/python" - "$SPEC_VALIDATOR_VERSION" "$CLIENT_GENERATOR_VERSION" \
  2>/dev/null <<'EOF'; then
import sys
from importlib.metadata import version
wanted = dict(zip(["openapi-spec-validator", "openapi-python-client"], sys.argv[1:]))
sys.exit(any(version(name) != v for name, v in wanted.items()))
EOF
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "openapi-spec-validator==$SPEC_VALIDATOR_VERSION" \
    "openapi-python-client==$CLIENT_GENERATOR_VERSION"
fi

titanic_start 120
token=$(titanic_token openapi-client "predict,features:write,feedback:write")

status=0
(cd "$work" && timeout 300 "$venv/bin/python" "$root/scripts/openapi_client_check.py" "$base" "$token" "$work/generated") ||
  status=1

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
