"""``fastmock fleet N --tls``: every port speaks HTTPS in a certificate state of its own, set through the
management API and chaos, judged by real clients (Python's ssl, curl) that trust only the fleet's CA."""

import shutil
import socket
import ssl
import subprocess
import sys
import time
import warnings

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import Fleet, free_base, https_status_line, start_fleet, wait_for

COUNT = 40


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    ca_dir = tmp_path_factory.mktemp("fleet-ca")
    base = free_base(COUNT)
    with start_fleet(COUNT, "--tls", "--tls-ca-dir", str(ca_dir), "--max-hang", "1s", "--seed", "3",
                     base=base) as server:
        fleet = Fleet(server, base, COUNT)
        fleet.ca_file = str(ca_dir / "ca.pem")
        yield fleet
        assert server.stop() == 0


def set_state(fleet, ports, state):
    reply = fleet.api.post("/tls", params={"ports": ports, "state": state})
    assert reply.status_code == 200, reply.text
    return reply.json()


def handshake(fleet, port, timeout=10):
    """GET /health as a client trusting only the fleet's CA: the status line, or why the handshake failed."""
    return https_status_line(port, fleet.ca_file, timeout=timeout)


@pytest.mark.parametrize(("offset", "state", "expected"), [
    (1, "valid", "HTTP/1.1 200 OK"),
    (2, "expiring(3)", "HTTP/1.1 200 OK"),
    (3, "expired", "certificate has expired"),
    (4, "not-yet-valid", "certificate is not yet valid"),
    (5, "wrong-host", "Hostname mismatch, certificate is not valid for 'localhost'."),
    (6, "self-signed", "self-signed certificate"),
    (7, "untrusted-root", "unable to get local issuer certificate"),
    (8, "incomplete-chain", "unable to get local issuer certificate"),
    (9, "weak", "EE certificate key too weak"),
    (11, "handshake-reset", "reset"),
])
def test_each_port_state_fails_a_verifying_client_the_way_it_should(fleet, offset, state, expected):
    port = fleet.base + offset
    assert set_state(fleet, f"{port}-{port}", state) == {"ports": [port], "tls": state}
    assert handshake(fleet, port) == expected


def test_a_tls1_0_only_port_speaks_nothing_newer(fleet):
    port = fleet.base + 10
    set_state(fleet, f"{port}-{port}", "tls1.0-only")
    assert handshake(fleet, port) == "TLSV1_ALERT_PROTOCOL_VERSION"  # a modern client is told why
    old = ssl.create_default_context(cafile=fleet.ca_file)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            old.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.version() == "TLSv1"


def test_a_stalled_handshake_is_cut_after_max_hang(fleet):
    port = fleet.base + 12
    set_state(fleet, f"{port}-{port}", "handshake-stall")
    started = time.monotonic()
    assert handshake(fleet, port, timeout=30) == "reset"  # --max-hang 1s, then a RST
    assert time.monotonic() - started >= 0.9


def test_a_state_change_reaches_new_handshakes_and_spares_running_connections(fleet):
    port = fleet.base + 13
    context = ssl.create_default_context(cafile=fleet.ca_file)
    with httpx.Client(verify=context) as running:
        assert running.get(f"https://localhost:{port}/health").status_code == 200
        set_state(fleet, f"{port}-{port}", "expired")
        assert handshake(fleet, port) == "certificate has expired"  # a new connection: the new certificate
        assert running.get(f"https://localhost:{port}/health").status_code == 200  # the open one lives on
    assert fleet.api.delete("/tls", params={"port": port}).json() == {"valid": [port]}
    assert handshake(fleet, port) == "HTTP/1.1 200 OK"


