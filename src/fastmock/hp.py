"""``fastmock hp``: the route table of the single-port server (its handlers build JSON with orjson)."""

import base64
import binascii
import hashlib
import html
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import parse_qs

import orjson

from fastmock._core import (WS_ANSWER_ONCE, WS_ECHO, EventStream, PatternStream, Random, RequestLog, Response,
                            Route, Server, StaticResponse, WebSocket, status_phrase)
from fastmock.faults import FaultSpecError, PlanCache, parse_fault_spec
from fastmock.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fastmock.metrics import metrics_text
from fastmock.runtime import log
from fastmock.serve import StartError
from fastmock.units import MAX_INT63, parse_size, parse_whole

__all__ = ["HpConfig", "HpApp"]

JSON = b"application/json"
HOSTNAME = socket.gethostname()
GRPC_SERVICES = "echo.EchoService, grpc.health.v1.Health, reflection"

HELP_TEXT = """\
fastmock hp endpoints (any method unless stated)

HTTP
GET /health                      200 {"status":"ok"}; 503 {"status":"draining"} while shutting down
/  and any other path            echo of the request as JSON               curl localhost:8080/any/path?a=1
/status/{code}                   that status with the echo JSON             curl localhost:8080/status/503
/status/{code}:{w},{code}:{w}    a weighted random status                   curl localhost:8080/status/200:0.8,500:0.2
/delay/{ms}                      wait, then the echo JSON                   curl localhost:8080/delay/250
/delay/{ms}/{read_ms}            read the body slowly (pause read_ms per 64 KiB), then wait
                                                                            curl -T file localhost:8080/delay/0/100
/bin/{size}                      size bytes of ABC..XYZ0..9 repeated (1024, 64K, 10M, 10G, ...);
                                 ?chunked=true; Range: bytes=a-b     curl -o /dev/null localhost:8080/bin/1G
/chunked/{count}                 count chunked frames; ?size=BYTES&delay=MS
                                                                            curl localhost:8080/chunked/5?size=3&delay=100
/upload                          counts and discards the body               curl -T big.iso localhost:8080/upload
/unreliable                      a timeout 20 %, 403 20 %, 500 10 %, else 200; weights from the query
                                 (?timeout=20&503=10&ok=70, ?spec=SPEC, &delay=DIST)
                                                                            curl localhost:8080/unreliable?503=1&ok=1
/getbalance                      the same mix; 200 is a fake account JSON   curl localhost:8080/getbalance
                                 ?format=html: the old server's page
/getlogs?limit=N                 the last requests: time, client, method, path, outcome, status, latency
                                 &format=text: a line per request

Server-Sent Events
/sse?count=N&interval=MS&size=B  events (count=0: until the client leaves)
                                                                            curl -N 'localhost:8080/sse?count=3&interval=500'

WebSocket
GET /ws                          echo (text and binary)                     websocat ws://localhost:8080/ws
GET /ws/close                    one message answered "Server received: ...", then close 1000

Faults
Any request with X-Fastmock-Fault: SPEC gets that fault (fault language, see --fault)
                                                  curl -H 'X-Fastmock-Fault: 503:1,ok:1' localhost:8080/health

TLS (--tls, or --tls-port beside the plain port): the SNI name chooses the state, like badssl.com
valid.fastmock.test  expired.fastmock.test  not-yet-valid.fastmock.test  expiring-3.fastmock.test (any days)
wrong-host.fastmock.test  self-signed.fastmock.test  untrusted-root.fastmock.test
incomplete-chain.fastmock.test  weak.fastmock.test (RSA 1024)  tls1.0-only.fastmock.test
handshake-stall.fastmock.test (no answer until --max-hang)  handshake-reset.fastmock.test (a TCP RST)
        curl --cacert CA.pem --resolve expired.fastmock.test:8443:127.0.0.1 https://expired.fastmock.test:8443/
The echo JSON's "tls" says version, cipher, sni, alpn and resumed.

Service
/metrics                         Prometheus metrics
/help                            this text

gRPC on --grpc-port (default 50051; needs fastmock[grpc]): echo.EchoService/Echo and /StreamEcho
(proto/echo.proto in the package), grpc.health.v1.Health, server reflection; --grpc-tls: over TLS
                                                  grpcurl -plaintext localhost:50051 list
"""


