"""``/sse``: Server-Sent Events read with httpx streaming and raw sockets."""

import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import json_error_example, recv_until_closed, start_server


@pytest.fixture(scope="module")
def hp():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--sse-heartbeat", "200ms") as server:
        yield server
        server.stop()


def events_of(text: str) -> list[dict]:
    events = []
    for block in text.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if line and not line.startswith(":"))
        if fields:
            events.append(fields)
    return events


def test_count_ids_and_timing(hp):
    started = time.monotonic()
    arrivals = []
    with httpx.stream("GET", f"{hp.url}/sse?count=4&interval=150") as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["transfer-encoding"] == "chunked"
        text = ""
        for chunk in response.iter_text():
            text += chunk
            arrivals.append(time.monotonic() - started)
    events = events_of(text)
    assert [event["id"] for event in events] == ["1", "2", "3", "4"]
    assert all(event["data"].startswith('{"id":') for event in events)
    assert arrivals[0] < 0.3  # the first at once
    assert 0.45 - 0.05 <= arrivals[-1] - arrivals[0] <= 0.45 + 0.3  # then every 150 ms


def test_size_gives_pattern_data(hp):
    text = httpx.get(f"{hp.url}/sse?count=2&interval=0&size=40").text
    assert [event["data"] for event in events_of(text)] == ["ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789ABCD"] * 2


def test_heartbeat_while_waiting(hp):
    with httpx.stream("GET", f"{hp.url}/sse?count=2&interval=700") as response:
        text = "".join(response.iter_text())
    assert text.count(": heartbeat\n\n") >= 2
    assert len(events_of(text)) == 2


def _open_connections(server):
    text = httpx.get(f"{server.url}/metrics").text
    return next(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                if sample.name == "fastmock_connections_open")


def test_endless_stream_stops_when_the_client_leaves(hp):
    with httpx.stream("GET", f"{hp.url}/sse?count=0&interval=20") as response:
        seen = ""
        for chunk in response.iter_text():
            seen += chunk
            if seen.count("id: ") >= 5:
                break
    deadline = time.monotonic() + 3
    while _open_connections(hp) > 1 and time.monotonic() < deadline:  # 1: the /metrics request itself
        time.sleep(0.05)
    assert _open_connections(hp) == 1
    assert httpx.get(f"{hp.url}/health").status_code == 200


def test_http10_client_reads_to_the_close(hp):
    with hp.connect() as sock:
        sock.sendall(b"GET /sse?count=2&interval=0 HTTP/1.0\r\n\r\n")
        head, _, body = recv_until_closed(sock).partition(b"\r\n\r\n")
    assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
    assert len(events_of(body.decode())) == 2


def test_pipelined_request_after_a_stream(hp):
    with hp.connect() as sock:
        sock.sendall(b"GET /sse?count=1&interval=0 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = recv_until_closed(sock)
    assert data.count(b"HTTP/1.1 200 OK") == 2 and data.endswith(b'{"status":"ok"}')


@pytest.mark.parametrize("query", ["count=x", "interval=-1", "size=99999999", "count=1.5"])
def test_bad_parameters(hp, query):
    assert json_error_example(f"{hp.url}/sse?{query}").startswith("/sse?")
