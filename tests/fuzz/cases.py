"""Seeded generators of hostile input for the fuzz tests and the network fuzzer: HTTP requests and
responses built from a grammar of the pieces that go wrong (framing headers, chunk lines, limits, line
endings) and then mutated byte by byte, WebSocket frame sequences, and fault-spec and chaos texts.

Every case comes from ``random.Random(seed)``: a failure is reproduced from its seed alone.
"""

import os
import struct
import time

from helpers import ws_client_frame

BUDGET_S = float(os.environ.get("FASTMOCK_FUZZ_SECONDS", "60"))  # the whole fuzz suite's time; longer on demand
RUNS: dict[str, int] = {}  # target -> cases run, for the summary line

METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH", b"BREW", b"G\x00T", b"", b"GET /"]
TARGETS = [b"/", b"/health", b"/a?b=1&c", b"http://h.example/x?y", b"http://h.example", b"*", b"h:443", b"",
           b"/%00", b"/\xff", b"/" + b"a" * 70, b"/#frag"]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.2", b"HTTP/1", b"http/1.1", b"HTTP/1.1 "]
HEADER_NAMES = [b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"X-A", b"Upgrade",
                b"Host ", b" Host", b"", b"X\x01", b"Content-Length\t", b"Trailer"]
HEADER_VALUES = [b"h", b"0", b"5", b"5, 5", b"5,6", b"-1", b"99999999999999999999", b"chunked", b"gzip, chunked",
                 b"chunked, chunked", b"chunked, gzip", b"close", b"keep-alive", b"Content-Length", b"100-continue",
                 b"", b" \t", b"a\x00b", b"\xff\xfe", b"x" * 40]
LINE_ENDS = [b"\r\n"] * 12 + [b"\n", b"\r", b"\r\r\n", b""]
CHUNK_SIZES = [b"0", b"1", b"5", b"a", b"A", b"ff", b"-1", b"g", b"", b"5;ext=1", b"5 ;x", b"5\x00", b"1" * 20]


def _pick(rng, items):
    return items[rng.randrange(len(items))]


def _line_end(rng):
    return _pick(rng, LINE_ENDS)


def _chunked_body(rng):
    parts = []
    for _ in range(rng.randrange(4)):
        size = _pick(rng, CHUNK_SIZES)
        try:
            n = int(size.split(b";")[0].strip() or b"x", 16)
        except ValueError:
            n = rng.randrange(6)
        parts += [size, _line_end(rng), b"x" * min(max(n, 0), 64), _line_end(rng)]
    parts += [b"0", _line_end(rng)]
    for _ in range(rng.randrange(2)):
        parts += [_pick(rng, HEADER_NAMES), b": ", _pick(rng, HEADER_VALUES), _line_end(rng)]
    parts.append(_line_end(rng))
    return b"".join(parts)


def _headers(rng):
    parts = []
    for _ in range(rng.randrange(7)):
        if rng.random() < 0.05:
            parts += [b" folded", _line_end(rng)]  # obs-fold
            continue
        parts += [_pick(rng, HEADER_NAMES), _pick(rng, [b": ", b":", b" : ", b":\t"]), _pick(rng, HEADER_VALUES),
                  _line_end(rng)]
    if rng.random() < 0.05:
        parts += [b"X-Big: ", b"b" * rng.randrange(100, 700), b"\r\n"]
    return parts


def _body(rng):
    if rng.random() < 0.3:
        return _chunked_body(rng)
    return b"x" * rng.randrange(8)


def mutate(rng, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randrange(4) if rng.random() < 0.5 else 0):
        where = rng.randrange(len(data) + 1)
        what = rng.randrange(4)
        if what == 0 and data:
            data[min(where, len(data) - 1)] = rng.randrange(256)
        elif what == 1:
            data[where:where] = bytes([_pick(rng, [13, 10, 0, 32, 9, 58, 44, 59, 255, rng.randrange(256)])])
        elif what == 2 and data:
            del data[where:where + rng.randrange(1, 4)]
        else:
            data[where:where] = data[where:where + rng.randrange(1, 16)]
    return bytes(data)


