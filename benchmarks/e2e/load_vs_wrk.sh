#!/usr/bin/env bash
# fastmock load against wrk, both driving nginx /health (nginx on CPU 0, the load generator on CPU 1):
# closed loop at -c1, -c10 and -c50 (req/s, p50/p99 and mean latency side by side), the same against
# fastmock hp /delay/1 and /delay/5 (a server that sets the latency), then the open loop at rising rates
# (the highest rate it holds within 1 % is its open-loop capacity on one core).
#
# "Little" is the mean latency that C busy connections imply at the measured rate (C / req/s). fastmock's
# mean equals it: every connection always has a request outstanding. wrk's mean falls short of it once the
# server is saturated (about half at -c50): a wrk connection rests for a turn of wrk's event loop after each
# answer, so the server sees fewer requests at once and wrk's percentiles come out lower. wrk runs with
# peerbench's pipeline.lua at depth 1 (the same static request), which prints wrk's percentiles as
# measured; wrk's own --latency table adds coordinated-omission corrections.
# Usage: benchmarks/e2e/load_vs_wrk.sh    (needs wrk and nginx; uses the peerbench nginx config)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peerbench=$root/../shared/peerbench
fastmock=${FASTMOCK:-$root/.venv/bin/fastmock}
mkdir -p /tmp/peerbench/nginx
taskset -c 0 nginx -p /tmp/peerbench/nginx/ -e /tmp/peerbench/nginx/error.log \
    -c "$peerbench/servers/nginx.conf" -g 'daemon off;' &
nginx=$!
taskset -c 0 "$fastmock" hp --host 127.0.0.1 --port 18096 --workers 1 --quiet --grpc-port 0 2>/dev/null &
hp=$!
trap 'kill $nginx $hp 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf localhost:18081/health >/dev/null && curl -sf localhost:18096/health >/dev/null && break
    sleep 0.1; done

compare() {  # compare URL CONNECTIONS
    local url=$1 c=$2 raw ours
    raw=$(taskset -c 1 wrk -t1 -c"$c" -d5s -s "$peerbench/pipeline.lua" "$url" -- 1 "$c" | grep -E 'Requests/sec|PEERBENCH_RAW')
    awk -v label="$(printf '%-22s wrk:     ' "${url#http://127.0.0.1:} -c$c")" '
        /Requests/ { rps = $2 }
        /PEERBENCH_RAW/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } }
        END { printf "%s %9.0f req/s  p50 %4d us  p99 %4d us  mean %6.1f us  Little %6.1f us\n", label, rps,
               v["p50_us"], v["p99_us"], v["mean_us"], v["little_mean_us"] }' <<<"$raw"
    ours=$(taskset -c 1 "$fastmock" load "$url" -d 5 -c "$c")
    awk -v label="$(printf '%-22s fastmock:' "${url#http://127.0.0.1:} -c$c")" -v c="$c" '
        /requests/ { gsub(",", "", $6); rps = $6 + 0 }
        /latency/ { for (i = 2; i < NF; i += 2) { v[$i] = $(i + 1) + 0 } }
        END { printf "%s %9.0f req/s  p50 %4d us  p99 %4d us  mean %6.1f us  Little %6.1f us\n", label, rps,
                     v["p50"] * 1000, v["p99"] * 1000, v["mean"] * 1000, c / rps * 1e6 }' <<<"$ours"
}

for c in 1 10 50; do compare http://127.0.0.1:18081/health "$c"; done
for path in /delay/1 /delay/5; do compare "http://127.0.0.1:18096$path" 50; done
for rate in 10000 30000 50000 60000 70000; do
    echo "--rate $rate: $(taskset -c 1 "$fastmock" load http://127.0.0.1:18081/health -d 3 --rate "$rate" -c 256 |
        awk '/requests/ {print $2, "in", $4, "=", $6}')"
done
