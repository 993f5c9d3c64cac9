#!/usr/bin/env bash
# fastmock load's TLS client against wrk's, both driving one hp --tls (hp on CPU 0, the client on CPU 1):
# keep-alive /health at -c50, and a new connection (a resumed handshake) per request at -c50 (wrk with
# Connection: close, load --new-connections). RUNS alternations; each line is one run's req/s.
# BEFORE=path/to/another/fastmock adds that build's load to each alternation (a before/after pair).
# Usage: benchmarks/e2e/load_tls_vs_wrk.sh [RUNS]    (needs wrk)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
fastmock=${FASTMOCK:-$root/.venv/bin/fastmock}
runs=${1:-3}
dir=$(mktemp -d /tmp/fastmock-load-tls.XXXXXX)
taskset -c 0 "$fastmock" hp --host 127.0.0.1 --port 18443 --tls --tls-ca-dir "$dir/ca" --workers 1 --quiet \
    --grpc-port 0 --ready-file "$dir/ready" 2>/dev/null &
hp=$!
trap 'kill $hp 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 100); do [ -e "$dir/ready" ] && break; sleep 0.1; done
url=https://localhost:18443/health

load_rps() {  # BUILD ARGS...: load's req/s
    local build=$1
    shift
    taskset -c 1 "$build" load "$url" -d 4 -c 50 --cacert "$dir/ca/ca.pem" "$@" | awk '/requests/ {gsub(",", "", $6); print $6 + 0}'
}

for run in $(seq "$runs"); do
    for mode in keepalive new; do
        if [ $mode = keepalive ]; then extra=(); header=(); else extra=(--new-connections); header=(-H 'Connection: close'); fi
        wrk=$(taskset -c 1 wrk -t1 -c50 -d4s "${header[@]}" "$url" | awk '/Requests\/sec/ {print $2}')
        ours=$(load_rps "$fastmock" "${extra[@]}")
        line="run $run $mode: wrk $wrk  load $ours"
        if [ -n "${BEFORE:-}" ]; then line="$line  before $(load_rps "$BEFORE" "${extra[@]}")"; fi
        echo "$line"
    done
done
