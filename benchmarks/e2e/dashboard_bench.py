"""The fleet's management process with the dashboard open: CPU and SSE bandwidth under a chaos schedule.

A fleet of N ports (default 50,000) runs a schedule that kills 0.5 % of the ports every second for one
second (so ~1 % of the ports change state each second: half killed, half revived). For each number of open
dashboards (SSE clients of /stream; default 0, 1 and 5) it measures over the window the supervisor's CPU
(% of one core, from /proc) and the bytes each dashboard received.

    python benchmarks/e2e/dashboard_bench.py [--ports N] [--seconds S] [--netns]

--netns (root): run in a private network namespace with --reserve-ports, so 50,000 listening ports do
not meet client sockets in the ephemeral range.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import httpx

BASE_PORT = 10000
MGMT_PORT = 9999
SCHEDULE = "seed: 1\nrules:\n  - every: 1s\n    target: {percent: 0.5}\n    action: kill\n    for: 1s\n"


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def follow(url: str, received: list, index: int, stop: threading.Event) -> None:
    try:
        with httpx.stream("GET", url, timeout=None) as response:
            for chunk in response.iter_raw():
                received[index] += len(chunk)
                if stop.is_set():
                    return
    except httpx.HTTPError:
        pass  # the fleet went away at the end of the run


def measure(url: str, pid: int, dashboards: int, seconds: float) -> tuple[float, float]:
    """(supervisor CPU %, KB/s per dashboard) over ``seconds`` with ``dashboards`` SSE clients."""
    received = [0] * dashboards
    stop = threading.Event()
    threads = [threading.Thread(target=follow, args=(url + "/stream", received, i, stop), daemon=True)
               for i in range(dashboards)]
    for thread in threads:
        thread.start()
    time.sleep(1.5)  # past the snapshots
    start_bytes = list(received)
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    cpu = (cpu_seconds(pid) - start_cpu) / (time.monotonic() - start) * 100
    per_dashboard = [(now - then) / seconds / 1024 for now, then in zip(received, start_bytes)]
    stop.set()
    return cpu, (sum(per_dashboard) / dashboards if dashboards else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=50000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--dashboards", type=int, nargs="*", default=[0, 1, 5])
    parser.add_argument("--netns", action="store_true")
    parser.add_argument("--in-netns", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.netns:
        os.execvp("unshare", ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable,
                              __file__, "--in-netns", "--ports", str(args.ports), "--seconds", str(args.seconds),
                              "--dashboards", *map(str, args.dashboards)])
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as schedule:
        schedule.write(SCHEDULE)
    command = [sys.executable, "-m", "fastmock", "fleet", str(args.ports), "--base-port", str(BASE_PORT),
               "--mgmt-port", str(MGMT_PORT), "--chaos", schedule.name,
               *(["--reserve-ports"] if args.in_netns else [])]
    fleet = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        for line in fleet.stderr:
            if match := re.search(r"fleet ready: (\d+) of", line):
                print(f"fleet ready: {match.group(1)} of {args.ports} ports", flush=True)
                break
        threading.Thread(target=fleet.stderr.read, daemon=True).start()  # keep its pipe drained
        url = f"http://127.0.0.1:{MGMT_PORT}"
        for dashboards in args.dashboards:
            cpu, rate = measure(url, fleet.pid, dashboards, args.seconds)
            print(f"{dashboards} dashboard(s): management CPU {cpu:.1f} % of a core, "
                  f"SSE {rate:.1f} KB/s per dashboard", flush=True)
        events = httpx.get(f"{url}/events?since=0").text.count("\n")
        print(f"chaos events applied: {events}")
    finally:
        fleet.terminate()
        fleet.wait(30)
        os.unlink(schedule.name)


if __name__ == "__main__":
    main()
