"""fastmock score: the fleet's events as incidents, alerts as spells, and the report card between them."""

import datetime
import json
import socket
import subprocess
import sys
import time

import httpx
import pytest

from fastmock.score import (Badness, RunningScore, Spell, WebhookAlerts, alerts_from_text, incidents_from_events,
                            score, score_text)
from helpers import AUTH, TOKEN, free_port, recv_responses, start_fleet, wait_for


def event(t, action, ports, **details):
    return {"seq": int(t * 1000), "time": t, "action": action, "ports": ports, **details}


def test_overlapping_bad_spells_of_one_endpoint_are_one_incident():
    incidents = incidents_from_events([
        event(100, "kill", [10001]), event(105, "fault", [10001, 10002], spec="503"),
        event(110, "revive", [10001]),  # still degraded: the incident goes on
        event(120, "clear", [10001, 10002]), event(130, "fault", [10003], spec="ok;delay=2s"),  # slow: not bad by default
        event(140, "tls", [10004], state="expiring(5)"), event(150, "tls", [10005], state="wrong-host"),
    ])
    assert [(i.endpoint, i.kind, i.start, i.end) for i in incidents] == [
        ("10001", "killed", 100, 120), ("10002", "degraded", 105, 120), ("10005", "tls:wrong-host", 150, None)]
    expiring = incidents_from_events([event(140, "tls", [10004], state="expiring(5)")],
                                     Badness(alert_on_expiring=True))
    assert [(i.kind, i.end) for i in expiring] == [("tls:expiring(5)", None)]


def test_a_chaos_revert_ends_or_goes_on_with_the_spec_it_restores():
    incidents = incidents_from_events([
        event(1, "fault", [10001, 10002], spec="503"), event(2, "restore", [10001], spec=None),
        event(2, "restore", [10002], spec="500"),  # back to the fault it had before: still down
        event(3, "tls", [10003], state="expired"), event(4, "restore-tls", [10003], state="valid"),
        event(5, "tls", [10004], state="expired"), event(6, "restore-tls", [10004], state="wrong-host")])
    assert [(i.endpoint, i.start, i.end) for i in incidents] == [
        ("10001", 1, 2), ("10002", 1, None), ("10003", 3, 4), ("10004", 5, None)]


def test_flaky_and_slow_ports_count_past_a_share_and_a_delay():
    faults = [event(1, "fault", [10001], spec="500:1,ok:9"), event(1, "fault", [10002], spec="500:1,ok:1"),
              event(1, "fault", [10003], spec="ok;delay=300ms"), event(1, "fault", [10004], spec="ok;delay=3s"),
              event(1, "fault", [10005], spec="drip(1K)")]
    assert [i.endpoint for i in incidents_from_events(faults, Badness(("flaky",)))] == ["10001", "10002"]
    assert [i.endpoint for i in incidents_from_events(faults, Badness(("flaky",), flaky_above=0.2))] == ["10002"]
    assert [i.endpoint for i in incidents_from_events(faults, Badness(("slow",), slow_above_s=1))] == \
        ["10004", "10005"]  # a dripping port is slow whatever its delay


def test_detection_recovery_misses_false_alerts_and_flapping():
    incidents = incidents_from_events([
        event(100, "kill", [10001]), event(130, "revive", [10001]),   # detected at 104, flaps once
        event(200, "kill", [10002]), event(202, "revive", [10002]),   # too short: missed
    ])
    alerts = [Spell("10001", 104, 110), Spell("10001", 112, 133),     # two spells in one incident
              Spell("10003", 300, 310),                               # nothing was wrong there: false
              Spell("10001", 136, 140)]                               # 6 s after the end: false without grace
    report = score(incidents, alerts, until=400)
    assert (report["incidents"], report["detected"], report["missed"], report["recall"]) == (2, 1, 1, 0.5)
    assert (report["detect_p50"], report["recover_p50"], report["flapping"]) == (4, 3, 1)
    assert report["false_alerts"] == 2 and report["precision"] == 0.5
    assert [row["endpoint"] for row in report["incidents_list"] if not row["detected"]] == ["10002"]
    fresh = [Spell(a.endpoint, a.start, a.end) for a in alerts]
    graced = score(incidents_from_events([event(100, "kill", [10001]), event(130, "revive", [10001])]), fresh[3:],
                   until=400, grace_s=10)
    assert graced["false_alerts"] == 0 and graced["detected"] == 1  # an alert 6 s late still belongs to it


