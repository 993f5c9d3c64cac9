#!/usr/bin/env bash
# fastmock load against wrk, both driving nginx /health (nginx on CPU 0, the load generator on CPU 1):
# closed loop at -c1, -c10 and -c50 (req/s and p50/p99 side by side), then the open loop at rising rates
# (the highest rate it holds within 1 % is its open-loop capacity on one core).
# Usage: benchmarks/e2e/load_vs_wrk.sh    (needs wrk and nginx; uses the peerbench nginx config)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fastmock=${FASTMOCK:-$root/.venv/bin/fastmock}
mkdir -p /tmp/peerbench/nginx
taskset -c 0 nginx -p /tmp/peerbench/nginx/ -e /tmp/peerbench/nginx/error.log \
    -c "$root/../shared/peerbench/servers/nginx.conf" -g 'daemon off;' &
nginx=$!
trap 'kill $nginx 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 50); do curl -sf localhost:18081/health >/dev/null && break; sleep 0.1; done
url=http://127.0.0.1:18081/health
for c in 1 10 50; do
    wrk_out=$(taskset -c 1 wrk -t1 -c"$c" -d5s --latency "$url")
    echo "-c$c wrk:      $(awk '/Requests\/sec/ {print $2}' <<<"$wrk_out") req/s," \
         "p50 $(awk '$1 == "50%" {print $2}' <<<"$wrk_out"), p99 $(awk '$1 == "99%" {print $2}' <<<"$wrk_out")"
    ours=$(taskset -c 1 "$fastmock" load "$url" -d 5 -c "$c")
    echo "-c$c fastmock: $(awk '/requests/ {print $6}' <<<"$ours"), $(awk '/latency/ {print $4, $5, $8, $9}' <<<"$ours")"
done
# wrk sends a connection's next request one loop iteration after reading the answer, so at -c50 it keeps
# about 25 requests in flight (Little's law: rps x mean latency); fastmock keeps 50. At -c25 fastmock
# matches wrk -c50's rate and p50.
ours=$(taskset -c 1 "$fastmock" load "$url" -d 5 -c 25)
echo "-c25 fastmock: $(awk '/requests/ {print $6}' <<<"$ours"), $(awk '/latency/ {print $4, $5, $8, $9}' <<<"$ours")"
for rate in 10000 30000 50000 60000 70000; do
    echo "--rate $rate: $(taskset -c 1 "$fastmock" load "$url" -d 3 --rate "$rate" -c 256 | awk '/requests/ {print $2, "in", $4, "=", $6}')"
done
