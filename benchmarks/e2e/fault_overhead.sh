#!/usr/bin/env bash
# The fault engine's cost on the hottest path: /health pipelined x16 with and without --fault '/=ok'
# (every request draws an outcome). Server on CPU 0, wrk on CPU 1, RUNS interleaved runs, medians.
# Usage: benchmarks/e2e/fault_overhead.sh [RUNS]    (needs wrk)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-5}
fastmock=${FASTMOCK:-$root/.venv/bin/fastmock}
port=${PORT:-18181}
declare -A results
for i in $(seq "$runs"); do
    for variant in plain fault; do
        args=(hp --port "$port" --mem-interval 0)
        [ "$variant" = fault ] && args+=(--fault '/=ok')
        taskset -c 0 "$fastmock" "${args[@]}" 2>/dev/null &
        pid=$!
        for _ in $(seq 50); do curl -sf "localhost:$port/health" >/dev/null && break; sleep 0.1; done
        rps=$(taskset -c 1 wrk -t1 -c50 -d5s -s "$root/../shared/peerbench/pipeline.lua" "http://127.0.0.1:$port/health" \
              -- 16 2>/dev/null | awk '/Requests\/sec/ {print $2}')
        kill "$pid"; wait "$pid" 2>/dev/null || true
        results[$variant]+="$rps "
        echo "run $i $variant: $rps req/s"
    done
done
python3 - "${results[plain]}" "${results[fault]}" <<'PY'
import statistics, sys
plain, fault = (statistics.median(map(float, arg.split())) for arg in sys.argv[1:])
print(f"median plain {plain:,.0f} req/s, with --fault '/=ok' {fault:,.0f} req/s: {100 * (1 - fault / plain):.1f} % fewer")
PY