def test_a_monitor_clock_ahead_is_set_back_by_skew():
    truth = [event(100, "kill", [10001]), event(120, "revive", [10001])]
    early = score(incidents_from_events(truth), [Spell("10001", 107, 128)], until=200, skew_s=5)
    assert (early["detect_p50"], early["recover_p50"]) == (2, 3)  # 107 - 5 = 102, 128 - 5 = 123
    before = score(incidents_from_events(truth), [Spell("10001", 98, 121)], until=200)
    assert before["detect_p50"] == 0  # firing before the truth: detected at once


def test_alerts_name_endpoints_by_url_host_port_or_port():
    text = ("time,target,state\n10,http://127.0.0.2:10001/health,firing\n20,127.0.0.2:10001,resolved\n"
            "30,10002,firing\n")
    assert [(a.endpoint, a.start, a.end) for a in alerts_from_text("a.csv", text, by_port=False)] == \
        [("127.0.0.2:10001", 10, 20), ("10002", 30, None)]
    assert [a.endpoint for a in alerts_from_text("a.csv", text, by_port=True)] == ["10001", "10002"]
    jsonl = '{"time": "2026-12-03T10:00:00.123456789Z", "target": "10001", "state": "firing"}\n'
    assert alerts_from_text("a.jsonl", jsonl, True)[0].start == pytest.approx(
        datetime.datetime(2026, 12, 3, 10, 0, 0, 123456, tzinfo=datetime.timezone.utc).timestamp())
    several = incidents_from_events([event(1, "kill", ["127.0.0.2:10001"]), event(2, "revive", ["127.0.0.2:10001"])])
    assert several[0].endpoint == "127.0.0.2:10001"


def notice(*alerts):
    return json.dumps({"version": "4", "status": "firing", "alerts": list(alerts)}).encode()


def alert(status, starts, ends=None, **labels):
    return {"status": status, "labels": {"alertname": "EndpointDown", **labels}, "startsAt": starts,
            "endsAt": ends or "0001-01-01T00:00:00Z"}


def test_webhook_notices_become_one_spell_per_alert():
    received = WebhookAlerts("instance")
    start, end = "2026-12-03T10:00:04Z", "2026-12-03T10:00:30Z"
    assert received.receive(notice(alert("firing", start, instance="127.0.0.1:10001")), received=1)
    assert received.receive(notice(alert("firing", start, instance="127.0.0.1:10001")), received=2)  # a repeat
    assert received.receive(notice(alert("resolved", start, end, instance="127.0.0.1:10001"),
                                   # fired and resolved within one group_interval: only the resolved notice comes
                                   alert("resolved", "2026-12-03T10:01:00Z", "2026-12-03T10:01:05Z", instance="10002"),
                                   alert("firing", start, alertname="Other")), received=3)  # no instance label
    assert received.receive(notice(alert("firing", start, alertname="Other")), received=4)  # the same, again
    spells = sorted((a.endpoint, a.start, a.end, a.noticed) for a in received.spells(by_port=True))
    at = datetime.datetime(2026, 12, 3, 10, 0, tzinfo=datetime.timezone.utc).timestamp()
    assert spells == [("10001", at + 4, at + 30, 1), ("10002", at + 60, at + 65, 3)]  # noticed: the first notice
    assert received.unlabeled == 1
    for body in (b"not json", b"[1]", b'{"alerts": {}}', b'{"alerts": [1]}', b'{"alerts": [{"labels": "x"}]}'):
        assert not received.receive(body), body
    assert len(received.spells(by_port=True)) == 2


def test_notify_latency_is_when_the_first_notice_came():
    incidents = incidents_from_events([event(100, "kill", [10001]), event(130, "revive", [10001]),
                                       event(200, "kill", [10002]), event(210, "revive", [10002])])
    report = score(incidents, [Spell("10001", 104, 131, noticed=110), Spell("10001", 105, 132, noticed=107),
                               Spell("10002", 195, 211, noticed=196)], until=300, skew_s=2)
    rows = {row["endpoint"]: row for row in report["incidents_list"]}
    assert (rows["10001"]["detect_s"], rows["10001"]["notify_s"]) == (2, 7)  # the earlier notice of two rules
    assert rows["10002"]["notify_s"] == 0  # noticed before the outage: at once (arrivals take no --skew)
    assert "notified (the first notice's arrival): p50 0.00s, p95 7.00s" in score_text(report)
    assert score(incidents, [Spell("10001", 104, 131)], until=300)["notify_p50"] is None  # not from a webhook


