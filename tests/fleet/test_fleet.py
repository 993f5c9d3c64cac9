"""``fastmock fleet``: thousands of ports in real worker processes, driven through the management API."""

import asyncio
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys

import h11
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import (AUTH, TOKEN, Fleet, exited, free_base, recv_until_closed, refused, start_fleet,
                     wait_for)

async def _fetch_all(ports, path="/health", concurrency=200):
    """GET ``path`` on every port (a connection each); {port: (status, body)}."""
    limit = asyncio.Semaphore(concurrency)

    async def fetch(port):
        async with limit:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = await reader.read()
            writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        return port, (int(head.split()[1]), body)

    return dict(await asyncio.gather(*(fetch(port) for port in ports)))


@pytest.fixture(scope="module")
def fleet():
    base = free_base(2000)
    with start_fleet(2000, "--workers", "2", "--token", TOKEN, "--seed", "1", "--max-port", str(base + 2100),
                     base=base) as server:
        yield Fleet(server, base, 2000)
        assert server.stop() == 0


def test_every_port_answers_health_with_its_port(fleet):
    ports = range(fleet.base, fleet.base + fleet.count)
    results = asyncio.run(_fetch_all(ports))
    assert all(results[port] == (200, b'{"status":"ok","port":%d}' % port) for port in ports)
    assert "2000 of 2000 ports accepting" in fleet.server.log()
    assert "0 failed to bind" in fleet.server.log()


