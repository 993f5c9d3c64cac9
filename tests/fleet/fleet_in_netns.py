"""Run inside ``unshare -n`` by test_fleet.py: a fleet of COUNT ports with the ephemeral range reserved.

Prints one JSON line with what it saw; exits non-zero (with the fleet's log) if anything went wrong.
"""

import json
import re
import subprocess
import sys
import tempfile
import time

import httpx

from helpers import refused

RESERVED = "/proc/sys/net/ipv4/ip_local_reserved_ports"


def main(count: int) -> int:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with open(RESERVED) as file:
        reserved_before = file.read()
    log = tempfile.TemporaryFile()
    started = time.monotonic()
    fleet = subprocess.Popen([sys.executable, "-m", "fastmock", "fleet", str(count), "--reserve-ports",
                              "--mgmt-port", "9999", "--seed", "3"], stderr=log)
    try:
        while b"fleet ready" not in (text := _read(log)):
            if fleet.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError(f"fleet did not start: {text.decode()}")
            time.sleep(0.05)
        ready_s = time.monotonic() - started
        with open(RESERVED) as file:
            reserved_during = file.read().strip()
        api = httpx.Client(base_url="http://127.0.0.1:9999", timeout=30)
        stats = api.get("/stats").json()
        last = 10000 + count - 1
        health = httpx.get(f"http://127.0.0.1:{last}/health").json()
        killed = api.post(f"/kill?port={last}").json()
        refused_after_kill = refused(last)
        revived = api.post(f"/revive?port={last}").json()
        alive_again = httpx.get(f"http://127.0.0.1:{last}/health").status_code == 200
        fleet.terminate()
        exit_code = fleet.wait(30)
    finally:
        if fleet.poll() is None:
            fleet.kill()
    with open(RESERVED) as file:
        reserved_after = file.read()
    print(json.dumps({
        "ready_s": ready_s, "ready_line": re.search(rb"fleet ready: [^\n]*", _read(log)).group().decode(),
        "alive": stats["current_alive"], "workers": stats["workers"], "last_health": health,
        "killed": killed, "refused": refused_after_kill, "revived": revived, "alive_again": alive_again,
        "exit_code": exit_code, "reserved_during": reserved_during,
        "reserved_restored": reserved_after == reserved_before,
    }))
    return 0


def _read(log) -> bytes:
    log.seek(0)
    return log.read()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
