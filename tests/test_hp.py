"""``fastmock hp`` endpoints through real clients: curl and httpx, with h11 checking the bytes."""

import json
import subprocess
import time

import httpx
import pytest

from helpers import header, json_error_example, recv_responses, recv_until_closed, start_server


def curl(*args):
    """curl's body and status code, with -sS so a transport error fails the test."""
    result = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, check=True,
                            timeout=30)
    body, _, code = result.stdout.rpartition(b"\n")
    return body, int(code)


def raw_get(hp, target, method="GET", extra=b""):
    with hp.connect() as sock:
        sock.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (method.encode(), target.encode(), extra))
        return recv_responses(sock, 1, method=method)[0]


def test_health(hp):
    body, code = curl(f"{hp.url}/health")
    assert code == 200 and json.loads(body) == {"status": "ok"}
    response, _ = raw_get(hp, "/health")
    assert header(response, "content-type") == "application/json"
    assert header(response, "server") == "fastmock" and header(response, "date")


def test_echo_describes_the_request(hp):
    response = httpx.post(f"{hp.url}/some/path?a=1&a=2&b=", content=b"caf\xc3\xa9 \xff",
                          headers={"Content-Type": "text/plain", "X-Rep": "one"})
    echo = response.json()
    assert response.status_code == 200
    assert echo["method"] == "POST"
    assert echo["uri"] == "/some/path?a=1&a=2&b="
    assert echo["path"] == "/some/path"
    assert echo["query"] == {"a": ["1", "2"], "b": [""]}
    assert echo["http_version"] == "HTTP/1.1"
    assert echo["headers"]["Content-Type"] == "text/plain" and echo["content_type"] == "text/plain"
    assert echo["body"] == "café \ufffd"
    assert echo["body_size"] == 7 and echo["body_truncated"] is False
    assert echo["source_addr"].startswith("127.0.0.1:")
    assert echo["destination_addr"] == f"127.0.0.1:{hp.port}"
    assert echo["hostname"]
    assert "tls" not in echo  # plain HTTP


def test_echo_joins_repeated_headers(hp):
    _, body = raw_get(hp, "/", extra=b"X-Rep: one\r\nx-rep: two\r\n")
    assert json.loads(body)["headers"]["X-Rep"] == "one, two"


def test_echo_counts_big_bodies_but_keeps_the_first_mib(hp):
    payload = b"z" * (3 * 1024 * 1024 + 5)
    echo = httpx.put(f"{hp.url}/big", content=payload, timeout=30).json()
    assert echo["body_size"] == len(payload) and echo["body_truncated"] is True
    assert len(echo["body"]) == 1024 * 1024


def test_echo_of_a_chunked_upload_from_curl(hp, tmp_path):
    upload = tmp_path / "data.txt"
    upload.write_bytes(b"x" * 100000)
    body, code = curl("-H", "Transfer-Encoding: chunked", "--data-binary", f"@{upload}", f"{hp.url}/up")
    echo = json.loads(body)
    assert code == 200 and echo["body_size"] == 100000 and echo["headers"]["Transfer-Encoding"] == "chunked"


@pytest.mark.parametrize("code", [200, 201, 302, 404, 418, 503, 599])
def test_status_code(hp, code):
    response = httpx.get(f"{hp.url}/status/{code}")
    assert response.status_code == code
    assert response.json()["status_code"] == code
    assert response.json()["status_message"] == response.reason_phrase


@pytest.mark.parametrize("code", [204, 304])
def test_status_without_body(hp, code):
    response, body = raw_get(hp, f"/status/{code}")
    assert response.status_code == code and body == b""


def test_status_head_has_no_body(hp):
    response, body = raw_get(hp, "/status/500", method="HEAD")
    assert response.status_code == 500 and body == b"" and int(header(response, "content-length")) > 0


def test_weighted_status_follows_the_weights(hp):
    with httpx.Client(base_url=hp.url) as client:
        codes = [client.get("/status/200:0.8,500:0.2").status_code for _ in range(500)]
    assert set(codes) == {200, 500}
    assert 0.12 < codes.count(500) / len(codes) < 0.28


def test_weighted_status_is_reproducible_with_a_seed():
    def draw():
        with start_server("hp", "--port", "0", "--mem-interval", "0", "--seed", "42") as server:
            with httpx.Client(base_url=server.url) as client:
                return [client.get("/status/200,404,500").status_code for _ in range(40)]
    first = draw()
    assert first == draw() and len(set(first)) == 3


@pytest.mark.parametrize("target", ["/status/", "/status/100", "/status/600", "/status/abc", "/status/200:x",
                                    "/status/200:0", "/status/200:-1", "/status/2000", "/status"])