def test_two_rules_alerting_on_one_endpoint_at_once_are_one_alert():
    incidents = incidents_from_events([event(100, "kill", [10001]), event(130, "revive", [10001])])
    report = score(incidents, [Spell("10001", 104, 131), Spell("10001", 106, 133), Spell("10001", 140, 150)],
                   until=200, unlabeled=2)
    assert (report["alerts"], report["flapping"], report["false_alerts"], report["recover_p50"]) == (2, 0, 1, 3)
    assert report["unlabeled"] == 2 and "2 alert(s) without the target label" in score_text(report)


def test_a_port_with_outages_is_known_after_a_scale_down_removed_it():
    incidents = incidents_from_events([event(100, "kill", [10009]), event(110, "revive", [10009])])
    report = score(incidents, [Spell("10009", 101, 111), Spell("10010", 101, 111)], until=200, endpoints={"10001"})
    assert (report["unknown_targets"], report["detected"], report["precision"]) == (["10010"], 1, 1)


def test_an_alert_just_before_an_outage_belongs_to_it_within_the_grace():
    incidents = incidents_from_events([event(100, "kill", [10001]), event(130, "revive", [10001])])
    assert score(incidents, [Spell("10001", 90, 98)], until=200)["false_alerts"] == 1
    assert score(incidents, [Spell("10001", 90, 98)], until=200, grace_s=5)["false_alerts"] == 0


def test_a_running_score_grows_with_the_log_and_forgets_what_it_lost():
    from fastmock.fleet.management.events import EventLog
    from fastmock.fleet.state import FleetState

    state = FleetState(("127.0.0.1",), 10000, 10, 1)
    log = EventLog(state.port, size=4)
    running = RunningScore(log, state)
    log.record("api", "kill", [1])
    firing = alert("firing", "2000-01-01T00:00:00Z", instance="127.0.0.1:10001")
    assert running.receive(notice(firing))
    assert running.report(10)["incidents"] == 1 and running.report(10)["detected"] == 1
    log.record("api", "revive", [1])
    assert running.receive(notice({**firing, "status": "resolved", "endsAt": rfc3339(time.time())}))
    report = running.report(10)
    assert report["incidents_list"][0]["end"] is not None and report["alerts"] == 1
    time.sleep(0.002)
    for slot in (2, 3, 4, 5):  # the log keeps 4 events: the first two go, and the outage with them
        log.record("api", "kill", [slot])
    assert [row["endpoint"] for row in running.report(10)["incidents_list"]] == ["10002", "10003", "10004", "10005"]
    assert running.report(10)["alerts"] == 0


def fastmock(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "fastmock", *map(str, args)], capture_output=True, text=True,
                          timeout=60, **kwargs)


