"""A fleet of several pods (--peers): any one management API answers for all of them. Here the "pods" are
fleet processes on different loopback addresses, named by a list or by a name with several addresses."""

import json
import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from helpers import AUTH, RecordingServer, free_base, free_port, refused, start_pods as pods, wait_for

PODS = ("127.0.0.31", "127.0.0.32", "127.0.0.33")


@pytest.fixture(scope="module")
def fleet():
    base, mgmt_port = free_base(5), free_port()
    with pods(PODS, ",".join(f"{address}:{mgmt_port}" for address in PODS), base, mgmt_port) as servers:
        yield base, [httpx.Client(base_url=server.url, headers=AUTH, timeout=10) for server in servers]


def test_any_pod_answers_for_the_whole_fleet(fleet):
    base, apis = fleet
    for api in apis:
        stats = api.get("/stats").json()
        assert (stats["ports"], stats["current_alive"], stats["workers"], stats["partial"]) == (15, 15, 3, False)
        assert [(pod["pod"], pod["ordinal"], pod["ports"]) for pod in stats["pods"]] == \
            [(f"{address}:{apis[0].base_url.port}", ordinal, 5) for ordinal, address in enumerate(PODS)]
    urls = apis[2].get("/endpoints").text.split()
    assert urls == [f"http://{address}:{base + offset}/health" for address in PODS for offset in range(5)]
    assert apis[1].get("/endpoints", params={"offset": 4, "limit": 3}).text.split() == urls[4:7]
    entries = apis[0].get("/endpoints", params={"format": "json", "offset": 5, "limit": 1}).json()
    assert (entries[0]["host"], entries[0]["port"], entries[0]["pod"]) == (PODS[1], base, f"{PODS[1]}:{apis[0].base_url.port}")
    status = subprocess.run([sys.executable, "-m", "fastmock", "ctl", "--url", str(apis[1].base_url), "status"],
                            capture_output=True, text=True, timeout=30)
    assert "15 ports" in status.stdout, status.stdout


def test_changes_go_to_the_pod_that_serves_the_port(fleet):
    base, apis = fleet
    killed = apis[0].post("/kill", params={"port": f"{PODS[1]}:{base + 3}"})
    assert killed.json()["port"] == f"{PODS[1]}:{base + 3}" and killed.json()["state"] == "killed"
    assert refused(base + 3, PODS[1]) and not refused(base + 3, PODS[0]) and not refused(base + 3, PODS[2])
    ambiguous = apis[0].post("/kill", params={"port": base + 3})
    assert ambiguous.status_code == 400 and "port=HOST:PORT" in ambiguous.json()["error"]
    assert apis[0].post("/kill", params={"port": f"127.0.0.99:{base}"}).status_code == 404
    several = apis[2].post("/kill", params={"count": 4}).json()
    assert len(several["killed"]) == 4 and all(name.split(":")[0] in PODS for name in several["killed"])
    assert apis[1].get("/stats").json()["killed"] == 5
    events = [json.loads(line) for line in apis[1].get("/events").text.splitlines()]
    assert sum(len(event["ports"]) for event in events) == 5 and events[0]["ports"] == [f"{PODS[1]}:{base + 3}"]
    assert [event["time"] for event in events] == sorted(event["time"] for event in events)
    assert {event["pod"] for event in events} <= {f"{address}:{apis[0].base_url.port}" for address in PODS}
    revived = apis[0].post("/revive", params={"all": 1}).json()
    assert revived["revived"] == 5 and apis[0].get("/stats").json()["current_alive"] == 15
    faulted = apis[1].post("/fault", params={"ports": f"{base}-{base + 1}", "spec": "503"}).json()
    assert sorted(faulted["ports"]) == sorted(f"{address}:{base + offset}" for address in PODS for offset in (0, 1))
    assert httpx.get(f"http://{PODS[2]}:{base + 1}/health").status_code == 503
    assert len(apis[2].delete("/fault", params={"all": 1}).json()["cleared"]) == 6


def test_chaos_runs_in_every_pod_with_seed_plus_ordinal(fleet):
    _, apis = fleet
    started = apis[1].post("/chaos", content="rules: [{every: 1h, target: {count: 1}, action: kill}]")
    assert started.status_code == 200, started.text
    assert [pod["seed"] for pod in started.json()["pods"]] == [7, 8, 9]
    wait_for(lambda: apis[0].get("/stats").json()["killed"] == 3)  # one in each pod
    assert apis[2].get("/chaos").json()["active"] is True
    apis[0].delete("/chaos")
    apis[0].post("/revive", params={"all": 1})
    assert apis[0].get("/chaos").json()["active"] is False


