"""``fastmock hp`` streaming: /bin, /chunked and /upload, with flow control and flat memory."""

import json
import socket
import struct
import subprocess
import time

import httpx
import pytest

from helpers import header, json_error_example, recv_responses, start_server

PATTERN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def pattern(start, length):
    reps = (start + length) // 36 + 2
    return (PATTERN * reps)[start:start + length]


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.parametrize("size_text, size", [("1", 1), ("35", 35), ("36", 36), ("11111", 11111), ("1K", 1024),
                                             ("1k", 1024), ("3K", 3072), ("1M", 1 << 20), ("2m", 2 << 20)])
@pytest.mark.parametrize("chunked", ["", "?chunked=true", "?chunked=ON"])
def test_bin_sends_exactly_the_pattern(hp, size_text, size, chunked):
    response = httpx.get(f"{hp.url}/bin/{size_text}{chunked}")
    assert response.status_code == 200
    assert response.content == pattern(0, size)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == 'attachment; filename="data.bin"'
    assert response.headers["accept-ranges"] == "bytes"
    if chunked:
        assert response.headers["transfer-encoding"] == "chunked" and "content-length" not in response.headers
    else:
        assert response.headers["content-length"] == str(size)


def test_bin_1g_is_exact_at_every_offset_checked(hp):
    total, checked = 0, 0
    with httpx.stream("GET", f"{hp.url}/bin/1G", timeout=60) as response:
        assert response.headers["content-length"] == str(1 << 30)
        for piece in response.iter_raw(1 << 20):
            assert piece[:40] == pattern(total % 36, min(40, len(piece)))
            assert piece[-7:] == pattern((total + len(piece) - 7) % 36, 7)
            total += len(piece)
            checked += 1
    assert total == 1 << 30 and checked >= 1024


@pytest.mark.parametrize("range_header, status, content_range, start, length", [
    ("bytes=0-9", 206, "bytes 0-9/1000", 0, 10),
    ("bytes=100-199", 206, "bytes 100-199/1000", 100, 100),
    ("bytes=990-", 206, "bytes 990-999/1000", 990, 10),
    ("bytes=-7", 206, "bytes 993-999/1000", 993, 7),
    ("bytes=-5000", 206, "bytes 0-999/1000", 0, 1000),
    ("bytes=500-5000", 206, "bytes 500-999/1000", 500, 500),
    ("bytes=0-1,5-6", 200, None, 0, 1000),  # several ranges: the whole body
])
def test_bin_range(hp, range_header, status, content_range, start, length):
    response = httpx.get(f"{hp.url}/bin/1000", headers={"Range": range_header})
    assert response.status_code == status
    assert response.headers.get("content-range") == content_range
    assert response.content == pattern(start, length)


