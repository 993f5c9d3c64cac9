"""Fleet faults per port, chaos schedules and the event log, the dashboard's SSE stream: real fleets, real clients."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from helpers import AUTH, TOKEN, Fleet, free_base, refused, start_fleet, wait_for


@pytest.fixture(scope="module")
def fleet():
    base = free_base(500)
    with start_fleet(500, "--workers", "2", "--token", TOKEN, "--seed", "3", "--max-port", str(base + 599),
                     base=base) as server:
        yield Fleet(server, base, 500)
        server.stop()


@pytest.fixture(autouse=True)
def clean(fleet):
    """Every test starts from a fleet with no schedule, no fault and every port alive."""
    yield
    fleet.api.delete("/chaos", headers=AUTH)
    fleet.api.delete("/fault?all=1", headers=AUTH)
    fleet.api.post("/revive?all=1", headers=AUTH)


def states(fleet):
    return fleet.stats()["states"]


def test_a_fault_spec_changes_what_a_ports_clients_see(fleet):
    base = fleet.base
    reply = fleet.api.post(f"/fault?ports={base}-{base + 9}&spec=503", headers=AUTH)
    assert reply.status_code == 200
    assert reply.json() == {"ports": list(range(base, base + 10)), "spec": "503", "states": ["degraded"]}
    answer = fleet.health(base + 3)
    assert answer.status_code == 503
    assert answer.json() == {"status": "error", "code": 503, "port": base + 3}
    assert fleet.health(base + 10).json() == {"status": "ok", "port": base + 10}

    assert fleet.api.post(f"/fault?port={base + 20}&spec=ok;delay=300ms", headers=AUTH).json()["states"] == ["slow"]
    started = time.monotonic()
    assert fleet.health(base + 20).status_code == 200
    assert time.monotonic() - started >= 0.3

    assert fleet.api.post(f"/fault?port={base + 30}&spec=reset:1,ok:0", headers=AUTH).status_code == 200
    with pytest.raises(httpx.TransportError):
        fleet.health(base + 30)
    assert fleet.api.post(f"/fault?port={base + 31}&spec=timeout:50,ok:50", headers=AUTH).json()["states"] == ["flaky"]
    outcomes = []
    for _ in range(20):
        try:
            outcomes.append(httpx.get(f"http://127.0.0.1:{base + 31}/health", timeout=0.3).status_code)
        except httpx.TimeoutException:
            outcomes.append("timeout")
    assert 200 in outcomes and "timeout" in outcomes

    assert states(fleet) == {"alive": 487, "killed": 0, "failed": 0, "degraded": 11, "slow": 1, "flaky": 1}
    degraded = fleet.api.get("/endpoints?state=degraded&format=json").json()
    assert [entry["port"] for entry in degraded] == [*range(base, base + 10), base + 30]
    assert {entry["fault"] for entry in degraded} == {"503", "reset:1,ok:0"}


def test_a_faulted_port_can_still_be_killed_and_keeps_its_fault_when_revived(fleet):
    port = fleet.base + 40
    fleet.api.post(f"/fault?port={port}&spec=503", headers=AUTH)
    assert fleet.health(port).status_code == 503
    assert httpx.get(f"http://127.0.0.1:{port}/kill").json() == {"status": "killed", "port": port}
    wait_for(lambda: refused(port))
    assert fleet.api.post(f"/revive?port={port}", headers=AUTH).status_code == 200
    assert fleet.health(port).status_code == 503
    assert fleet.api.delete(f"/fault?port={port}", headers=AUTH).json() == {"cleared": [port]}
    assert fleet.health(port).status_code == 200


def test_a_restarted_worker_gives_its_ports_their_faults_back(fleet):
    port = fleet.base + 490  # worker 1 owns the upper half
    fleet.api.post(f"/fault?port={port}&spec=502", headers=AUTH)
    fleet.api.post(f"/fault?port={port - 1}&spec=ok;delay=1ms", headers=AUTH)  # a spec the worker learnt by command
    log_before = fleet.server.log().count("restarted")
    workers = subprocess.run(["pgrep", "-P", str(fleet.server.proc.pid)], capture_output=True, text=True).stdout
    for pid in workers.split():
        os.kill(int(pid), signal.SIGKILL)
    wait_for(lambda: fleet.server.log().count("restarted") == log_before + 2, timeout=15)
    assert fleet.health(port).status_code == 502
    assert fleet.health(port - 1).status_code == 200


@pytest.mark.parametrize("query,status,message", [
    ("port={base}&spec=503:x", 400, "expected a weight"),
    ("port={base}", 400, "missing parameter 'spec'"),
    ("port=1&spec=503", 404, "not in the fleet"),
    ("ports={base}-99999&spec=503", 404, "not all in the fleet"),
    ("ports=a-b&spec=503", 400, "ports must be a range"),
    ("count=100000&spec=503", 409, "only 500 ports"),
])
def test_fault_errors_say_why_and_change_nothing(fleet, query, status, message):
    events_before = fleet.api.get("/events").text
    reply = fleet.api.post("/fault?" + query.format(base=fleet.base), headers=AUTH)
    assert reply.status_code == status
    assert message in reply.json()["error"] and "example" in reply.json()
    assert states(fleet)["alive"] == 500
    assert fleet.api.get("/events").text == events_before


def test_changing_faults_needs_the_token(fleet):
    assert fleet.api.post(f"/fault?port={fleet.base}&spec=503").status_code == 401
    assert fleet.api.post("/chaos", content="rules: [{action: kill}]").status_code == 401
    assert fleet.api.get("/chaos").status_code == 200  # reading does not


BAD_SCHEDULES = [
    ("rules: [{every: 1s, action: explode}]", 0, 1, "action must be kill, revive, clear, {fault: SPEC} or {tls: STATE}"),
    ("rules:\n  - action: kill\n  - action: kill\n    every: soon\n", 1, 4, "every: invalid duration 'soon'"),
    ("rules:\n  - action: kill\n    target: {percent: 150}\n", 0, 3, "target.percent must be a number in (0, 100]"),
    ("rules:\n  - action: {fault: '503:x'}\n", 0, 2, "expected a weight"),
    ("rules:\n  - action: {tls: rotten}\n", 0, 2, "unknown certificate state 'rotten'"),
    ("rules:\n  - action: kill\n    target: {ports: 1-5}\n", 0, 3, "is not a range within the fleet"),
    ("rules:\n  - action: kill\n    colour: red\n", 0, 3, "unknown key 'colour'"),
    ("rules:\n  - action: kill\n    times: 3\n", 0, 3, "times needs every"),
    ("rules: []", None, 1, "'rules' must be a non-empty list"),
    ("rules: [{action: kill", None, 1, "not valid YAML"),
    # what a hostile client sent: each was a 500, a hang or gigabytes before
    ("rules: [{every: 0.00001ms, action: kill}]", 0, 1, "every must be from 1ms to 10 years"),
    ("rules: [{every: 1s, jitter: 0.5ms, action: kill}]", 0, 1, "jitter must be 0, or from 1ms"),
    ("rules: [{after: " + "9" * 40 + ", action: kill}]", 0, 1, "after must be 0, or from 1ms"),
    ("rules: [{jitter: " + "9" * 400 + ", action: kill}]", None, 1, "a number of more than 100 digits"),
    ("seed: " + "1" * 27 + "\nrules: [{action: kill}]", None, 1, "seed must be a whole number from 0 to 2^64-1"),
    ("rules: [{action: kill}]\nx: \x00", None, None, "not valid YAML: unacceptable character #x0000"),
    ("rules: " + "[" * 5000 + "]" * 5000, None, 1, "nested deeper than 64 levels"),
    ("rules: [{ever, {every: 1ms}: 3}]", None, 1, "a key must be plain text"),  # was a TypeError (fuzzer)
    ("a: &a ['x','x','x','x','x','x','x','x','x']\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
     "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
     "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
     "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\nrules: *g\n", None, 7, "more than 1000000 values once aliases are expanded"),
]


@pytest.mark.parametrize("text,rule,line,message", BAD_SCHEDULES)
def test_a_bad_schedule_is_refused_with_its_rule_and_line(fleet, text, rule, line, message):
    reply = fleet.api.post("/chaos", content=text, headers=AUTH)
    assert reply.status_code == 400
    body = reply.json()
    assert message in body["error"]
    assert (body["rule"], body["line"]) == (rule, line)
    assert fleet.api.get("/chaos").json() == {"active": False}


def test_a_bad_schedule_leaves_the_running_one_alone(fleet):
    good = "seed: 0x10\nrules: [{after: 60s, action: kill, target: {percent: 0.5}, every: 1m, times: 2}]"
    assert fleet.api.post("/chaos", content=good, headers=AUTH).status_code == 200
    assert fleet.api.post("/chaos", content="rules: [{action: nope}]", headers=AUTH).status_code == 400
    status = fleet.api.get("/chaos").json()
    assert status["active"] is True and status["seed"] == 16
    assert (status["rules"][0]["percent"], status["rules"][0]["times"]) == (0.5, 2)
    assert status["next"][0]["t"] == 60.0 and status["next"][0]["action"] == "kill"


def test_a_schedule_kills_for_a_while_then_revives_and_stopping_reverts(fleet):
    schedule = f"""\
