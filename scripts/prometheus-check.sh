#!/usr/bin/env bash
# The dashboard and the alerting rules against a real Prometheus scraping the release binary.
#
#   scripts/prometheus-check.sh [PROMETHEUS_BINARY]
#
# TITANIC_BIN runs another build of the service instead of building target/release/titanic.
# Starts `titanic serve` on a free loopback port with a scratch data directory, and the
# `prometheus` server (the binary of Debian's prometheus package, unpacked, as .ci/run does
# for promtool; or PROMETHEUS_BINARY) with a scratch configuration: scrape that port every
# second as job "titanic", load docs/monitoring/alerts.yml, store in a temporary directory,
# listen on 127.0.0.1 only. Then scripts/prometheus_check.py evaluates every `expr` of
# docs/monitoring/grafana-dashboard.json and every alerting and recording rule through
# /api/v1/query, and fails on any error, empty result or NaN: once before any traffic, and
# once after a scripted mix (predictions, online reads and pushes through both APIs,
# feedback, a malformed and an invalid body, a refused token, an unknown route).
# Bounded in time; kills what it starts.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
source "$root/scripts/lib/serve.sh"

prometheus=${1:-$(command -v prometheus || true)}
if [ ! -x "$prometheus" ]; then
  (cd "$work" && apt-get download -qq prometheus >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get download -qq prometheus; })
  dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
  prometheus="$work/root/usr/bin/prometheus"
fi
"$prometheus" --version | head -n 1

titanic_binary
titanic_start 60
prom_port=$(free_port)
token=$(titanic_token prometheus-check predict,features:write,models:write,feedback:write)

# The recording group every second instead of every 30 s, so that its series exist at once.
sed "s/interval: 30s/interval: 1s/" "$root/docs/monitoring/alerts.yml" >"$work/alerts.yml"
cat >"$work/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yml]
scrape_configs:
  - job_name: titanic
    static_configs:
      - targets: ["127.0.0.1:$port"]
YAML
"$prometheus" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prom=$!
stop_on_exit="$prom"
prom_url="http://127.0.0.1:$prom_port"

# Until Prometheus holds at least three scrapes of the service (a rate needs two).
scraped() {
  curl -sfG "$prom_url/api/v1/query" --data-urlencode 'query=count_over_time(up{job="titanic"}[1m]) >= 3' |
    grep -q '"result":\[{'
}
for _ in $(seq 1 300); do
  scraped && break
  kill -0 "$prom" 2>/dev/null || break
  sleep 0.1
done
scraped || { cat "$work/prometheus.log"; echo "Prometheus never scraped the service" >&2; exit 1; }
# A few evaluations of the rules.
sleep 3

status=0
check() { timeout 120 python3 "$root/scripts/prometheus_check.py" check "$prom_url" "$root/docs/monitoring/grafana-dashboard.json" "$1" || status=1; }
check before
timeout 60 python3 "$root/scripts/prometheus_check.py" traffic "$base" "$token" || status=1
# Three more scrapes, so that every rate sees the traffic.
sleep 4
check after
if [ "$status" -ne 0 ]; then
  echo "--- titanic log" >&2
  tail -n 20 "$work/serve.log" >&2
fi
exit "$status"
