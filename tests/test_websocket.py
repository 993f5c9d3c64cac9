"""WebSocket on ``fastmock hp``: the ``websockets`` client library, and raw frames for the error cases."""

import asyncio
import base64
import os
import signal
import struct
import time

import httpx
import pytest
import websockets

from helpers import recv_until_closed, start_server, ws_client_frame


@pytest.fixture(scope="module")
def hp():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--ws-max-message", "2M") as server:
        yield server
        server.stop()


def ws_url(server, path="/ws"):
    return server.url.replace("http://", "ws://") + path


def test_echo_text_binary_large_fragmented_and_ping(hp):
    async def session():
        async with websockets.connect(ws_url(hp), max_size=None) as ws:
            await ws.send("héllo")
            assert await ws.recv() == "héllo"
            await ws.send(b"\x00\xffbinary")
            assert await ws.recv() == b"\x00\xffbinary"
            big = os.urandom(1 << 20)
            await ws.send(big)
            assert await ws.recv() == big
            await ws.send(["frag", "men", "ted"])
            assert await ws.recv() == "fragmented"
            latency = await (await ws.ping(b"are you there"))
            assert latency >= 0
            await ws.close(4000, "bye")
            return ws.close_code, ws.close_reason

    assert asyncio.run(session()) == (4000, "")  # the server completes the handshake with the client's code


def test_ws_close_answers_once_then_closes(hp):
    async def session():
        async with websockets.connect(ws_url(hp, "/ws/close")) as ws:
            await ws.send("ping me")
            reply = await ws.recv()
            with pytest.raises(websockets.ConnectionClosedOK) as closed:
                await ws.recv()
            return reply, closed.value.rcvd.code, closed.value.rcvd.reason

    assert asyncio.run(session()) == ("Server received: ping me", 1000, "server done")


def handshake(server, path="/ws"):
    sock = server.connect()
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock


def frame(opcode, payload, fin=True, masked=True, rsv=0, length=None):
    return ws_client_frame(opcode, payload, fin=fin, masked=masked, rsv=rsv, length=length)


def close_code_after(server, *frames):
    with handshake(server) as sock:
        for data in frames:
            sock.sendall(data)
        data = recv_until_closed(sock)
    assert data[0] == 0x88, data[:10]  # a final close frame
    return struct.unpack("!H", data[2:4])[0], data[4:2 + data[1]].decode()


@pytest.mark.parametrize(("frames", "code"), [
    ([frame(1, b"\xff\xfe not utf-8")], 1007),
    ([frame(1, b"\xe2\x82", fin=False), frame(0, b"\xac!")], None),  # a code point split across frames is fine
    ([frame(1, b"hi", masked=False)], 1002),
    ([frame(1, b"hi", rsv=0x40)], 1002),
    ([frame(9, b"x" * 126)], 1002),
    ([frame(9, b"x", fin=False)], 1002),
    ([frame(0, b"orphan continuation")], 1002),
    ([frame(1, b"a", fin=False), frame(1, b"b")], 1002),
    ([frame(3, b"")], 1002),
    ([frame(8, b"\x03")], 1002),
    ([frame(8, struct.pack("!H", 1005))], 1002),
    ([frame(2, b"", length=3 << 20)], 1009),
])
def test_protocol_errors_close_with_the_right_code(hp, frames, code):
    if code is None:
        with handshake(hp) as sock:
            for data in frames:
                sock.sendall(data)
            reply = sock.recv(100)
        assert reply == b"\x81\x04\xe2\x82\xac!"
        return
    assert close_code_after(hp, *frames)[0] == code


def test_bad_handshakes(hp):
    assert httpx.post(f"{hp.url}/ws").status_code == 405
    plain = httpx.get(f"{hp.url}/ws")
    assert plain.status_code == 400 and "Upgrade: websocket" in plain.json()["error"]
    bad_key = httpx.get(f"{hp.url}/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                 "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "short"})
    assert bad_key.status_code == 400 and "Sec-WebSocket-Key" in bad_key.json()["error"]
    version = httpx.get(f"{hp.url}/ws", headers={"Upgrade": "websocket", "Connection": "Upgrade",
                                                 "Sec-WebSocket-Version": "8",
                                                 "Sec-WebSocket-Key": base64.b64encode(b"k" * 16).decode()})
    assert version.status_code == 400 and version.headers["sec-websocket-version"] == "13"