def test_the_cli_scores_files_and_gates_on_thresholds(tmp_path):
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in [
        event(100, "kill", [10001]), event(110, "revive", [10001]), event(200, "kill", [10002]),
        event(201, "revive", [10002])]))
    (tmp_path / "alerts.csv").write_text("time,target,state\n103,10001,firing\n112,10001,resolved\n"
                                         "300,10004,firing\n")
    result = fastmock("score", "--events", "events.jsonl", "--alerts", "alerts.csv", "--threshold", "recall>=0.5",
                      "--threshold", "detect_p95<5s", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "killed             2        1      1   50.0%      3.00s" in result.stdout
    assert "alerts 2: 1 false, precision 50.0%" in result.stdout and "  missed  10002 killed at 1970-01-01T00:03:20.000Z for 1.00s" in result.stdout
    failing = fastmock("score", "--events", "events.jsonl", "--alerts", "alerts.csv", "--threshold", "missed==0",
                       "--threshold", "killed.detect_max<=3s", "--threshold", "degraded.recall>=0", "--json",
                       cwd=tmp_path)
    report = json.loads(failing.stdout)
    assert failing.returncode == 1 and report["missed"] == 1
    assert [(check["ok"], check["value"]) for check in report["thresholds"]] == [(False, 1), (True, 3), (False, None)]
    # (no degraded outage happened: a threshold on it fails, as the monitor was not tried on one)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("alerts.jsonl", '{"time": 1, "target": 10001, "state": "firing"}\n{"time": 2, "target": }\n',
     "alerts.jsonl:2:23: Expecting value"),
    ("alerts.jsonl", '{"time": "soon", "target": 10001, "state": "firing"}\n',
     "alerts.jsonl:1:10: 'soon' is not a time"),
    ("alerts.jsonl", '{"time": 1e999, "target": 10001, "state": "firing"}\n', "alerts.jsonl:1:10: inf is not a time"),
    ("alerts.jsonl", '{"time": 1, "target": 10001}\n', "alerts.jsonl:1:29: no state"),
    ("alerts.jsonl", '{"time": 1, "target": 10001, "state": "firing"}\n[1]\n', "alerts.jsonl:2:1: not a JSON object"),
    ("alerts.csv", "time,target,state\n1,10001,firing\n2,10001,burning\n", "alerts.csv:3:9: state 'burning'"),
    ("alerts.csv", "time,target,state\n1,10001\n", "alerts.csv:2:9: no state"),
    ("alerts.csv", "time,target,state\nmonday,10001,firing\n", "alerts.csv:2:1: 'monday' is not a time"),
    ("alerts.csv", "time,target\n1,10001\n", "alerts.csv:1:1: no 'state' column"),
])
def test_bad_alert_files_name_the_line(tmp_path, name, text, message):
    (tmp_path / "events.jsonl").write_text(json.dumps(event(1, "kill", [10001])) + "\n")
    (tmp_path / name).write_text(text)
    result = fastmock("score", "--events", "events.jsonl", "--alerts", name, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def test_alertmanager_webhooks_against_a_live_fleet():
    with start_fleet(20, "--token", TOKEN) as fleet:
        api = httpx.Client(base_url=fleet.url, headers=AUTH, timeout=10)
        port = api.get("/endpoints", params={"limit": 1, "format": "json"}).json()[0]["port"]
        listen = free_port()
        scorer = subprocess.Popen([sys.executable, "-m", "fastmock", "score", "--fleet", fleet.url, "--listen",
                                   f"127.0.0.1:{listen}", "--duration", "4s", "--json"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)

        def post(alerts):
            try:
                return httpx.post(f"http://127.0.0.1:{listen}/", json={"version": "4", "status": "firing",
                                                                        "alerts": alerts}).status_code == 200
            except httpx.ConnectError:
                return False

        wait_for(lambda: post([]))
        assert httpx.post(f"http://127.0.0.1:{listen}/", content=b'[{"alerts": []}]').status_code == 400
        with socket.create_connection(("127.0.0.1", listen)) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.0 413")
        api.post("/kill", params={"port": port})
        killed_at = time.time()
        labels = {"alertname": "EndpointDown", "instance": f"http://127.0.0.1:{port}/health"}
        assert post([{"status": "firing", "labels": labels, "startsAt": rfc3339(killed_at + 0.5),
                      "endsAt": "0001-01-01T00:00:00Z"}])  # the monitor noticed 0.5 s after the kill
        time.sleep(1)  # the outage goes on after the alert
        api.post("/revive", params={"port": port})
        revived_at = time.time()
        assert post([{"status": "resolved", "labels": labels, "startsAt": rfc3339(killed_at + 0.5),
                      "endsAt": rfc3339(revived_at + 0.7)},
                     {"status": "firing", "labels": {"instance": "127.0.0.1:1"}, "startsAt": rfc3339(revived_at)}])
        out, err = scorer.communicate(timeout=30)
        assert scorer.returncode == 0, err
        report = json.loads(out)
        assert (report["incidents"], report["detected"], report["missed"]) == (1, 1, 0)
        assert report["detect_p50"] == pytest.approx(0.5, abs=0.2)
        assert report["notify_p50"] == pytest.approx(0, abs=0.2)  # its notice came at once, before the alert's time
        assert report["recover_p50"] == pytest.approx(0.7, abs=0.2)
        assert report["unknown"] == 1 and report["unknown_targets"] == ["1"] and report["false_alerts"] == 0
        fleet.stop()


def test_a_fleet_scores_its_monitor_as_it_runs():
    listen = free_port()
    with start_fleet(5, "--token", TOKEN, "--score-listen", f"127.0.0.1:{listen}", "--score-target-label", "target") \
            as fleet:
        api = httpx.Client(base_url=fleet.url, headers=AUTH, timeout=10)
        port = api.get("/endpoints", params={"limit": 1, "format": "json"}).json()[0]["port"]
        assert api.get("/score").json()["incidents"] == 0
        api.post("/kill", params={"port": port})
        killed_at = time.time()
        webhook = f"http://127.0.0.1:{listen}/"
        firing = {"status": "firing", "labels": {"target": f"127.0.0.1:{port}"}, "startsAt": rfc3339(killed_at + 0.2)}
        assert httpx.post(webhook, json={"alerts": [firing]}).status_code == 200
        assert httpx.post(webhook, content=b"not json").status_code == 400
        assert httpx.get(webhook).status_code == 405
        time.sleep(0.3)  # until the alert's own start time has come
        report = api.get("/score").json()
        assert (report["incidents"], report["detected"], report["false_alerts"]) == (1, 1, 0)
        assert report["detect_p50"] == pytest.approx(0.2, abs=0.15)
        shown = fastmock("ctl", "--url", fleet.url, "score")
        assert shown.returncode == 0 and "killed             1        1      0  100.0%" in shown.stdout, shown.stderr
        fleet.stop()
    with start_fleet(3) as plain:
        assert httpx.get(plain.url + "/score").status_code == 409
        unscored = fastmock("ctl", "--url", plain.url, "score")
        assert unscored.returncode == 1 and "--score-listen" in unscored.stderr, unscored.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["--alerts", "alerts.csv", "--flaky-above", "150%"], "'--flaky-above': '150%' is not a share"),
    (["--alerts", "alerts.csv", "--bad", "killed,sad"], "'--bad': 'sad': not one of"),
    (["--alerts", "alerts.csv", "--threshold", "kiled.recall>1"], "unknown metric 'kiled.recall'"),
    (["--prometheus", "http://127.0.0.1:1"], "Prometheus at http://127.0.0.1:1 does not answer"),
    ([], "give the alerts: --alerts FILE, --listen HOST:PORT or --prometheus URL"),
])
def test_bad_score_options_are_usage_errors(tmp_path, args, message):
    (tmp_path / "events.jsonl").write_text(json.dumps(event(1, "kill", [10001])) + "\n")
    (tmp_path / "alerts.csv").write_text("time,target,state\n")
    result = fastmock("score", "--events", "events.jsonl", *args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


@pytest.mark.parametrize(("text", "message"), [
    ('{"time": 1, "action": "kill", "ports": [10001]}\n{"time": 2, "action": "kill", ports: []}\n',
     "events.jsonl:2:31: Expecting property name"),
    ('[1]\n', "events.jsonl:1:1: not an event"),
    ('{"time": "noon", "action": "kill", "ports": [10001]}\n', "events.jsonl:1:1: an event's time is epoch seconds"),
    ('{"time": 1, "action": "kill", "ports": 10001}\n', "events.jsonl:1:1: an event has an action and a list of ports"),
    ('{"time": 1, "action": "fault", "ports": [10001], "spec": 503}\n', "events.jsonl:1:1: an event's spec is a text"),
])
def test_bad_event_files_name_the_line(tmp_path, text, message):
    (tmp_path / "events.jsonl").write_text(text)
    (tmp_path / "alerts.csv").write_text("time,target,state\n")
    result = fastmock("score", "--events", "events.jsonl", "--alerts", "alerts.csv", cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_files_past_max_size_and_endpoints_the_fleet_never_had(tmp_path):
    (tmp_path / "events.jsonl").write_text(json.dumps(event(100, "kill", [10001])) + "\n")
    (tmp_path / "alerts.csv").write_text("time,target,state\n101,10001,firing\n102,10009,firing\n"
                                         "103,10002,firing\n104,10002,resolved\n")
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:10001/\nhttp://127.0.0.1:10002/\n")
    result = fastmock("score", "--events", "events.jsonl", "--alerts", "alerts.csv", "--endpoints-file", "urls.txt",
                      "--json", cwd=tmp_path)
    report = json.loads(result.stdout)
    assert (report["unknown_targets"], report["false_alerts"], report["detected"]) == (["10009"], 1, 1)
    big = fastmock("score", "--events", "events.jsonl", "--alerts", "alerts.csv", "--max-size", "80", cwd=tmp_path)
    assert big.returncode == 2 and "alerts.csv" in big.stderr and "over 80 bytes" in big.stderr, big.stderr
    both = fastmock("score", "--fleet", "http://127.0.0.1:1", "--endpoints-file", "urls.txt", "--alerts", "alerts.csv",
                    cwd=tmp_path)
    assert both.returncode == 2 and "'--endpoints-file': only with --events" in both.stderr, both.stderr


def test_a_log_that_lost_its_first_events_is_scored_from_the_first_it_kept(tmp_path):
    kept = [{**event(100, "kill", [10001]), "seq": 50001}, {**event(110, "revive", [10001]), "seq": 50002}]
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in kept))
    (tmp_path / "alerts.csv").write_text("time,target,state\n50,10002,firing\n60,10002,resolved\n"
                                         "103,10001,firing\n112,10001,resolved\n")
    result = fastmock("score", "--events", "events.jsonl", "--alerts", "alerts.csv", "--json", cwd=tmp_path)
    assert "scoring from 100.000, without 1 alert(s) that ended before" in result.stderr
    report = json.loads(result.stdout)
    assert (report["alerts"], report["false_alerts"], report["detected"]) == (1, 0, 1)


