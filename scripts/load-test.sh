#!/usr/bin/env bash
# Load test of POST /predict against the release binary on loopback, auth on.
#
#   scripts/load-test.sh [DURATION] [CONNECTIONS] [THREADS]     (defaults: 30s 16 1)
#
# Needs wrk (Debian: apt-get install wrk). Starts its own server on a free port with a
# scratch data directory, mints a token, runs wrk, prints wrk's report plus latency
# percentiles and the count of non-200 responses, then stops the server. Traffic goes to
# 127.0.0.1 only. The rate limiter stays in the stack with a quota above the offered load,
# so its cost is measured without it refusing requests.
set -euo pipefail

duration=${1:-30s}
connections=${2:-16}
threads=${3:-1}
root=$(cd "$(dirname "$0")/.." && pwd)

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin="$root/target/release/titanic"

work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export TITANIC_CONFIG_DIR="$root/config"
export TITANIC__DATABASE__URL="sqlite://$work/titanic.db"
export TITANIC__DATA__DIR="$work"
export TITANIC__DATA__TRAIN_CSV="$root/data/titanic/train.csv"
export TITANIC__DATA__TEST_CSV="$root/data/titanic/test.csv"
export TITANIC__SERVER__PORT="$port"
export TITANIC__RATE_LIMIT__PER_SECOND=10000000
export TITANIC__RATE_LIMIT__BURST=10000000
export TITANIC__LOG__LEVEL=warn

"$bin" serve >"$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/health/ready" >/dev/null || { cat "$work/serve.log"; exit 1; }

TOKEN=$("$bin" token --sub load-test --scopes predict --ttl 3600)
export TOKEN
cat >"$work/predict.lua" <<'LUA'
wrk.method = "POST"
wrk.body = '{"pclass":3,"sex":"male","age":22,"sibsp":1,"parch":0,"fare":7.25,"embarked":"S","name":"Braund, Mr. Owen Harris","ticket":"A/5 21171","cabin":null}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
done = function(summary, latency, requests)
  io.write(string.format("requests %d, errors (connect/read/write/timeout) %d/%d/%d/%d\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout))
  io.write(string.format("requests/s %.0f\n", summary.requests / (summary.duration / 1e6)))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("p%-5s %.3f ms\n", p, latency:percentile(p) / 1000))
  end
end
LUA
echo "POST /predict on 127.0.0.1:$port for $duration, $connections connections, $threads wrk thread(s)"
wrk -t"$threads" -c"$connections" -d"$duration" --latency -s "$work/predict.lua" "http://127.0.0.1:$port/predict"
echo "responses by status (from the server's own metrics):"
curl -s "http://127.0.0.1:$port/metrics" | grep '^titanic_http_requests_total{method="POST",route="/predict"' || true
