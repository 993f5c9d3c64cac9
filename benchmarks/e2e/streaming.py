"""`/bin/1G` download and 1 GiB `/upload` throughput of `fastmock hp`, one worker pinned to CPU 0.

The download is fetched by curl; the upload is sent by this script from one 4 MiB buffer with plain
`send()` calls, because curl's upload path reads its input in 64 KiB pieces and was measured at 85-90 % of a
core (so it, not the server, set the pace at ~2.5 GB/s). Both clients run on CPU 1.

Usage: python benchmarks/e2e/streaming.py [--runs 5] [--buffer-size 256 --buffer-size 1024 ...]
"""
import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time

GIB = 1 << 30
SERVER_CPU, CLIENT_CPU = 0, 1


def start_server(port, buffer_kb):
    server = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CPU), sys.executable, "-m", "fastmock", "hp", "--port", str(port),
         "--workers", "1", "--quiet", "--buffer-size", str(buffer_kb), "--grpc-port", "0"],
        stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        if "listening on" in line:
            return server
    raise SystemExit(f"fastmock hp did not start (exit {server.wait()})")


def download(port):
    out = subprocess.run(
        ["taskset", "-c", str(CLIENT_CPU), "curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download} %{speed_download}",
         f"http://127.0.0.1:{port}/bin/1G"], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["200", str(GIB)], out
    return float(out[2]) / 1e9


def upload(port):
    piece = memoryview(bytes(4 << 20))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % GIB)
        left = GIB
        while left:
            left -= sock.send(piece[:min(left, len(piece))])
        answer = b""
        while b"}" not in answer:
            answer += sock.recv(65536)
        elapsed = time.perf_counter() - started
    assert answer.startswith(b"HTTP/1.1 200") and re.search(rb'"bytes_received":\s*%d' % GIB, answer), answer
    return GIB / elapsed / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=18095)
    parser.add_argument("--buffer-size", type=int, action="append", help="KB; repeat to compare (default 1024)")
    args = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CPU})
    for buffer_kb in args.buffer_size or [1024]:
        server = start_server(args.port, buffer_kb)
        try:
            downloads = [download(args.port) for _ in range(args.runs)]
            uploads = [upload(args.port) for _ in range(args.runs)]
        finally:
            server.terminate()
            server.wait()
        for name, runs in (("/bin/1G", downloads), ("/upload 1G", uploads)):
            print(f"--buffer-size {buffer_kb:4d}  {name:10s} median {statistics.median(runs):.2f} GB/s"
                  f"  ({' '.join(f'{r:.2f}' for r in runs)})")


if __name__ == "__main__":
    main()
