"""WebSocket framing without sockets: client frames in, server frames out through a sans-IO writer."""

import pytest

from fastmock._core import WS_ANSWER_ONCE, ResponseWriter, WebSocket
from helpers import ws_client_frame


def server_frames(data):
    """(opcode, payload) of each unmasked server frame in ``data``."""
    frames = []
    while data:
        assert data[0] & 0x80 and not data[1] & 0x80  # final, unmasked
        n, pos = data[1], 2
        if n == 126:
            n, pos = int.from_bytes(data[2:4], "big"), 4
        elif n == 127:
            n, pos = int.from_bytes(data[2:10], "big"), 10
        frames.append((data[0] & 0x0F, data[pos:pos + n]))
        data = data[pos + n:]
    return frames


def exchange(data, **options):
    ws, writer = WebSocket(**options), ResponseWriter()
    ws.receive(writer, data)
    return server_frames(writer.take()), writer


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536])
def test_messages_are_echoed_at_every_length_encoding(size):
    payload = bytes(range(256)) * (size // 256 + 1)
    frames, _ = exchange(ws_client_frame(2, payload[:size]))
    assert frames == [(2, payload[:size])]


def test_a_frame_split_anywhere_is_assembled():
    frame = ws_client_frame(1, "héllo".encode())
    for cut in range(1, len(frame)):
        ws, writer = WebSocket(), ResponseWriter()
        ws.receive(writer, frame[:cut])
        assert writer.take() == b""
        ws.receive(writer, frame[cut:])
        assert server_frames(writer.take()) == [(1, "héllo".encode())]


def test_a_one_byte_payload_leaves_the_shared_bytes_object_alone():
    frames, _ = exchange(ws_client_frame(2, b"x", mask=b"\xff\xff\xff\xff"))
    assert frames == [(2, b"x")] and b"x"[0] == 120


def test_fragments_are_one_message():
    data = ws_client_frame(1, b"ab", fin=False) + ws_client_frame(9, b"p") + ws_client_frame(0, b"cd")
    frames, _ = exchange(data)
    assert frames == [(10, b"p"), (1, b"abcd")]  # the ping is answered in between


def test_close_is_answered_with_its_code_and_the_connection_ends():
    frames, writer = exchange(ws_client_frame(8, (1000).to_bytes(2, "big") + b"bye"))
    assert frames == [(8, (1000).to_bytes(2, "big"))] and writer.closed


@pytest.mark.parametrize("data, code", [
    (ws_client_frame(3, b""), 1002),                      # reserved opcode
    (ws_client_frame(0, b"x"), 1002),                     # continuation of nothing
    (ws_client_frame(9, b"x" * 126), 1002),               # a control frame over 125 bytes
    (ws_client_frame(1, b"\xff"), 1007),                  # text that is not UTF-8
    (ws_client_frame(8, b"\x03"), 1002),                  # a 1-byte close payload
    (ws_client_frame(8, (1005).to_bytes(2, "big")), 1002),  # a code never sent
])
def test_protocol_errors_close_with_the_code_the_rfc_names(data, code):
    frames, writer = exchange(data)
    assert frames[-1][0] == 8 and int.from_bytes(frames[-1][1][:2], "big") == code and writer.closed


def test_a_message_over_the_limit_is_refused_before_it_is_buffered():
    frames, writer = exchange(ws_client_frame(2, b"x" * 200), max_message=100)
    assert int.from_bytes(frames[0][1][:2], "big") == 1009 and writer.closed


def test_answer_once_mode_replies_and_closes():
    frames, writer = exchange(ws_client_frame(1, b"hi"), mode=WS_ANSWER_ONCE)
    assert frames[0] == (1, b"Server received: hi") and frames[1][0] == 8 and writer.closed


def test_nothing_is_read_after_the_close():
    frames, _ = exchange(ws_client_frame(8, b"") + ws_client_frame(1, b"late"))
    assert frames == [(8, b"")]
