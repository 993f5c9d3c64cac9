"""Processes and lifecycle: graceful shutdown, workers sharing a port, restarts, IPv6."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from helpers import header, recv_responses, recv_until_closed, refused, start_server, wait_for

HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"


def in_flight(server, target):
    """A connection whose request the server has certainly parsed: it answered 100 Continue to the head."""
    sock = server.connect()
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n"
                 % target)
    assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
    return sock


def test_graceful_shutdown_finishes_in_flight_delay_then_refuses():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        busy = in_flight(server, b"/delay/700")
        busy.sendall(b"x")
        idle = server.connect()
        idle.sendall(HEALTH)
        assert recv_responses(idle, 1)[0][0].status_code == 200
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert recv_until_closed(idle, timeout=5) == b""  # idle keep-alive: closed at once
        assert time.monotonic() - start < 0.5
        wait_for(lambda: refused(server.port, server.host), timeout=5)  # no longer accepting
        (response, body), = recv_responses(busy, 1, method="POST")
        assert response.status_code == 200 and b'"duration_ms":700' in body
        assert header(response, "connection") == "close"
        assert server.proc.wait(10) == 0
        assert "draining 1 connection" in server.log()


def test_health_is_503_draining_for_requests_in_flight_at_shutdown():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        sock = in_flight(server, b"/health")
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: refused(server.port, server.host), timeout=5)
        sock.sendall(b"x")
        reply = recv_until_closed(sock)
        assert reply.startswith(b"HTTP/1.1 503 ") and reply.endswith(b'{"status":"draining"}')
        assert b"Connection: close" in reply
        assert server.proc.wait(10) == 0


def test_shutdown_timeout_cuts_long_responses():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--shutdown-timeout", "300ms") as server:
        busy = in_flight(server, b"/delay/60000")
        busy.sendall(b"x")
        start = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(10) == 0
        assert time.monotonic() - start < 3
        assert recv_until_closed(busy) == b""


def test_second_signal_exits_at_once():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        busy = in_flight(server, b"/delay/60000")
        server.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: "draining" in server.log(), timeout=5)
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(5) != 0


def test_the_ready_file_says_where_and_goes_at_exit():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        assert server.ready() == {"name": "hp", "pid": server.proc.pid, "url": server.url, "host": "127.0.0.1",
                                  "port": server.port, "workers": 1}
        assert server.stop() == 0
        assert not os.path.exists(server.ready_path)


def test_a_bad_ready_file_directory_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "fastmock", "hp", "--ready-file", "/no/such/dir/hp.ready"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "'--ready-file'" in result.stderr


def test_two_workers_share_one_port():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--workers", "2") as server:
        # the supervisor writes the ready file once both workers listen
        assert server.ready()["pid"] == server.proc.pid and server.ready()["workers"] == 2
        assert server.log().count("listening on") == 2
        assert server.log().count(f"listening on {server.url} (workers: 2)") == 2  # the figure --workers chose
        workers = set()
        deadline = time.monotonic() + 10
        while len(workers) < 2 and time.monotonic() < deadline:
            with httpx.Client(base_url=server.url) as client:  # a new connection each time
                workers.update(re.findall(r'fastmock_worker_info\{.*worker="(\d)"', client.get("/metrics").text))
        assert workers == {"0", "1"}, "both workers answered"
        assert server.stop() == 0


def test_workers_do_not_outlive_a_killed_supervisor():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--workers", "2") as server:
        worker_pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\) listening", server.log())]
        server.proc.kill()  # SIGKILL: no chance to stop its workers
        server.proc.wait(10)
        wait_for(lambda: all(_gone(pid) for pid in worker_pids), timeout=10)
        wait_for(lambda: refused(server.port, server.host), timeout=10)


def _gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_dead_worker_is_restarted():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--workers", "2") as server:
        worker_pids = [int(pid) for pid in re.findall(r"\(pid (\d+)\) listening", server.log())]
        os.kill(worker_pids[0], signal.SIGKILL)
        wait_for(lambda: server.log().count("listening on") == 3)
        assert "exited with -9; restarting" in server.log()
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert server.stop() == 0


def test_ipv6():
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("::1 is not configured")
    with start_server("hp", "--host", "::1", "--port", "0", "--mem-interval", "0") as server:
        echo = httpx.get(f"{server.url}/echo").json()
        assert echo["source_addr"].startswith("[::1]:")
        assert server.stop() == 0


def _start_fails_on(port, *args):
    result = subprocess.run([sys.executable, "-m", "fastmock", *args, "--port", str(port)], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is in use: another program listens there (--port)" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_is_a_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as taken:  # no SO_REUSEPORT: nobody can share it
        _start_fails_on(taken.getsockname()[1], "hp")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_reuseport_listener_of_another_program_is_never_joined(workers):
    with socket.create_server(("127.0.0.1", 0), reuse_port=True) as other:
        _start_fails_on(other.getsockname()[1], "hp", "--workers", workers, "--mem-interval", "0")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_second_server_on_our_port_is_refused(workers):
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--workers", workers) as hp:
        _start_fails_on(hp.port, "proxy", "--upstream", "http://127.0.0.1:9")
        assert httpx.get(f"{hp.url}/health").status_code == 200


def test_a_single_worker_listens_without_reuseport():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as hp:
        with pytest.raises(OSError):  # no other program can join it, even one that skips the probe
            socket.create_server(("127.0.0.1", hp.port), reuse_port=True).close()


def test_connections_refused_near_the_open_files_limit_are_counted_and_logged():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--grpc-port", "0", open_files=128) as server:
        sockets = []
        try:
            for _ in range(150):  # more than the server has descriptors for
                sockets.append(server.connect())
            wait_for(lambda: "refused" in server.log())
            served = refused_count = 0
            for sock in sockets:
                try:
                    sock.sendall(HEALTH)
                    reply = sock.recv(100)
                except ConnectionResetError:
                    reply = b""
                served += reply.startswith(b"HTTP/1.1 200 ")
                refused_count += reply == b""
        finally:
            for sock in sockets:
                sock.close()
        assert served >= 64 and refused_count >= 20
        line = next(line for line in server.log().splitlines() if "refused" in line)
        assert "limits --max-connections 262144 and open files 128" in line
        metrics = httpx.get(f"{server.url}/metrics").text
        rejected = float(re.search(r"^fastmock_connections_rejected_total (\S+)$", metrics, re.M).group(1))
        assert rejected >= refused_count
