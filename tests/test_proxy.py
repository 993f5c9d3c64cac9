"""``fastmock proxy`` in front of a real ``fastmock hp``: headers, trace ids, streaming, errors, settings."""

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from helpers import RecordingServer, free_port, recv_responses, recv_until_closed, start_server


@pytest.fixture(scope="module")
def upstream():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        yield server
        server.stop()


@pytest.fixture(scope="module")
def proxy(upstream):
    with start_server("proxy", "--upstream", upstream.url, "--port", "0", "--header", "X-Added: yes",
                      "--seed", "5", "--upstream-timeout", "1s") as server:
        yield server
        server.stop()


def metric(server, name, **labels):
    text = httpx.get(f"{server.url}/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise AssertionError(f"no {name} {labels}")


def test_request_headers_are_rewritten(proxy):
    response = httpx.get(f"{proxy.url}/echo/x?q=1", headers={
        "Connection": "keep-alive, X-Secret", "X-Secret": "s", "Keep-Alive": "timeout=5", "TE": "trailers",
        "Upgrade": "websocket", "Proxy-Authorization": "Basic x", "X-Forwarded-For": "10.0.0.1",
        "Via": "1.0 edge", "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "X-Kept": "kept"})
    assert response.status_code == 200
    seen = {name.lower(): value for name, value in response.json()["headers"].items()}
    for hop in ("connection", "x-secret", "keep-alive", "te", "upgrade", "proxy-authorization"):
        assert hop not in seen, hop
    assert seen["x-forwarded-for"] == "10.0.0.1, 127.0.0.1"
    assert seen["x-forwarded-proto"] == "http"
    assert seen["via"] == "1.0 edge, 1.1 fastmock"
    assert seen["x-added"] == "yes"
    assert seen["x-kept"] == "kept"
    assert seen["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert response.json()["uri"] == "/echo/x?q=1"
    assert response.headers["via"] == "1.1 fastmock"


def test_trace_ids_are_generated_or_kept(proxy):
    first = httpx.get(f"{proxy.url}/a")
    second = httpx.get(f"{proxy.url}/a")
    trace, request = first.headers["x-trace-id"], first.headers["x-request-id"]
    assert re.fullmatch("[0-9a-f]{32}", trace) and re.fullmatch("[0-9a-f]{16}", request)
    upstream_saw = {k.lower(): v for k, v in first.json()["headers"].items()}
    assert (upstream_saw["x-trace-id"], upstream_saw["x-request-id"]) == (trace, request)
    assert second.headers["x-request-id"] != request
    kept = httpx.get(f"{proxy.url}/a", headers={"X-Trace-Id": "trace-1", "X-Request-Id": "req-1"})
    assert (kept.headers["x-trace-id"], kept.headers["x-request-id"]) == ("trace-1", "req-1")
    assert {k.lower(): v for k, v in kept.json()["headers"].items()}["x-trace-id"] == "trace-1"


@pytest.mark.parametrize("path", ["/bin/100K", "/bin/100K?chunked=1", "/chunked/3?size=5"])
def test_bodies_pass_through_framed_for_the_client(proxy, upstream, path):
    direct = httpx.get(f"{upstream.url}{path}")
    through = httpx.get(f"{proxy.url}{path}")
    assert through.status_code == 200
    assert through.content == direct.content
    if "content-length" in direct.headers:
        assert through.headers["content-length"] == direct.headers["content-length"]
    else:
        assert through.headers["transfer-encoding"] == "chunked"


def test_http10_client_gets_a_close_delimited_body(proxy):
    with proxy.connect() as sock:
        sock.sendall(b"GET /bin/1K?chunked=1 HTTP/1.0\r\n\r\n")
        data = recv_until_closed(sock)
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head and b"Connection: close" in head
    assert body == (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 29)[:1024]


def test_head_request(proxy):
    response = httpx.head(f"{proxy.url}/bin/1M")
    assert response.status_code == 200
    assert response.headers["content-length"] == "1048576"
    assert response.content == b""
    assert httpx.get(f"{proxy.url}/health").json() == {"status": "ok"}  # the connection pool is still sane


def test_upload_with_expect_continue_and_chunked(proxy):
    body = b"x" * 300000
    response = httpx.put(f"{proxy.url}/upload", content=body, headers={"Expect": "100-continue"})
    assert response.json()["bytes_received"] == len(body)
    chunked = httpx.post(f"{proxy.url}/upload", content=iter([b"a" * 1000, b"b" * 2000]))
    assert chunked.json()["bytes_received"] == 3000


def test_a_body_that_piled_up_while_the_proxy_was_busy_is_forwarded(proxy):
    # the upload's head and more than --max-header-size of its body wait in the parser while the first
    # request is answered: that is the body to forward, not a backlog to stop reading on (it hung)
    body = b"y" * 300000
    with proxy.connect() as sock:
        sock.sendall(b"GET /delay/100 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"PUT /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        responses = recv_responses(sock, 2)
    assert [response.status_code for response, _ in responses] == [200, 200]
    assert b'"bytes_received":300000' in responses[1][1]


def test_pipelined_requests_are_answered_in_order(proxy):
    with proxy.connect() as sock:
        sock.sendall(b"GET /delay/150 HTTP/1.1\r\nHost: x\r\n\r\nGET /status/201 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = recv_responses(sock, 3)
    assert [response.status_code for response, _ in responses] == [200, 201, 200]
    assert b'"duration_ms":150' in responses[0][1]


def test_upstream_connections_are_reused(proxy, upstream):
    before = metric(upstream, "fastmock_connections_total")
    with httpx.Client(base_url=proxy.url) as client:
        for _ in range(20):
            client.get("/health")
    assert metric(upstream, "fastmock_connections_total") - before <= 2
    assert metric(proxy, "proxy_upstream_idle_connections") >= 1


def _ids(response):
    return response.headers.get_list("x-trace-id"), response.headers.get_list("x-request-id")


@pytest.mark.parametrize("answer", ["local", "fault", "bad fault spec", "dropped", "refused upstream", "malformed"])
def test_every_answer_carries_trace_ids_and_echoes_the_clients(upstream, answer):
    args = {"dropped": ["--drop-rate", "1"]}.get(answer, [])
    target = f"http://127.0.0.1:{free_port()}" if answer == "refused upstream" else upstream.url
    with start_server("proxy", "--upstream", target, "--port", "0", *args) as server:
        if answer == "malformed":  # no head to take ids from: fresh ones
            with server.connect() as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: x\r\n\r\n")
                reply = recv_until_closed(sock)
            assert reply.startswith(b"HTTP/1.1 400 ")
            assert re.search(rb"\r\nX-Trace-Id: [0-9a-f]{32}\r\nX-Request-Id: [0-9a-f]{16}\r\n", reply)
            return
        path, headers = {"local": ("/metrics", {}), "fault": ("/a", {"X-Fastmock-Fault": "418"}),
                         "bad fault spec": ("/a", {"X-Fastmock-Fault": "ok,7000"})}.get(answer, ("/a", {}))
        generated = httpx.get(f"{server.url}{path}", headers=headers)
        trace, request = _ids(generated)
        assert len(trace) == len(request) == 1
        assert re.fullmatch("[0-9a-f]{32}", trace[0]) and re.fullmatch("[0-9a-f]{16}", request[0])
        echoed = httpx.get(f"{server.url}{path}", headers={**headers, "X-Trace-Id": "t-1", "X-Request-Id": "r-1"})
        assert _ids(echoed) == (["t-1"], ["r-1"])
        expected = {"local": 200, "fault": 418, "bad fault spec": 400, "dropped": 503, "refused upstream": 502}
        assert generated.status_code == echoed.status_code == expected[answer]


def test_upstream_timeout_is_504(proxy):
    started = time.monotonic()
    response = httpx.get(f"{proxy.url}/delay/3000")
    assert response.status_code == 504
    assert "longer than 1s" in response.json()["error"]
    assert response.json()["trace_id"] == response.headers["x-trace-id"]
    assert time.monotonic() - started >= 1  # a 504, not the upstream's answer at 3 s: the timeout fired
    assert metric(proxy, "proxy_upstream_errors_total", kind="timeout") >= 1
    assert httpx.get(f"{proxy.url}/health").status_code == 200


def test_refused_upstream_is_502():
    with start_server("proxy", "--upstream", f"http://127.0.0.1:{free_port()}", "--port", "0") as server:
        response = httpx.get(f"{server.url}/x")
        assert response.status_code == 502
        assert "cannot connect to the upstream" in response.json()["error"]
        assert metric(server, "proxy_upstream_errors_total", kind="refused") == 1


def test_faults_are_answered_by_the_proxy(proxy, upstream):
    forwarded = httpx.get(f"{proxy.url}/x", headers={"X-Fastmock-Fault": "ok"})
    assert "X-Fastmock-Fault" not in forwarded.json()["headers"]  # consumed here, not applied twice
    before = metric(proxy, "proxy_forwarded_total")
    response = httpx.get(f"{proxy.url}/x", headers={"X-Fastmock-Fault": "503"})
    assert response.status_code == 503
    assert metric(proxy, "proxy_forwarded_total") == before
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{proxy.url}/x", headers={"X-Fastmock-Fault": "close"})
    started = time.monotonic()
    assert httpx.get(f"{proxy.url}/health", headers={"X-Fastmock-Fault": "ok;delay=200ms"}).status_code == 200
    assert time.monotonic() - started >= 0.2
    assert metric(proxy, "fastmock_faults_injected_total", kind="status") >= 1


def test_metrics_count_requests(proxy):
    before = metric(proxy, "proxy_requests_total")
    httpx.get(f"{proxy.url}/one")
    httpx.get(f"{proxy.url}/two")
    assert metric(proxy, "proxy_requests_total") == before + 2
    assert metric(proxy, "proxy_upstream_duration_seconds_count") >= 2


def test_drop_and_delay_from_flags(upstream):
    with start_server("proxy", "--upstream", upstream.url, "--port", "0", "--drop-rate", "1") as server:
        response = httpx.get(f"{server.url}/x")
        assert response.status_code == 503
        assert "--drop-rate" in response.json()["error"]
        assert metric(server, "proxy_dropped_total") == 1
    with start_server("proxy", "--upstream", upstream.url, "--port", "0", "--delay-ms", "200") as server:
        started = time.monotonic()
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert time.monotonic() - started >= 0.2
        assert metric(server, "proxy_delayed_total") == 1


def test_settings_from_the_environment_and_dotenv(upstream, tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"UPSTREAM_BASE_URL={upstream.url}\nPROXY_DROP_RATE=1\n")
    monkeypatch.chdir(tmp_path)
    with start_server("proxy", "--port", "0") as server:  # everything from .env
        assert httpx.get(f"{server.url}/x").status_code == 503
    with start_server("proxy", "--port", "0", "--drop-rate", "0") as server:  # the flag wins
        assert httpx.get(f"{server.url}/health").status_code == 200
    monkeypatch.setenv("PROXY_DROP_RATE", "0")  # the environment wins over .env
    monkeypatch.setenv("PROXY_DELAY_MS", "150")
    monkeypatch.setenv("PROXY_MOD_HEADER", "X-Mod: env")
    with start_server("proxy", "--port", "0") as server:
        started = time.monotonic()
        response = httpx.get(f"{server.url}/x")
        assert response.status_code == 200 and time.monotonic() - started >= 0.15
        assert response.headers["x-mod"] == "env"  # on the response, as the old proxy documents it
        assert "X-Mod" not in response.json()["headers"]


def test_request_and_response_headers(upstream):
    with start_server("proxy", "--upstream", upstream.url, "--port", "0", "--request-header", "X-Up: 1",
                      "--response-header", "Server: edge", "--response-header", "X-Down: 2") as server:
        response = httpx.get(f"{server.url}/echo")
        assert response.json()["headers"]["X-Up"] == "1"
        assert "X-Down" not in response.json()["headers"]
        assert response.headers.get_list("server") == ["edge"]  # replaces the upstream's
        assert response.headers["x-down"] == "2"
        local = httpx.get(f"{server.url}/metrics")
        assert local.headers["x-down"] == "2"


def test_malformed_request_is_400(proxy):
    with proxy.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nBad header\r\n\r\n")
        assert recv_until_closed(sock).startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize(("args", "named"), [
    ([], "--upstream"),
    (["--upstream", "ftp://x"], "--upstream"),
    (["--upstream", "http://x/path"], "--upstream"),
    (["--upstream", "http://x", "--header", "no colon"], "--header"),
    (["--upstream", "http://x", "--response-header", "X: a\rb"], "--response-header"),
    (["--upstream", "http://x", "--drop-rate", "2"], "--drop-rate"),
    (["--upstream", "http://x", "--fault", "/=nope"], "--fault"),
])
def test_bad_flags_are_usage_errors(args, named, tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastmock", "proxy", *args], capture_output=True, text=True,
                            timeout=30, cwd=tmp_path, env={k: v for k, v in os.environ.items()
                                                           if k not in ("UPSTREAM_BASE_URL",)})
    assert result.returncode == 2
    assert named in result.stderr


@pytest.mark.parametrize(("env", "message"), [
    ({"PROXY_DELAY_MS": "abc"}, "Invalid value for '--delay-ms': PROXY_DELAY_MS=abc: 'abc' is not a valid integer"),
    ({"PROXY_DROP_RATE": "2"}, "Invalid value for '--drop-rate': PROXY_DROP_RATE=2: 2.0 is not in the range"),
    ({"UPSTREAM_BASE_URL": "ftp://x"}, "Invalid value for '--upstream': UPSTREAM_BASE_URL=ftp://x: "),
    ({}, "Missing option '--upstream'. Give it, or set FASTMOCK_PROXY_UPSTREAM or UPSTREAM_BASE_URL in the "
         "environment or ./.env."),
])
def test_bad_environment_values_name_the_variable(env, message, tmp_path):
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("PROXY_", "UPSTREAM_", "FASTMOCK_"))}
    args = [] if "UPSTREAM_BASE_URL" in env or not env else ["--upstream", "http://127.0.0.1:1"]
    result = subprocess.run([sys.executable, "-m", "fastmock", "proxy", *args], capture_output=True, text=True,
                            timeout=30, cwd=tmp_path, env={**environment, **env})
    assert result.returncode == 2
    assert message in result.stderr, result.stderr


def _rss_mib(pid):
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run_watching_rss(command, pid):
    """Run ``command`` to its end; return (its stdout, the highest RSS of ``pid`` meanwhile)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, shell=isinstance(command, str))
    peak = _rss_mib(pid)
    while process.poll() is None:
        peak = max(peak, _rss_mib(pid))
        time.sleep(0.02)
    return process.stdout.read().decode(), peak


@pytest.mark.slow
def test_a_gibibyte_each_way_with_flat_memory(proxy):
    pid = proxy.proc.pid
    before = _rss_mib(pid)
    out, peak = _run_watching_rss(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                   f"{proxy.url}/bin/1G"], pid)
    assert out == f"200 {1 << 30}"
    assert peak - before < 64
    out, peak = _run_watching_rss(f"head -c {1 << 30} /dev/zero | curl -s -T - {proxy.url}/upload", pid)
    assert f'"bytes_received":{1 << 30}' in out
    assert peak - before < 64


def test_several_workers(upstream):
    with start_server("proxy", "--upstream", upstream.url, "--port", "0", "--workers", "2") as server:
        assert {httpx.get(f"{server.url}/health").status_code for _ in range(20)} == {200}
        assert server.stop() == 0


@pytest.mark.parametrize("path", ["/bin/100K", "/bin/100K?chunked=1"])
def test_truncate_cuts_the_forwarded_response(proxy, path):
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(f"{proxy.url}{path}", headers={"X-Fastmock-Fault": "truncate"})
    with proxy.connect() as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nX-Fastmock-Fault: truncate\r\n\r\n".encode())
        head, _, body = recv_until_closed(sock).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    if b"Content-Length: 102400" in head:
        assert len(body) == 51200
    else:
        assert not body.endswith(b"0\r\n\r\n")
    assert httpx.get(f"{proxy.url}/health").status_code == 200  # the pool lost nothing it needed


def test_drip_paces_the_forwarded_response(proxy):
    with proxy.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET /bin/4K HTTP/1.1\r\nHost: x\r\nX-Fastmock-Fault: drip(8K)\r\n\r\n"
                     b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        (first, body), (second, _) = recv_responses(sock, 2)
    assert time.monotonic() - started >= 0.45  # 4 KiB of body and the head at 8 KiB/s
    assert body == (b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789" * 114)[:4096]
    assert second.status_code == 200


# --- hostile clients and misbehaving upstreams -------------------------------------------------------------

@pytest.fixture
def recorded():
    """A proxy in front of a RecordingServer: (proxy, recorder)."""
    recorder = RecordingServer()
    with start_server("proxy", "--upstream", recorder.url, "--port", "0", "--upstream-timeout", "2s") as server:
        yield server, recorder
        server.stop()


def exchange(server, data):
    with server.connect() as sock:
        sock.sendall(data)
        return recv_until_closed(sock, timeout=5)


@pytest.mark.parametrize("listed", ["Content-Length", "transfer-encoding", "keep-alive, Host"])
def test_a_framing_field_named_in_connection_is_400(recorded, listed):
    proxy, recorder = recorded
    # were Content-Length dropped as hop-by-hop, the body would reach the upstream as a second request
    reply = exchange(proxy, f"POST /a HTTP/1.1\r\nHost: x\r\nConnection: {listed}\r\nContent-Length: 30\r\n\r\n"
                            "GET /smuggled HTTP/1.1\r\nX: y\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in reply
    assert recorder.requests == []


def test_a_list_of_equal_content_lengths_is_forwarded_as_one(recorded):
    proxy, recorder = recorded
    reply = exchange(proxy, b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n"
                            b"Connection: close\r\n\r\nhello")
    assert reply.startswith(b"HTTP/1.1 200 ")
    head, body = recorder.requests[0]
    assert [line for line in head.split("\r\n") if line.lower().startswith("content-length")] == ["Content-Length: 5"]
    assert body == b"hello"


def test_an_absolute_form_target_is_rewritten_to_origin_form(recorded):
    proxy, recorder = recorded
    for target in ("http://elsewhere.example:81/path?q=1", "http://elsewhere.example?q=1"):
        reply = exchange(proxy, f"GET {target} HTTP/1.1\r\nHost: elsewhere.example\r\nConnection: close\r\n\r\n".encode())
        assert reply.startswith(b"HTTP/1.1 200 ")
    first, second = (head.split("\r\n") for head, _ in recorder.requests)
    assert first[0] == "GET /path?q=1 HTTP/1.1" and second[0] == "GET /?q=1 HTTP/1.1"
    assert f"Host: {recorder.url.removeprefix('http://')}" in first
    assert exchange(proxy, b"CONNECT elsewhere.example:443 HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 400 ")
    assert len(recorder.requests) == 2


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 600 Beyond", b"HTTP/1.1 999 Nine"])
def test_an_upstream_status_outside_100_to_599_is_502(status_line):
    recorder = RecordingServer(lambda n: status_line + b"\r\nContent-Length: 0\r\n\r\n")
    with start_server("proxy", "--upstream", recorder.url, "--port", "0") as proxy:
        response = httpx.get(f"{proxy.url}/a")
        assert response.status_code == 502 and "invalid status code" in response.json()["error"]
        assert metric(proxy, "proxy_upstream_errors_total", kind="bad_response") == 1
        assert metric(proxy, "fastmock_requests_total", route="proxy", status="502") == 1


def test_an_upstream_connection_that_sent_extra_bytes_is_not_reused():
    # a pooled connection that had begun another response would hand the next client's response to it
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nextra"
    recorder = RecordingServer(lambda n: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + (extra if n == 0 else b""))
    with start_server("proxy", "--upstream", recorder.url, "--port", "0", "--upstream-timeout", "2s") as proxy:
        with httpx.Client(timeout=5) as client:
            assert [client.get(f"{proxy.url}/{i}").text for i in range(3)] == ["ok", "ok", "ok"]


def test_a_malformed_chunked_body_is_400_and_closed(recorded):
    proxy, _ = recorded
    started = time.monotonic()
    reply = exchange(proxy, b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n")
    assert reply.startswith(b"HTTP/1.1 400 ") and b"Connection: close" in reply
    assert time.monotonic() - started < 2  # answered at once, not at a timeout