seed: 11
rules:
  - name: outage
    target: {{ports: {fleet.base}-{fleet.base + 99}, count: 5}}
    action: kill
    for: 400ms
  - name: brownout
    after: 100ms
    target: {{percent: 2}}
    action: {{fault: "503"}}
    for: 60s
"""
    since = fleet.api.get("/events").text.count("\n")
    assert fleet.api.post("/chaos", content=schedule, headers=AUTH).status_code == 200
    wait_for(lambda: states(fleet)["degraded"] == 10 and states(fleet)["killed"] == 5)
    killed = [event for event in events(fleet, since) if event["action"] == "kill"][0]["ports"]
    assert all(fleet.base <= port < fleet.base + 100 and refused(port) for port in killed)
    wait_for(lambda: states(fleet)["killed"] == 0)  # revived after 400 ms
    assert all(fleet.health(port).status_code == 200 for port in killed)
    upcoming = fleet.api.get("/chaos").json()["next"]
    assert upcoming[0]["name"] == "brownout" and upcoming[0]["revert"] is True
    assert fleet.api.delete("/chaos", headers=AUTH).json() == {"active": False}
    assert states(fleet)["degraded"] == 0  # its pending revert applied at once
    log = events(fleet, since)
    assert [(e["name"], e["action"], e.get("revert", False), e["t"]) for e in log] == [
        ("outage", "kill", False, 0.0), ("brownout", "fault", False, 0.1), ("outage", "revive", True, 0.4),
        ("brownout", "restore", True, 60.1)]
    assert log[-1]["stopped"] is True


def events(fleet, skip=0, since=None):
    """The event log as dicts: all of it, or those after seq ``since``; the first ``skip`` dropped."""
    query = "" if since is None else f"?since={since}"
    return [json.loads(line) for line in fleet.api.get(f"/events{query}").text.splitlines()][skip:]


def test_the_event_log_has_api_changes_and_filters_by_seq(fleet):
    base = fleet.base
    fleet.api.post(f"/kill?port={base + 7}", headers=AUTH)
    fleet.api.post(f"/fault?port={base + 8}&spec=500", headers=AUTH)
    log = events(fleet)
    kill, fault = log[-2], log[-1]
    assert (kill["source"], kill["action"], kill["ports"]) == ("api", "kill", [base + 7])
    assert (fault["action"], fault["spec"], fault["ports"]) == ("fault", "500", [base + 8])
    assert events(fleet, since=kill["seq"]) == [fault]
    assert f"event {fault['seq']}: api fault" in fleet.api.get("/logs").text


SEEDED = """\
seed: {seed}
rules:
  - name: flap
    every: 200ms
    jitter: 50ms
    target: {{percent: 2}}
    action: kill
    for: 100ms
  - name: brownout
    every: 300ms
    target: {{count: 7}}
    action: {{fault: "503:1,ok:1"}}
    for: 250ms