def test_a_silent_pod_or_a_refused_token_is_named(tmp_path):
    base, mgmt_port = free_base(5), free_port()
    addresses = ("127.0.0.41", "127.0.0.42", "127.0.0.43")
    peers = ",".join(f"{address}:{mgmt_port}" for address in addresses)
    with pods(addresses, peers, base, mgmt_port, tokens={"127.0.0.43": "other"}) as servers:
        api = httpx.Client(base_url=servers[0].url, headers=AUTH, timeout=10)
        faulted = api.post("/fault", params={"ports": f"{base}-{base}", "spec": "503"}).json()
        assert faulted["ports"] == [f"127.0.0.41:{base}", f"127.0.0.42:{base}"]
        assert faulted["errors"] == {f"127.0.0.43:{mgmt_port}": "missing or wrong bearer token"}
        servers[1].stop()
        stats = api.get("/stats").json()
        assert stats["partial"] is True and stats["ports"] == 10
        silent = next(pod for pod in stats["pods"] if pod["pod"] == f"127.0.0.42:{mgmt_port}")
        assert silent["error"].startswith("no answer")
        listing = api.get("/endpoints", params={"state": "all"})
        assert len(listing.text.split()) == 10 and f"127.0.0.42:{mgmt_port}" in listing.headers["x-fastmock-partial"]


def test_a_pod_of_another_version_is_named_and_left_out():
    body = json.dumps({"version": "0.0.1", "ordinal": 1, "ports": 7}).encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    other = RecordingServer(lambda n: answer)
    other_name = other.url.removeprefix("http://")
    base, mgmt_port = free_base(5), free_port()
    with pods(("127.0.0.61",), f"127.0.0.61:{mgmt_port},{other_name}", base, mgmt_port) as servers:
        stats = httpx.get(servers[0].url + "/stats", timeout=10).json()
        assert stats["partial"] is True and stats["ports"] == 5
        odd = next(pod for pod in stats["pods"] if pod["pod"] == other_name)
        assert odd["error"] == f"fastmock 0.0.1, not {stats['version']}"
        listing = httpx.get(servers[0].url + "/endpoints", timeout=10)
        assert len(listing.text.split()) == 5 and other_name in listing.headers["x-fastmock-partial"]
    assert all(" /stats?local=1 " in head.splitlines()[0] for head, _ in other.requests)  # who it is; nothing more


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_a_name_with_several_addresses_is_every_pod(tmp_path):
    hosts = tmp_path / "hosts"  # a private /etc/hosts (a mount namespace of the pods' own), like a headless Service
    hosts.write_text("127.0.0.1 localhost\n127.0.0.51 fleet-pods\n127.0.0.52 fleet-pods\n")
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', str(hosts)]
    base, mgmt_port = free_base(5), free_port()
    with pods(("127.0.0.51", "127.0.0.52"), "fleet-pods", base, mgmt_port, prefix=prefix) as servers:
        stats = httpx.get(servers[1].url + "/stats", timeout=10).json()
        assert stats["ports"] == 10 and [pod["ordinal"] for pod in stats["pods"]] == [0, 1]


@pytest.mark.parametrize(("peers", "message"), [
    ("127.0.0.1:9000,127.0.0.1:9000", "'127.0.0.1:9000' is given twice"),
    ("127.0.0.1:99999", "'99999' is not a port"),
    ("127.0.0.1:9000,127.0.0.2:9000,fleet.local:9000", "'127.0.0.1:9000' and 'fleet.local:9000' both name this "
                                                       "fleet's own API"),
])
def test_bad_peers_are_usage_errors(peers, message):
    result = subprocess.run([sys.executable, "-m", "fastmock", "fleet", "3", "--mgmt-port", "9000",
                             "--advertise-host", "fleet.local", "--peers", peers],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and message in result.stderr and "'--peers'" in result.stderr, result.stderr


def test_score_grades_a_monitor_against_every_pods_outages(fleet, tmp_path):
    base, apis = fleet
    target = f"{PODS[2]}:{base + 1}"
    assert apis[0].post("/kill", params={"port": target}).status_code == 200
    killed = time.time()
    time.sleep(0.5)
    assert apis[0].post("/revive", params={"port": target}).status_code == 200
    (tmp_path / "alerts.csv").write_text(f"time,target,state\n{killed + 0.25},http://{target}/health,firing\n"
                                         f"{killed + 5},{target},resolved\n{killed},{PODS[2]}:1,firing\n")
    result = subprocess.run([sys.executable, "-m", "fastmock", "score", "--fleet", str(apis[1].base_url), "--alerts",
                             tmp_path / "alerts.csv", "--json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    row = [row for row in report["incidents_list"] if row["endpoint"] == target][-1]  # (earlier tests' come first)
    assert row["detected"] and row["detect_s"] == pytest.approx(0.25, abs=0.1)
    assert (report["unknown_targets"], report["false_alerts"]) == ([f"{PODS[2]}:1"], 0)
