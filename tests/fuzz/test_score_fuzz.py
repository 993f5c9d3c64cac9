"""``fastmock score`` reads files and webhook bodies that others wrote: hostile event logs, alert files and
Alertmanager notices are refused with a ScoreError naming where (or, for a notice, not taken), never
crashing, and whatever is read scores into a consistent report."""

import json
import random

from cases import mutate, seeds
from fastmock.score import (BAD_KINDS, Badness, ScoreError, WebhookAlerts, alerts_from_text, events_from_text,
                            incidents_from_events, score)

HOSTILE = [-1, 0, 1, 10001, 65536, 1 << 63, 1e300, -1e300, 2.5, "", "x", "10001", "127.0.0.1:10001", "[::1]:10001",
           "http://127.0.0.1:10001/health", "http://[::1", ":", "a:b:c", None, True, [], {}, [1], {"a": 1}]
ACTIONS = ["kill", "revive", "fault", "clear", "restore", "tls", "restore-tls", "scale", "", None, 1]
SPECS = ["503", "500:1,ok:9", "ok;delay=2s", "drip(1K)", "timeout", "ok;delay=lognormal(1s,2)", "", "5xx", "(", None,
         7]
STATES = ["valid", "expired", "expiring(5)", "expiring(", "wrong-host", "", None, 3]
TIMES = [0, 1, 100, 1e9, 1796359520.5, "2026-12-03T10:00:00Z", "2026-12-03T10:00:00.123456789+01:00", "0001-01-01",
         "yesterday", "", None, -5, 1e300]


def _pick(rng, items):
    return items[rng.randrange(len(items))]


def _port(rng):
    return rng.choice([10000 + rng.randrange(5), f"127.0.0.{rng.randrange(1, 3)}:{10000 + rng.randrange(5)}",
                       _pick(rng, HOSTILE)])


def _event(rng, seq):
    event = {"seq": seq, "time": rng.choice([rng.uniform(0, 200), _pick(rng, TIMES)]) if rng.random() < 0.2
             else rng.uniform(0, 200), "action": _pick(rng, ACTIONS[:7]) if rng.random() < 0.9 else _pick(rng, ACTIONS),
             "ports": [_port(rng) for _ in range(rng.randrange(4))]}
    if rng.random() < 0.5:
        event["spec"] = _pick(rng, SPECS)
    if rng.random() < 0.3:
        event["state"] = _pick(rng, STATES)
    if rng.random() < 0.1:
        event[rng.choice(["seq", "pod", "time", "ports"])] = _pick(rng, HOSTILE)
    return event


def _mutate(rng, text):
    """cases.mutate's byte changes, and sometimes a token that JSON or CSV readers trip on."""
    data = mutate(rng, text.encode())
    if rng.random() < 0.5:
        at = rng.randrange(len(data) + 1)
        data = data[:at] + rng.choice([b",", b'"', b"{", b"]", b"\xef\xbb\xbf", b"NaN", b"1e999", b"\r\n"]) + data[at:]
    return data.decode("utf-8", "replace")


def _check(report, alerts):
    assert report["incidents"] == report["detected"] + report["missed"]
    assert report["recall"] is None or 0 <= report["recall"] <= 1
    assert report["precision"] is None or 0 <= report["precision"] <= 1
    assert report["false_alerts"] <= report["alerts"] <= len(alerts)
    for row in report["incidents_list"]:
        assert row["detect_s"] is None or row["detect_s"] >= 0
        assert row["detected"] == (row["detect_s"] is not None)
    json.dumps(report, allow_nan=False)  # --json prints it


def test_hostile_event_logs_and_alert_files_are_refused_or_scored():
    for seed in seeds("score files", 0.05):
        rng = random.Random(seed)
        events_text = "".join(json.dumps(_event(rng, seq)) + "\n" for seq in range(1, rng.randrange(2, 12)))
        rows = [(rng.choice([rng.uniform(0, 220), _pick(rng, TIMES)]) if rng.random() < 0.2 else rng.uniform(0, 220),
                 rng.choice([10000 + rng.randrange(6), _pick(rng, HOSTILE)]) if rng.random() < 0.2
                 else 10000 + rng.randrange(6), rng.choice(["firing", "resolved", "Resolved ", "pending", ""]))
                for _ in range(rng.randrange(8))]
        if rng.random() < 0.5:
            alerts_text = "time,target,state\n" + "".join(f"{t},{target},{state}\n" for t, target, state in rows)
        else:
            alerts_text = "".join(json.dumps({"time": t, "target": target, "state": state}) + "\n"
                                  for t, target, state in rows)
        if rng.random() < 0.7:
            events_text, alerts_text = _mutate(rng, events_text), _mutate(rng, alerts_text)
        try:
            events = events_from_text("events.jsonl", events_text)
            alerts = alerts_from_text("alerts", alerts_text, by_port=rng.random() < 0.5)
        except ScoreError as exc:
            assert str(exc).count(":") >= 3, exc  # NAME:LINE:COLUMN: why
            continue
        badness = Badness(tuple(rng.sample(BAD_KINDS, rng.randrange(1, 6))), rng.random(), rng.uniform(0, 3),
                          rng.random() < 0.5)
        incidents = incidents_from_events(events, badness)
        _check(score(incidents, alerts, until=250, grace_s=rng.choice([0, 1, 30]), skew_s=rng.uniform(-5, 5),
                     endpoints={str(10000 + n) for n in range(4)} if rng.random() < 0.5 else None), alerts)


def test_hostile_alertmanager_notices_are_not_taken_or_scored():
    for seed in seeds("score notices", 0.05):
        rng = random.Random(seed)
        received = WebhookAlerts(rng.choice(["instance", "target", ""]))
        for _ in range(rng.randrange(1, 5)):
            alerts = [{"status": rng.choice(["firing", "resolved", "firing", _pick(rng, HOSTILE)]),
                       "labels": rng.choice([{"instance": rng.choice([f"127.0.0.1:{10000 + rng.randrange(4)}",
                                                                      _pick(rng, HOSTILE)])}, _pick(rng, HOSTILE)])
                       if rng.random() < 0.2 else {"instance": f"127.0.0.1:{10000 + rng.randrange(4)}", "x": "y"},
                       "startsAt": _pick(rng, TIMES), "endsAt": _pick(rng, TIMES),
                       "fingerprint": rng.choice(["a", "b", None])} for _ in range(rng.randrange(4))]
            body = json.dumps(rng.choice([{"alerts": alerts}, {"alerts": alerts}, {"alerts": _pick(rng, HOSTILE)},
                                          _pick(rng, HOSTILE)])).encode()
            taken = received.receive(_mutate(rng, body.decode()).encode() if rng.random() < 0.3 else body,
                                     received=rng.uniform(0, 200))
            assert taken in (True, False)
        alerts = received.spells(by_port=rng.random() < 0.5)
        incidents = incidents_from_events([{"seq": 1, "time": 50.0, "action": "kill", "ports": ["127.0.0.1:10001"]},
                                           {"seq": 2, "time": 90.0, "action": "revive", "ports": ["127.0.0.1:10001"]}])
        _check(score(incidents, alerts, until=250, unlabeled=received.unlabeled), alerts)
