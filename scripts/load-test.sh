#!/usr/bin/env bash
# Steady-rate (open-loop) load test of POST /predict against the release binary on loopback,
# auth on, with the whole production middleware stack.
#
#   scripts/load-test.sh [RATE] [DURATION_SECONDS] [CONNECTIONS]     (defaults: 2000 60 32)
#
# Requests are sent at a constant arrival rate (RATE per second) whether or not earlier ones
# have been answered, and each latency is measured from the moment its request was due, not
# from when a free connection sent it: a server stall therefore shows up in the percentiles
# (no coordinated omission), unlike the closed-loop wrk runs this script replaced.
#
# Load generator: oha 1.16 from crates.io, installed here when missing (see below; a cold
# `cargo install` of it takes several minutes on 2 cores).
# Chosen because it is a maintained Rust tool that installs from crates.io with the toolchain
# this project already needs, and it does exactly this: `-q` fixes the arrival rate,
# `--latency-correction` measures from the scheduled start, `-z` bounds the run, and
# `--output-format json` gives percentiles up to p99.99, the status codes and the transport
# errors. The usual alternatives are not to be had here: wrk2 and vegeta are not packaged by
# Debian (bookworm), and plain wrk is closed-loop only. One limit of oha to know: a request is
# "due" when oha's own scheduler wakes up to send it, so a stall of the load generator itself
# (it shares the CPUs with the server) is not counted; a stall of the server is.
#
# What it does: builds the release binary, starts `titanic serve` on a free 127.0.0.1 port with
# a scratch database (bootstrapped and trained at start, as on a fresh clone), mints a token with
# `titanic token`, runs oha for DURATION seconds, prints the error count (non-2xx responses plus
# transport errors plus a backlog of requests due but never sent) and the latency percentiles
# (p50, p90, p99, p99.9, max), the server's own count of responses by status, then stops the
# server. The server runs the production profile (TITANIC_ENV=production, a throw-away JWT
# secret) with its whole middleware stack. The rate limiter stays on, with a per-subject quota of twice the offered rate, so its
# cost is measured without it refusing requests. Traffic goes to 127.0.0.1 only, and every step
# is bounded in time. Exit status 1 when any request failed. Not run in CI.
set -euo pipefail

rate=${1:-2000}
duration=${2:-60}
connections=${3:-32}
oha_version=1.16.0
root=$(cd "$(dirname "$0")/.." && pwd)

case "$rate$duration$connections" in
  *[!0-9]*) echo "usage: $0 [RATE] [DURATION_SECONDS] [CONNECTIONS] (integers)" >&2; exit 2 ;;
esac
[ "$rate" -gt 0 ] && [ "$duration" -gt 0 ] && [ "$connections" -gt 0 ] ||
  { echo "RATE, DURATION_SECONDS and CONNECTIONS must be positive" >&2; exit 2; }

if ! command -v oha >/dev/null; then
  # oha needs one TLS backend to build; native-tls links the system OpenSSL (Debian's
  # libssl-dev, on this machine image already) and builds faster than the default rustls with
  # aws-lc. The test itself is plain HTTP.
  if ! pkg-config --exists openssl 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libssl-dev pkg-config
  fi
  echo "oha not found: installing oha $oha_version from crates.io"
  timeout 3600 cargo install --locked oha --version "$oha_version" --no-default-features --features native-tls
fi
oha --version

# From the repository, so that .cargo/config.toml (the bundled SQLite's flags) applies.
(cd "$root" && timeout 1800 cargo build --release --locked --quiet)
bin="$root/target/release/titanic"