def request_stream(rng) -> bytes:
    """One to three pipelined requests, mostly well-formed, then mutated."""
    out = [b"\r\n" * rng.randrange(2) if rng.random() < 0.1 else b""]
    for _ in range(rng.randrange(1, 4)):
        out += [_pick(rng, METHODS), b" ", _pick(rng, TARGETS), b" ", _pick(rng, VERSIONS), _line_end(rng)]
        if rng.random() < 0.9:
            out += [b"Host: h\r\n"]
        out += _headers(rng)
        out += [_line_end(rng), _body(rng)]
    return mutate(rng, b"".join(out))


def response_stream(rng) -> bytes:
    """A response (the proxy's upstream side), mostly well-formed, then mutated."""
    status = _pick(rng, [b"200", b"204", b"304", b"101", b"100", b"404", b"099", b"600", b"2x0", b"20"])
    out = [_pick(rng, [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2"]), b" ", status, _pick(rng, [b" OK", b" ", b""]),
           _line_end(rng)]
    out += _headers(rng)
    out += [_line_end(rng), _body(rng)]
    if status == b"100":
        out += [b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"]
    return mutate(rng, b"".join(out))


def splits(rng, data: bytes) -> list[bytes]:
    """``data`` cut at random places."""
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(1, 6)))) if len(data) > 1 else []
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]


def ws_frame(rng) -> bytes:
    """One client frame, mostly valid, sometimes broken (unmasked, reserved bits, bad lengths, bad UTF-8)."""
    opcode = _pick(rng, [1, 1, 2, 2, 0, 9, 10, 8, 3, 11, 15])
    payload = _pick(rng, [b"", b"hi", "h\u00e9llo".encode(), b"\xff\xfe", b"\xe2\x82", os.urandom(rng.randrange(300)),
                          struct.pack("!H", _pick(rng, [1000, 1001, 1005, 1006, 3000, 999, 5000])) + b"bye"])
    fin = rng.random() < 0.8
    rsv = 0x40 if rng.random() < 0.05 else 0
    masked = rng.random() < 0.95
    form = None if rng.random() < 0.9 else _pick(rng, [126, 127])  # a longer length encoding than needed
    return ws_client_frame(opcode, payload, fin=fin, masked=masked, rsv=rsv, form=form, mask=rng.randbytes(4))


def fault_spec(rng) -> str:
    terms = []
    for _ in range(rng.randrange(1, 4)):
        term = _pick(rng, ["ok", "503", "200", "999", "timeout", "timeout(2s)", "reset", "close", "garbage",
                           "truncate", "drip(1kb/s)", "drip(0)", "drip(x)", "", "503:", ":1", "x"])
        if rng.random() < 0.5:
            term += ":" + _pick(rng, ["1", "0", "0.5", "-1", "1e309", "nan", "x", "9" * 30])
        terms.append(term)
    spec = ",".join(terms)
    if rng.random() < 0.3:
        spec += ";delay=" + _pick(rng, ["100ms", "exp(50ms)", "uniform(1ms,2ms)", "normal(x)", "", "9" * 40 + "ms"])
    return mutate(rng, spec.encode()).decode("utf-8", "replace")


def chaos_text(rng) -> str:
    rule = _pick(rng, ["{every: 1s, action: kill}", "{after: 2s, action: revive, target: {percent: 5}}",
                       "{every: 1ms, jitter: 1ms, action: {fault: 503}, for: 1s, times: 3}",
                       "{action: clear, target: {ports: 10000-10005, count: 2}}", "{every: 0, action: kill}",
                       "{action: {fault: 'drip(1kb/s)'}}", "[", "{&a x: *a}", "{every: " + "9" * 50 + "}"])
    text = f"seed: {_pick(rng, ['1', '-1', '0x10', '1' * 30, 'x'])}\nrules: [{rule}, {rule}]\n"
    return mutate(rng, text.encode()).decode("utf-8", "replace")


def seeds(target: str, share: float):
    """Seeds 0, 1, 2, ... for as long as ``share`` of BUDGET_S lasts; RUNS[target] counts them."""
    deadline = time.monotonic() + BUDGET_S * share
    seed = 0
    while time.monotonic() < deadline:
        yield seed
        seed += 1
        RUNS[target] = seed