def test_a_chaos_schedule_is_truth_from_start_to_revert():
    with start_fleet(4, "--token", TOKEN) as fleet:
        api = httpx.Client(base_url=fleet.url, headers=AUTH, timeout=10)
        api.post("/chaos", content="rules: [{target: {count: 2}, action: {fault: '503'}, for: 300ms}]")
        wait_for(lambda: not api.get("/chaos").json()["active"])
        result = fastmock("score", "--fleet", fleet.url, "--alerts", "/dev/null", "--json")
        rows = json.loads(result.stdout)["incidents_list"]
        assert [(row["kind"], round(row["end"] - row["start"], 1)) for row in rows] == [("degraded", 0.3)] * 2
        fleet.stop()


def test_a_fleet_that_guards_its_reads_is_scored_with_its_token(tmp_path):
    (tmp_path / "alerts.csv").write_text("time,target,state\n")
    with start_fleet(2, "--token", TOKEN, "--token-reads") as fleet:
        without = fastmock("score", "--fleet", fleet.url, "--alerts", "alerts.csv", cwd=tmp_path)
        assert without.returncode == 2 and "'--fleet'" in without.stderr and "token" in without.stderr, without.stderr
        # with --listen the fleet is asked first: a wrong token is no surprise after the listening
        listening = fastmock("score", "--fleet", fleet.url, "--token", "wrong", "--listen", f"127.0.0.1:{free_port()}",
                             "--duration", "1h", cwd=tmp_path)
        assert listening.returncode == 2 and "'--fleet'" in listening.stderr, listening.stderr
        scored = fastmock("score", "--fleet", fleet.url, "--token", TOKEN, "--alerts", "alerts.csv", "--json",
                          cwd=tmp_path)
        assert scored.returncode == 0 and json.loads(scored.stdout)["incidents"] == 0, scored.stderr
        fleet.stop()
    token_alone = fastmock("score", "--events", "/dev/null", "--token", TOKEN, "--alerts", "alerts.csv", cwd=tmp_path)
    assert token_alone.returncode == 2 and "'--token': only with --fleet" in token_alone.stderr


def test_every_event_of_a_long_run_is_truth():
    """More events than one page of GET /events (10,000) are all read."""
    with start_fleet(2, "--token", TOKEN) as fleet:
        api = httpx.Client(base_url=fleet.url, headers=AUTH, timeout=10)
        port = api.get("/endpoints", params={"limit": 1, "format": "json"}).json()[0]["port"]
        outages = 5001
        with fleet.connect() as sock:  # pipelined: a few seconds
            ask = "".join(f"POST /{action}?port={port} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                          f"Content-Length: 0\r\n\r\n" for _ in range(outages) for action in ("kill", "revive"))
            sock.sendall(ask.encode())
            assert {response.status_code for response, _ in recv_responses(sock, 2 * outages, timeout=60)} == {200}
        result = fastmock("score", "--fleet", fleet.url, "--alerts", "/dev/null", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["incidents"] == outages
        fleet.stop()
