"""Fleet benchmarks: start-up time and memory, /stats latency, kill-to-refused latency, a /health sweep.

    python benchmarks/e2e/fleet_bench.py [N ...]            (default: 1000 10000 50000)
    python benchmarks/e2e/fleet_bench.py --netns [N ...]    (as root: in a private network namespace, with
                                                             --reserve-ports, so 50,000 ports don't meet
                                                             client sockets in the ephemeral range)
"""

import asyncio
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
import uvloop

BASE_PORT = 10000
MGMT_PORT = 9999
SWEEP_CONCURRENCY = 256


def _tree_memory(pid: int) -> tuple[float, float]:
    """(RSS, PSS) in MiB of ``pid`` and its children."""
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        pids = [pid] + [int(child) for child in children.read().split()]
    rss = pss = 0
    for each in pids:
        with open(f"/proc/{each}/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
    return rss / 1024, pss / 1024


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def _sweep(ports: range) -> tuple[int, float]:
    limit = asyncio.Semaphore(SWEEP_CONCURRENCY)
    ok = 0

    async def fetch(port: int) -> None:
        nonlocal ok
        async with limit:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await reader.read()
            writer.close()
            ok += data.startswith(b"HTTP/1.1 200 ")

    started = time.perf_counter()
    await asyncio.gather(*(fetch(port) for port in ports))
    return ok, time.perf_counter() - started


def bench(count: int, extra: list[str]) -> None:
    log = tempfile.TemporaryFile()
    started = time.monotonic()
    fleet = subprocess.Popen([sys.executable, "-m", "fastmock", "fleet", str(count), "--base-port", str(BASE_PORT),
                              "--mgmt-port", str(MGMT_PORT), *extra], stderr=log)
    try:
        while True:
            log.seek(0)
            text = log.read()
            if b"fleet ready" in text:
                break
            if fleet.poll() is not None:
                raise SystemExit(text.decode())
            time.sleep(0.01)
        wall_s = time.monotonic() - started
        os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})  # the client on one core, the fleet unpinned
        own_s = float(re.search(rb"accepting in ([0-9.]+)s", text).group(1))
        rss, pss = _tree_memory(fleet.pid)
        api = httpx.Client(base_url=f"http://127.0.0.1:{MGMT_PORT}")
        latencies = []
        for _ in range(300):
            t0 = time.perf_counter()
            api.get("/stats").raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
        kill_ms = []
        for port in random.Random(1).sample(range(BASE_PORT, BASE_PORT + count), 50):
            t0 = time.perf_counter()
            api.post(f"/kill?port={port}").raise_for_status()
            while not _refused(port):
                pass
            kill_ms.append((time.perf_counter() - t0) * 1000)
        api.post("/revive?all=1").raise_for_status()
        ok, sweep_s = uvloop.run(_sweep(range(BASE_PORT, BASE_PORT + count)))
        print(f"N={count}: ready {own_s:.2f}s in-process, {wall_s:.2f}s from exec; memory RSS {rss:.0f} MiB "
              f"(PSS {pss:.0f}); /stats p50 {_percentile(latencies, 0.5):.2f} ms p99 "
              f"{_percentile(latencies, 0.99):.2f} ms; kill-to-refused p50 {statistics.median(kill_ms):.2f} ms "
              f"p99 {_percentile(kill_ms, 0.99):.2f} ms; /health sweep {ok}/{count} ok, "
              f"{count / sweep_s:,.0f} req/s (client-bound, {SWEEP_CONCURRENCY} in flight)", flush=True)
    finally:
        os.sched_setaffinity(0, range(os.cpu_count()))
        fleet.terminate()
        fleet.wait(30)


def main(args: list[str]) -> None:
    if args and args[0] == "--netns":
        os.execvp("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                              sys.executable, __file__, "--in-netns", *args[1:]])
    extra = []
    if args and args[0] == "--in-netns":
        args, extra = args[1:], ["--reserve-ports"]
    for count in map(int, args or ["1000", "10000", "50000"]):
        bench(count, extra)


if __name__ == "__main__":
    main(sys.argv[1:])
