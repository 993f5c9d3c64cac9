"""Network fuzzer: hostile clients against a running ``fastmock hp`` (or proxy), on loopback.

    python benchmarks/fuzz_network.py --port 8080 --cases 1000000 [--pid PID] [--concurrency 200] [--seed 0]
    python benchmarks/fuzz_network.py --port 8443 --tls --cases 200000       (hp --tls)

Each case is one connection: mutated request streams (tests/fuzz/cases.py), requests carrying generated
fault specs, endpoint parameters out of range, WebSocket handshakes split across writes followed by hostile
frames, SSE and streams read slowly or dropped, bodies sent slowly. Bytes are written in random pieces with
sub-millisecond pauses, so the server meets every segmentation. Bounded in cases and in time (--max-seconds).

With --tls the same cases go over TLS (a client of Python's ssl on memory BIOs, naming a random certificate
state by SNI and verifying nothing), the ciphertext cut at random too, and TLS cases of their own: mutated
ClientHellos, and records that do not decrypt (or are cut short) after a good handshake.

A case fails when the server answers 5xx where no fault asked for it, or sends something that is not HTTP
(before an upgrade); the run fails when the server process (--pid) is gone. The summary gives cases/s, the
statuses seen, and the seeds of failed cases (``--seed S --cases 1`` replays one). Under AddressSanitizer
(docs/fuzzing.md) a memory error kills the server, which this run reports.
"""

import argparse
import asyncio
import collections
import os
import random
import ssl
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(TESTS / "fuzz"), str(TESTS)]
from cases import fault_spec, mutate, request_stream, ws_frame  # noqa: E402

SNI_NAMES = ["localhost", None, "valid.fastmock.test", "expired.fastmock.test", "weak.fastmock.test",
             "expiring-3.fastmock.test", "tls1.0-only.fastmock.test", "handshake-reset.fastmock.test",
             "nonsense.fastmock.test"]

HANDSHAKE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nX-Pad: %b\r\nUpgrade: websocket\r\n",
             b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
ENDPOINTS = [b"/status/%b", b"/delay/%b", b"/chunked/%b?size=%b", b"/sse?count=%b&interval=%b&size=%b",
             b"/getlogs?limit=%b", b"/bin/%b", b"/unreliable?timeout=%b&ok=%b", b"/status/200:%b,503:%b"]
NUMBERS = [b"0", b"1", b"5", b"200", b"503", b"99999999999999999999", b"-1", b"%C2%B2", b"1.5", b"", b"1K",
           b"9223372036854775807", b"0x10", b"%00", b"a" * 50]


def _number(rng):
    return NUMBERS[rng.randrange(len(NUMBERS))]


def make_case(seed: int) -> tuple[str, list[bytes], bool]:
    """(kind, pieces to send, whether a 5xx (or, for a fault, anything) may be the server's honest answer)."""
    rng = random.Random(seed)
    kind = rng.choice(["raw", "raw", "raw", "fault", "params", "ws", "ws", "stream", "slow-body"])
    if kind == "raw":
        return kind, [request_stream(rng)], True  # /status/503 and friends may be asked for
    if kind == "fault":
        spec = fault_spec(rng).encode("utf-8", "replace").replace(b"\r", b"").replace(b"\n", b"")
        return kind, [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Fastmock-Fault: " + spec + b"\r\n\r\n"], True
    if kind == "params":
        template = ENDPOINTS[rng.randrange(len(ENDPOINTS))]
        target = template % tuple(_number(rng) for _ in range(template.count(b"%b")))
        extra = b"Range: bytes=%b-%b\r\n" % (_number(rng), _number(rng)) if rng.random() < 0.3 else b""
        return kind, [b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"], b"/status/" in target
    if kind == "ws":
        first, second = HANDSHAKE
        frames = b"".join(ws_frame(rng) for _ in range(rng.randrange(1, 6)))
        head = [first % (b"p" * rng.randrange(3000)), second + frames]
        if rng.random() < 0.3:  # pipelined behind a delayed request
            head[0] = b"GET /delay/1 HTTP/1.1\r\nHost: x\r\n\r\n" + head[0]
        return kind, head, False
    if kind == "stream":
        target = rng.choice([b"/bin/1M", b"/bin/10M?chunked=1", b"/sse?count=5&interval=1&size=100",
                             b"/chunked/20?size=1000&delay=1"])
        return kind, [b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"], False
    body = os.urandom(rng.randrange(1, 2000))
    chunked = rng.random() < 0.5
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\n" + (b"Transfer-Encoding: chunked\r\n\r\n" if chunked else
                                                        b"Content-Length: %d\r\n\r\n" % len(body))
    payload = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body) if chunked else body
    return kind, [head] + [payload[i:i + 97] for i in range(0, len(payload), 97)], False


class TlsClient:
    """TLS over a plain stream (ssl.SSLObject on memory BIOs): a case can cut the ciphertext anywhere, or send
    bytes under the TLS layer."""

    def __init__(self, reader, name: str | None) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # every state's certificate will do
        context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        self.reader, self.incoming, self.outgoing = reader, ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_hostname=name)

    def client_hello(self) -> bytes:
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        return self.outgoing.read()

    async def handshake(self, send) -> None:
        while True:
            try:
                self.tls.do_handshake()
                await send(self.outgoing.read())
                return
            except ssl.SSLWantReadError:
                await send(self.outgoing.read())
                if not (data := await self.reader.read(65536)):
                    raise ConnectionResetError("closed during the handshake")
                self.incoming.write(data)

    def seal(self, plaintext: bytes) -> bytes:
        self.tls.write(plaintext)
        return self.outgoing.read()

    def open(self, ciphertext: bytes) -> bytes:
        self.incoming.write(ciphertext)
        plaintext = b""
        while True:
            try:
                chunk = self.tls.read(1 << 20)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                return plaintext
            if not chunk:
                return plaintext
            plaintext += chunk


