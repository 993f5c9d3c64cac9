"""The fault language and engine: parsing, seeded draws, statistics, and every outcome seen by real clients."""

import asyncio
import re
import json
import math
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastmock._core import Random
from fastmock.faults import FaultSpecError, parse_fault_spec
from helpers import start_server

# chi-square critical values at p = 0.001, by degrees of freedom: a correct engine fails 1 run in 1,000
CHI2_999 = {1: 10.83, 2: 13.82, 3: 16.27}


def chi_square(observed: Counter, expected: dict) -> float:
    total = sum(observed.values())
    weight = sum(expected.values())
    return sum((observed[key] - total * share / weight) ** 2 / (total * share / weight)
               for key, share in expected.items())


def outcomes(spec, n, seed=42):
    plan, rng = parse_fault_spec(spec), Random(seed)
    return [plan.sample(rng) for _ in range(n)]


# --- the language -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("spec", "expected"), [
    ("503", ("status", 503, 0.0)),
    ("ok", ("ok", 0, 0.0)),
    ("timeout", ("timeout", 0, 0.0)),
    ("timeout(1.5s)", ("timeout", 0, 1.5)),
    ("timeout(250)", ("timeout", 0, 0.25)),  # a bare number is milliseconds
    ("reset", ("reset", 0, 0.0)),
    ("close", ("close", 0, 0.0)),
    ("garbage", ("garbage", 0, 0.0)),
    ("truncate", ("truncate", 0, 0.0)),
    ("drip(1K)", ("drip", 0, 1024.0)),
    (" DRIP ( 512 ) ", ("drip", 0, 512.0)),
])
def test_each_outcome_parses(spec, expected):
    assert outcomes(spec, 1)[0][:3] == expected


@pytest.mark.parametrize(("spec", "position", "reason"), [
    ("", 1, "expected a status code or an outcome"),
    ("foo", 1, "unknown outcome 'foo'"),
    ("ok,700", 4, "status 700 out of range 200-599"),
    ("ok:", 4, "expected a weight"),
    ("ok:x", 4, "expected a weight"),
    ("ok,,503", 4, "expected a status code or an outcome"),
    ("timeout(3x)", 9, "'3x' is not a duration"),
    ("timeout(1s", 11, "expected ')'"),
    ("drip", 5, "expected '('"),
    ("drip(0)", 6, "the rate must be positive"),
    ("ok;delay=weird(1,2)", 10, "unknown distribution 'weird'"),
    ("ok;delay=uniform(5ms,1ms)", 10, "needs low <= high"),
    ("ok;delay=lognormal(300ms,20ms)", 10, "needs 0 < median <= p99"),
    ("ok;delay=normal(10ms)", 21, "expected ','"),
    ("ok;dealy=5ms", 4, "expected 'delay='"),
    ("ok x", 4, "expected ',' or ';delay='"),
    ("ok:0,503:0", 1, "the weights must add up to a positive"),
])
def test_bad_specs_name_the_position(spec, position, reason):
    with pytest.raises(FaultSpecError) as info:
        parse_fault_spec(spec)
    assert info.value.position == position
    assert reason in info.value.reason
    assert f"at position {position} of fault spec {spec!r}" in str(info.value)


def test_the_same_seed_gives_the_same_sequence():
    spec = "timeout:20,403:20,500:10,ok:50;delay=lognormal(20ms,300ms)"
    assert outcomes(spec, 500, seed=7) == outcomes(spec, 500, seed=7)
    assert outcomes(spec, 500, seed=7) != outcomes(spec, 500, seed=8)


def test_outcome_frequencies_follow_the_weights():
    drawn = Counter(status or kind for kind, status, _, _ in outcomes("timeout:20,403:20,500:10,ok:50", 10000))
    expected = {"timeout": 20, 403: 20, 500: 10, "ok": 50}
    assert set(drawn) == set(expected)
    assert chi_square(drawn, expected) < CHI2_999[3]


def test_fractional_weights():
    drawn = Counter(status or kind for kind, status, _, _ in outcomes("ok:0.99,reset:0.01", 10000))
    assert chi_square(drawn, {"ok": 0.99, "reset": 0.01}) < CHI2_999[1]


def _delays(spec, n=10000):
    return sorted(delay for *_, delay in outcomes(spec, n))


