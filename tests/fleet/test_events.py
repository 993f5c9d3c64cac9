"""The fleet's event log (fleet/management/events.py) on its own."""

from fastmock.fleet.management.events import EventLog
from fastmock.fleet.state import FleetState
from fastmock.runtime import recent_log_lines


def test_events_are_numbered_timed_and_name_ports():
    log = EventLog(FleetState(("127.0.0.1",), 10000, 100, 1).name)
    first = log.record("api", "kill", [0, 7])
    second = log.record("chaos", "fault", [3], spec="503")
    assert (first["seq"], second["seq"]) == (1, 2)
    assert first["ports"] == [10000, 10007] and second["spec"] == "503"
    assert first["time"] <= second["time"]
    assert [event["seq"] for event in log.after(0)] == [1, 2]
    assert log.after(1) == [second] and log.after(2) == []
    assert recent_log_lines[-1] == "fastmock: event 2: chaos fault spec=503: 1 port(s) 10003"


def test_on_several_addresses_events_name_host_and_port():
    log = EventLog(FleetState(("127.0.0.1", "127.0.0.2", "::1"), 10000, 100, 1).name)
    assert log.record("api", "kill", [0, 101, 299])["ports"] == ["127.0.0.1:10000", "127.0.0.2:10001", "[::1]:10099"]


def test_the_log_keeps_the_last_events_only():
    log = EventLog(FleetState(("127.0.0.1",), 10000, 100, 1).name, size=3)
    for slot in range(5):
        log.record("api", "revive", [slot])
    assert [event["seq"] for event in log.after(0)] == [3, 4, 5]
    assert log.seq == 5
