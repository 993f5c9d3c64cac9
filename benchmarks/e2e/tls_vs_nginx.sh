#!/usr/bin/env bash
# hp --tls against nginx's ssl on the same certificate (ECDSA P-256 from `fastmock tls issue valid`): each
# server pinned to CPU 0, the client on CPU 1, PAIRS alternating runs, the median of each and the ratio.
#   keepalive  wrk -c50 /health
#   pipe16     wrk -c50 -s pipeline.lua -- 16 50 /health     (16 requests per write; peerbench's script)
#   bin1G      curl /bin/1G (nginx: a 1 GiB sparse file)       bytes/s
#   close      wrk -c20 -H 'Connection: close': a handshake per request, resumed (wrk reuses its session)
#   handshake  openssl s_time -new: a full handshake per connection, one client process (it may be the bound)
# nginx gets TLS 1.3 as well (Debian's 1.22 offers only up to 1.2 by default): a TLS 1.2 session-id
# resumption skips the key exchange that a TLS 1.3 resumption does, which would compare two protocols.
#   benchmarks/e2e/tls_vs_nginx.sh [PAIRS]        (needs nginx with the ssl module, wrk, curl and openssl)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fastmock=${FASTMOCK:-$root/.venv/bin/fastmock}
pipeline=${PIPELINE_LUA:-$root/../shared/peerbench/pipeline.lua}
work=$(mktemp -d /tmp/fastmock-tls-bench.XXXXXX)
trap 'kill ${nginx:-} ${hp:-} 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$fastmock" tls issue valid --out-dir "$work" --ca-dir "$work/ca" >/dev/null
mkdir "$work/bin" && truncate -s 1G "$work/bin/1G" && chmod -R a+rX "$work"  # nginx workers are not root
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path $work/body;
    sendfile off;  # TLS: the bytes go through OpenSSL either way
    server {
        listen 127.0.0.1:18443 ssl;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_session_cache shared:SSL:10m;
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /health { default_type application/json; return 200 '{"status":"ok"}'; }
        location /bin/ { root $work; default_type application/octet-stream; }
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
wrk_rate() { taskset -c 1 wrk -t1 -c"${CONNECTIONS:-50}" -d3s "$@" | awk '/Requests\/sec/ {print $2}'; }
for i in $(seq "${1:-3}"); do
    for port in 18443 18444; do
        url="https://127.0.0.1:$port"
        echo "keepalive $port $(wrk_rate "$url/health")"
        echo "pipe16 $port $(wrk_rate -s "$pipeline" "$url/health" -- 16 50)"
        echo "close $port $(CONNECTIONS=20 wrk_rate -H 'Connection: close' "$url/health")"
        echo "bin1G $port $(taskset -c 1 curl -sk -o /dev/null -w '%{speed_download}' "$url/bin/1G")"
        echo "handshake $port $(taskset -c 1 openssl s_time -connect "127.0.0.1:$port" -new -time 3 2>/dev/null \
            | awk '/connections in .* real seconds/ {print $1 / $4}')"
    done
done | python3 -c '
import statistics, sys
runs = {}
for line in sys.stdin:
    scenario, port, rate = line.split()
    runs.setdefault(scenario, {}).setdefault(port, []).append(float(rate))
print(f"medians of {sys.argv[1]} pairs (nginx ssl vs hp --tls, one core each):")
for scenario, ports in runs.items():
    nginx, hp = (statistics.median(ports[port]) for port in ("18443", "18444"))
    unit = "MB/s" if scenario == "bin1G" else "/s"
    scale = 1e6 if scenario == "bin1G" else 1
    print(f"  {scenario:<10} nginx {nginx / scale:>10,.0f}{unit}  hp {hp / scale:>10,.0f}{unit}  {hp / nginx:.2f}x")
' "${1:-3}"