def test_bad_status_is_a_json_error_with_an_example(hp, target):
    assert "/status/" in json_error_example(f"{hp.url}{target}")


def test_delay_waits_then_echoes(hp):
    start = time.monotonic()
    response = httpx.get(f"{hp.url}/delay/300")
    elapsed = time.monotonic() - start
    assert response.status_code == 200 and response.json()["duration_ms"] == 300
    assert elapsed > 0.29


def test_a_delay_is_never_cut_short(hp):
    # the event loop's clock has millisecond steps; a promised delay must still be a lower bound (the
    # server's own request log times it, without the client's overhead that would hide a short delay)
    with httpx.Client(base_url=hp.url) as client:
        for _ in range(60):
            assert client.get("/delay/3?never-cut-short").status_code == 200
        logged = client.get("/getlogs?limit=1000").json()
    waited = [entry["latency_ms"] for entry in logged if entry["url"].endswith("/delay/3?never-cut-short")]
    assert len(waited) == 60
    assert min(waited) >= 3


def test_delay_reads_the_body_slowly(hp):
    start = time.monotonic()
    response = httpx.post(f"{hp.url}/delay/0/200", content=b"b" * (4 * 65536), timeout=10)
    elapsed = time.monotonic() - start
    assert response.json()["body_size"] == 4 * 65536
    assert elapsed > 0.55  # three or four pauses of 200 ms between 64 KiB reads


