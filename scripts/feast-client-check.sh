#!/usr/bin/env bash
# Feast's own remote online store client (feast from PyPI, pinned) against the release binary.
#
#   scripts/feast-client-check.sh
#
# Starts `titanic serve` on a free loopback port with a scratch data directory, mints a token
# and runs scripts/feast_client_check.py, which reads online features through
# feast.infra.online_stores.remote.RemoteOnlineStore configured as docs/api.md describes.
# feast comes from PyPI into a virtualenv under $TITANIC_FUZZ_CACHE (default ~/.cache/titanic),
# made once. TITANIC_BIN runs another build of the service. Bounded in time; kills what it
# starts.
set -euo pipefail

FEAST_VERSION=0.67.0
root=$(cd "$(dirname "$0")/.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}

cache=${TITANIC_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/titanic}
venv="$cache/feast-$FEAST_VERSION"
if ! "$venv/bin/python" -c "import feast, sys; sys.exit(feast.__version__ != '$FEAST_VERSION')" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "feast==$FEAST_VERSION"
fi

bin=${TITANIC_BIN:-}
if [ -z "$bin" ]; then
  # From the repository, so that .cargo/config.toml (the bundled SQLite's flags) applies.
  (cd "$root" && cargo build --release --locked --quiet --bin titanic)
  bin="$target/release/titanic"
fi

work=$(mktemp -d)
server=""
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
export TITANIC_ENV=production
TITANIC__AUTH__JWT_SECRET=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
export TITANIC__AUTH__JWT_SECRET
export TITANIC__SERVER__HOST=127.0.0.1
export TITANIC__SERVER__PORT="$port"
export TITANIC__DATABASE__URL="sqlite://$work/titanic.db"
export TITANIC__DATA__DIR="$work"
export TITANIC__DATA__TRAIN_CSV="$root/data/titanic/train.csv"
export TITANIC__DATA__TEST_CSV="$root/data/titanic/test.csv"
export TITANIC__TRAINING__ALPHA_GRID=""
export TITANIC__LOG__LEVEL=warn

"$bin" serve >"$work/serve.log" 2>&1 &
server=$!
base="http://127.0.0.1:$port"
for _ in $(seq 1 600); do
  curl -sf "$base/health/ready" >/dev/null && break
  kill -0 "$server" 2>/dev/null || break
  sleep 0.1
done
curl -sf "$base/health/ready" >/dev/null || { cat "$work/serve.log"; exit 1; }
token=$("$bin" token --sub feast --scopes predict --ttl 600)

(cd "$work" && timeout 120 "$venv/bin/python" "$root/scripts/feast_client_check.py" "$base" "$token")
