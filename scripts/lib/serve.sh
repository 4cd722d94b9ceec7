# The service as the client checks run it, sourced by them (bash, `set -euo pipefail`):
#
#   root=$(cd "$(dirname "$0")/.." && pwd)
#   source "$root/scripts/lib/serve.sh"
#   titanic_binary            # $bin: $TITANIC_BIN, else the release build of this checkout
#   titanic_start [SECONDS]   # a scratch `titanic serve`, ready within SECONDS (default 60)
#   token=$(titanic_token SUBJECT SCOPES)
#
# titanic_start makes $work (a scratch directory, removed on exit), picks $port, exports the
# production profile's settings for a loopback instance with a generated secret and the
# bundled data, starts the server (its log in $work/serve.log; $server is its pid, killed on
# exit), and waits for readiness at $base, printing the log and failing when it does not come.
# Other processes a script starts are stopped on exit too when their pids are added to
# $stop_on_exit.

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

work=$(mktemp -d)
server=""
stop_on_exit=""
titanic_cleanup() {
  for pid in $stop_on_exit $server; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap titanic_cleanup EXIT

titanic_binary() {
  bin=${TITANIC_BIN:-}
  if [ -z "$bin" ]; then
    # From the repository, so that .cargo/config.toml (the bundled SQLite's flags) applies.
    (cd "$root" && cargo build --release --locked --quiet --bin titanic)
    bin="${CARGO_TARGET_DIR:-$root/target}/release/titanic"
  fi
}

titanic_start() {
  local seconds=${1:-60}
  port=$(free_port)
  export TITANIC_CONFIG_DIR="$root/config"
  export TITANIC_ENV=production
  TITANIC__AUTH__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
  export TITANIC__AUTH__JWT_SECRET
  export TITANIC__SERVER__HOST=127.0.0.1
  export TITANIC__SERVER__PORT="$port"
  export TITANIC__DATABASE__URL="sqlite://$work/titanic.db"
  export TITANIC__DATA__DIR="$work"
  export TITANIC__DATA__TRAIN_CSV="$root/data/titanic/train.csv"
  export TITANIC__DATA__TEST_CSV="$root/data/titanic/test.csv"
  # One penalty instead of the grid: the first start trains in a second.
  export TITANIC__TRAINING__ALPHA_GRID=""
  export TITANIC__LOG__LEVEL=warn
  "$bin" serve >"$work/serve.log" 2>&1 &
  server=$!
  base="http://127.0.0.1:$port"
  for _ in $(seq 1 $((seconds * 10))); do
    curl -sf "$base/health/ready" >/dev/null && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/serve.log"
  echo "titanic serve was not ready at $base within ${seconds}s" >&2
  return 1
}

titanic_token() {
  "$bin" token --sub "$1" --scopes "$2" --ttl 600
}