def test_delays_on_one_connection_keep_their_order(hp):
    with hp.connect() as sock:
        sock.sendall(b"GET /delay/200 HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = recv_responses(sock, 2)
    assert b'"duration_ms":200' in responses[0][1] and responses[1][1] == b'{"status":"ok"}'


@pytest.mark.parametrize("target", ["/delay/", "/delay/abc", "/delay/1.5", "/delay/-1", "/delay/1/2/3",
                                    "/delay/600001", "/delay"])
def test_bad_delay_is_a_json_error(hp, target):
    assert "/delay/" in json_error_example(f"{hp.url}{target}")


def test_bad_delay_with_a_body_answers_without_reading_it(hp):
    with hp.connect() as sock:
        sock.sendall(b"POST /delay/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
        (response, body), = recv_responses(sock, 1)
    assert response.status_code == 400 and header(response, "connection") == "close"


def test_client_disconnect_cancels_the_delay(hp):
    for _ in range(20):
        with hp.connect() as sock:
            sock.sendall(b"GET /delay/600000 HTTP/1.1\r\nHost: x\r\n\r\n")
    metrics = httpx.get(f"{hp.url}/metrics").text
    # closed connections are gone at once (the 20 delays no longer hold them)
    deadline = time.monotonic() + 5
    while "fastmock_connections_open 1.0" not in metrics and time.monotonic() < deadline:
        metrics = httpx.get(f"{hp.url}/metrics").text
    assert "fastmock_connections_open 1.0" in metrics


def test_max_delay_flag():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--max-delay", "100") as server:
        assert httpx.get(f"{server.url}/delay/100").status_code == 200
        response = httpx.get(f"{server.url}/delay/101")
        assert response.status_code == 400 and "100 ms" in response.json()["error"]


def test_help_lists_the_endpoints(hp):
    response = httpx.get(f"{hp.url}/help")
    assert response.headers["content-type"].startswith("text/plain")
    for endpoint in ("/health", "/status/", "/delay/", "/metrics", "/help"):
        assert endpoint in response.text
    # each kind under its own heading, its lines right below it
    sections = {block.split("\n", 1)[0]: block for block in response.text.split("\n\n")}
    assert "/sse?count=N" in sections["Server-Sent Events"] and "/sse" not in sections["WebSocket"]
    assert "GET /ws " in sections["WebSocket"] and "/getbalance" in sections["HTTP"]


def test_metrics_count_requests_by_route_and_status(hp):
    with httpx.Client(base_url=hp.url) as client:
        before = client.get("/metrics").text
        client.get("/status/418")
        client.get("/status/418")
        after = client.get("/metrics").text

    def count(text):
        for line in text.splitlines():
            if line.startswith('fastmock_requests_total{route="status",status="418"}'):
                return float(line.split()[-1])
        return 0.0
    assert count(after) - count(before) == 2
    for name in ("fastmock_response_bytes_total", "fastmock_connections_open",
                 "fastmock_request_duration_seconds_bucket", "process_resident_memory_bytes"):
        assert name in after


@pytest.mark.parametrize("flags", [["--access-log"], ["--quiet=false"]])  # the second: the old server's form
def test_access_log_writes_json_lines(tmp_path, flags):
    log_path = tmp_path / "access.log"
    with open(log_path, "wb") as out, \
            start_server("hp", "--port", "0", "--mem-interval", "0", *flags, stdout=out) as server:
        httpx.get(f"{server.url}/status/404?x=1")
        httpx.get(f"{server.url}/health")
        server.stop()
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert [(line["method"], line["url"], line["status"]) for line in lines] == \
        [("GET", f"{server.url}/status/404?x=1", 404), ("GET", f"{server.url}/health", 200)]
    assert set(lines[0]) == {"time", "client", "method", "url", "status", "bytes", "latency_ms"}
    assert lines[0]["client"].startswith("127.0.0.1:") and lines[0]["bytes"] > 0


@pytest.mark.parametrize("spelling", ["--addr", "-addr="])
def test_the_old_servers_addr_flag(spelling):
    value = "127.0.0.1:0"
    args = [spelling + value] if spelling.endswith("=") else [spelling, value]
    with start_server("hp", *args, "--mem-interval", "0", "--grpc-port", "0") as server:
        assert server.host == "127.0.0.1" and server.port > 0
        assert httpx.get(f"{server.url}/health").status_code == 200


def test_mem_interval_prints_a_line():
    with start_server("hp", "--port", "0", "--mem-interval", "200ms") as server:
        httpx.get(f"{server.url}/health")
        deadline = time.monotonic() + 5
        while "rss=" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        line = next(line for line in server.log().splitlines() if "rss=" in line)
        assert "connections=" in line and "requests=" in line and "bytes_out=" in line


H11_CASES = [
    ("GET", "/health", 200), ("HEAD", "/health", 200), ("GET", "/", 200), ("POST", "/x?y=1", 200),
    ("HEAD", "/anything", 200), ("GET", "/status/201", 201), ("GET", "/status/204", 204),
    ("GET", "/status/304", 304), ("HEAD", "/status/503", 503), ("GET", "/status/200:1,200:2", 200),
    ("GET", "/status/1", 400), ("GET", "/delay/10", 200), ("HEAD", "/delay/10", 200), ("GET", "/delay/x", 400),
    ("GET", "/help", 200), ("GET", "/metrics", 200), ("DELETE", "/status/404", 404),
]


def test_every_endpoint_passes_h11_on_one_connection(hp):
    """h11 as a strict client over one keep-alive connection: framing, headers and order are all valid."""
    with hp.connect() as sock:
        for method, target, status in H11_CASES:
            sock.sendall(b"%s %s HTTP/1.1\r\nHost: x\r\n\r\n" % (method.encode(), target.encode()))
            (response, body), = recv_responses(sock, 1, method=method)
            assert response.status_code == status, (method, target)
            assert header(response, "server") == "fastmock" and header(response, "date")
            if method == "HEAD" or status in (204, 304):
                assert body == b""


@pytest.mark.parametrize("target", [
    "/chunked/2?size=%C2%B2",  # "²": str.isdigit() says yes, int() says no
    "/sse?count=%C2%B2",
    "/getlogs?limit=%C2%B2",
    "/getlogs?limit=99999999999999999999",
    "/sse?count=99999999999999999999",
    "/chunked/9223372036854775807?size=16777216",
    "/delay/%D9%A3",  # an Arabic-Indic three
    "/status/%C2%B200",
])
def test_numbers_out_of_bounds_or_not_ascii_are_400(hp, target):
    response = httpx.get(f"{hp.url}{target}")
    assert response.status_code == 400
    assert "whole number" in response.json()["error"]


def test_a_range_with_a_non_ascii_byte_is_ignored(hp):
    with hp.connect() as sock:
        sock.sendall(b"GET /bin/10 HTTP/1.1\r\nHost: x\r\nRange: bytes=\xb2-5\r\nConnection: close\r\n\r\n")
        reply = recv_until_closed(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b"\r\n\r\nABCDEFGHIJ")


def test_a_body_trickling_in_is_cut_off_with_408():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--body-timeout", "1s",
                      "--body-min-rate", "1K") as server:
        with server.connect() as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            started = time.monotonic()
            reply = b""
            for _ in range(50):  # a byte every 0.1 s: the idle timeout never fires, the body timeout does
                try:
                    sock.sendall(b"x")
                except OSError:
                    break
                time.sleep(0.1)
                sock.setblocking(False)
                try:
                    reply += sock.recv(4096)
                except BlockingIOError:
                    pass
                sock.setblocking(True)
                if reply:
                    break
            reply += recv_until_closed(sock)
        assert reply.startswith(b"HTTP/1.1 408 ") and b"request body" in reply
        assert time.monotonic() - started >= 0.5  # the tick's clock (0.5 s steps here) starts the count
        # a body that keeps the pace is not cut: 100 KB at full speed
        assert httpx.post(f"{server.url}/upload", content=b"x" * 100_000).json()["bytes_received"] == 100_000
