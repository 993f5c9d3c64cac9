"""TLS whose behaviour is chosen per connection, at accept time: what a fleet port in a certificate state does.

The listener's protocol factory asks which state the port is in *now* (the fleet's shared memory), so a
state change reaches the next handshake at once, with no re-bind, and connections already running keep
their session. Then, by state:

- a certificate state: uvloop's SSLProtocol over that state's shared context, around the HTTP protocol
  (what ``create_server(ssl=...)`` does for every connection, with the context chosen here instead);
- ``handshake-stall``: answer nothing; the connection is cut after ``stall_s``;
- ``handshake-reset``: a TCP RST as soon as the ClientHello arrives.
"""

import asyncio
import ssl
import struct
from socket import SO_LINGER, SOL_SOCKET

from uvloop.loop import SSLProtocol

__all__ = ["tls_protocol", "failure_reason", "HandshakeCounts", "handshakes"]

LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST, not FIN


def failure_reason(exc: BaseException) -> str:
    """Why a server-side handshake failed: timeout, reset, protocol (the client's alert or garbage) or other."""
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
    return SSLProtocol(loop, make_protocol(), context, handshake, server_side=True,
                       ssl_handshake_timeout=handshake_timeout_s)


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