def test_fixed_and_uniform_delays():
    assert set(_delays("ok;delay=250ms", 100)) == {0.25}
    delays = _delays("ok;delay=uniform(10ms,30ms)")
    assert 0.010 <= delays[0] and delays[-1] <= 0.030
    assert abs(sum(delays) / len(delays) - 0.020) < 0.0005
    # a uniform sample's deciles are evenly spread
    assert all(abs(delays[i * 1000] - (0.010 + 0.002 * i)) < 0.0005 for i in range(1, 10))


def test_normal_delay_mean_and_spread():
    delays = _delays("ok;delay=normal(100ms,10ms)")
    mean = sum(delays) / len(delays)
    stddev = math.sqrt(sum((d - mean) ** 2 for d in delays) / len(delays))
    assert abs(mean - 0.100) < 0.0005
    assert abs(stddev - 0.010) < 0.0005
    assert min(_delays("ok;delay=normal(1ms,10ms)")) == 0.0  # never negative: clipped


def test_lognormal_delay_median_and_p99():
    delays = _delays("ok;delay=lognormal(20ms,300ms)")
    assert abs(delays[5000] / 0.020 - 1) < 0.05
    assert abs(delays[9900] / 0.300 - 1) < 0.15


# --- real clients -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hp():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--seed", "11", "--max-hang", "2s",
                      "--fault", "/api/v2=ok", "--fault", "/api=503", "--fault", "/slow=ok;delay=200ms") as server:
        yield server
        server.stop()


def raw(server, request: bytes, timeout=5) -> tuple[bytes, str]:
    """Send ``request``; return (bytes until the server closed, how it closed: 'eof' or 'reset')."""
    with server.connect() as sock:
        sock.sendall(request)
        sock.settimeout(timeout)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            return data, "reset"
    return data, "eof"


