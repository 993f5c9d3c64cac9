"""TLS whose behaviour is chosen per connection, from its ClientHello, before the handshake starts.

Each accepted connection first reads its first TLS record (the ClientHello, bounded in size and by the
handshake timeout) and asks ``choose(sni)`` for a certificate state and its context: a fleet port
answers with the state it is in *now* (the fleet's shared memory: a change reaches the next handshake at
once, with no re-bind, and running connections keep their session); hp and the proxy answer with the state
the SNI name asks for (``expired.fastmock.test``). Because the context is chosen before OpenSSL sees the
ClientHello, every state works both ways, protocol versions (tls1.0-only) included. Then, by state:

- a certificate state: the core's TLS connection (OpenSSL over memory BIOs) in that state's shared
  context, around the HTTP protocol, fed the bytes read so far;
- ``handshake-stall``: answer nothing; the connection is cut after ``stall_s``;
- ``handshake-reset``: a TCP RST.

What is not TLS is answered and closed: a plain HTTP request with a 400, as nginx does, other bytes with a
fatal TLS alert (OpenSSL sends no alert for a record that is not TLS).
"""

import asyncio
import struct
from socket import SO_LINGER, SOL_SOCKET

from fastmock._core import TlsConnection, TlsContext

__all__ = ["tls_protocol", "client_hello_sni", "HandshakeCounts", "handshakes"]

LINGER_RESET = struct.pack("ii", 1, 0)  # close() sends RST, not FIN
TLS_HANDSHAKE_RECORD = 0x16  # the first byte of a ClientHello's record
MAX_RECORD = 5 + 16384 + 2048  # a record's header and the most a TLSPlaintext (or TLSCiphertext) holds
SERVER_NAME = 0  # the ClientHello extension type of SNI
UNEXPECTED_MESSAGE_ALERT = bytes([0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x0a])  # fatal alert records, TLS 1.2 framing
PLAIN_HTTP_ANSWER = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 64\r\n"
                     b"Connection: close\r\n\r\nA plain HTTP request was sent to a TLS port: use https:// here.\n")


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


def _client_hello_extensions(record: bytes):
    """The (type, data) of each extension of the ClientHello in ``record`` (one whole TLS record); nothing if
    it is not a ClientHello. Every length is checked against what is there: slicing past the end of a
    hostile record gives short bytes, and a short field ends the walk."""
    body = record[5:]
    if len(body) < 38 or body[0] != 1:  # handshake type 1: ClientHello
        return
    at = 4 + 2 + 32  # handshake header, client_version, random
    for width in (1, 2, 1):  # session_id, cipher_suites, compression_methods
        if at + width > len(body):
            return
        at += width + int.from_bytes(body[at:at + width], "big")
    end = min(len(body), at + 2 + int.from_bytes(body[at:at + 2], "big"))
    at += 2
    while at + 4 <= end:
        kind, size = int.from_bytes(body[at:at + 2], "big"), int.from_bytes(body[at + 2:at + 4], "big")
        yield kind, body[at + 4:at + 4 + size]
        at += 4 + size


def client_hello_sni(record: bytes) -> str | None:
    """The server_name (SNI) of the ClientHello in ``record``, None if it has none or is not a ClientHello."""
    for kind, names in _client_hello_extensions(record):
        if kind == SERVER_NAME:  # a list of (type, name); type 0 is a host name
            length = int.from_bytes(names[3:5], "big")
            if len(names) >= 5 + length and names[2] == 0:
                return names[5:5 + length].decode("ascii", "replace").lower() or None
            return None
    return None


def tls_protocol(choose, make_protocol, *, handshake_timeout_s: float, counted, stall_s: float = 0.0,
                 stalled: set | None = None) -> asyncio.Protocol:
    """The protocol of an accepted connection to a TLS port: it reads the ClientHello, then
    ``choose(sni)`` → (state, SSLContext or None for the two handshake faults) decides the rest.
    ``counted(reason)`` is told the handshake's outcome (None: it succeeded); a stalled connection is in
    ``stalled`` until it ends, so that its port can cut it when it is killed (``make_protocol`` is the
    HTTP protocol's factory: the port)."""
    return _ClientHello(choose, make_protocol, handshake_timeout_s, counted, stall_s, stalled)


class _ClientHello(asyncio.Protocol):
    """A connection until its ClientHello is in; see the module comment."""

    def __init__(self, choose, make_protocol, timeout_s: float, counted, stall_s: float, stalled) -> None:
        self.choose = choose
        self.port = make_protocol
        self.timeout_s = timeout_s
        self.counted = counted
        self.stall_s = stall_s
        self.stalled = stalled
        self.transport = None
        self.timer = None
        self.received = b""
        self.state = None  # chosen: "handshake-stall" or "handshake-reset" (a TLS state hands over)

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.timer = asyncio.get_running_loop().call_later(self.timeout_s, self._give_up)

    def _give_up(self) -> None:
        self.timer = None
        self.counted("timeout")
        if self.state == "handshake-stall":
            reset(self.transport)
        else:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.state is not None:
            return  # a stall ignores what comes; a reset is on its way
        received = self.received = self.received + data
        if received[0] != TLS_HANDSHAKE_RECORD:
            self._not_tls(received[0])
            return
        if len(received) < 5:
            return
        whole = 5 + int.from_bytes(received[3:5], "big")
        if len(received) < whole and whole <= MAX_RECORD:
            return  # the rest of the ClientHello is on its way (the timer bounds the wait)
        self.timer.cancel()
        self.timer = None
        hello = received[:whole]
        state, context = self.choose(client_hello_sni(hello))
        if state == "handshake-reset":
            self.state = state
            self.counted("reset")
            reset(self.transport)
        elif state == "handshake-stall":
            self.state = state
            if self.stalled is not None:
                self.stalled.add(self)
            self.timer = asyncio.get_running_loop().call_later(self.stall_s, self._give_up)
        else:
            self._hand_over(context)

    def _hand_over(self, context: TlsContext) -> None:
        """The connection is the core's TlsConnection's from here, with the bytes read so far."""
        tls = TlsConnection(self.port(), context, self.counted, self.timeout_s)
        transport, data = self.transport, self.received
        self.received = b""
        transport.pause_reading()  # reading resumes with the buffered read callbacks a BufferedProtocol needs
        transport.set_protocol(tls)
        tls.connection_made(transport)
        tls.feed(data)
        transport.resume_reading()

    def _not_tls(self, first: int) -> None:
        self.timer.cancel()
        self.timer = None
        if 0x41 <= first <= 0x5a:  # a method's first letter
            self._refuse("plain_http", PLAIN_HTTP_ANSWER)
        else:
            self._refuse("protocol", UNEXPECTED_MESSAGE_ALERT)

    def _refuse(self, reason: str, answer: bytes) -> None:
        """Count the failed handshake, send ``answer`` and close."""
        self.counted(reason)
        self.transport.write(answer)
        self.transport.close()
        self.state = "closed"

    def connection_lost(self, exc) -> None:
        if self.stalled is not None:
            self.stalled.discard(self)
        if self.timer is not None:  # a client that left before its ClientHello (a TCP check): no handshake
            self.timer.cancel()
            self.timer = None
