#!/usr/bin/env bash
# API fuzzing of the release binary with schemathesis, driven by GET /openapi.json.
#
#   scripts/fuzz-api.sh [MAX_EXAMPLES]        (default 50 generated cases per operation)
#
# Builds target/release/titanic, starts `titanic serve` on a free loopback port with a scratch
# data directory (rate limits far above the offered load, so 429s hide nothing), mints a token
# with every scope, and runs schemathesis against every documented operation with every check
# (server errors, status codes, content types, response schemas and headers, positive and
# negative data, auth, methods...), seeded, within a time bound. Settings that differ from
# the defaults are in scripts/fuzz-api.toml; scripts/fuzz_api_hooks.py writes whole floats in
# generated bodies as integers (the service reads integers strictly). Exits non-zero on any
# failed check, on any 5xx the server counted (its own titanic_http_requests_total, so a 5xx
# can never pass unseen) and on any error the server logged. Then scripts/fuzz_hostile.py sends
# seeded hostile bodies the schema cannot describe well (V2 tensors with large and inconsistent
# shapes, malformed CSV uploads, batches around the item limit), with the same checks.
#
# schemathesis comes from PyPI into a virtualenv under $TITANIC_FUZZ_CACHE (default
# ~/.cache/titanic), made once. Its JUnit report goes to target/fuzz-api/, with the server's
# log after a failed run. TITANIC_FUZZ_SEED picks another seed, TITANIC_FUZZ_MAX_TIME another
# bound on the run (seconds).
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
max_examples=${1:-50}
# Cases per route of scripts/fuzz_hostile.py.
hostile_cases=${TITANIC_FUZZ_HOSTILE_CASES:-300}
# Fixed, so that a run is repeatable; set another to explore.
seed=${TITANIC_FUZZ_SEED:-20240611}
# A bound on the schemathesis run, in seconds: a run that takes longer fails.
budget=${TITANIC_FUZZ_MAX_TIME:-300}
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/fuzz-api"

# From the repository, so that .cargo/config.toml (the bundled SQLite's flags) applies.
(cd "$root" && cargo build --release --locked --quiet)
bin="$root/target/release/titanic"

cache=${TITANIC_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/titanic}
venv="$cache/schemathesis-$SCHEMATHESIS_VERSION"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export TITANIC_CONFIG_DIR="$root/config"
# As scripts/load-test.sh: the production profile (JSON logs, no generated secret, no
# retraining at start) with a throw-away secret, on loopback.
export TITANIC_ENV=production
TITANIC__AUTH__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export TITANIC__AUTH__JWT_SECRET
export TITANIC__SERVER__HOST=127.0.0.1
export TITANIC__DATABASE__URL="sqlite://$work/titanic.db"
export TITANIC__DATA__DIR="$work"
export TITANIC__DATA__TRAIN_CSV="$root/data/titanic/train.csv"
export TITANIC__DATA__TEST_CSV="$root/data/titanic/test.csv"
export TITANIC__SERVER__PORT="$port"
# Quotas far above the offered load (every class of the token's subject, and the open routes'
# per-address one, which also counts refused tokens), so that 429s hide nothing.
export TITANIC__RATE_LIMIT__PER_SECOND=10000000
export TITANIC__RATE_LIMIT__BURST=10000000
export TITANIC__RATE_LIMIT__OPEN__PER_SECOND=10000000
export TITANIC__RATE_LIMIT__OPEN__BURST=10000000
# Training jobs the fuzzer starts run one at a time in the background: one penalty instead of
# the grid keeps each short (the same code path otherwise).
export TITANIC__TRAINING__ALPHA_GRID=""
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

token=$("$bin" token --sub fuzz --scopes predict,features:write,models:write,feedback:write --ttl 3600)

rm -rf "$out"
mkdir -p "$out"
echo "schemathesis $SCHEMATHESIS_VERSION against $base/openapi.json: $max_examples cases per operation, at most ${budget}s"
started=$(date +%s)
status=0
export SCHEMATHESIS_HOOKS="$root/scripts/fuzz_api_hooks.py"
# From the scratch directory, so that nothing schemathesis writes lands in the repository.
(cd "$work" && timeout "$budget" "$venv/bin/schemathesis" --config-file "$root/scripts/fuzz-api.toml" run "$base/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks all \
  --max-examples "$max_examples" \
  --seed "$seed" \
  --generation-database none \
  --workers 1 \
  --no-color \
  --report junit --report-dir "$out") || status=$?
echo "schemathesis finished in $(($(date +%s) - started))s with status $status"
[ "$status" -eq 124 ] && echo "schemathesis did not finish within ${budget}s" >&2

# Bodies the schema cannot describe well: V2 tensors with large and inconsistent shapes,
# malformed CSV uploads, batches around the item limit (scripts/fuzz_hostile.py).
echo "hostile bodies: $hostile_cases cases per route"
timeout "$budget" python3 "$root/scripts/fuzz_hostile.py" "$base" "$token" "$hostile_cases" "$seed" || status=1

# Every response the server gave, by status, from its own metrics.
metrics=$(curl -s "$base/metrics" | grep '^titanic_http_requests_total{' || true)
total=$(awk '{n += $2} END {print n + 0}' <<<"$metrics")
server_errors=$(grep 'status="5' <<<"$metrics" || true)
echo "the server answered $total requests; by status:"
sed -E 's/.*status="([0-9]+)".* ([0-9.e+]+)$/\1 \2/' <<<"$metrics" |
  awk '{n[$1] += $2} END {for (s in n) printf "  %s %d\n", s, n[s]}' | sort
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
if [ "$status" -ne 0 ]; then
  cp "$work/serve.log" "$out/serve.log"
  echo "fuzzing failed; report and server log in $out" >&2
fi
exit "$status"