@pytest.mark.parametrize("range_header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_bin_unsatisfiable_range_is_416(hp, range_header):
    response = httpx.get(f"{hp.url}/bin/1000", headers={"Range": range_header})
    assert response.status_code == 416 and response.headers["content-range"] == "bytes */1000"


def test_bin_head_is_headers_only(hp):
    with hp.connect() as sock:
        sock.sendall(b"HEAD /bin/10G HTTP/1.1\r\nHost: x\r\n\r\n")
        (head, body), = recv_responses(sock, 1, method="HEAD")
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")  # the connection goes on
        (health, health_body), = recv_responses(sock, 1)
    assert head.status_code == 200 and body == b"" and header(head, "content-length") == str(10 << 30)
    assert health_body == b'{"status":"ok"}'


def test_requests_pipelined_behind_a_stream_wait_their_turn(hp):
    with hp.connect() as sock:
        sock.sendall(b"GET /bin/3M HTTP/1.1\r\nHost: x\r\n\r\nGET /bin/5?chunked=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        responses = recv_responses(sock, 3)
    assert [body for _, body in responses] == [pattern(0, 3 << 20), b"ABCDE", b'{"status":"ok"}']


@pytest.mark.parametrize("target", ["/bin/", "/bin/0", "/bin/000", "/bin/-1", "/bin/1.5", "/bin/1X", "/bin/1KB",
                                    "/bin/9999999999T", "/bin/abc"])
def test_bad_bin_size_is_a_json_error_with_an_example(hp, target):
    assert "/bin/1G" in json_error_example(f"{hp.url}{target}")


def test_chunked_frames_arrive_on_time(hp):
    with hp.connect() as sock:
        sock.sendall(b"GET /chunked/5?size=3&delay=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        start = time.monotonic()
        data, arrivals = b"", []
        sock.settimeout(5)
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
            arrivals.append((time.monotonic() - start, data.count(b"3\r\nABC\r\n")))
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"text/plain; charset=utf-8" in head
    assert body == b"3\r\nABC\r\n" * 5 + b"0\r\n\r\n"
    first_seen = {}
    for when, frames in arrivals:
        first_seen.setdefault(frames, when)
    for frame in range(1, 6):
        assert abs(first_seen[frame] - (frame - 1) * 0.1) < 0.05, first_seen


def test_chunked_without_delay_sends_each_frame_from_a(hp):
    response = httpx.get(f"{hp.url}/chunked/4?size=40")
    assert response.content == pattern(0, 40) * 4


@pytest.mark.parametrize("target", ["/chunked/", "/chunked/0", "/chunked/x", "/chunked/3?size=0",
                                    "/chunked/3?size=16777217", "/chunked/3?delay=-1", "/chunked/3?size=abc"])
def test_bad_chunked_is_a_json_error(hp, target):
    assert "/chunked/" in json_error_example(f"{hp.url}{target}")


@pytest.mark.parametrize("chunked", [False, True])
def test_upload_of_1_gib_counts_every_byte(hp, tmp_path, chunked):
    upload = tmp_path / "upload.bin"
    with open(upload, "wb") as out:
        out.truncate(1 << 30)  # sparse: no disk needed
    args = ["-H", "Transfer-Encoding: chunked"] if chunked else []
    result = subprocess.run(["curl", "-sS", "-T", str(upload), *args, f"{hp.url}/upload"],
                            capture_output=True, check=True, timeout=120)
    answer = json.loads(result.stdout)
    assert answer["bytes_received"] == 1 << 30 and answer["body"] == ""
    assert answer["duration_ms"] > 0 and answer["throughput_mbps"] > 0


def test_upload_from_httpx(hp):
    answer = httpx.post(f"{hp.url}/upload", content=iter([b"a" * 1000] * 1000)).json()  # chunked by httpx
    assert answer["bytes_received"] == 1000000 and answer["method"] == "POST"


def test_upload_over_max_upload_is_413():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--max-upload", "1K") as server:
        assert httpx.post(f"{server.url}/upload", content=b"x" * 1024).json()["bytes_received"] == 1024
        with server.connect() as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1025\r\n\r\n" + b"x" * 1025)
            reply = sock.recv(65536)
        assert reply.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in reply


def test_a_client_that_stops_reading_does_not_grow_server_memory(hp):
    with hp.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(b"GET /bin/10G HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.recv(1024)
        time.sleep(0.5)
        before = rss_bytes(hp.proc.pid)
        time.sleep(5)  # reading nothing: the server must wait, not buffer
        after = rss_bytes(hp.proc.pid)
    assert after - before < 4 << 20, (before, after)


@pytest.mark.slow
def test_10_gib_download_with_flat_memory(hp):
    before = rss_bytes(hp.proc.pid)
    peak = before
    curl = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                             f"{hp.url}/bin/10G"], stdout=subprocess.PIPE)
    while curl.poll() is None:
        peak = max(peak, rss_bytes(hp.proc.pid))
        time.sleep(0.05)
    assert curl.stdout.read() == b"200 %d" % (10 << 30)
    assert peak - before < 32 << 20, (before, peak)


def test_metrics_count_bytes_per_route():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        httpx.get(f"{server.url}/bin/1M")
        httpx.get(f"{server.url}/chunked/2?size=10")
        httpx.post(f"{server.url}/upload", content=b"u" * 5000)
        metrics = httpx.get(f"{server.url}/metrics").text

    def value(name, route):
        line = next(line for line in metrics.splitlines() if line.startswith(f'{name}{{route="{route}"}}'))
        return float(line.split()[-1])
    assert (1 << 20) < value("fastmock_response_bytes_total", "bin") < (1 << 20) + 1024
    assert 20 < value("fastmock_response_bytes_total", "chunked") < 1024
    assert value("fastmock_request_body_bytes_total", "upload") == 5000
    assert value("fastmock_request_body_bytes_total", "bin") == 0


def test_buffer_size_1024_as_the_old_server_ran_it():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--buffer-size", "1024") as server:
        assert httpx.get(f"{server.url}/bin/3M").content == pattern(0, 3 << 20)
        assert httpx.get(f"{server.url}/bin/3M?chunked=1", headers={"Range": "bytes=7-"}).content == \
            pattern(7, (3 << 20) - 7)


def test_a_client_that_leaves_an_endless_stream_of_tiny_frames_frees_the_server():
    # a closing transport drops writes without pausing: the pump once spun on 2^63 one-byte frames for ever
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        for _ in range(3):
            with server.connect() as sock:
                sock.sendall(b"GET /chunked/9223372036854775807?size=1 HTTP/1.1\r\nHost: x\r\n\r\n")
                sock.recv(1000)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
