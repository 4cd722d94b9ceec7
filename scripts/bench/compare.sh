#!/usr/bin/env bash
# Side-by-side HTTP comparison of POST /predict (issue 8), on loopback, one run, one machine:
#
#   scripts/bench/compare.sh [DURATION_SECONDS] [CONNECTIONS...]     (defaults: 15 1 16 64)
#
# Servers (SERVERS="bare shipped titanic fastapi" picks a subset):
#   bare     examples/bare_predict.rs: an axum handler that parses the same JSON body into the
#            same request type and answers the same response shape, no middleware, no model.
#   titanic  the release binary with its whole production stack (TITANIC_ENV=production:
#            request id, tracing, metrics, timeout, body and header limits, JWT verification,
#            per-subject rate limiting with a quota above the offered load, drift and
#            performance monitoring, the request log written to SQLite), with Redis as the
#            online store. Measured twice: the README passenger's raw features, and
#            {"passenger_id": 892} read from the online store (Redis, behind the feature
#            cache), materialized by `titanic serve` at start.
#   shipped  the release binary exactly as a user runs it: `titanic serve` with no environment
#            variable and no config directory (the compiled-in defaults: SQLite file,
#            in-process online store, log level info, request log on, default rate limits of
#            100/s per subject), on the default port 8080 (which must be free), from a scratch
#            directory holding data/titanic/. The load is spread over 1,000 token subjects, so
#            that the default per-subject quota is not what is measured (a refused request
#            would be cheaper than a served one); every request still passes the limiter.
#            SHIPPED_ENV="NAME=value ..." adds those variables, for a diagnostic run (the
#            rows are then labelled with them: they are not the product's numbers).
#   fastapi  the same service written the usual Python way: FastAPI + pydantic, a pandas
#            DataFrame per request and a scikit-learn Pipeline (imputers, scaler, one-hot,
#            LogisticRegression trained on data/titanic/train.csv), 2 uvicorn workers with
#            uvloop and httptools. Built here, in a scratch venv under
#            ${XDG_CACHE_HOME:-~/.cache}/titanic-bench/ from PyPI with pinned versions; the
#            app is generated there by this script and is not part of the project.
#
# Load: wrk (installed from apt when missing), one thread, closed loop, DURATION seconds per
# run, a Lua script posting the body (with the bearer token for titanic). wrk shares the CPUs
# with the server under test; the load average is printed with each run.
# Prints one markdown table (server, connections, req/s, p50, p99, non-2xx, ratios vs bare
# axum and vs FastAPI at the same connection count), then titanic's ready time on an existing
# store (spawn until /health/ready answers 200), the release binary's size and the server's
# peak resident memory (VmHWM) after all its runs.
# Needs: a Redis on TITANIC_BENCH_REDIS_URL (default redis://127.0.0.1:6379/0); the features
# are written under a fresh key prefix per run, nothing else there is read or removed.
# Everything listens on 127.0.0.1 only; every server is killed on exit. Not run in CI.
set -euo pipefail

