#!/usr/bin/env bash
# fastmock hp against nginx and a pure-Python uvloop protocol, through the shared peerbench harness:
# one server worker pinned to CPU 0, wrk pinned to CPU 1, /health plain (-c50) and pipelined x16.
# Usage: benchmarks/e2e/side_by_side.sh [RUNS]   (default 3; runs interleave the peers; medians at the end)
# Needs: wrk and nginx-light (Debian), and the peerbench venv (see ../shared/peerbench/README.md).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peerbench=${PEERBENCH:-$root/../shared/peerbench}
runs=${1:-3}
export FASTMOCK=${FASTMOCK:-$root/.venv/bin/fastmock}
out=${OUT:-$(mktemp -d /tmp/fastmock-bench.XXXXXX)}
echo "fastmock: $FASTMOCK ($("$FASTMOCK" --version)); results in $out"
for i in $(seq "$runs"); do
    "$peerbench/run.sh" -B -o "$out/run$i" nginx uvproto fastmock
done
"$peerbench/summarize.py" "$out"/run*/