"""


def run_seeded(tmp_path, base, seed, until_s=1.2):
    """A fresh 500-port fleet running SEEDED from its start; the events due before ``until_s``."""
    path = tmp_path / f"chaos-{seed}.yaml"
    path.write_text(SEEDED.format(seed=seed))
    logged = []
    with start_fleet(500, "--chaos", str(path), "--workers", "2", base=base) as server:
        def past_until():  # events are applied in schedule order: one past until_s means all before it are in
            logged[:] = map(json.loads, httpx.get(f"{server.url}/events").text.splitlines())
            return any(e["t"] >= until_s for e in logged)
        wait_for(past_until)
        server.stop()
    return [(e["t"], e["name"], e["action"], e.get("revert", False), e["ports"]) for e in logged if e["t"] < until_s]


def test_a_seeded_schedule_replays_exactly(tmp_path):
    base = free_base(500)
    first = run_seeded(tmp_path, base, 9)
    assert len(first) >= 10
    assert run_seeded(tmp_path, base, 9) == first
    assert run_seeded(tmp_path, base, 10) != first  # another seed: other times (jitter) and ports


def test_a_bad_chaos_file_is_a_usage_error_naming_file_and_line(tmp_path):
    path = tmp_path / "chaos.yaml"
    path.write_text("rules:\n  - every: 30s\n    action: kill\n    for: forever\n")
    result = subprocess.run([sys.executable, "-m", "fastmock", "fleet", "10", "--base-port", "20000",
                             "--chaos", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"Invalid value for '--chaos': {path}:4:" in result.stderr
    assert "rule 0 (line 4): for: invalid duration 'forever'" in result.stderr


def read_sse(lines, wanted, timeout=10):
    """SSE messages (name, data) from a stream's lines until ``wanted(name, data)`` is true."""
    deadline = time.monotonic() + timeout
    name, seen = None, []
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            seen.append((name, json.loads(line[6:])))
            if wanted(*seen[-1]):
                return seen
        assert time.monotonic() < deadline, seen
    raise AssertionError(f"stream ended: {seen}")