@dataclass(frozen=True)
class HpConfig:
    max_delay_s: float = 600.0
    seed: int = 0
    worker: int = 0
    max_upload_size: int = 0
    body_limit: int = 1 << 20
    faults: tuple = ()             # (path prefix, FaultPlan) pairs from --fault, first match wins
    header_faults: bool = True     # X-Fastmock-Fault: SPEC
    max_hang_s: float = 300.0
    request_log_size: int = 10000  # /getlogs keeps this many requests; 0: no request log
    request_log_path: str | None = None  # also append each request there as a JSON line
    sse_heartbeat_s: float = 15.0
    ws_max_message: int = 16 << 20
    ws_idle_timeout_s: float = 300.0  # 0: never
    ws_ping_interval_s: float = 0.0   # 0: no pings
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 0             # 0: no gRPC service
    grpc_required: bool = False    # False: the port was the default, so a failure is logged and HTTP goes on
    grpc_threads: int = 16
    grpc_reuse_port: bool = False  # True when several workers share the port
    grpc_tls: tuple | None = None  # (key, certificate chain) PEM: gRPC over TLS


# The old unreliable server's outcomes: a timeout 20 %, 403 20 %, 500 10 %, else its normal answer.
UNRELIABLE_DEFAULT = "timeout:20,403:20,500:10,ok:50"


def _error(message: str, example: str, status: int = 400) -> Response:
    return Response(status, orjson.dumps({"error": message, "example": example}))


def _echo(req) -> dict:
    headers: dict[str, str] = {}
    names: dict[str, str] = {}
    for name, value in req.headers:
        # repeated fields are joined as RFC 9110 §5.3 allows; the first spelling of the name is kept
        key = names.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return {
        "method": req.method,
        "uri": req.target,
        "path": req.path,
        "query": parse_qs(req.query_string, keep_blank_values=True),
        "http_version": req.http_version,
        "headers": headers,
        "content_type": headers.get(names.get("content-type", ""), ""),
        "body": req.body.decode("utf-8", "replace"),
        "body_size": req.body_size,
        "body_truncated": req.body_truncated,
        "source_addr": req.client_addr,
        "destination_addr": req.server_addr,
        "hostname": HOSTNAME,
        **({"tls": _tls_info(req.tls)} if req.tls is not None else {}),
    }


def _tls_info(tls) -> dict:
    """The echo's view of a TLS connection (the core's TlsConnection)."""
    return {"version": tls.version(), "cipher": tls.cipher()[0], "sni": tls.server_name,
            "alpn": tls.selected_alpn_protocol(), "resumed": tls.session_reused}


def _parse_status_choices(spec: str) -> list[tuple[int, float]]:
    """``503`` or ``200:0.8,500:0.2`` → [(status, weight), ...]; raises ValueError with the reason."""
    choices = []
    for term in spec.split(","):
        code_text, _, weight_text = term.partition(":")
        code = parse_whole(code_text, "a status code", 200, 599)
        try:
            weight = float(weight_text) if weight_text else 1.0
        except ValueError:
            raise ValueError(f"invalid weight {weight_text!r}") from None
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"invalid weight {weight_text!r}")
        choices.append((code, weight))
    if sum(weight for _, weight in choices) <= 0:
        raise ValueError("the weights add up to zero")
    return choices