def test_port_responses_are_valid_http(fleet):
    with socket.create_connection(("127.0.0.1", fleet.base + 7)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\nHEAD /health HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_until_closed(sock)
    conn = h11.Connection(h11.CLIENT)
    responses = []
    for method, target in (("GET", "/health"), ("HEAD", "/health"), ("GET", "/nope")):
        conn.send(h11.Request(method=method, target=target, headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        conn.receive_data(data if not responses else b"")
        data = b""
        response, body = None, b""
        while not isinstance(event := conn.next_event(), h11.EndOfMessage):
            if isinstance(event, h11.Response):
                response = event
            elif isinstance(event, h11.Data):
                body += event.data
        responses.append((response.status_code, body))
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
    assert responses[0] == (200, b'{"status":"ok","port":%d}' % (fleet.base + 7))
    assert responses[1] == (200, b"")
    assert responses[2][0] == 404
    assert b'"endpoints":["/health","/kill"]' in responses[2][1]


def test_malformed_request_on_a_port_gets_400_and_close(fleet):
    with socket.create_connection(("127.0.0.1", fleet.base + 8)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n")
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")
    assert fleet.health(fleet.base + 8).status_code == 200


def test_kill_endpoint_of_a_port(fleet):
    port = fleet.base + 11
    before = fleet.stats()
    with socket.create_connection(("127.0.0.1", port)) as idle:  # an open connection of the same port
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 ")
        response = httpx.get(f"http://127.0.0.1:{port}/kill")
        assert response.status_code == 200
        assert response.json() == {"status": "killed", "port": port}
        assert recv_until_closed(idle) == b""  # closed with the port
    assert refused(port)
    after = fleet.stats()
    assert after["current_alive"] == before["current_alive"] - 1
    assert after["total_killed"] == before["total_killed"] + 1
    assert f"http://127.0.0.1:{port}/health" in fleet.api.get("/endpoints?state=killed").text.splitlines()
    assert fleet.api.post(f"/revive?port={port}", headers=AUTH).json() == {"port": port, "state": "alive"}
    assert fleet.health(port).json() == {"status": "ok", "port": port}
    assert fleet.stats()["total_revived"] == before["total_revived"] + 1


def test_kill_and_revive_through_the_api(fleet):
    port = fleet.base + 1500  # served by the second worker
    response = fleet.api.post(f"/kill?port={port}", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"port": port, "state": "killed"}
    assert refused(port)  # the API answers once the worker has closed the port
    again = fleet.api.post(f"/kill?port={port}", headers=AUTH)
    assert again.status_code == 409
    assert again.json()["state"] == "killed"
    assert fleet.api.get(f"/revive?port={port}", headers=AUTH).status_code == 200
    assert fleet.health(port).status_code == 200
    assert fleet.api.post(f"/revive?port={port}", headers=AUTH).status_code == 409


@pytest.mark.parametrize(("query", "status"), [
    ("port=1", 404), ("port=abc", 400), ("", 400), ("count=0", 400), ("count=x", 400), ("count=999999", 409),
])
def test_kill_errors(fleet, query, status):
    response = fleet.api.post(f"/kill?{query}", headers=AUTH)
    assert response.status_code == status
    assert response.json()["error"]
    assert "example" in response.json()


def test_revive_of_a_port_outside_the_fleet_is_404(fleet):
    assert fleet.api.post(f"/revive?port={fleet.base + fleet.count}", headers=AUTH).status_code == 404


def test_bulk_kill_is_seeded_random_and_revive_all(fleet):
    response = fleet.api.post("/kill?count=5", headers=AUTH)
    assert response.status_code == 200
    killed = response.json()["killed"]
    assert len(set(killed)) == 5
    assert all(fleet.base <= port < fleet.base + fleet.count for port in killed)
    assert all(refused(port) for port in killed)
    assert fleet.stats()["killed"] == 5
    revived = fleet.api.post("/revive?all=1", headers=AUTH).json()
    assert revived == {"revived": 5, "failed": []}
    assert all(fleet.health(port).status_code == 200 for port in killed)


def test_scale_up_down_and_range_exhausted(fleet):
    last = fleet.base + fleet.count - 1
    response = fleet.api.post("/scale?count=10", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["started"] == 10
    assert fleet.stats()["ports"] == 2010
    assert fleet.health(last + 10).json()["port"] == last + 10
    full = fleet.api.post("/scale?count=200", headers=AUTH)  # --max-port is base + 2100
    assert full.status_code == 409
    assert full.json()["available"] == 91
    down = fleet.api.post("/scale?count=-10", headers=AUTH)
    assert down.json()["ports"] == 2000
    assert refused(last + 10)
    assert fleet.health(last).status_code == 200
    assert fleet.stats()["current_alive"] == 2000
    assert fleet.api.post("/scale?count=-5000", headers=AUTH).status_code == 409
    assert fleet.api.post("/scale?count=many", headers=AUTH).status_code == 400


def test_endpoints_text_and_json(fleet):
    text = fleet.api.get("/endpoints?limit=3&offset=2")
    assert text.headers["content-type"].startswith("text/plain")
    assert text.text.splitlines() == [f"http://127.0.0.1:{fleet.base + i}/health" for i in (2, 3, 4)]
    assert len(fleet.api.get("/endpoints").text.splitlines()) == 1000  # default limit
    assert len(fleet.api.get("/endpoints?limit=5000&state=all").text.splitlines()) == 2000
    httpx.get(f"http://127.0.0.1:{fleet.base}/health")
    entries = fleet.api.get("/endpoints?format=json&limit=2&state=all").json()
    assert entries[0]["port"] == fleet.base
    assert entries[0]["url"] == f"http://127.0.0.1:{fleet.base}/health"
    assert entries[0]["state"] == "alive"
    assert entries[0]["requests"] >= 1
    assert set(entries[1]) == {"port", "url", "state", "fault", "requests"}
    assert entries[1]["fault"] is None
    assert fleet.api.get("/endpoints?state=failed&format=json").json() == []
    for query in ("state=dead", "format=xml", "limit=-1", "offset=x"):
        response = fleet.api.get(f"/endpoints?{query}")
        assert response.status_code == 400, query
        assert response.json()["example"].startswith("/endpoints?")


def test_stats_fields(fleet):
    stats = fleet.stats()
    assert stats["base_port"] == fleet.base
    assert stats["max_port"] == fleet.base + 2100
    assert stats["workers"] == 2
    assert stats["bind_failures"] == 0
    assert stats["total_started"] >= 2000
    assert stats["uptime_s"] > 0
    before = stats["requests_total"]
    for _ in range(3):
        fleet.health(fleet.base + 3)
    assert fleet.stats()["requests_total"] == before + 3


def test_token_is_required_on_changing_calls_only(fleet):
    port = fleet.base + 20
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        response = fleet.api.post(f"/kill?port={port}", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert fleet.health(port).status_code == 200
    assert fleet.api.post("/shutdown").status_code == 401
    assert fleet.api.get("/stats").status_code == 200
    assert fleet.api.get("/endpoints?limit=1").status_code == 200


def test_token_reads_guards_every_read_but_the_page_and_health():
    base = free_base(3)
    with start_fleet(3, "--token", TOKEN, "--token-reads", base=base) as server:
        api = httpx.Client(base_url=server.url, timeout=10)
        for path in ("/stats", "/endpoints", "/metrics", "/events", "/logs", "/chaos"):
            assert api.get(path).status_code == 401, path
            assert api.get(path, headers=AUTH).status_code == 200, path
        assert api.get(f"/stats?access_token={TOKEN}").status_code == 200  # RFC 6750 §2.3, for EventSource
        assert api.get("/stats?access_token=wrong").status_code == 401
        assert api.get("/health").status_code == 200 and api.get("/").status_code == 200
        server.stop()


def test_api_unknown_paths_and_methods(fleet):
    missing = fleet.api.get("/nope")
    assert missing.status_code == 404
    assert "/stats" in missing.json()["endpoints"]
    wrong = fleet.api.get("/shutdown", headers=AUTH)
    assert wrong.status_code == 405
    assert wrong.headers["allow"] == "POST"
    assert fleet.api.post("/stats").status_code == 405


def test_metrics(fleet):
    response = fleet.api.get("/metrics")
    assert response.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    ports = {sample.labels["state"]: sample.value for sample in families["fastmock_fleet_ports"].samples}
    assert ports == {"alive": 2000, "killed": 0, "failed": 0, "degraded": 0, "slow": 0, "flaky": 0}
    workers = {sample.labels["worker"] for sample in families["fastmock_fleet_requests"].samples}
    assert workers == {"0", "1"}
    assert "fastmock_fleet_killed" in families
    assert "fastmock_fleet_revived" in families


def _worker_pids(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as children:
        return [int(child) for child in children.read().split()]


def test_a_killed_worker_is_restarted_and_rebinds_its_alive_ports():
    base = free_base(200)
    with start_fleet(200, "--workers", "2", base=base) as server:
        api = httpx.Client(base_url=server.url, timeout=10)
        assert api.post(f"/kill?port={base + 150}").status_code == 200
        second = max(_worker_pids(server.proc.pid))  # forked last: slots 100-199
        os.kill(second, signal.SIGKILL)
        wait_for(lambda: refused(base + 120))
        wait_for(lambda: not refused(base + 120))
        assert httpx.get(f"http://127.0.0.1:{base + 199}/health").json()["port"] == base + 199
        assert refused(base + 150)  # killed before: stays killed
        assert api.get("/stats").json()["current_alive"] == 199, server.log()
        assert second not in _worker_pids(server.proc.pid)
        assert "fleet worker 1" in server.log() and "restarted" in server.log()
        assert server.stop() == 0


def test_sigterm_and_shutdown_stop_everything_with_exit_0():
    base = free_base(200)
    with start_fleet(50, base=base) as server:
        workers = _worker_pids(server.proc.pid)
        assert server.stop(signal.SIGTERM) == 0
        assert refused(base) and refused(server.port)
        assert all(exited(pid) for pid in workers)
        assert "fleet stopped" in server.log()
    with start_fleet(50, base=base) as server:
        assert server.ready() == {"name": "fleet", "pid": server.proc.pid, "url": server.url,
                                  "ports": f"{base}-{base + 49}", "started": 50, "failed": 0}
        response = httpx.post(f"{server.url}/shutdown")
        assert response.json()["status"] == "stopping"
        assert server.proc.wait(10) == 0
        assert refused(base + 49)
        assert not os.path.exists(server.ready_path)  # gone with the fleet


@pytest.mark.parametrize("reuse_port", [False, True])  # a SO_REUSEPORT listener is never joined either
def test_a_port_in_use_is_retried_counted_and_listed(reuse_port):
    base = free_base(200)
    taken = socket.socket()
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # earlier tests may leave TIME_WAIT behind
    taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(reuse_port))
    taken.bind(("127.0.0.1", base + 3))
    taken.listen()
    with start_fleet(10, base=base) as server:
        assert f"1 failed to bind: {base + 3} (Address already in use)" in server.log()
        api = httpx.Client(base_url=server.url, timeout=10)
        assert api.get("/stats").json()["bind_failures"] == 1
        assert api.get("/endpoints?state=failed").text == f"http://127.0.0.1:{base + 3}/health\n"
        assert api.post(f"/kill?port={base + 3}").status_code == 409
        busy = api.post(f"/revive?port={base + 3}")
        assert busy.status_code == 503
        assert "Address already in use" in busy.json()["error"]
        taken.close()
        assert api.post(f"/revive?port={base + 3}").status_code == 200
        assert httpx.get(f"http://127.0.0.1:{base + 3}/health").json()["port"] == base + 3
        assert api.get("/stats").json()["bind_failures"] == 0


def _ephemeral_low():
    with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
        return int(file.read().split()[0])


def test_ports_in_the_ephemeral_range_are_warned_about():
    low = _ephemeral_low()
    if low > 64000:
        pytest.skip("no room for a fleet in the ephemeral range here")
    with start_fleet(5, base=low + random.randrange(100, 900)) as server:
        log = server.log()
        assert "in the kernel's ephemeral range" in log
        assert "sysctl -w net.ipv4.ip_local_reserved_ports=" in log


def test_management_port_in_use_is_a_clear_error():
    with start_fleet(5) as server:
        result = subprocess.run([sys.executable, "-m", "fastmock", "fleet", "5", "--base-port", "11000",
                                 "--max-port", "11010", "--mgmt-port", str(server.port)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 1
        assert f"cannot listen on 127.0.0.1 port {server.port} (--mgmt-port): Address already in use" in result.stderr
        assert "Traceback" not in result.stderr
    with socket.create_server(("127.0.0.1", 0), reuse_port=True) as other:
        result = subprocess.run([sys.executable, "-m", "fastmock", "fleet", "5", "--base-port", "11000",
                                 "--max-port", "11010", "--mgmt-port", str(other.getsockname()[1])],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 1 and "Address already in use" in result.stderr


@pytest.mark.parametrize(("args", "named"), [
    (["60000", "--base-port", "10000", "--max-port", "20000"], "COUNT"),
    (["0"], "COUNT"),
    (["10", "--base-port", "20000", "--max-port", "19000"], "--max-port"),
    (["10", "--mgmt-port", "10005"], "--mgmt-port"),
    (["10", "--workers", "0"], "--workers"),
    (["10", "--workers", "many"], "--workers"),
    (["10", "--base-port", "70000"], "--base-port"),
    (["10", "--idle-timeout", "soon"], "--idle-timeout"),
    (["10", "--token-reads"], "--token-reads"),
    (["10", "--score-target-label", "target"], "--score-target-label"),
    (["10", "--detach", "--ready-file", "/tmp/fleet.ready"], "--ready-file"),
    (["10", "--ready-file", "/no/such/dir/fleet.ready"], "--ready-file"),
])
def test_bad_cli_values_are_usage_errors(args, named):
    result = subprocess.run([sys.executable, "-m", "fastmock", "fleet", *args], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_too_few_workers_for_the_open_files_limit_is_a_usage_error():
    def low_limit():
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))

    result = subprocess.run([sys.executable, "-m", "fastmock", "fleet", "5000", "--workers", "1"],
                            capture_output=True, text=True, timeout=30, preexec_fn=low_limit)
    assert result.returncode == 2
    assert "--workers" in result.stderr
    assert "open-files limit 1024" in result.stderr


def _can_unshare_network():
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    return None if probe.returncode == 0 else f"unshare -n not permitted here: {probe.stderr.decode().strip()}"


@pytest.mark.slow
def test_50000_ports_in_a_private_network_namespace():
    reason = _can_unshare_network()
    if reason:
        pytest.skip(reason)
    here = os.path.dirname(__file__)
    tests = os.path.dirname(here)  # the script imports helpers from there
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [tests, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(["unshare", "-n", sys.executable, os.path.join(here, "fleet_in_netns.py"), "50000"],
                            capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert "50000 of 50000 ports accepting" in report["ready_line"]
    assert report["alive"] == 50000
    assert report["workers"] == 4
    assert report["last_health"] == {"status": "ok", "port": 59999}
    assert report["killed"] == {"port": 59999, "state": "killed"}
    assert report["refused"]
    assert report["revived"] == {"port": 59999, "state": "alive"}
    assert report["alive_again"]
    assert report["exit_code"] == 0
    assert report["reserved_during"] == "32768-60000"
    assert report["reserved_restored"]


def test_advertise_host_and_sigint():
    with start_fleet(3, "--advertise-host", "fleet.example") as server:
        text = httpx.get(f"{server.url}/endpoints").text
        assert text.splitlines()[0].startswith("http://fleet.example:")
        assert server.stop(signal.SIGINT) == 0
        assert "fleet stopping (SIGINT)" in server.log()


def test_ipv6_host():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    base = free_base(3)
    with start_fleet(3, "--host", "::1", base=base) as server:
        assert httpx.get(f"http://[::1]:{base + 2}/health").json() == {"status": "ok", "port": base + 2}
        assert httpx.get(f"{server.url}/endpoints").text.splitlines()[0] == f"http://[::1]:{base}/health"
