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

cache=${TITANIC_FUZZ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/titanic}
venv="$cache/feast-$FEAST_VERSION"
if ! "$venv/bin/python" -c "import feast, sys; sys.exit(feast.__version__ != '$FEAST_VERSION')" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "feast==$FEAST_VERSION"
fi

source "$root/scripts/lib/serve.sh"
titanic_binary
titanic_start 60
token=$(titanic_token feast predict)

(cd "$work" && timeout 120 "$venv/bin/python" "$root/scripts/feast_client_check.py" "$base" "$token")
