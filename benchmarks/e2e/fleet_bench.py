"""Fleet benchmarks: start-up time and memory, /stats latency, kill-to-refused latency, a /health sweep.

    python benchmarks/e2e/fleet_bench.py [N ...]            (default: 1000 10000 50000)
    python benchmarks/e2e/fleet_bench.py --netns [N ...]    (as root: in a private network namespace, with
                                                             --reserve-ports, so 50,000 ports don't meet
                                                             client sockets in the ephemeral range)
    python benchmarks/e2e/fleet_bench.py --netns --hosts 127.0.0.1-127.0.0.20 1000000
                                                            (N spread over the addresses: 50,000 each)
    python benchmarks/e2e/fleet_bench.py [--netns] --tls 50000   (fleet --tls: the sweep is https)

Memory: RSS and PSS of the fleet's processes (PSS counts a page shared by forked workers once), and the
kernel's side beside it: the Slab and SUnreclaim growth (/proc/meminfo) and TCP sockets (/proc/net/sockstat).
"""

import asyncio
import os
import random
import re
import socket
import ssl
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


def _kernel_memory() -> dict[str, float]:
    """MiB of kernel slab (all, unreclaimable) and the TCP socket count and buffer pages."""
    with open("/proc/meminfo") as meminfo:
        fields = {line.split(":")[0]: int(line.split()[1]) for line in meminfo}
    with open("/proc/net/sockstat") as sockstat:
        tcp = next(line.split() for line in sockstat if line.startswith("TCP:"))
    return {"slab": fields["Slab"] / 1024, "sunreclaim": fields["SUnreclaim"] / 1024,
            "tcp_sockets": int(tcp[tcp.index("alloc") + 1]), "tcp_mem_mib": int(tcp[tcp.index("mem") + 1]) * 4 / 1024}


def _refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


async def _sweep(endpoints: list[tuple[str, int]], tls: ssl.SSLContext | None) -> tuple[int, float, dict]:
    """GET /health on every endpoint, SWEEP_CONCURRENCY at a time: (answered 200, seconds, the endpoints
    with another outcome by kind, e.g. an exception's name or the status line). SWEEP_CONCURRENCY workers
    share one iterator: a task per endpoint (a million of them) kept the loop so busy that the first
    connections sat idle past the fleet's 10 s timeouts and were closed without an answer."""
    ok, failures = 0, {}
    pending = iter(endpoints)

    async def fetch_each() -> None:
        nonlocal ok
        for host, port in pending:
            try:
                reader, writer = await asyncio.open_connection(host, port, ssl=tls,
                                                               server_hostname="localhost" if tls else None)
                writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = await reader.read()
                writer.close()
            except (OSError, ssl.SSLError) as exc:
                data = type(exc).__name__.encode()
            if data.startswith(b"HTTP/1.1 200 "):
                ok += 1
            else:
                kind = data.split(b"\r\n")[0].decode("latin-1") or "closed without an answer"
                failures.setdefault(kind, []).append(f"{host}:{port}")

    started = time.perf_counter()
    await asyncio.gather(*(fetch_each() for _ in range(SWEEP_CONCURRENCY)))
    return ok, time.perf_counter() - started, failures


def bench(count: int, extra: list[str], hosts: tuple[str, ...] = ("127.0.0.1",), tls: bool = False) -> None:
    per_host = -(-count // len(hosts))
    endpoints = [(hosts[slot // per_host], BASE_PORT + slot % per_host) for slot in range(count)]
    if len(hosts) > 1:
        extra = [*extra, "--hosts", ",".join(hosts), "--max-port", str(BASE_PORT + per_host - 1)]
    ca_dir = tempfile.TemporaryDirectory() if tls else None
    if tls:
        extra = [*extra, "--tls", "--tls-ca-dir", ca_dir.name]
    log = tempfile.TemporaryFile()
    kernel_before = _kernel_memory()
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
        kernel = _kernel_memory()
        api = httpx.Client(base_url=f"http://127.0.0.1:{MGMT_PORT}")
        latencies = []
        for _ in range(300):
            t0 = time.perf_counter()
            api.get("/stats").raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
        kill_ms = []
        for host, port in random.Random(1).sample(endpoints, 50):
            t0 = time.perf_counter()
            api.post("/kill", params={"port": port, "host": host}).raise_for_status()
            while not _refused(host, port):
                pass
            kill_ms.append((time.perf_counter() - t0) * 1000)
        api.post("/revive?all=1").raise_for_status()
        client = ssl.create_default_context(cafile=os.path.join(ca_dir.name, "ca.pem")) if tls else None
        ok, sweep_s, failures = uvloop.run(_sweep(endpoints, client))
        workers = api.get("/stats").json()["workers"]
        print(f"N={count}{' TLS' if tls else ''} on {len(hosts)} address(es), {workers} workers: "
              f"ready {own_s:.2f}s in-process, "
              f"{wall_s:.2f}s from exec; memory RSS {rss:.0f} MiB (PSS {pss:.0f}); kernel slab "
              f"+{kernel['slab'] - kernel_before['slab']:.0f} MiB (unreclaimable "
              f"+{kernel['sunreclaim'] - kernel_before['sunreclaim']:.0f}), TCP sockets "
              f"+{kernel['tcp_sockets'] - kernel_before['tcp_sockets']}, TCP buffers {kernel['tcp_mem_mib']:.0f} MiB; "
              f"/stats p50 {_percentile(latencies, 0.5):.2f} ms p99 "
              f"{_percentile(latencies, 0.99):.2f} ms; kill-to-refused p50 {statistics.median(kill_ms):.2f} ms "
              f"p99 {_percentile(kill_ms, 0.99):.2f} ms; /health sweep {ok}/{count} ok, "
              f"{count / sweep_s:,.0f} req/s (client-bound, {SWEEP_CONCURRENCY} in flight)"
              + "".join(f"; {kind}: {len(where)} ({', '.join(where[:3])}, ...)" for kind, where in failures.items()),
              flush=True)
    finally:
        os.sched_setaffinity(0, range(os.cpu_count()))
        fleet.terminate()
        fleet.wait(30)
        log.seek(0)
        restarts = [line for line in log.read().decode("utf-8", "replace").splitlines() if "exited with" in line]
        if restarts:  # a worker that died took its connections with it
            print(f"  {len(restarts)} worker exit(s) during the run: {restarts[:3]}", flush=True)


def main(args: list[str]) -> None:
    if args and args[0] == "--netns":
        os.execvp("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                              sys.executable, __file__, "--in-netns", *args[1:]])
    extra, hosts = [], ("127.0.0.1",)
    if args and args[0] == "--in-netns":
        args, extra = args[1:], ["--reserve-ports"]
    if args and args[0] == "--hosts":
        from fastmock.fleet.ports import parse_hosts

        hosts, args = parse_hosts(args[1]), args[2:]
    tls = bool(args) and args[0] == "--tls"
    for count in map(int, args[tls:] or ["1000", "10000", "50000"]):
        bench(count, extra, hosts, tls)


if __name__ == "__main__":
    main(sys.argv[1:])