def test_curl_judges_the_ports_with_the_ca(fleet):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    port = fleet.base + 14
    ok = subprocess.run(["curl", "-sS", "--cacert", fleet.ca_file, f"https://localhost:{port}/health"],
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and ok.stdout == '{"status":"ok","port":%d}' % port
    set_state(fleet, f"{port}-{port}", "wrong-host")
    wrong = subprocess.run(["curl", "-sS", "--cacert", fleet.ca_file, f"https://localhost:{port}/health"],
                           capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 60 and "localhost" in wrong.stderr  # curl's peer-verification failure


def test_stats_endpoints_metrics_and_events_show_the_states(fleet):
    low, high = fleet.base + 20, fleet.base + 24
    set_state(fleet, f"{low}-{high}", "expiring(7)")
    stats = fleet.stats()
    assert stats["tls"]["expiring(7)"] == 5 and sum(stats["tls"].values()) == COUNT
    assert stats["handshakes"] >= 1 and set(stats["handshake_failures"]) == {"timeout", "reset", "plain_http", "protocol", "other"}
    endpoints = fleet.api.get("/endpoints", params={"format": "json", "limit": COUNT}).json()
    assert all(entry["url"] == f"https://127.0.0.1:{entry['port']}/health" for entry in endpoints)
    assert {entry["port"] for entry in endpoints if entry["tls"] == "expiring(7)"} == set(range(low, high + 1))
    assert fleet.api.get("/endpoints").text.startswith(f"https://127.0.0.1:{fleet.base}/health\n")
    families = {family.name: family for family in text_string_to_metric_families(fleet.api.get("/metrics").text)}
    ports = {sample.labels["state"]: sample.value for sample in families["fastmock_fleet_tls_ports"].samples}
    assert ports["expiring(7)"] == 5
    assert families["fastmock_fleet_tls_handshakes"].samples[0].value >= 1
    events = [line for line in fleet.api.get("/events").text.splitlines() if '"expiring(7)"' in line]
    assert events and '"action":"tls"' in events[-1]


def test_a_chaos_tls_action_is_undone_after_its_for(fleet):
    port = fleet.base + 30
    schedule = f"rules: [{{target: {{ports: {port}-{port}}}, action: {{tls: expired}}, for: 300ms}}]"
    assert fleet.api.post("/chaos", content=schedule).status_code == 200
    wait_for(lambda: fleet.api.get("/endpoints", params={"format": "json", "state": "all", "offset": 30,
                                                         "limit": 1}).json()[0]["tls"] == "expired")
    wait_for(lambda: handshake(fleet, port) == "HTTP/1.1 200 OK")  # restored to valid
    actions = [line for line in fleet.api.get("/events").text.splitlines() if '"chaos"' in line]
    assert any('"restore-tls"' in line for line in actions)
    fleet.api.delete("/chaos")


@pytest.mark.parametrize(("params", "status", "message"), [
    ({"port": "{base}"}, 400, "missing parameter 'state'"),
    ({"port": "{base}", "state": "rotten"}, 400, "unknown certificate state 'rotten'"),
    ({"port": "{base}", "state": "expiring(0)"}, 400, "at least 1 day"),
    ({"port": "1", "state": "expired"}, 404, "not in the fleet"),
])
def test_bad_tls_requests_are_clear_errors(fleet, params, status, message):
    reply = fleet.api.post("/tls", params={key: value.format(base=fleet.base) for key, value in params.items()})
    assert reply.status_code == status and message in reply.json()["error"]
    assert "example" in reply.json()


def test_a_plain_fleet_refuses_tls_changes():
    with start_fleet(2) as server:
        api = httpx.Client(base_url=server.url, timeout=10)
        reply = api.post("/tls", params={"all": "1", "state": "expired"})
        assert reply.status_code == 409 and "--tls" in reply.json()["error"]
        assert "tls" not in api.get("/stats").json()
        chaos = api.post("/chaos", content="rules: [{action: {tls: expired}}]")
        assert chaos.status_code == 409 and "--tls" in chaos.json()["error"]


def test_ctl_tls_changes_and_stats_shows_the_states(fleet):
    port = fleet.base + 35
    ctl = [sys.executable, "-m", "fastmock", "ctl", "--url", fleet.server.url]
    changed = subprocess.run([*ctl, "tls", str(port), "not-yet-valid"], capture_output=True, text=True, timeout=30)
    assert changed.returncode == 0 and changed.stdout.strip() == f"1 port(s) of {port} now not-yet-valid"
    assert handshake(fleet, port) == "certificate is not yet valid"
    status = subprocess.run([*ctl, "status"], capture_output=True, text=True, timeout=30).stdout
    assert "\nTLS: " in status and " handshakes, " in status
    subprocess.run([*ctl, "tls", str(port), "valid"], check=True, capture_output=True, timeout=30)
    assert handshake(fleet, port) == "HTTP/1.1 200 OK"
    bad = subprocess.run([*ctl, "tls", str(port), "rotten"], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "unknown certificate state 'rotten'" in bad.stderr