async def run_case(host: str, port: int, seed: int, stats, tls: bool = False) -> None:
    kind, pieces, may_5xx = make_case(seed)
    rng = random.Random(seed ^ 0x5EED)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, asyncio.TimeoutError) as exc:
        stats["connect errors"] += 1
        stats["last connect error"] = repr(exc)
        return

    async def send(piece: bytes) -> None:
        while piece:  # random cuts, sub-millisecond pauses: every segmentation
            cut = rng.randrange(1, len(piece) + 1) if rng.random() < 0.5 else len(piece)
            writer.write(piece[:cut])
            piece = piece[cut:]
            await writer.drain()
            if rng.random() < 0.3:
                await asyncio.sleep(rng.random() / 1000)

    client = TlsClient(reader, rng.choice(SNI_NAMES)) if tls else None
    data = b""
    try:
        if client is not None:
            kind = rng.choice([kind] * 8 + ["tls-hello", "tls-garbage"])
            if kind == "tls-hello":  # a mangled ClientHello, then whatever the server says (an alert)
                await send(mutate(rng, client.client_hello()))
                pieces = []
            else:
                await client.handshake(send)
        for piece in pieces:
            await send(client.seal(piece) if client is not None else piece)
            if kind == "ws" and len(pieces) == 2:
                await asyncio.sleep(0.002)
        if kind == "tls-garbage":  # a record that does not decrypt, or a real one cut short, or noise
            record = client.seal(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            await send(rng.choice([mutate(rng, record), record[:rng.randrange(len(record))], os.urandom(64)]))
        read_for = 0.05 if kind == "stream" and rng.random() < 0.5 else 0.5  # sometimes a reader that leaves
        deadline = time.monotonic() + read_for
        while len(data) < 1 << 20 and (left := deadline - time.monotonic()) > 0:
            # once the answer is flowing, a pause of 50 ms ends the case (a keep-alive connection stays open)
            chunk = await asyncio.wait_for(reader.read(65536), min(left, 0.05) if data else left)
            if not chunk:
                break
            data += client.open(chunk) if client is not None and kind != "tls-hello" else chunk
    except (OSError, RuntimeError, asyncio.TimeoutError, ssl.SSLError):
        pass  # RuntimeError: uvloop, writing after the server closed; SSLError: a state whose handshake fails
    finally:
        writer.transport.abort()
    stats["cases"] += 1
    stats[f"kind {kind}"] += 1
    if kind in ("tls-hello", "tls-garbage"):  # an alert, or the answer before the garbage: the server must only live
        return
    if not data:
        stats["closed without an answer"] += 1
        return
    if kind == "fault":  # garbage, truncate, reset: the spec asked for it; the server must only live
        return
    if not data.startswith(b"HTTP/1."):
        stats["failed"] += 1
        stats["failures"].append((seed, "not HTTP", data[:80]))
        return
    status = data[9:12].decode("latin-1")
    stats[f"status {status}"] += 1
    if status.startswith("5") and not may_5xx:
        stats["failed"] += 1
        stats["failures"].append((seed, f"status {status}", data[:200]))


def server_alive(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def main(args) -> int:
    stats = collections.Counter()
    stats["failures"] = []
    started = time.monotonic()
    seeds = iter(range(args.seed, args.seed + args.cases))
    alive = True

    async def worker():
        nonlocal alive
        for seed in seeds:
            if time.monotonic() - started > args.max_seconds or not alive:
                return
            try:
                await asyncio.wait_for(run_case(args.host, args.port, seed, stats, args.tls), 5)
            except asyncio.TimeoutError:  # the server stopped reading (a paused body, a full pipe): a client gives up
                stats["cases"] += 1
                stats["cases given up after 5 s"] += 1
            if seed % 1000 == 0:
                alive = server_alive(args.pid)

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    alive = alive and server_alive(args.pid)
    elapsed = time.monotonic() - started
    failures = stats.pop("failures")
    print(f"{stats['cases']:,} cases in {elapsed:.0f} s ({stats['cases'] / elapsed:,.0f}/s); server "
          f"{'alive' if alive else 'GONE'}; {stats['failed']} failed")
    for key in sorted(key for key in stats if key not in ("cases", "failed")):
        print(f"  {key}: {stats[key]}")
    for seed, reason, data in failures[:20]:
        print(f"  seed {seed}: {reason}: {data!r}")
    return 0 if alive and not failures else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--pid", type=int, default=None, help="the server's PID: checked every 1,000 cases")
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0, help="the first case's seed")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=3600)
    parser.add_argument("--tls", action="store_true", help="the server speaks TLS (hp --tls)")
    arguments = parser.parse_args()
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    sys.exit(asyncio.run(main(arguments)))