duration=${1:-15}
shift || true
connections=("$@")
[ ${#connections[@]} -gt 0 ] || connections=(1 16 64)
servers=${SERVERS:-"bare shipped titanic fastapi"}
redis_url=${TITANIC_BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/titanic-bench
case "$duration${connections[*]}" in
  *[!0-9\ ]*) echo "usage: $0 [DURATION_SECONDS] [CONNECTIONS...] (integers)" >&2; exit 2 ;;
esac

if ! command -v wrk >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_ready URL PID SECONDS: polls until URL answers 2xx; fails when PID exits or on timeout.
wait_ready() {
  local end=$((SECONDS + $3))
  while [ $SECONDS -lt $end ]; do
    if curl -sf -m 1 -o /dev/null "$1"; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.01
  done
  return 1
}

body_raw='{"pclass":3,"sex":"male","age":22,"sibsp":1,"parch":0,"fare":7.25,"embarked":"S","name":"Braund, Mr. Owen Harris","ticket":"A/5 21171","cabin":null}'
body_id='{"passenger_id":892}'

# lua_tokens FILE BODY TOKENS_FILE: a wrk script posting BODY with each token of TOKENS_FILE
# in turn (the requests are built once, in init); done() prints one parsable line.
lua_tokens() {
  {
    echo 'local tokens = {'
    sed 's/.*/  "&",/' "$3"
    echo '}'
    cat <<EOF
local requests = {}
local i = 0
init = function(args)
  for k, t in ipairs(tokens) do
    requests[k] = wrk.format("POST", nil, {["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. t}, '$2')
  end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.1f %d %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
EOF
  } >"$1"
}

# lua FILE BODY [TOKEN]: a wrk script posting BODY; done() prints one parsable line.
lua() {
  local auth=
  [ -z "${3:-}" ] || auth="wrk.headers[\"Authorization\"] = \"Bearer $3\""
  cat >"$1" <<EOF
wrk.method = "POST"
wrk.body = '$2'
wrk.headers["Content-Type"] = "application/json"
$auth
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %.1f %d %d %d %d\n", summary.requests,
    summary.requests / (summary.duration / 1e6), latency:percentile(50),
    latency:percentile(99), e.status, e.connect + e.read + e.write + e.timeout))
end
EOF
}

results=$work/results.tsv
: >"$results"
# run NAME URL LUA: wrk at each connection count; one line per run into $results.
run() {
  local name=$1 url=$2 script=$3 c out line
  for c in "${connections[@]}"; do
    local load
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    out=$(timeout $((duration + 60)) wrk -t1 -c"$c" -d"${duration}s" --timeout 5s -s "$script" "$url")
    line=$(grep '^RESULT' <<<"$out") || { echo "$out" >&2; return 1; }
    read -r _ requests rps p50 p99 non2xx transport <<<"$line"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$c" "$rps" "$p50" "$p99" \
      "$non2xx" "$transport" "$load" >>"$results"
    echo "  $name c=$c: $rps req/s, p50 ${p50} us, p99 ${p99} us, $requests requests, non-2xx $non2xx, transport errors $transport (load before: $load)" >&2
  done
}

echo "commit $(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo ' (with local changes)'), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" >&2
echo "building the release binary and the bare axum reference" >&2
# From the repository, so that .cargo/config.toml (the bundled SQLite's flags) applies.
(cd "$root" && timeout 1800 cargo build --release --locked --quiet --bin titanic --example bare_predict)
bin=$root/target/release/titanic

# --- bare axum ------------------------------------------------------------------------------
if [[ " $servers " == *" bare "* ]]; then
  port=$(free_port)
  "$root/target/release/examples/bare_predict" "127.0.0.1:$port" >"$work/bare.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    curl -sf -m 1 -o /dev/null -X POST -H 'Content-Type: application/json' -d "$body_raw" \
      "http://127.0.0.1:$port/predict" && break
    sleep 0.05
  done
  lua "$work/bare.lua" "$body_raw"
  echo "bare axum on 127.0.0.1:$port" >&2
  run "bare axum" "http://127.0.0.1:$port/predict" "$work/bare.lua"
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
fi

# --- titanic, full production stack ---------------------------------------------------------
ready_ms= hwm=
if [[ " $servers " == *" titanic "* ]]; then
  redis-cli -u "$redis_url" ping >/dev/null 2>&1 ||
    { echo "no Redis answers at $redis_url (set TITANIC_BENCH_REDIS_URL)" >&2; exit 1; }
  port=$(free_port)
  export TITANIC_CONFIG_DIR="$root/config"
  export TITANIC_ENV=production
  TITANIC__AUTH__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  export TITANIC__AUTH__JWT_SECRET
  export TITANIC__SERVER__HOST=127.0.0.1
  export TITANIC__SERVER__PORT="$port"
  export TITANIC__SERVER__SHUTDOWN_DRAIN_SECS=0
  export TITANIC__DATABASE__URL="sqlite://$work/titanic.db"
  export TITANIC__DATA__DIR="$work"
  export TITANIC__DATA__TRAIN_CSV="$root/data/titanic/train.csv"
  export TITANIC__DATA__TEST_CSV="$root/data/titanic/test.csv"
  export TITANIC__REDIS__URL="$redis_url"
  # A fresh key prefix: nothing of another run (or another user of this Redis) is read.
  export TITANIC__REDIS__KEY_PREFIX="titanic-bench-$$-$(date +%s):v1:"
  # Far above the offered load, so the limiter's cost is measured without refusals.
  export TITANIC__RATE_LIMIT__PER_SECOND=100000000
  export TITANIC__RATE_LIMIT__BURST=100000000
  export TITANIC__LOG__LEVEL=warn
  # First start: migrations, ingest, training, materialization into Redis.
  "$bin" serve >"$work/serve-first.log" 2>&1 &
  pids+=($!)
  wait_ready "http://127.0.0.1:$port/health/ready" "${pids[-1]}" 300 ||
    { echo "titanic not ready:" >&2; cat "$work/serve-first.log" >&2; exit 1; }
  kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
  # Second start, on the existing store: the ready time asked for.
  start=$(date +%s%N)
  "$bin" serve >"$work/serve.log" 2>&1 &
  server=$!
  pids+=("$server")
  wait_ready "http://127.0.0.1:$port/health/ready" "$server" 60 ||
    { echo "titanic not ready:" >&2; cat "$work/serve.log" >&2; exit 1; }
  ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  TOKEN=$("$bin" token --sub bench --scopes predict --ttl 86400)
  url="http://127.0.0.1:$port/predict"
  for body in "$body_raw" "$body_id"; do
    curl -sf -m 5 -X POST "$url" -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/json' -d "$body" >/dev/null ||
      { echo "a first request with $body failed:" >&2; curl -s -X POST "$url" \
        -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d "$body" >&2; exit 1; }
  done
  lua "$work/titanic.lua" "$body_raw" "$TOKEN"
  lua "$work/titanic-id.lua" "$body_id" "$TOKEN"
  echo "titanic on 127.0.0.1:$port (ready on the existing store in $ready_ms ms)" >&2
  run "titanic (raw features)" "$url" "$work/titanic.lua"
  run "titanic (passenger id, Redis)" "$url" "$work/titanic-id.lua"
  hwm=$(awk '/VmHWM/ {print $2}' "/proc/$server/status")
  echo "  server's responses by status:" >&2
  curl -s -m 5 "http://127.0.0.1:$port/metrics" |
    grep '^titanic_http_requests_total{method="POST",route="/predict"' >&2 || true
  curl -s -m 5 "http://127.0.0.1:$port/metrics" | grep '^titanic_request_log_' >&2 || true
  kill "$server"; wait "$server" 2>/dev/null || true
fi

# --- titanic as shipped: compiled-in defaults, no environment ------------------------------
if [[ " $servers " == *" shipped "* ]]; then
  if curl -s -m 1 -o /dev/null http://127.0.0.1:8080/ 2>/dev/null; then
    echo "port 8080 is taken: the shipped configuration listens there" >&2; exit 1
  fi
  shipped=$work/shipped
  mkdir -p "$shipped/data/titanic"
  cp "$root"/data/titanic/*.csv "$shipped/data/titanic/"
  read -ra shipped_env <<<"${SHIPPED_ENV:-}"
  shipped_label="titanic (as shipped)"
  [ ${#shipped_env[@]} -eq 0 ] || shipped_label="titanic (shipped, ${shipped_env[*]})"
  (cd "$shipped" && exec env -i PATH="$PATH" HOME="$HOME" "${shipped_env[@]}" "$bin" serve) \
    >"$work/shipped.log" 2>&1 &
  server=$!
  pids+=("$server")
  wait_ready "http://127.0.0.1:8080/health/ready" "$server" 300 ||
    { echo "$shipped_label not ready:" >&2; cat "$work/shipped.log" >&2; exit 1; }
  # 1,000 subjects (the token cache holds 1,024), minted with the secret the service
  # generated (HS256, its kid).
  python3 - "$shipped/data/jwt_secret" "$work/tokens" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret = open(sys.argv[1]).read().strip().encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
header = b64(json.dumps({"typ": "JWT", "alg": "HS256", "kid": "key-1"}).encode())
now = int(time.time())
with open(sys.argv[2], "w") as out:
    for i in range(1000):
        claims = {"sub": f"bench-{i}", "scopes": ["predict"], "exp": now + 86400, "iat": now, "nbf": now}
        payload = b64(json.dumps(claims).encode())
        signature = b64(hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest())
        print(f"{header}.{payload}.{signature}", file=out)
PY
  url="http://127.0.0.1:8080/predict"
  curl -sf -m 5 -X POST "$url" -H "Authorization: Bearer $(head -n1 "$work/tokens")" \
    -H 'Content-Type: application/json' -d "$body_raw" >/dev/null ||
    { echo "a first request to titanic (as shipped) failed" >&2; exit 1; }
  lua_tokens "$work/shipped.lua" "$body_raw" "$work/tokens"
  lines_before=$(wc -l <"$work/shipped.log")
  echo "$shipped_label on 127.0.0.1:8080" >&2
  run "$shipped_label" "$url" "$work/shipped.lua"
  echo "  log lines written during the runs: $(( $(wc -l <"$work/shipped.log") - lines_before ))" >&2
  curl -s -m 5 "http://127.0.0.1:8080/metrics" |
    grep -E '^titanic_http_requests_total\{method="POST",route="/predict"|^titanic_request_log_' >&2 || true
  kill "$server"; wait "$server" 2>/dev/null || true
fi

# --- FastAPI + scikit-learn ------------------------------------------------------------------
if [[ " $servers " == *" fastapi "* ]]; then
  mkdir -p "$cache"
  if [ ! -x "$cache/venv/bin/uvicorn" ]; then
    echo "building the FastAPI reference in $cache (venv from PyPI)" >&2
    python3 -m venv "$cache/venv"
    timeout 1200 "$cache/venv/bin/pip" install -q --disable-pip-version-check \
      fastapi==0.163.2 'uvicorn[standard]==0.54.0' uvloop==0.23.0 httptools==0.9.0 \
      pydantic==2.14.3 scikit-learn==1.9.1 pandas==3.1.1 numpy==2.4.6
  fi
  cat >"$cache/app.py" <<'PY'
# Generated by scripts/bench/compare.sh: the usual Python way to serve this model.
import os
from typing import Optional

import numpy as np
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC = ["age", "fare", "family_size", "sibsp", "parch"]
CATEGORICAL = ["pclass", "sex", "embarked", "title", "has_cabin"]


def derive(df: pd.DataFrame) -> pd.DataFrame:
    df = df.copy()
    title = df["name"].fillna("").str.extract(r",\s*([^.]+)\.", expand=False).fillna("")
    title = title.replace({"Mlle": "Miss", "Ms": "Miss", "Mme": "Mrs"})
    df["title"] = title.where(title.isin(["Mr", "Mrs", "Miss", "Master"]), "Rare")
    df["family_size"] = 1 + df["sibsp"] + df["parch"]
    df["has_cabin"] = df["cabin"].notna().astype(int)
    return df[NUMERIC + CATEGORICAL]


train = pd.read_csv(os.environ["TRAIN_CSV"]).rename(columns=str.lower)
pipeline = Pipeline([
    ("prep", ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer(strategy="median")),
                          ("scale", StandardScaler())]), NUMERIC),
        ("cat", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                          ("onehot", OneHotEncoder(handle_unknown="ignore"))]), CATEGORICAL),
    ])),
    ("model", LogisticRegression(C=1.0, max_iter=1000)),
])
pipeline.fit(derive(train), train["survived"])
FEATURES = list(pipeline.named_steps["prep"].get_feature_names_out())
COEF = pipeline.named_steps["model"].coef_[0]
INTERCEPT = float(pipeline.named_steps["model"].intercept_[0])


class Passenger(BaseModel):
    model_config = ConfigDict(extra="forbid")
    passenger_id: Optional[int] = None
    pclass: int
    sex: str
    age: Optional[float] = None
    sibsp: int
    parch: int
    fare: Optional[float] = None
    embarked: Optional[str] = None
    name: Optional[str] = None
    ticket: Optional[str] = None
    cabin: Optional[str] = None


app = FastAPI()


@app.post("/predict")
def predict(p: Passenger):
    df = derive(pd.DataFrame([p.model_dump()]))
    # One transform serves both the score and the contributions.
    x = pipeline.named_steps["prep"].transform(df)
    probability = float(pipeline.named_steps["model"].predict_proba(x)[0, 1])
    x = np.asarray(x).ravel()
    contributions = {name: float(c * v) for name, c, v in zip(FEATURES, COEF, x)}
    return {
        "survived": probability >= 0.5,
        "probability": probability,
        "model_version": "sklearn",
        "logit": INTERCEPT + sum(contributions.values()),
        "intercept": INTERCEPT,
        "contributions": contributions,
    }
PY
  port=$(free_port)
  (cd "$cache" && TRAIN_CSV="$root/data/titanic/train.csv" exec "$cache/venv/bin/uvicorn" app:app \
    --host 127.0.0.1 --port "$port" --workers 2 --loop uvloop --http httptools \
    --log-level warning --no-access-log) >"$work/fastapi.log" 2>&1 &
  pids+=($!)
  ok=
  for _ in $(seq 1 600); do
    if curl -sf -m 2 -o /dev/null -X POST -H 'Content-Type: application/json' -d "$body_raw" \
      "http://127.0.0.1:$port/predict"; then ok=1; break; fi
    kill -0 "${pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  [ -n "$ok" ] || { echo "FastAPI not ready:" >&2; cat "$work/fastapi.log" >&2; exit 1; }
  lua "$work/fastapi.lua" "$body_raw"
  echo "FastAPI + scikit-learn on 127.0.0.1:$port" >&2
  run "FastAPI + scikit-learn" "http://127.0.0.1:$port/predict" "$work/fastapi.lua"
fi

# --- the table -------------------------------------------------------------------------------
python3 - "$results" <<'PY'
import sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
rps = {(r[0], r[1]): float(r[2]) for r in rows}
ms = lambda us: f"{int(us) / 1000:.3f} ms"
ratio = lambda a, b: f"{a / b:.2f}x" if b else "n/a"
print("| server | connections | req/s | p50 | p99 | non-2xx / errors | vs bare axum | vs FastAPI | load average before |")
print("|---|---|---|---|---|---|---|---|---|")
for name, c, r, p50, p99, non2xx, transport, load in rows:
    bare = rps.get(("bare axum", c))
    fastapi = rps.get(("FastAPI + scikit-learn", c))
    print(f"| {name} | {c} | {float(r):,.0f} | {ms(p50)} | {ms(p99)} | {non2xx} / {transport} "
          f"| {ratio(float(r), bare) if bare else 'n/a'} | {ratio(float(r), fastapi) if fastapi else 'n/a'} | {load} |")
PY
size=$(stat -c %s "$bin")
echo
echo "release binary: $((size / 1024 / 1024)).$(( (size % 1048576) * 10 / 1048576 )) MiB ($size bytes)"
[ -z "$ready_ms" ] || echo "titanic serve on an existing store: ready in $ready_ms ms (spawn to /health/ready 200)"
[ -z "$hwm" ] || echo "titanic peak resident memory (VmHWM) after its runs: $((hwm / 1024)) MiB ($hwm kB)"
echo "load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