def test_the_dashboard_stream_sends_a_snapshot_then_deltas_and_events(fleet):
    base = fleet.base
    with fleet.api.stream("GET", "/stream") as response:
        assert response.headers["content-type"] == "text/event-stream"
        lines = response.iter_lines()
        (name, snapshot), = read_sse(lines, lambda name, data: name == "snapshot")
        assert snapshot["groups"] == [[None, base, 500]] and snapshot["ports"] == 500
        assert snapshot["states"] == "1" * 500 and snapshot["counts"]["alive"] == 500
        assert snapshot["token_required"] is True
        fleet.api.post(f"/kill?port={base + 5}", headers=AUTH)
        fleet.api.post(f"/fault?ports={base + 10}-{base + 11}&spec=ok;delay=lognormal(200ms,2s)", headers=AUTH)
        seen = read_sse(lines, lambda name, data: name == "events" and data[-1]["action"] == "fault")
        if [11, 5] not in [data["changes"][-2:] for name, data in seen if name == "delta"]:
            seen += read_sse(lines, lambda name, data: name == "delta" and [11, 5] == data["changes"][-2:])
    changes = [value for name, data in seen if name == "delta" for value in data["changes"]]
    assert changes == [5, 2, 10, 5, 11, 5]  # [slot, display state, ...]
    logged = [event for name, data in seen if name == "events" for event in data]
    assert [event["action"] for event in logged] == ["kill", "fault"]
    last_counts = [data["counts"] for name, data in seen if name == "delta"][-1]
    assert last_counts["slow"] == 2 and last_counts["killed"] == 1


def test_the_dashboard_page_is_served(fleet):
    page = fleet.api.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'new EventSource("/stream"' in page.text and "<canvas" in page.text


def test_stats_report_the_chaos_flag(fleet):
    assert fleet.stats()["chaos"] is False
    fleet.api.post("/chaos", content="rules: [{after: 60s, action: kill}]", headers=AUTH)
    assert fleet.stats()["chaos"] is True


def test_stop_without_a_schedule_is_a_conflict(fleet):
    assert fleet.api.delete("/chaos", headers=AUTH).status_code == 409


def test_a_port_given_no_answer_closes_after_reset(fleet):
    port = fleet.base + 60
    fleet.api.post(f"/fault?port={port}&spec=close", headers=AUTH)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(100) == b""  # closed without an answer


