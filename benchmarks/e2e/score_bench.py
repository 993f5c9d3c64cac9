"""A fleet scoring its monitor as it runs (``fleet --score-listen``): how the management API answers while
the running score covers a long run's worth of incidents.

A fleet of N ports (default 10,000) runs a chaos schedule that kills 50 ports for 5 ms every 10 ms, which
piles up incidents fast (about 5,000 a second, up to --incidents); 2,000 alerts arrive on the webhook; a
dashboard is open (its /stream asks for the score every 2 s). Then for --seconds it times GET /stats every
50 ms (p50, p99, max) and one GET /score.

    python benchmarks/e2e/score_bench.py [--ports N] [--incidents K] [--seconds S]

FASTMOCK=path/to/fastmock runs another build (a before/after pair).
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time

import httpx

BASE_PORT, MGMT_PORT, LISTEN_PORT = 20000, 19999, 19995
SCHEDULE = "seed: 1\nrules:\n  - {every: 10ms, target: {count: 50}, action: kill, for: 5ms}\n"


def follow(url: str, stop: threading.Event) -> None:
    try:
        with httpx.stream("GET", url, timeout=None) as response:
            for _ in response.iter_raw():
                if stop.is_set():
                    return
    except httpx.HTTPError:
        pass  # the fleet went away at the end of the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--incidents", type=int, default=100000)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    fastmock = os.environ.get("FASTMOCK", "fastmock")
    ready = tempfile.mktemp(suffix=".ready")
    fleet = subprocess.Popen([fastmock, "fleet", str(args.ports), "--base-port", str(BASE_PORT), "--mgmt-port",
                              str(MGMT_PORT), "--score-listen", f"127.0.0.1:{LISTEN_PORT}", "--ready-file", ready],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stop = threading.Event()
    try:
        while not os.path.exists(ready):
            time.sleep(0.05)
        api = httpx.Client(base_url=f"http://127.0.0.1:{MGMT_PORT}", timeout=60)
        alerts = [{"status": "firing", "labels": {"instance": f"127.0.0.1:{BASE_PORT + n % args.ports}"},
                   "startsAt": "2026-01-01T00:00:00Z"} for n in range(2000)]
        httpx.post(f"http://127.0.0.1:{LISTEN_PORT}/", json={"alerts": alerts}).raise_for_status()
        api.post("/chaos", content=SCHEDULE).raise_for_status()
        while sum(len(event["ports"]) for event in map(json.loads, api.get("/events", params={"limit": 10 ** 7})
                                                       .text.splitlines()) if event["action"] == "kill") \
                < args.incidents:
            time.sleep(1)
        api.delete("/chaos").raise_for_status()
        threading.Thread(target=follow, args=(f"http://127.0.0.1:{MGMT_PORT}/stream", stop), daemon=True).start()
        times = []
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            started = time.perf_counter()
            api.get("/stats").raise_for_status()
            times.append(time.perf_counter() - started)
            time.sleep(0.05)
        started = time.perf_counter()
        report = api.get("/score").json()
        score_s = time.perf_counter() - started
        times.sort()
        print(f"incidents {report['incidents']:,}  /stats p50 {statistics.median(times) * 1000:.1f} ms  "
              f"p99 {times[int(len(times) * 0.99)] * 1000:.1f} ms  max {times[-1] * 1000:.1f} ms  "
              f"({len(times)} calls)  /score {score_s * 1000:.0f} ms")
    finally:
        stop.set()
        fleet.terminate()
        fleet.wait(30)
        if os.path.exists(ready):
            os.unlink(ready)


if __name__ == "__main__":
    main()