class HpApp:
    """Routes of ``fastmock hp``; ``build`` makes the core's Server (kept as ``server``, for /metrics)."""

    def __init__(self, config: HpConfig) -> None:
        self.config = config
        self.rng = Random(config.seed)
        self.server = None
        self.grpc = None
        health = StaticResponse(200, b'{"status":"ok"}', JSON)
        draining = StaticResponse(503, b'{"status":"draining"}', JSON)
        limit = config.body_limit
        self.routes = [
            Route("health", b"/health", static=health, static_draining=draining),
            Route("help", b"/help", static=StaticResponse(200, HELP_TEXT.encode(), b"text/plain; charset=utf-8")),
            Route("metrics", b"/metrics", handler=self._metrics),
            Route("status", b"/status", prefix=True, handler=self._status, body_limit=limit),
            Route("delay", b"/delay", prefix=True, handler=self._delay, on_head=self._delay_head,
                  body_limit=limit),
            Route("bin", b"/bin/", prefix=True, handler=self._bin, body_limit=0),
            Route("chunked", b"/chunked/", prefix=True, handler=self._chunked, body_limit=0),
            Route("upload", b"/upload", handler=self._upload, body_limit=0, max_body_size=config.max_upload_size),
            Route("unreliable", b"/unreliable", handler=self._unreliable, on_head=self._unreliable_head,
                  body_limit=limit),
            Route("getbalance", b"/getbalance", handler=self._getbalance, on_head=self._getbalance_head,
                  body_limit=limit),
            Route("getlogs", b"/getlogs", handler=self._getlogs),
            Route("sse", b"/sse", handler=self._sse),
            Route("ws", b"/ws", handler=self._websocket),
            Route("ws_close", b"/ws/close", handler=self._websocket),
        ]
        self.default_route = Route("echo", handler=self._echo, body_limit=limit)
        self.unreliable_default = parse_fault_spec(UNRELIABLE_DEFAULT)
        self.plans = PlanCache()
        self.server_options = {
            "fault_rules": [(prefix.encode(), plan) for prefix, plan in config.faults],
            "header_faults": self.plans.from_header if config.header_faults else None,
            "seed": config.seed,
            "max_hang_s": config.max_hang_s,
            "request_log": self._request_log(),
        }

    def build(self, loop, **server_options):
        """The core Server of this worker and its protocol factory (see serve.py)."""
        self.server = Server(loop, self.routes, self.default_route, **server_options, **self.server_options)
        for timeout_s in (self.config.ws_idle_timeout_s, self.config.ws_ping_interval_s):
            self.server.bound_tick(timeout_s)
        if self.config.grpc_port:
            self._start_grpc()
        return self.server, self.server.make_protocol

    def _start_grpc(self) -> None:
        config = self.config
        try:
            from fastmock.grpc_echo import GrpcEcho
            self.grpc = GrpcEcho(config.grpc_host, config.grpc_port, threads=config.grpc_threads,
                                 reuse_port=config.grpc_reuse_port, hostname=HOSTNAME, tls=config.grpc_tls)
        except (ImportError, OSError) as exc:
            reason = "the grpc extra is not installed (pip install 'fastmock[grpc]')" \
                if isinstance(exc, ImportError) else str(exc)
            if config.grpc_required:
                raise StartError(f"--grpc-port {config.grpc_port}: {reason}") from None
            log(f"worker {config.worker}: gRPC not started: {reason}; --grpc-port 0 turns it off")
            return
        log(f"worker {config.worker}: gRPC ({GRPC_SERVICES}) listening on {config.grpc_host} port {self.grpc.port}"
            f"{' (TLS)' if config.grpc_tls else ''}")

    def drain(self, grace_s: float):
        """Graceful shutdown of what runs beside the HTTP server: an Event set once it stopped, or None."""
        return self.grpc.drain(grace_s) if self.grpc else None

    def _request_log(self) -> RequestLog | None:
        config = self.config
        if config.request_log_size == 0:
            return None
        sink = None
        if config.request_log_path is not None:
            try:
                file = open(config.request_log_path, "ab")
            except OSError as exc:
                raise StartError(f"cannot open the request log {config.request_log_path}: {exc.strerror}") from None

            def sink(record: dict) -> None:
                file.write(orjson.dumps(record) + b"\n")
                file.flush()
        return RequestLog(config.request_log_size, sink)

    def _metrics(self, req) -> Response:
        return Response(200, metrics_text(self.server, self.config.worker), METRICS_CONTENT_TYPE)

    def _echo(self, req) -> Response:
        return Response(200, orjson.dumps(_echo(req)))

    def _status(self, req) -> Response:
        example = "/status/503 or /status/200:0.8,500:0.2"
        path = req.path
        if path == "/status":
            return _error("missing status code", example)
        if not path.startswith("/status/"):  # /statusx is just another path
            return self._echo(req)
        try:
            choices = _parse_status_choices(path[len("/status/"):])
        except ValueError as exc:
            return _error(str(exc), example)
        code = choices[0][0]
        if len(choices) > 1:
            point = self.rng.random() * sum(weight for _, weight in choices)
            for code, weight in choices:
                point -= weight
                if point < 0:
                    break
        body = _echo(req)
        body["status_code"] = code
        body["status_message"] = status_phrase(code)
        return Response(code, orjson.dumps(body))

    def _parse_delay(self, req) -> tuple[int, int]:
        """(ms, read_ms) from /delay/{ms}[/{read_ms}]; raises ValueError with the reason."""
        parts = req.path[len("/delay/"):].split("/") if req.path.startswith("/delay/") else []
        if not 1 <= len(parts) <= 2:
            raise ValueError("expected /delay/{ms} or /delay/{ms}/{read_ms} with whole milliseconds")
        limit_ms = int(self.config.max_delay_s * 1000)
        ms = parse_whole(parts[0], "the delay", 0, limit_ms, " ms (--max-delay)")
        read_ms = parse_whole(parts[1], "the read pause", 0, limit_ms, " ms (--max-delay)") if len(parts) == 2 else 0
        return ms, read_ms

    def _delay_head(self, req) -> Response | None:
        try:
            _, read_ms = self._parse_delay(req)
        except ValueError as exc:
            return _error(str(exc), "/delay/250 or /delay/250/100")
        req.read_pause_s = read_ms / 1000
        return None

    def _delay(self, req) -> Response:
        ms, _ = self._parse_delay(req)
        body = _echo(req)
        body["duration_ms"] = ms
        return Response(200, orjson.dumps(body), delay_s=ms / 1000)

    def _bin(self, req) -> Response:
        example = "/bin/1024, /bin/64K, /bin/10M, /bin/1G?chunked=true"
        text = req.path[len("/bin/"):]
        if not _SIZE_TEXT.fullmatch(text) or not any(digit in "123456789" for digit in text):
            return _error("size must be a positive whole number of bytes, with an optional K, M, G or T", example)
        try:
            size = parse_size(text)
        except ValueError as exc:  # 2^63 or more
            return _error(str(exc), example)
        query = parse_qs(req.query_string)
        chunked = query.get("chunked", ["false"])[-1].lower() in ("true", "1", "yes", "on")
        headers = [(b"Content-Disposition", b'attachment; filename="data.bin"'), (b"Accept-Ranges", b"bytes")]
        status, start, length = 200, 0, size
        range_header = _header(req, "range")
        if range_header is not None:
            byte_range = _parse_range(range_header, size)
            if byte_range is None:  # unsatisfiable
                return Response(416, orjson.dumps({"error": "range not satisfiable", "example": "bytes=0-1023"}),
                                headers=[(b"Content-Range", b"bytes */%d" % size)])
            if byte_range:  # a single satisfiable range; several ranges get the whole body
                start, end = byte_range
                status, length = 206, end - start + 1
                headers.append((b"Content-Range", b"bytes %d-%d/%d" % (start, end, size)))
        stream = PatternStream(length, start, frame_size=self.server.piece_size if chunked else 0)
        return Response(status, content_type=b"application/octet-stream", headers=headers, stream=stream)

    def _chunked(self, req) -> Response:
        example = "/chunked/5?size=1024&delay=100"
        count_text = req.path[len("/chunked/"):]
        query = parse_qs(req.query_string, keep_blank_values=True)
        size_text = query.get("size", ["1024"])[-1]
        delay_text = query.get("delay", ["0"])[-1]
        try:
            size = parse_whole(size_text, "size", 1, 16 << 20, " bytes")
            count = parse_whole(count_text, "count", 1, MAX_INT63 // size)  # the body's length must fit 63 bits
            delay_ms = parse_whole(delay_text, "delay", 0, int(self.config.max_delay_s * 1000), " ms (--max-delay)")
        except ValueError as exc:
            return _error(str(exc), example)
        stream = PatternStream(count * size, frame_size=size, restart_frames=True, frame_delay_s=delay_ms / 1000)
        return Response(200, content_type=b"text/plain; charset=utf-8", stream=stream)

    def _unreliable_head(self, req) -> Response | None:
        """Pick the plan from the query: ?spec=SPEC, or outcome=weight pairs (plus delay=DIST)."""
        example = "/unreliable?timeout=20&403=20&500=10&ok=50 or /unreliable?spec=503:1,ok:9"
        query = parse_qs(req.query_string, keep_blank_values=True)
        if "spec" in query:
            spec = query["spec"][-1]
        else:
            terms = [f"{name}:{values[-1]}" for name, values in query.items() if name != "delay"]
            spec = ",".join(terms) or UNRELIABLE_DEFAULT
            if "delay" in query:
                spec += f";delay={query['delay'][-1]}"
        try:
            req.fault_plan = self.plans.get(spec) if spec != UNRELIABLE_DEFAULT else self.unreliable_default
        except FaultSpecError as exc:
            return Response(400, orjson.dumps({"error": str(exc), "position": exc.position, "example": example}))
        return None

    def _unreliable(self, req) -> Response:
        return Response(200, orjson.dumps({"status": "ok", "path": req.path, "time": time.time()}))

    def _getbalance_head(self, req) -> None:
        req.fault_plan = self.unreliable_default

    def _getbalance(self, req) -> Response:
        output = _output_format(req, "html", "/getbalance?format=html")
        if isinstance(output, Response):
            return output
        account = fake_account(self.rng)
        if output == "html":  # the old server's page
            return Response(200, _balance_page(account).encode(), b"text/html; charset=utf-8")
        return Response(200, orjson.dumps(account))

    def _getlogs(self, req) -> Response:
        example = "/getlogs?limit=100 (&format=text)"
        if self.server.request_log is None:
            return _error("the request log is off (--request-log-size 0)", example, 404)
        output = _output_format(req, "text", example)
        if isinstance(output, Response):
            return output
        try:
            limit = parse_whole(parse_qs(req.query_string).get("limit", ["100"])[-1], "limit", 0, MAX_INT63)
        except ValueError as exc:
            return _error(str(exc), example)
        records = self.server.request_log.last(limit)
        if output == "text":  # the old server's text form: one line per request
            lines = "".join(f"{record['time']} {record['client']} {record['method']} {record['url']} "
                            f"{record['status'] if record['status'] is not None else '-'} {record['outcome']} "
                            f"{record['latency_ms']}ms\n" for record in records)
            return Response(200, lines.encode(), b"text/plain; charset=utf-8")
        return Response(200, orjson.dumps(records))

    def _sse(self, req) -> Response:
        example = "/sse?count=10&interval=1000&size=64"
        query = parse_qs(req.query_string, keep_blank_values=True)
        values = {}
        for name, default, limit in (("count", "10", MAX_INT63), ("interval", "1000", int(self.config.max_delay_s * 1000)),
                                     ("size", "0", 1 << 20)):
            try:
                values[name] = parse_whole(query.get(name, [default])[-1], name, 0, limit)
            except ValueError as exc:
                return _error(str(exc), example)
        events = EventStream(values["count"], values["interval"] / 1000, values["size"], self.config.sse_heartbeat_s)
        return Response(200, content_type=b"text/event-stream", headers=[(b"Cache-Control", b"no-cache")],
                        events=events)

    def _websocket(self, req) -> Response:
        """RFC 6455 §4.2: the opening handshake; then the core speaks WebSocket on this connection."""
        example = "GET /ws with Upgrade: websocket, Connection: Upgrade, Sec-WebSocket-Version: 13, Sec-WebSocket-Key"
        if req.method != "GET":
            return Response(405, orjson.dumps({"error": "a WebSocket handshake is a GET", "example": example}),
                            headers=[(b"Allow", b"GET")])
        headers = {}
        for name, value in req.headers:
            headers.setdefault(name.lower(), []).append(value)
        tokens = {token.strip().lower() for value in headers.get("connection", []) for token in value.split(",")}
        key = headers.get("sec-websocket-key", [""])[-1].strip()
        if "websocket" not in (value.strip().lower() for value in headers.get("upgrade", [])):
            reason = "missing 'Upgrade: websocket'"
        elif "upgrade" not in tokens:
            reason = "missing 'Connection: Upgrade'"
        elif headers.get("sec-websocket-version", [""])[-1].strip() != "13":
            return Response(400, orjson.dumps({"error": "unsupported Sec-WebSocket-Version (13 only)",
                                               "example": example}), headers=[(b"Sec-WebSocket-Version", b"13")])
        elif not _valid_websocket_key(key):
            reason = "Sec-WebSocket-Key must be 16 bytes in base64"
        else:
            accept = base64.b64encode(hashlib.sha1(key.encode() + WEBSOCKET_GUID).digest())
            mode = WS_ANSWER_ONCE if req.path == "/ws/close" else WS_ECHO
            # no Sec-WebSocket-Extensions in the answer: permessage-deflate is declined
            return Response(101, content_type=b"", headers=[
                (b"Upgrade", b"websocket"), (b"Connection", b"Upgrade"), (b"Sec-WebSocket-Accept", accept)],
                websocket=WebSocket(mode, self.config.ws_max_message, self.config.ws_idle_timeout_s,
                                    self.config.ws_ping_interval_s))
        return _error(f"not a WebSocket handshake: {reason}", example)

    def _upload(self, req) -> Response:
        duration_s = max(time.monotonic() - req.started_s, 1e-9)
        body = _echo(req)
        body["bytes_received"] = req.body_size
        body["duration_ms"] = round(duration_s * 1000, 3)
        body["throughput_mbps"] = round(req.body_size * 8 / duration_s / 1e6, 3)
        return Response(200, orjson.dumps(body))


_SIZE_TEXT = re.compile(r"[0-9]+[kmgtKMGT]?")
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _valid_websocket_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (ValueError, binascii.Error):
        return False

_FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Radia", "Linus")
_LAST_NAMES = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Thompson", "Perlman")
_CURRENCIES = ("USD", "EUR", "GBP", "JPY", "CHF")
_MERCHANTS = ("Grocery Mart", "City Transit", "Cloud Hosting", "Coffee Corner", "Book Nook", "Power & Light")


def fake_account(rng: Random) -> dict:
    """A plausible account from the seeded generator: the same seed, the same sequence of accounts."""
    def pick(options):
        return options[int(rng.random() * len(options))]

    transactions = []
    for _ in range(3):
        amount = round((rng.random() - 0.7) * 500, 2)
        transactions.append({
            "id": f"tx-{int(rng.random() * 1e12):012d}",
            "amount": amount,
            "type": "credit" if amount >= 0 else "debit",
            "description": "Salary" if amount >= 0 else pick(_MERCHANTS),
            "days_ago": int(rng.random() * 30),
        })
    return {
        "account_id": f"ACC-{int(rng.random() * 1e10):010d}",
        "holder": f"{pick(_FIRST_NAMES)} {pick(_LAST_NAMES)}",
        "balance": round(rng.random() * 100000, 2),
        "currency": pick(_CURRENCIES),
        "recent_transactions": transactions,
    }


def _output_format(req, other: str, example: str):
    """``?format=json`` (the default) or ``other``, or the 400 answer to anything else."""
    output = parse_qs(req.query_string).get("format", ["json"])[-1].lower()
    if output not in ("json", other):
        return _error(f"format {output!r} is not json or {other}", example)
    return output


def _balance_page(account: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(tx['id'])}</td><td>{html.escape(tx['description'])}</td>"
                   f"<td>{tx['type']}</td><td class=amount>{tx['amount']:.2f}</td>"
                   f"<td>{tx['days_ago']} days ago</td></tr>"
                   for tx in account["recent_transactions"])
    return (f"<!doctype html><html><head><meta charset=utf-8><title>Balance {html.escape(account['account_id'])}"
            f"</title></head><body><h1>Account {html.escape(account['account_id'])}</h1>"
            f"<p>Holder: {html.escape(account['holder'])}</p>"
            f"<p>Balance: <strong id=balance>{account['balance']:.2f} {html.escape(account['currency'])}</strong></p>"
            f"<table><tr><th>Transaction</th><th>Description</th><th>Type</th><th>Amount</th><th>When</th></tr>"
            f"{rows}</table></body></html>\n")


def _header(req, name: str) -> str | None:
    for key, value in req.headers:
        if key.lower() == name:
            return value
    return None


def _parse_range(value: str, size: int):
    """RFC 9110 §14.1.2: (start, end) for one satisfiable range, None if unsatisfiable, () to ignore it."""
    unit, _, ranges = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in ranges:
        return ()
    first, dash, last = ranges.strip().partition("-")
    if not dash or not all(part == "" or (part.isascii() and part.isdigit() and len(part) <= 19) for part in (first, last)) \
            or first == last == "":
        return ()
    if first == "":  # suffix: the last N bytes
        suffix = int(last)
        return (max(size - suffix, 0), size - 1) if suffix > 0 else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size:
        return None
    if end < start:
        return ()
    return start, end