def test_an_undo_after_scaling_down_leaves_the_removed_ports_alone(fleet):
    top = fleet.base + 499
    schedule = (f"rules: [{{target: {{ports: {top - 9}-{top}}}, action: kill, for: 300ms}},"
                f" {{after: 60s, action: kill}}]")
    assert fleet.api.post("/chaos", content=schedule, headers=AUTH).status_code == 200
    wait_for(lambda: states(fleet)["killed"] == 10)
    assert fleet.api.post("/scale?count=-10", headers=AUTH).status_code == 200
    wait_for(lambda: events(fleet)[-1].get("revert"))  # past the undo
    try:
        assert fleet.stats()["ports"] == 490 and states(fleet)["killed"] == 0
        assert all(refused(port) for port in range(top - 9, top + 1))  # not brought back by the undo
        undo = events(fleet)[-1]
        assert (undo["action"], undo["revert"], undo["ports"]) == ("revive", True, [])
        assert fleet.api.get("/chaos").json()["active"] is True
    finally:
        fleet.api.post("/scale?count=10", headers=AUTH)


def test_ctl_drives_faults_chaos_and_events(fleet, tmp_path):
    base = fleet.base

    def ctl(*args, check=True):
        result = subprocess.run([sys.executable, "-m", "fastmock", "ctl", "--url", fleet.server.url, "--token", TOKEN,
                                 *args], capture_output=True, text=True, timeout=30)
        assert not check or result.returncode == 0, result.stderr
        return result

    assert ctl("fault", f"{base}-{base + 4}", "503").stdout.strip() == f"5 port(s) {base}-{base + 4}: 503 (degraded)"
    assert fleet.health(base + 2).status_code == 503
    assert "5 degraded" in ctl("status").stdout
    listed = ctl("endpoints", "--state", "degraded").stdout.splitlines()
    assert [line.split()[:2] for line in listed[1:]] == [[str(port), "degraded"] for port in range(base, base + 5)]
    assert ctl("clear").stdout.strip() == "cleared the faults of 5 port(s)"
    bad = ctl("fault", "10-5", "503", check=False)
    assert bad.returncode == 2 and "'10-5' is not a port or a range" in bad.stderr
    assert ctl("fault", str(base), "503:x", check=False).stderr.startswith("Error: expected a weight")

    schedule = tmp_path / "chaos.yaml"
    schedule.write_text("seed: 4\nrules:\n  - name: later\n    after: 60s\n    action: kill\n")
    assert ctl("chaos", "start", str(schedule)).stdout.strip() == "chaos schedule started: 1 rule(s), seed 4"
    status = ctl("chaos").stdout
    assert "later" in status and "kill" in status
    assert ctl("chaos", "stop").stdout.strip() == "chaos schedule stopped (pending undos applied)"
    assert ctl("chaos").stdout.strip() == "no chaos schedule is running"
    assert ctl("chaos", "start", check=False).returncode == 2

    log = json.loads(ctl("events", "--json").stdout)
    assert [(event["action"], event["ports"][:1]) for event in log[-2:]] == [("fault", [base]), ("clear", [base])]
    table = ctl("events", "--since", str(log[-2]["seq"])).stdout.splitlines()
    assert table[0].split() == ["SEQ", "TIME", "BY", "ACTION", "PORTS", "FIRST"] and len(table) == 2


def test_a_schedule_body_past_the_limit_is_413(fleet):
    reply = fleet.api.post("/chaos", content="#" * ((1 << 20) + 1), headers=AUTH)
    assert reply.status_code == 413
    assert fleet.api.get("/chaos").json() == {"active": False}


def test_a_schedule_asking_for_more_events_than_the_cap_leaves_the_api_responsive(fleet):
    rules = ", ".join("{every: 1ms, action: kill, target: {count: 1}, for: 1ms}" for _ in range(20))
    assert fleet.api.post("/chaos", content=f"rules: [{rules}]", headers=AUTH).status_code == 200
    for _ in range(20):  # 20,000 events/s asked: at most 1,000/s applied, the API answers (10 s client timeout)
        assert fleet.api.get("/stats").status_code == 200
    assert fleet.api.delete("/chaos", headers=AUTH).status_code == 200
    last = 0
    while chunk := events(fleet, since=last):  # /events pages by 10,000
        last = chunk[-1]["seq"]
    time.sleep(0.2)  # a window in which a schedule still running would log ~200 events
    assert events(fleet, since=last) == []  # stopped means stopped
