"""WebSocket frames from a hostile client against a real ``fastmock hp``: the server echoes or closes
with a code RFC 6455 allows, answers the same bytes the same way whole or one byte at a time, and stays up."""

import base64
import os
import random
import socket
import struct

import httpx
import pytest

from cases import seeds, ws_frame
from helpers import start_server

CLOSE_CODES = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011}


@pytest.fixture(scope="module")
def hp():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--ws-max-message", "64K") as server:
        yield server
        assert server.stop() == 0  # a clean exit after all of it


def replies(server, pieces):
    """What the server sends after the 101, given frames sent as ``pieces`` and then our end of the stream.

    A server that closes with our bytes unread sends RST, which may cut what it wrote before: the caller
    compares such answers as prefixes.
    """
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        key = base64.b64encode(os.urandom(16))
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
        try:
            for piece in pieces:
                sock.sendall(piece)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server closed already
            pass
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    head, _, frames = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return frames


def parse_frames(data):
    """Server frames: [(opcode, payload)], up to a frame cut short; asserts each is final and unmasked."""
    out, pos = [], 0
    while pos + 2 <= len(data):
        b0, b1 = data[pos], data[pos + 1]
        assert b0 & 0x80 and not b0 & 0x70 and not b1 & 0x80, data[pos:pos + 10]
        n, start = b1 & 0x7F, pos + 2
        if n == 126:
            n, start = struct.unpack("!H", data[start:start + 2])[0], start + 2
        elif n == 127:
            n, start = struct.unpack("!Q", data[start:start + 8])[0], start + 8
        if start + n > len(data):
            break
        out.append((b0 & 0x0F, data[start:start + n]))
        pos = start + n
    return out


def check_close(frames, seed):
    for opcode, payload in frames:
        assert opcode in (1, 2, 8, 10), f"seed {seed}: opcode {opcode}"
        if opcode == 8 and payload:
            code = struct.unpack("!H", payload[:2])[0]
            assert code in CLOSE_CODES or 3000 <= code <= 4999, f"seed {seed}: close {code}"
    assert [opcode for opcode, _ in frames].count(8) <= 1 and all(op != 8 for op, _ in frames[:-1]), f"seed {seed}"


def test_hostile_frames(hp):
    for seed in seeds("websocket frames", 0.2):
        rng = random.Random(seed)
        stream = b"".join(ws_frame(rng) for _ in range(rng.randrange(1, 5)))
        whole = parse_frames(replies(hp, [stream]))
        check_close(whole, seed)
        if seed % 10 == 0:  # the slow way for a tenth of them
            bytewise = parse_frames(replies(hp, [stream[i:i + 1] for i in range(len(stream))]))
            check_close(bytewise, seed)
            shorter, longer = sorted((whole, bytewise), key=len)
            assert longer[:len(shorter)] == shorter, f"seed {seed}: whole {whole} bytewise {bytewise}"
    assert httpx.get(f"{hp.url}/health").status_code == 200
