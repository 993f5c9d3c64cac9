"""The request log ring behind /getlogs: fixed-size records, oldest first, bounded fields, the sink."""

import time

import pytest

from fastmock._core import RequestLog


def test_records_come_back_oldest_first_with_their_fields():
    log = RequestLog(10)
    before = time.time()
    log.append("GET", "/health", "127.0.0.1:5000", 200, latency_s=0.0025)
    log.append("POST", "/echo?x=1", "[::1]:6000", 201, server="[::1]:8080")
    log.append("GET", "http://other.example/x", "c", 200)  # an absolute-form target stays as it came
    records = log.last(10)
    assert [r["url"] for r in records] == ["http://127.0.0.1:8080/health", "http://[::1]:8080/echo?x=1",
                                           "http://other.example/x"]
    first = records[0]
    assert first["method"] == "GET" and first["client"] == "127.0.0.1:5000" and first["status"] == 200
    assert first["outcome"] == "ok" and first["latency_ms"] == pytest.approx(2.5)
    assert before - 1 < first["time"] < time.time() + 1  # wall clock, though stamped from the monotonic one


def test_the_ring_keeps_the_last_capacity_records():
    log = RequestLog(3)
    for i in range(10):
        log.append("GET", f"/{i}", "c", 200)
    assert len(log) == 3
    assert [r["url"][-2:] for r in log.last(100)] == ["/7", "/8", "/9"]
    assert [r["url"][-2:] for r in log.last(2)] == ["/8", "/9"]
    assert log.last(0) == []


def test_long_fields_are_cut_to_their_record_size():
    log = RequestLog(1)
    log.append("X" * 40, "/" + "p" * 500, "c" * 100, 200, server="s" * 100)
    record = log.last(1)[0]
    assert record["method"] == "X" * 16 and len(record["client"]) == 48
    assert record["url"] == "http://" + "s" * 48 + "/" + "p" * 159  # target 160, server 48


def test_the_sink_gets_each_record_and_its_failure_loses_nothing():
    seen = []

    def sink(record):
        seen.append(record)
        if len(seen) == 1:
            raise RuntimeError("disk full")

    log = RequestLog(5, sink=sink)
    log.append("GET", "/a", "c", 200)
    log.append("GET", "/b", "c", 404)
    assert [r["url"] for r in seen] == ["http://127.0.0.1:8080/a", "http://127.0.0.1:8080/b"] and len(log) == 2


def test_a_capacity_below_one_is_refused():
    with pytest.raises(ValueError):
        RequestLog(0)
