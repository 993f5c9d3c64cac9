"""The server protocol over real sockets, against the real ``fastmock hp`` process."""

import concurrent.futures
import socket
import time

import pytest

from helpers import header, recv_responses, recv_until_closed, start_server

HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
ECHO_POST = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"


@pytest.mark.parametrize("depth", [1, 16, 64])
def test_pipelined_requests_are_answered_in_order(hp, depth):
    requests = b"".join(b"GET /n%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(depth))
    with hp.connect() as sock:
        sock.sendall(requests)
        responses = recv_responses(sock, depth)
    assert [body.split(b'"path":"')[1].split(b'"')[0] for _, body in responses] == \
        [b"/n%d" % i for i in range(depth)]


def test_mixed_pipeline_with_bodies_and_static_routes(hp):
    chunked = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    with hp.connect() as sock:
        sock.sendall(HEALTH + ECHO_POST + chunked + HEALTH)
        responses = recv_responses(sock, 4)
    assert [body for _, body in responses][0] == b'{"status":"ok"}'
    assert b'"body":"hello"' in responses[1][1]
    assert b'"body":"abc"' in responses[2][1]
    assert responses[3][1] == b'{"status":"ok"}'


def test_pipeline_split_at_every_byte(hp):
    data = HEALTH + ECHO_POST
    with hp.connect() as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(data)):
            sock.sendall(data[i:i + 1])
        responses = recv_responses(sock, 2)
    assert responses[0][1] == b'{"status":"ok"}' and b'"body":"hello"' in responses[1][1]


def test_keep_alive_serves_1000_requests_on_one_connection(hp):
    with hp.connect() as sock:
        for _ in range(1000):
            sock.sendall(HEALTH)
            (response, body), = recv_responses(sock, 1)
            assert response.status_code == 200 and body == b'{"status":"ok"}'


def test_500_concurrent_connections(hp):
    def one_client(i):
        with hp.connect() as sock:
            sock.sendall(b"GET /c%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
            (response, body), = recv_responses(sock, 1)
            return response.status_code, b"/c%d" % i in body

    socks = [hp.connect() for _ in range(500)]  # all open at once
    try:
        with concurrent.futures.ThreadPoolExecutor(32) as pool:
            results = list(pool.map(one_client, range(500)))
        for sock in socks:
            sock.sendall(HEALTH)
        assert all(recv_responses(sock, 1)[0][1] == b'{"status":"ok"}' for sock in socks)
    finally:
        for sock in socks:
            sock.close()
    assert results == [(200, True)] * 500


def test_expect_100_continue_is_sent_before_the_body(hp):
    with hp.connect() as sock:
        sock.sendall(b"PUT /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        (response, body), = recv_responses(sock, 1)
    assert response.status_code == 200 and b'"body":"data"' in body


def test_http10_closes_unless_keep_alive(hp):
    with hp.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        data = recv_until_closed(sock)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in data
    with hp.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" * 2)
        responses = recv_responses(sock, 2)
    assert header(responses[0][0], "connection") == "keep-alive"


def test_connection_close_is_honoured(hp):
    with hp.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" + HEALTH)
        data = recv_until_closed(sock)
    assert data.count(b"HTTP/1.1 200") == 1 and b"Connection: close" in data


def test_head_never_carries_a_body(hp):
    with hp.connect() as sock:
        sock.sendall(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nHEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n" + HEALTH)
        data = b""
        sock.settimeout(5)
        while data.count(b"HTTP/1.1 200") < 3 or not data.endswith(b'{"status":"ok"}'):
            data += sock.recv(65536)
    first, second, third = data.split(b"HTTP/1.1 200 OK")[1:]
    assert first.endswith(b"\r\n\r\n") and b"Content-Length: 15" in first
    assert second.endswith(b"\r\n\r\n") and b"Content-Length: " in second
    assert third.endswith(b'{"status":"ok"}')


MALFORMED = [
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400),
    (b"GET / HTTP/3.0\r\nHost: h\r\n\r\n", 505),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: br\r\n\r\n", 501),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 101 + b"\r\n", 431),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 TLS hello\r\n\r\n", 400),
]


@pytest.mark.parametrize("data, status", MALFORMED)
def test_malformed_requests_are_answered_and_closed_while_the_server_keeps_serving(hp, data, status):
    with hp.connect() as sock:
        sock.sendall(HEALTH + data + HEALTH)
        reply = recv_until_closed(sock)
    first, _, error = reply.partition(b'{"status":"ok"}')
    assert first.startswith(b"HTTP/1.1 200 OK")
    assert error.startswith(b"HTTP/1.1 %d " % status)
    assert b"Connection: close\r\n" in error and b"Content-Type: text/plain" in error
    assert error.count(b"HTTP/1.1") == 1  # nothing answered after the error
    with hp.connect() as sock:
        sock.sendall(HEALTH)
        assert recv_responses(sock, 1)[0][1] == b'{"status":"ok"}'


def test_timeouts_close_slow_and_idle_connections():
    with start_server("hp", "--port", "0", "--mem-interval", "0",
                      "--header-timeout", "500ms", "--idle-timeout", "1s") as server:
        slow = server.connect()
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # the head never ends: slow loris
        idle = server.connect()
        idle.sendall(HEALTH)
        assert recv_responses(idle, 1)[0][0].status_code == 200
        start = time.monotonic()
        reply = recv_until_closed(slow, timeout=5)
        assert reply.startswith(b"HTTP/1.1 408 ") and b"Connection: close" in reply
        assert 0.4 < time.monotonic() - start < 2.0
        assert recv_until_closed(idle, timeout=5) == b""  # idle keep-alive: closed silently
        assert 0.9 < time.monotonic() - start < 3.0
        server.stop()


def test_max_connections_closes_extra_connections_at_once():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--max-connections", "2") as server:
        kept = [server.connect(), server.connect()]
        for sock in kept:
            sock.sendall(HEALTH)
            assert recv_responses(sock, 1)[0][0].status_code == 200
        extra = server.connect()
        extra.sendall(HEALTH)
        assert recv_until_closed(extra, timeout=5) == b""
        kept[0].close()
        deadline = time.monotonic() + 5  # the server sees the close a moment later: retry until then
        while True:
            with server.connect() as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                reply = recv_until_closed(sock, timeout=5)
                if reply.startswith(b"HTTP/1.1 200 OK"):
                    break
            assert time.monotonic() < deadline, "a slot never freed up"
        server.stop()


def test_running_out_of_file_descriptors_closes_new_connections_and_keeps_serving():
    with start_server("hp", "--port", "0", "--mem-interval", "0", open_files=128) as server:
        socks = [server.connect() for _ in range(300)]  # the kernel accepts them all; we can't
        answered = 0
        for sock in socks:
            sock.sendall(HEALTH)
            sock.settimeout(5)
            try:
                answered += sock.recv(4096).startswith(b"HTTP/1.1 200 OK")
            except ConnectionResetError:
                pass
        assert 50 < answered < 128
        for sock in socks:
            sock.close()
        deadline = time.monotonic() + 5
        while True:  # descriptors come back as the server sees the closes
            with server.connect() as sock:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if recv_until_closed(sock, timeout=5).startswith(b"HTTP/1.1 200 OK"):
                    break
            assert time.monotonic() < deadline
        assert server.stop() == 0
        assert server.log().count("\n") < 10, "no error loop in the log"