def faulted(path: str, spec: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Fastmock-Fault: {spec}\r\n{extra}\r\n".encode()


def test_status_outcome_keeps_the_endpoint_body(hp):
    response = httpx.get(f"{hp.url}/some/path", headers={"X-Fastmock-Fault": "503"})
    assert response.status_code == 503
    assert response.json()["path"] == "/some/path"  # the echo body, with the drawn status
    health = httpx.get(f"{hp.url}/health", headers={"X-Fastmock-Fault": "418"})
    assert (health.status_code, health.json()) == (418, {"status": "ok"})


def test_delay_then_the_normal_answer(hp):
    started = time.monotonic()
    response = httpx.get(f"{hp.url}/health", headers={"X-Fastmock-Fault": "ok;delay=300ms"})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_timeout_holds_the_connection_open_and_silent(hp):
    with hp.connect() as sock:
        sock.sendall(faulted("/health", "timeout"))
        sock.settimeout(0.5)
        with pytest.raises(socket.timeout):  # a client read timeout: nothing came, nothing closed
            sock.recv(1)
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(f"{hp.url}/health", headers={"X-Fastmock-Fault": "timeout"}, timeout=0.3)
    started = time.monotonic()
    assert raw(hp, faulted("/health", "timeout(300ms)")) == (b"", "eof")
    own = time.monotonic() - started
    started = time.monotonic()
    assert raw(hp, faulted("/health", "timeout")) == (b"", "eof")  # --max-hang 2s bounds it
    bounded = time.monotonic() - started
    assert 0.3 <= own < bounded and bounded >= 2  # the timeout's own duration ends the hold before --max-hang


def test_reset_is_an_rst(hp):
    assert raw(hp, faulted("/health", "reset")) == (b"", "reset")
    with pytest.raises(httpx.ReadError):
        httpx.get(f"{hp.url}/health", headers={"X-Fastmock-Fault": "reset"})


def test_close_is_an_empty_reply(hp):
    assert raw(hp, faulted("/health", "close")) == (b"", "eof")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{hp.url}/health", headers={"X-Fastmock-Fault": "close"})


def test_garbage_is_not_http(hp):
    data, ending = raw(hp, faulted("/health", "garbage"))
    assert ending == "eof"
    assert 64 <= len(data) <= 1024
    assert not data.startswith(b"H")
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{hp.url}/health", headers={"X-Fastmock-Fault": "garbage"})


@pytest.mark.parametrize("path", ["/bin/4K", "/bin/4K?chunked=1", "/status/200"])
def test_truncate_sends_half_the_body_then_closes(hp, path):
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{hp.url}{path}", headers={"X-Fastmock-Fault": "truncate"})
    data, ending = raw(hp, faulted(path, "truncate"))
    head, _, body = data.partition(b"\r\n\r\n")
    assert ending == "eof" and head.startswith(b"HTTP/1.1 200 OK")
    if b"Content-Length" in head:
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        assert len(body) == length // 2
    else:
        assert not body.endswith(b"0\r\n\r\n")


@pytest.mark.parametrize("path", ["/bin/2K", "/bin/2K?chunked=1", "/status/200"])
def test_drip_paces_the_whole_response(hp, path):
    started = time.monotonic()
    response = httpx.get(f"{hp.url}{path}", headers={"X-Fastmock-Fault": "drip(4K)"})
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    # rate/20 bytes every 50 ms, the first piece at once: the body alone needs len/rate less one interval
    assert elapsed >= len(response.content) / 4096 - 0.05
    if path.startswith("/bin"):
        assert response.content == (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 57)[:2048]


def test_a_dripped_response_keeps_the_connection_for_the_next_request(hp):
    data, _ = raw(hp, faulted("/health", "drip(2K)") +
                  b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.count(b'{"status":"ok"}') == 2


def test_pipelined_requests_before_a_close_are_answered(hp):
    data, ending = raw(hp, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + faulted("/health", "close") +
                       b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.count(b"HTTP/1.1 200 OK") == 1 and ending == "eof"


def test_prefix_rules_first_match_wins(hp):
    assert httpx.get(f"{hp.url}/api/users").status_code == 503
    assert httpx.get(f"{hp.url}/api/v2/users").status_code == 200
    assert httpx.get(f"{hp.url}/other").status_code == 200
    started = time.monotonic()
    assert httpx.get(f"{hp.url}/slow").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_the_header_beats_the_prefix_rule(hp):
    assert httpx.get(f"{hp.url}/api/x", headers={"X-Fastmock-Fault": "ok"}).status_code == 200


def test_a_bad_header_spec_is_400_with_the_position(hp):
    for _ in range(2):  # the second answer comes from the plan cache
        response = httpx.get(f"{hp.url}/health", headers={"X-Fastmock-Fault": "ok,7000"})
        assert response.status_code == 400
        assert response.json()["position"] == 4
        assert "status 7000 out of range" in response.json()["error"]
        assert response.json()["example"].startswith("X-Fastmock-Fault: ")


def test_no_header_faults_ignores_the_header():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--no-header-faults") as server:
        assert httpx.get(f"{server.url}/health", headers={"X-Fastmock-Fault": "503"}).status_code == 200


def test_unreliable_weights_from_the_query(hp):
    assert {httpx.get(f"{hp.url}/unreliable?503=1").status_code for _ in range(5)} == {503}
    assert {httpx.get(f"{hp.url}/unreliable?spec=429").status_code for _ in range(5)} == {429}
    assert httpx.get(f"{hp.url}/unreliable?ok=1").json()["status"] == "ok"
    started = time.monotonic()
    assert httpx.get(f"{hp.url}/unreliable?ok=1&delay=200ms").status_code == 200
    assert time.monotonic() - started >= 0.2
    for _ in range(2):
        bad = httpx.get(f"{hp.url}/unreliable?bogus=1")
        assert bad.status_code == 400
        assert "unknown outcome 'bogus'" in bad.json()["error"]
        assert bad.json()["position"] == 1


async def _statuses(url: str, count: int, concurrency: int = 100) -> Counter:
    """Status of ``count`` requests, or 'none' when the connection ended without a response."""
    limit = asyncio.Semaphore(concurrency)
    host, port = url.removeprefix("http://").split(":")

    async def one():
        async with limit:
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /getbalance HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = await reader.read()
            writer.close()
            return int(data.split()[1]) if data else "none"

    return Counter(await asyncio.gather(*(one() for _ in range(count))))


def test_getbalance_distribution_over_2000_requests():
    # --max-hang 50ms: a drawn timeout ends the connection quickly, with nothing sent
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--seed", "3", "--max-hang", "50ms") as server:
        counts = asyncio.run(_statuses(server.url, 2000))
        account = _first_success(f"{server.url}/getbalance")
    assert set(counts) == {200, 403, 500, "none"}
    assert chi_square(counts, {"none": 20, 403: 20, 500: 10, 200: 50}) < CHI2_999[3]
    assert set(account) == {"account_id", "holder", "balance", "currency", "recent_transactions"}
    assert account["currency"] in {"USD", "EUR", "GBP", "JPY", "CHF"}
    assert {"id", "amount", "type", "description", "days_ago"} == set(account["recent_transactions"][0])


def _first_success(url: str) -> dict:
    for _ in range(100):
        try:
            response = httpx.get(url, timeout=1)
        except httpx.HTTPError:  # a drawn timeout or close
            continue
        if response.status_code == 200:
            return response.json()
    raise AssertionError(f"no 200 from {url} in 100 tries")


def test_fault_counters_in_metrics(hp):
    before = _fault_counts(hp)
    for spec in ("503", "ok;delay=1ms", "close"):
        try:
            httpx.get(f"{hp.url}/health", headers={"X-Fastmock-Fault": spec})
        except httpx.HTTPError:
            pass
    after = _fault_counts(hp)
    assert after["status"] == before["status"] + 1
    assert after["ok"] == before["ok"] + 1
    assert after["close"] == before["close"] + 1


def _fault_counts(server) -> dict:
    text = httpx.get(f"{server.url}/metrics").text
    family = next(f for f in text_string_to_metric_families(text) if f.name == "fastmock_faults_injected")
    return {sample.labels["kind"]: sample.value for sample in family.samples}


@pytest.mark.parametrize(("value", "named"), [
    ("api=503", "is not PREFIX=SPEC"),
    ("/api", "is not PREFIX=SPEC"),
    ("/api=5O3", "at position 1 of fault spec '5O3'"),
])
def test_bad_fault_flag_is_a_usage_error(value, named):
    result = subprocess.run([sys.executable, "-m", "fastmock", "hp", "--fault", value], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 2
    assert "--fault" in result.stderr and named in result.stderr


def test_getlogs_lists_the_last_requests_in_order(tmp_path):
    log_file = tmp_path / "requests.jsonl"
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--request-log-size", "3",
                      "--request-log", str(log_file)) as server:
        with httpx.Client(base_url=server.url) as client:
            client.get("/health")
            client.post("/echo/one?x=1", content=b"body")
            client.get("/status/404")
            client.get("/delay/50", headers={"X-Fastmock-Fault": "503"})
            try:
                client.get("/anything", headers={"X-Fastmock-Fault": "close"})
            except httpx.HTTPError:
                pass
            entries = client.get("/getlogs?limit=10").json()
            assert client.get("/getlogs?limit=x").status_code == 400
            assert len(client.get("/getlogs?limit=1").json()) == 1
    assert [(e["method"], e["url"], e["outcome"], e["status"]) for e in entries] == [
        ("GET", f"{server.url}/status/404", "ok", 404),
        ("GET", f"{server.url}/delay/50", "status", 503),
        ("GET", f"{server.url}/anything", "close", None),
    ]
    assert entries[1]["latency_ms"] >= 50
    assert entries[0]["client"].startswith("127.0.0.1:")
    assert entries[0]["time"] <= entries[1]["time"] <= entries[2]["time"]
    assert abs(entries[2]["time"] - time.time()) < 60
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [line["url"].removeprefix(server.url) for line in lines] == ["/health", "/echo/one?x=1", "/status/404", "/delay/50", "/anything",
                                                "/getlogs?limit=10", "/getlogs?limit=x", "/getlogs?limit=1"]


def test_getlogs_as_text_and_getbalance_as_html():  # the old server's forms
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--max-hang", "50ms") as server:
        with httpx.Client(base_url=server.url) as client:
            client.get("/status/418?x=1")
            text = client.get("/getlogs?limit=1&format=text")
            assert text.headers["content-type"].startswith("text/plain")
            assert re.fullmatch(rf"[0-9.]+ 127\.0\.0\.1:\d+ GET {server.url}/status/418\?x=1 418 ok [0-9.]+ms\n",
                                text.text)
            assert client.get("/getlogs?format=xml").status_code == 400
        for _ in range(100):  # /getbalance is unreliable on purpose: the first 200
            try:
                page = httpx.get(f"{server.url}/getbalance?format=html", timeout=1)
            except httpx.HTTPError:
                continue
            if page.status_code == 200:
                break
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert page.text.startswith("<!doctype html>") and re.search(r"<strong id=balance>[0-9.]+ [A-Z]{3}</strong>",
                                                                      page.text)
        assert page.text.count("<tr>") == 4  # a header row and three transactions


def test_getlogs_when_the_log_is_off():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--request-log-size", "0") as server:
        response = httpx.get(f"{server.url}/getlogs")
        assert response.status_code == 404
        assert "--request-log-size 0" in response.json()["error"]
