#!/usr/bin/env bash
# fastmock proxy against nginx proxy_pass (upstream keep-alive), both in front of one fastmock hp:
# the proxy on CPU 0; the upstream and wrk share CPU 1. /health plain (-c50, keep-alive), RUNS interleaved
# runs, medians; then the p50 latency added over going to the upstream directly (wrk -c1).
# Usage: benchmarks/e2e/proxy_vs_nginx.sh [RUNS]    (needs wrk and nginx)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
runs=${1:-3}
fastmock=${FASTMOCK:-$root/.venv/bin/fastmock}
mkdir -p /tmp/fastmock-nginx-proxy
taskset -c 1 "$fastmock" hp --port 18380 --mem-interval 0 --request-log-size 0 2>/dev/null &
upstream=$!
taskset -c 0 "$fastmock" proxy --upstream http://127.0.0.1:18380 --port 18381 2>/dev/null &
proxy=$!
taskset -c 0 nginx -p /tmp/fastmock-nginx-proxy/ -c "$root/benchmarks/e2e/nginx_proxy.conf" -g 'daemon off;' &
nginx=$!
trap 'kill $upstream $proxy $nginx 2>/dev/null; wait 2>/dev/null' EXIT
for port in 18380 18381 18382; do
    for _ in $(seq 50); do curl -sf "localhost:$port/health" >/dev/null && break; sleep 0.1; done
done
rps() { taskset -c 1 wrk -t1 -c"$2" -d5s "http://127.0.0.1:$1/health" | awk '/Requests\/sec/ {print $2}'; }
p50() { taskset -c 1 wrk -t1 -c1 -d4s --latency "http://127.0.0.1:$1/health" | awk '$1 == "50%" {print $2}'; }
declare -A results
for i in $(seq "$runs"); do
    for name in fastmock:18381 nginx:18382; do
        r=$(rps "${name#*:}" 50)
        results[${name%%:*}]+="$r "
        echo "run $i ${name%%:*}: $r req/s"
    done
done
echo "p50 latency at -c1: direct $(p50 18380), fastmock proxy $(p50 18381), nginx $(p50 18382)"
python3 - "${results[fastmock]}" "${results[nginx]}" <<'PY'
import statistics, sys
fastmock, nginx = (statistics.median(map(float, arg.split())) for arg in sys.argv[1:])
print(f"median: fastmock proxy {fastmock:,.0f} req/s, nginx proxy_pass {nginx:,.0f} req/s, ratio {fastmock / nginx:.2f}x")
PY
