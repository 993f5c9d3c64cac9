"""The ResponseWriter without sockets: send a response, take the bytes, check them with h11 as the client."""

import pytest

from fastmock._core import EventStream, PatternStream, Response, ResponseWriter, render
from helpers import read_response as read

PATTERN = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def pattern(length, start=0):
    return (PATTERN * (length // 36 + 2))[start % 36:start % 36 + length]


def test_a_plain_response_is_what_render_makes():
    writer = ResponseWriter()
    writer.send_response(Response(200, b'{"a":1}'))
    assert writer.take() == render(200, b'{"a":1}', b"application/json")
    assert not writer.body_open and writer.take() == b""


def test_a_pattern_stream_is_written_whole_when_nothing_pauses_it():
    writer = ResponseWriter(buffer_size=1000)  # several pieces
    writer.send_response(Response(200, content_type=b"application/octet-stream", stream=PatternStream(5000, 7)))
    response, body, complete = read(writer.take())
    assert complete and body == pattern(5000, 7)
    assert dict(response.headers)[b"content-length"] == b"5000"
    assert not writer.body_open


def test_chunked_frames_each_restarting_the_pattern():
    writer = ResponseWriter()
    writer.send_response(Response(200, stream=PatternStream(250, frame_size=100, restart_frames=True)))
    data = writer.take()
    assert b"64\r\n" + pattern(100) + b"\r\n" in data and data.endswith(b"32\r\n" + pattern(50) + b"\r\n0\r\n\r\n")
    response, body, complete = read(data)
    assert complete and body == pattern(100) * 2 + pattern(50)
    assert dict(response.headers)[b"transfer-encoding"] == b"chunked"


def test_a_paused_transport_gets_the_head_and_the_body_after_it_resumes():
    writer = ResponseWriter(buffer_size=1000)
    writer.pause_writing()
    writer.send_response(Response(200, stream=PatternStream(3000)))
    head = writer.take()
    assert head.endswith(b"\r\n\r\n") and writer.body_open  # only the head: the body waits for the transport
    writer.resume_writing()
    _, body, complete = read(head + writer.take())
    assert complete and body == pattern(3000) and not writer.body_open


def test_frames_with_a_delay_wait_between_them():
    writer = ResponseWriter()
    writer.send_response(Response(200, stream=PatternStream(30, frame_size=10, frame_delay_s=5.0)))
    first = writer.take()
    assert first.endswith(b"a\r\n" + pattern(10) + b"\r\n")  # one frame, then the wait
    writer.run_due()
    writer.run_due()
    _, body, complete = read(first + writer.take())
    assert complete and body == pattern(30)


@pytest.mark.parametrize("stream", [False, True])
def test_truncate_sends_half_of_an_announced_body(stream):
    writer = ResponseWriter()
    response = Response(200, stream=PatternStream(1000)) if stream else Response(200, pattern(1000))
    writer.send_response(response, truncate=True)
    response, body, complete = read(writer.take())
    assert dict(response.headers)[b"content-length"] == b"1000"
    assert not complete and body == pattern(500)


def test_truncate_of_a_chunked_body_never_sends_the_last_chunk():
    writer = ResponseWriter()
    writer.send_response(Response(200, stream=PatternStream(400, frame_size=100)), truncate=True)
    data = writer.take()
    _, body, complete = read(data)
    assert not complete and body == pattern(200) and not data.endswith(b"0\r\n\r\n")


def test_drip_writes_a_twentieth_of_the_rate_per_tick():
    writer = ResponseWriter()
    writer.send_response(Response(200, b"x" * 100), drip_rate=200)  # 10 bytes a tick
    assert writer.take() == b"" and writer.body_open
    whole = render(200, b"x" * 100, b"application/json")
    pieces = []
    while writer.body_open:
        writer.tick()
        pieces.append(writer.take())
    assert b"".join(pieces) == whole
    assert {len(piece) for piece in pieces[:-1]} == {10} and len(pieces) == -(-len(whole) // 10)


def test_drip_paces_a_stream_too():
    writer = ResponseWriter()
    writer.send_response(Response(200, stream=PatternStream(300)), drip_rate=2000)  # 100 bytes a tick
    data = b""
    for _ in range(100):
        writer.tick()
        piece = writer.take()
        assert len(piece) <= 100
        data += piece
        if not writer.body_open:
            break
    _, body, complete = read(data)
    assert complete and body == pattern(300)


def test_events_are_chunked_for_http11_and_end_with_the_last_chunk():
    writer = ResponseWriter()
    writer.send_response(Response(200, content_type=b"text/event-stream",
                                  events=EventStream(count=2, interval_s=0.0, size=5)))
    writer.run_due()
    response, body, complete = read(writer.take())
    assert complete and dict(response.headers)[b"transfer-encoding"] == b"chunked"
    assert body == b"id: 1\ndata: ABCDE\n\nid: 2\ndata: ABCDE\n\n"
    assert not writer.body_open


def test_events_for_http10_run_to_the_close_without_chunks():
    writer = ResponseWriter()
    writer.send_response(Response(200, events=EventStream(count=1, interval_s=0.0, size=3)), keep_alive=False,
                         http10=True)
    data = writer.take()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
    assert body == b"id: 1\ndata: ABC\n\n"


def test_a_head_request_gets_the_streams_length_and_no_body():
    writer = ResponseWriter()
    writer.send_response(Response(200, stream=PatternStream(1 << 30)), head_only=True)
    response, body, complete = read(writer.take(), method="HEAD")
    assert complete and body == b"" and dict(response.headers)[b"content-length"] == str(1 << 30).encode()
    assert not writer.body_open
