"""TLS whose behaviour is chosen per connection, at accept time: what a fleet port in a certificate state does.

The listener's protocol factory asks which state the port is in *now* (the fleet's shared memory), so a
state change reaches the next handshake at once, with no re-bind, and connections already running keep
their session. Then, by state:

- a certificate state: uvloop's SSLProtocol over that state's shared context, around the HTTP protocol
  (what ``create_server(ssl=...)`` does for every connection, with the context chosen here instead);
- ``handshake-stall``: answer nothing; the connection is cut after ``stall_s``;
- ``handshake-reset``: a TCP RST as soon as the ClientHello arrives.

Before any of it, the first bytes are looked at: a plain HTTP request is answered 400, as nginx does, and
other bytes that are no TLS record get a fatal TLS alert; both are closed. uvloop's TLS layer would drop
them without a word (OpenSSL sends no alert for a record that is not TLS).
"""

import asyncio
import ssl
import struct
from socket import SO_LINGER, SOL_SOCKET

from uvloop.loop import SSLProtocol

__all__ = ["tls_protocol", "failure_reason", "HandshakeCounts", "handshakes"]

LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST, not FIN
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of a ClientHello
UNEXPECTED_MESSAGE_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a])  # a fatal alert record, TLS 1.2 framing
PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 64\r\n"
                     b"Connection: close\r\n\r\nA plain HTTP request was sent to a TLS port: use https:// here.\n")


def failure_reason(exc: BaseException) -> str:
    """Why a server-side handshake failed: timeout, reset, protocol (the client's alert or garbage) or other
    (before the handshake, _FirstBytes counts plain_http and protocol itself)."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "taking longer" in str(exc):
        return "timeout"  # uvloop reports its handshake timeout as ConnectionAbortedError
    if isinstance(exc, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "reset"
    if isinstance(exc, ssl.SSLError):
        return "protocol"
    return "other"


class HandshakeCounts:
    """A ``counted`` for tls_protocol that keeps the totals (for /metrics): completed, and failed by reason."""

    def __init__(self) -> None:
        self.completed = 0
        self.failed: dict[str, int] = {}

    def __call__(self, failure: str | None) -> None:
        if failure is None:
            self.completed += 1
        else:
            self.failed[failure] = self.failed.get(failure, 0) + 1


handshakes = HandshakeCounts()  # this process's: one serving loop per process (hp and proxy workers)


def reset(transport) -> None:
    """Abort ``transport`` with a TCP RST."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(SOL_SOCKET, SO_LINGER, LINGER_RESET)
    transport.abort()


def tls_protocol(state: str, context: ssl.SSLContext | None, make_protocol, *, handshake_timeout_s: float,
                 counted, stall_s: float = 0.0, stalled: set | None = None) -> asyncio.BaseProtocol:
    """The protocol of a connection accepted in ``state`` (``context``: that state's; None for the two
    handshake faults). ``counted(reason)`` is told the handshake's outcome (None: it succeeded); a stalled
    connection is in ``stalled`` until it ends, so that its port can cut it when it is killed."""
    if state == "handshake-stall":
        return _Stall(stall_s, counted, stalled, make_protocol)
    if state == "handshake-reset":
        return _Reset(counted)
    loop = asyncio.get_running_loop()
    handshake = loop.create_future()
    handshake.add_done_callback(lambda done: counted(
        None if done.cancelled() or done.exception() is None else failure_reason(done.exception())))
    return _FirstBytes(SSLProtocol(loop, make_protocol(), context, handshake, server_side=True,
                                   ssl_handshake_timeout=handshake_timeout_s), handshake_timeout_s, counted)


class _FirstBytes(asyncio.Protocol):
    """Until the first bytes arrive (at most ``timeout_s``): a TLS record hands the connection to
    ``tls`` (uvloop's SSLProtocol, which times the rest of the handshake); see the module comment."""

    def __init__(self, tls, timeout_s: float, counted) -> None:
        self.tls = tls
        self.timeout_s = timeout_s
        self.counted = counted
        self.transport = None
        self.timer = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(self.timeout_s, self._give_up)

    def _give_up(self) -> None:
        self.timer = None
        self.counted("timeout")
        self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self.timer.cancel()
        self.timer = None
        transport = self.transport
        if data[0] == TLS_HANDSHAKE_RECORD:
            transport.pause_reading()  # reading resumes with the buffered read callbacks SSLProtocol needs
            transport.set_protocol(self.tls)
            self.tls.connection_made(transport)
            while data:
                buffer = self.tls.get_buffer(len(data))
                n = min(len(buffer), len(data))
                buffer[:n] = data[:n]
                self.tls.buffer_updated(n)
                data = data[n:]
            transport.resume_reading()
            return
        plain_http = 0x41 <= data[0] <= 0x5a  # a method's first letter
        self.counted("plain_http" if plain_http else "protocol")
        transport.write(PLAIN_HTTP_ANSWER if plain_http else UNEXPECTED_MESSAGE_ALERT)
        transport.close()

    def connection_lost(self, exc) -> None:
        if self.timer is not None:  # the client left before saying anything (a TCP check): no handshake
            self.timer.cancel()


class _Stall(asyncio.Protocol):
    """Accepts TCP and ignores the ClientHello; cut (RST) after ``stall_s``."""

    def __init__(self, stall_s: float, counted, stalled: set, port) -> None:
        self.stall_s = stall_s
        self.counted = counted
        self.stalled = stalled
        self.port = port
        self.transport = None
        self.timer = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.stalled.add(self)
        self.timer = asyncio.get_running_loop().call_later(self.stall_s, self._give_up)

    def _give_up(self) -> None:
        self.counted("timeout")
        reset(self.transport)

    def connection_lost(self, exc) -> None:
        self.stalled.discard(self)
        self.timer.cancel()


class _Reset(asyncio.Protocol):
    """A TCP RST once the ClientHello arrives."""

    def __init__(self, counted) -> None:
        self.counted = counted
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.counted("reset")
        reset(self.transport)
