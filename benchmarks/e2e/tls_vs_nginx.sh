#!/usr/bin/env bash
# hp --tls against nginx's ssl, the same certificate (ECDSA P-256 from `fastmock tls issue valid`), keep-alive
# /health: each server pinned to CPU 0, wrk on CPU 1, PAIRS alternating runs, the median of each and the ratio.
#   benchmarks/e2e/tls_vs_nginx.sh [PAIRS]        (needs nginx with the ssl module, and wrk)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fastmock=${FASTMOCK:-$root/.venv/bin/fastmock}
work=$(mktemp -d /tmp/fastmock-tls-bench.XXXXXX)
trap 'kill ${nginx:-} ${hp:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$fastmock" tls issue valid --out-dir "$work" --ca-dir "$work/ca" >/dev/null
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $work/body;
    server {
        listen 127.0.0.1:18443 ssl;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        location = /health { default_type application/json; return 200 '{"status":"ok"}'; }
    }
}
CONF
taskset -c 0 nginx -p "$work" -c "$work/nginx.conf" -e "$work/error.log" -g 'daemon off;' &
nginx=$!
taskset -c 0 "$fastmock" hp --tls --certfile "$work/cert.pem" --keyfile "$work/key.pem" --port 18444 --quiet \
    --mem-interval 0 --grpc-port 0 2>/dev/null &
hp=$!
for port in 18443 18444; do
    for _ in $(seq 50); do curl -sfk "https://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
done
for i in $(seq "${1:-5}"); do
    for port in 18443 18444; do
        echo "$port $(taskset -c 1 wrk -t1 -c50 -d3s "https://127.0.0.1:$port/health" | awk '/Requests\/sec/ {print $2}')"
    done
done | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    port, rate = line.split()
    runs.setdefault(port, []).append(float(rate))
nginx, hp = (statistics.median(runs[port]) for port in ("18443", "18444"))
print(f"nginx ssl {nginx:,.0f} req/s, hp --tls {hp:,.0f} req/s (medians of {sys.argv[1]} pairs): {hp / nginx:.2f}x")' "${1:-5}"