def test_permessage_deflate_is_declined(hp):
    async def session():
        async with websockets.connect(ws_url(hp)) as ws:  # offers permessage-deflate by default
            await ws.send("x" * 1000)
            return await ws.recv(), ws.response.headers.get("Sec-WebSocket-Extensions")

    assert asyncio.run(session()) == ("x" * 1000, None)


def test_a_thousand_sockets_echo_at_once(hp):
    async def one(i):
        async with websockets.connect(ws_url(hp), compression=None) as ws:
            await ws.send(f"message {i}")
            return await ws.recv() == f"message {i}"

    async def all_of_them():
        return await asyncio.gather(*(one(i) for i in range(1000)))

    assert all(asyncio.run(all_of_them()))


def test_graceful_shutdown_sends_1001():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        async def session():
            async with websockets.connect(ws_url(server)) as ws:
                await ws.send("before")
                assert await ws.recv() == "before"
                server.proc.send_signal(signal.SIGTERM)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
                return closed.value.rcvd.code, closed.value.rcvd.reason

        assert asyncio.run(session()) == (1001, "server shutting down")
        assert server.proc.wait(10) == 0


def split_handshake(server, pad):
    """A handshake whose head arrives in two reads (the second 10 ms after the first)."""
    sock = server.connect()
    sock.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: {'p' * pad}\r\nUpgrade: websocket\r\n".encode())
    time.sleep(0.01)
    sock.sendall(b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n" + frame(1, b"first"))
    return sock


def read_handshake_and_frame(sock):
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + 7:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], rest


def test_a_handshake_split_across_reads_then_echoes(hp):
    # the hand-over of the bytes after the head once ran inside the parser: heap corruption, then 1002
    for i in range(200):
        with split_handshake(hp, pad=(i * 15) % 3001) as sock:
            status, rest = read_handshake_and_frame(sock)
            assert status == b"HTTP/1.1 101 Switching Protocols"
            assert rest == b"\x81\x05first"
    assert httpx.get(f"{hp.url}/health").status_code == 200


def test_a_handshake_pipelined_behind_a_delayed_request(hp):
    for _ in range(20):
        with hp.connect() as sock:
            sock.sendall(b"GET /delay/5 HTTP/1.1\r\nHost: x\r\n\r\n"
                         b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                         + frame(1, b"first"))
            data = b""
            while not data.endswith(b"\x81\x05first"):
                chunk = sock.recv(4096)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 ")
            assert data.index(b"HTTP/1.1 101 Switching Protocols\r\n") > 0  # after the first answer
    assert httpx.get(f"{hp.url}/health").status_code == 200


def test_an_idle_websocket_is_closed_and_a_pinged_one_kept():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--ws-idle-timeout", "1s") as server:
        with handshake(server) as sock:
            started = time.monotonic()
            data = recv_until_closed(sock)
        assert data[0] == 0x88 and struct.unpack("!H", data[2:4])[0] == 1001
        assert 0.5 <= time.monotonic() - started < 4  # idle since the handshake, on the tick's 0.5 s clock
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--ws-idle-timeout", "1s",
                      "--ws-ping-interval", "300ms") as server:
        async def session():
            async with websockets.connect(ws_url(server)) as ws:  # the library answers pings with pongs
                await asyncio.sleep(2.5)
                await ws.send("still here")
                return await ws.recv()

        assert asyncio.run(session()) == "still here"


def test_one_byte_payloads_are_unmasked_into_a_new_object():
    # CPython shares one object per 1-byte bytes value; unmasking it in place changed b"A" for the whole process
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        with handshake(server) as sock:
            for mask in (1, 2, 1):
                sock.sendall(b"\x82\x81" + bytes([mask, 0, 0, 0]) + b"A")  # the same byte on the wire ...
                assert sock.recv(3) == b"\x82\x01" + bytes([ord("A") ^ mask])  # ... unmasked by each mask