work=$(mktemp -d)
server=
cleanup() {
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export TITANIC_CONFIG_DIR="$root/config"
# The production profile (JSON logs, no generated secret, no retraining at start) with a
# throw-away secret, on loopback.
export TITANIC_ENV=production
TITANIC__AUTH__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export TITANIC__AUTH__JWT_SECRET
export TITANIC__SERVER__HOST=127.0.0.1
export TITANIC__SERVER__PORT="$port"
export TITANIC__DATABASE__URL="sqlite://$work/titanic.db"
export TITANIC__DATA__DIR="$work"
export TITANIC__DATA__TRAIN_CSV="$root/data/titanic/train.csv"
export TITANIC__DATA__TEST_CSV="$root/data/titanic/test.csv"
export TITANIC__RATE_LIMIT__PER_SECOND=$((rate * 2))
export TITANIC__RATE_LIMIT__BURST=$((rate * 2))
# warn filters the per-request INFO lines, as in the earlier wrk runs; the tracing layer still
# runs. TITANIC__LOG__LEVEL=info measures with them written (to a file here).
export TITANIC__LOG__LEVEL=${TITANIC__LOG__LEVEL:-warn}

"$bin" serve >"$work/serve.log" 2>&1 &
server=$!
ready=
for _ in $(seq 1 600); do # at most 60 s: the first start ingests and trains
  if curl -sf -m 1 "http://127.0.0.1:$port/health/ready" >/dev/null; then ready=1; break; fi
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
[ -n "$ready" ] || { echo "server not ready:" >&2; cat "$work/serve.log" >&2; exit 1; }

TOKEN=$("$bin" token --sub load-test --scopes predict --ttl $((duration + 600)))
body='{"pclass":3,"sex":"male","age":22,"sibsp":1,"parch":0,"fare":7.25,"embarked":"S","name":"Braund, Mr. Owen Harris","ticket":"A/5 21171","cabin":null}'
url="http://127.0.0.1:$port/predict"
curl -sf -m 5 -X POST "$url" -H "Authorization: Bearer $TOKEN" \
  -H 'Content-Type: application/json' -d "$body" >/dev/null ||
  { echo "a first request to $url failed" >&2; exit 1; }

echo "POST /predict on 127.0.0.1:$port: $rate requests/s for ${duration}s over $connections connections"
echo "commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'), $(nproc) CPUs shared with the load generator"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
# -w: requests in flight at the deadline are waited for (and counted), not cancelled.
# -t: a request without an answer after 10 s counts as a transport error.
timeout $((duration + 120)) oha --no-tui -w \
  -q "$rate" --latency-correction -z "${duration}s" -c "$connections" -t 10s \
  -m POST -H "Authorization: Bearer $TOKEN" -T application/json -d "$body" \
  --output-format json -o "$work/oha.json" "$url"
echo "load average after:  $(cut -d' ' -f1-3 /proc/loadavg)"

status=0
python3 - "$work/oha.json" "$rate" "$duration" <<'PY' || status=1
import json, sys

report = json.load(open(sys.argv[1]))
rate, duration = int(sys.argv[2]), int(sys.argv[3])
codes = {int(k): v for k, v in report["statusCodeDistribution"].items()}
transport = report["errorDistribution"]
answered = sum(codes.values())
sent = answered + sum(transport.values())
due = rate * duration
non_2xx = sum(v for k, v in codes.items() if not 200 <= k < 300)
# oha's scheduler wakes on a 1 ms timer and stops at the deadline, so the requests due in the
# last few milliseconds may not go out: up to 5 ms worth is that edge, more is a backlog the
# server did not keep up with, and counts as errors.
never_sent = max(0, due - sent)
edge = max(1, rate // 200)
backlog = never_sent if never_sent > edge else 0
errors = non_2xx + sum(transport.values()) + backlog
p = report["latencyPercentiles"]
ms = lambda seconds: f"{seconds * 1000:.3f} ms" if seconds is not None else "n/a"

print(f"requests due {due}, sent {sent}, answered {answered} "
      f"({report['summary']['requestsPerSec']:.0f}/s over {report['summary']['total']:.1f} s)")
print("status codes: " + (", ".join(f"{k}: {v}" for k, v in sorted(codes.items())) or "none"))
print("transport errors: " + (", ".join(f"{k}: {v}" for k, v in transport.items()) or "none"))
print(f"errors: {errors} (non-2xx {non_2xx}, transport {sum(transport.values())}, "
      f"backlog not sent by the end {backlog})")
if never_sent and not backlog:
    print(f"  ({never_sent} due in the last milliseconds were not sent: the scheduler's edge, "
          f"not counted)")
print("latency from the scheduled start (coordinated omission corrected):")
for name, key in [("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p99.9", "p99.9"),
                  ("p99.99", "p99.99")]:
    print(f"  {name:<6} {ms(p.get(key))}")
print(f"  {'max':<6} {ms(report['summary']['slowest'])}")
sys.exit(1 if errors else 0)
PY

echo "responses by status (from the server's own metrics):"
curl -s -m 5 "http://127.0.0.1:$port/metrics" |
  grep '^titanic_http_requests_total{method="POST",route="/predict"' || true
exit "$status"
