"""The response writer, validated by h11 as a strict client."""

import ctypes
import mmap
import time

import pytest

from fastmock._core import StaticResponse, error_response, pattern_buffer, refresh_date, render
from helpers import read_response


def parse_response(data, method="GET"):
    response, body, complete = read_response(data, method)
    assert complete
    return response, body


def headers_of(response):
    return {name.decode(): value.decode() for name, value in response.headers}


def test_render_has_date_server_and_length():
    response, body = parse_response(render(200, b'{"a":1}', b"application/json"))
    headers = headers_of(response)
    assert response.status_code == 200 and body == b'{"a":1}'
    assert headers["server"] == "fastmock"
    assert headers["content-length"] == "7"
    assert headers["content-type"] == "application/json"
    assert headers["date"].endswith(" GMT")
    assert "connection" not in headers


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_carry_no_body(status):
    data = render(status, b"ignored", b"application/json")
    response, body = parse_response(data)
    assert response.status_code == status and body == b""
    assert b"ignored" not in data
    assert "content-length" not in headers_of(response)


def test_head_keeps_length_drops_body():
    data = render(200, b"12345", b"text/plain", head_only=True)
    response, body = parse_response(data, method="HEAD")
    assert headers_of(response)["content-length"] == "5" and body == b""
    assert data.endswith(b"\r\n\r\n")


def test_connection_variants():
    assert b"Connection: close\r\n" in render(200, keep_alive=False)
    assert b"Connection: keep-alive\r\n" in render(200, http10=True)
    assert b"Connection" not in render(200)


def test_extra_headers():
    response, _ = parse_response(render(200, b"", b"", [(b"X-A", b"1")]))
    assert headers_of(response)["x-a"] == "1"


def test_error_response_is_plain_text_and_closes():
    response, body = parse_response(error_response(431, "header section too large"))
    headers = headers_of(response)
    assert response.status_code == 431 and body == b"header section too large\n"
    assert headers["connection"] == "close"
    assert headers["content-type"].startswith("text/plain")


def test_static_response_is_rebuilt_when_the_date_changes():
    static = StaticResponse(200, b'{"status":"ok"}', b"application/json")
    first = static.bytes_for()
    assert static.bytes_for() is first  # built once per second, not per request
    deadline = time.monotonic() + 10
    while static.bytes_for() is first and time.monotonic() < deadline:  # until the next second's Date
        time.sleep(0.01)
        refresh_date()
    second = static.bytes_for()
    assert second != first and second.endswith(b'{"status":"ok"}')
    assert parse_response(static.bytes_for(keep_alive=False))[0].status_code == 200
    assert parse_response(static.bytes_for(head_only=True), method="HEAD")[1] == b""


def test_pattern_buffer_is_read_only_page_aligned_and_one_piece_plus_a_pattern_long():
    pattern = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    view = pattern_buffer(1 << 20)
    assert view.readonly
    assert len(view) == 1048572 + 36  # the piece is rounded down to whole patterns
    assert view == pattern * (len(view) // 36)
    # page-aligned, not at a bytes object's 48-byte offset: see docs/architecture.md ("/bin")
    assert ctypes.addressof(ctypes.c_char.from_buffer(view.obj)) % mmap.PAGESIZE == 0
