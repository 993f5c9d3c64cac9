"""A fleet on several addresses (--hosts): each address serves --base-port..--max-port in turn, and the
management API, the event log and chaos name every endpoint HOST:PORT."""

import subprocess
import sys

import httpx
import pytest

from helpers import AUTH, TOKEN, free_base, refused, start_fleet, wait_for

HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
PER_HOST = 10


@pytest.fixture(scope="module")
def fleet():
    base = free_base(PER_HOST)
    with start_fleet(25, "--hosts", "127.0.0.2-127.0.0.4", "--max-port", str(base + PER_HOST - 1),
                     "--token", TOKEN, "--seed", "3", base=base) as server:
        server.base = base
        server.api = httpx.Client(base_url=server.url, headers=AUTH, timeout=10)
        yield server
        server.stop()


def health(host, port):
    return httpx.get(f"http://{host}:{port}/health", timeout=5)


def test_each_address_serves_the_port_range_in_turn(fleet):
    base = fleet.base
    assert all(health(host, base + offset).status_code == 200 for host in HOSTS[:2] for offset in range(PER_HOST))
    assert [health("127.0.0.4", base + offset).status_code for offset in range(5)] == [200] * 5
    assert refused(base + 5, "127.0.0.4") and refused(base, "127.0.0.5")  # the 26th place is not in the fleet
    stats = fleet.api.get("/stats").json()
    assert stats["ports"] == 25 and stats["current_alive"] == 25
    assert stats["addresses"] == {"127.0.0.2": {"ports": 10, "alive": 10}, "127.0.0.3": {"ports": 10, "alive": 10},
                                  "127.0.0.4": {"ports": 5, "alive": 5}}
    urls = fleet.api.get("/endpoints", params={"state": "all"}).text.split()
    assert len(urls) == 25 and urls[0] == f"http://127.0.0.2:{base}/health"
    assert urls[24] == f"http://127.0.0.4:{base + 4}/health"
    entry = fleet.api.get("/endpoints", params={"format": "json", "offset": 12, "limit": 1}).json()[0]
    assert (entry["host"], entry["port"], entry["url"]) == ("127.0.0.3", base + 2, f"http://127.0.0.3:{base + 2}/health")


def test_kill_revive_and_faults_name_host_and_port(fleet):
    base, api = fleet.base, fleet.api
    assert api.post("/kill", params={"port": f"127.0.0.3:{base + 1}"}).json() == \
        {"port": f"127.0.0.3:{base + 1}", "state": "killed"}
    assert refused(base + 1, "127.0.0.3") and health("127.0.0.2", base + 1).status_code == 200
    assert api.post("/revive", params={"port": base + 1, "host": "127.0.0.3"}).json()["state"] == "alive"
    assert health("127.0.0.3", base + 1).status_code == 200
    faulted = api.post("/fault", params={"ports": f"{base + 7}-{base + 8}", "host": "127.0.0.3", "spec": "503"})
    assert faulted.json()["ports"] == [f"127.0.0.3:{base + 7}", f"127.0.0.3:{base + 8}"]
    assert health("127.0.0.3", base + 7).status_code == 503 and health("127.0.0.2", base + 7).status_code == 200
    everywhere = api.delete("/fault", params={"ports": f"{base}-{base + 9}", "host": "127.0.0.3"}).json()
    assert everywhere["cleared"] == [f"127.0.0.3:{base + 7}", f"127.0.0.3:{base + 8}"]
    events = [line for line in api.get("/events").text.splitlines() if line]
    assert f'"ports":["127.0.0.3:{base + 1}"]' in events[0]
    missing = api.post("/kill", params={"port": f"127.0.0.4:{base + 6}"})  # beyond the fleet's 25
    assert missing.status_code == 404 and f"127.0.0.2:{base}-127.0.0.4:{base + 4}" in missing.json()["error"]
    assert api.post("/kill", params={"port": base, "host": "127.0.0.9"}).status_code == 404


def test_chaos_targets_addresses(fleet):
    schedule = "rules: [{target: {hosts: 127.0.0.4, percent: 100}, action: kill}]"
    assert fleet.api.post("/chaos", content=schedule).status_code == 200
    wait_for(lambda: fleet.api.get("/stats").json()["addresses"]["127.0.0.4"]["alive"] == 0)
    assert fleet.api.get("/stats").json()["addresses"]["127.0.0.2"]["alive"] == 10
    wrong = fleet.api.post("/chaos", content="rules: [{target: {hosts: 127.0.0.8}, action: kill}]")
    assert wrong.status_code == 400 and "127.0.0.8 is not one of the fleet's addresses" in wrong.json()["error"]
    fleet.api.delete("/chaos")
    fleet.api.post("/revive", params={"all": 1})


@pytest.mark.parametrize(("args", "message"), [
    (["--hosts", "127.0.0.2-127.0.0.1"], "'127.0.0.2-127.0.0.1' is not a rising range of addresses"),
    (["--hosts", "127.0.0.2-127.0.0.4,127.0.0.3"], "127.0.0.3 is given twice"),
    (["--hosts", "192.0.2.7"], "192.0.2.7 is not an address of this machine"),
    (["--hosts", "0.0.0.0"], "is every address"),
    (["--hosts", "127.0.0.2,127.0.0.3", "--advertise-host", "example.test"], "names one host"),
    (["--hosts", "127.0.0.2,127.0.0.3", "--max-port", "10004"], "21 ports do not fit in 10000-10004 (5 ports on "
                                                                 "each of 2 addresses)"),
])
def test_bad_addresses_are_usage_errors(args, message):
    result = subprocess.run([sys.executable, "-m", "fastmock", "fleet", "21", "--base-port", "10000", *args],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "'--hosts'" in result.stderr or "'--advertise-host'" in result.stderr or "'COUNT'" in result.stderr
