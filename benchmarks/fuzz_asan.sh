#!/usr/bin/env bash
# The core built with AddressSanitizer, then fuzzed: the in-process fuzz tests, CASES network cases against
# an hp running on that build, CASES/4 over TLS against an hp --tls (its TLS layer is the core's too), and
# CASES/20 requests of `load --new-connections` on that build through a proxy that mangles what an hp --tls
# says (the core's TLS client) (docs/fuzzing.md). Needs gcc and the project's .venv (with Cython).
#   benchmarks/fuzz_asan.sh [CASES] [FUZZ_SECONDS]      (defaults: 1000000 and 600)
set -euo pipefail
cd "$(dirname "$0")/.."
cases=${1:-1000000}
seconds=${2:-600}
python=$PWD/.venv/bin/python
build=$(mktemp -d /tmp/fastmock-asan.XXXXXX)
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$build"' EXIT

cp -r src setup.py pyproject.toml README.md "$build/"
(cd "$build" && CFLAGS="-fsanitize=address -fno-omit-frame-pointer -g -O1" LDFLAGS="-fsanitize=address" \
    "$python" setup.py -q build_ext --inplace >/dev/null)
# PYTHONMALLOC=malloc: Python's own allocations go through ASan too; leaks are the interpreter's, not ours
export LD_PRELOAD=$(gcc -print-file-name=libasan.so) PYTHONMALLOC=malloc PYTHONPATH=$build/src \
    ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:print_summary=1
"$python" -c 'import fastmock._core as core; print("ASan build:", core.__file__)'

FASTMOCK_FUZZ_SECONDS=$seconds "$python" -m pytest -q -p no:cacheprovider tests/fuzz

fuzz_hp() {  # NAME CASES [hp and fuzzer options...]: an hp on the ASan build, fuzzed until CASES
    local name=$1 count=$2 port
    shift 2
    port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    rm -f "$build/hp.ready"
    "$python" -m fastmock hp --port "$port" --mem-interval 0 --grpc-port 0 --ready-file "$build/hp.ready" \
        ${name:+--tls --tls-ca-dir "$build/ca"} 2>"$build/hp$name.log" &
    server=$!
    for _ in $(seq 100); do [ -e "$build/hp.ready" ] && break; sleep 0.1; done
    env -u LD_PRELOAD -u PYTHONMALLOC "$python" benchmarks/fuzz_network.py --port "$port" --pid "$server" \
        --cases "$count" ${name:+--tls} || status=$?
    kill -TERM "$server"; wait "$server" || status=$?
    if grep -q "ERROR: AddressSanitizer" "$build/hp$name.log"; then
        sed -n '/ERROR: AddressSanitizer/,/SUMMARY/p' "$build/hp$name.log"
        status=1
    fi
    echo "AddressSanitizer reports from hp${name:+ --tls}: $(grep -c 'ERROR: AddressSanitizer' "$build/hp$name.log" || true)"
}
fuzz_load() {  # CASES: load on the ASan build against a mangled hp --tls (the usual build), verifying or not
    local count=$1 port
    port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    rm -f "$build/hp.ready"
    env -u LD_PRELOAD -u PYTHONMALLOC -u PYTHONPATH "$python" -m fastmock hp --port "$port" --grpc-port 0 --tls \
        --tls-ca-dir "$build/ca" --ready-file "$build/hp.ready" 2>/dev/null &
    server=$!
    for _ in $(seq 100); do [ -e "$build/hp.ready" ] && break; sleep 0.1; done
    for verify in "" "--cacert $build/ca/ca.pem"; do
        env -u LD_PRELOAD -u PYTHONMALLOC "$python" benchmarks/fuzz_tls_client.py --upstream "$port" \
            --cases "$count" $verify -- env "LD_PRELOAD=$LD_PRELOAD" PYTHONMALLOC=malloc \
            "PYTHONPATH=$PYTHONPATH" "ASAN_OPTIONS=$ASAN_OPTIONS" "$python" -m fastmock 2>>"$build/load.log" \
            || status=$?
    done
    kill -TERM "$server"; wait "$server" || true
    if grep -q "ERROR: AddressSanitizer" "$build/load.log"; then
        sed -n '/ERROR: AddressSanitizer/,/SUMMARY/p' "$build/load.log"
        status=1
    fi
    echo "AddressSanitizer reports from load: $(grep -c 'ERROR: AddressSanitizer' "$build/load.log" || true)"
}
status=0
fuzz_hp "" "$cases"
fuzz_hp -tls $((cases / 4))
fuzz_load $((cases / 20))
exit $status
