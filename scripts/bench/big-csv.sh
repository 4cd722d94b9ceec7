#!/usr/bin/env bash
# Writes a Kaggle-format passenger CSV of N rows (default 1,000,000) to OUT, cycling the
# bundled test.csv with fresh PassengerIds, for batch-prediction benchmarks.
#
#   scripts/bench/big-csv.sh [N] [OUT]
set -euo pipefail
n=${1:-1000000}
out=${2:-/tmp/titanic-big.csv}
root=$(cd "$(dirname "$0")/../.." && pwd)
awk -v n="$n" '
  NR == 1 { print; next }
  { rows[++m] = substr($0, index($0, ",")) }
  END { for (i = 1; i <= n; i++) print (1000000 + i) rows[(i - 1) % m + 1] }
' "$root/data/titanic/test.csv" > "$out"
echo "wrote $n rows to $out ($(du -h "$out" | cut -f1))" >&2
