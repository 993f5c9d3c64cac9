"""``fastmock hp``: the route table of the single-port server (its handlers build JSON with orjson)."""

import socket
from dataclasses import dataclass
from urllib.parse import parse_qs

import orjson

from fastmock._core import Random, Response, Route, StaticResponse, status_phrase
from fastmock.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fastmock.metrics import metrics_text

__all__ = ["HpConfig", "HpApp"]

JSON = b"application/json"
HOSTNAME = socket.gethostname()

HELP_TEXT = """\
fastmock hp endpoints (any method unless stated)

GET /health                      200 {"status":"ok"}; 503 {"status":"draining"} while shutting down
/  and any other path            echo of the request as JSON               curl localhost:8080/any/path?a=1
/status/{code}                   that status with the echo JSON             curl localhost:8080/status/503
/status/{code}:{w},{code}:{w}    a weighted random status                   curl localhost:8080/status/200:0.8,500:0.2
/delay/{ms}                      wait, then the echo JSON                   curl localhost:8080/delay/250
/delay/{ms}/{read_ms}            read the body slowly (pause read_ms per 64 KiB), then wait
                                                                            curl -T file localhost:8080/delay/0/100
/metrics                         Prometheus metrics
/help                            this text
"""


@dataclass(frozen=True)
class HpConfig:
    max_delay_s: float = 600.0
    seed: int = 0
    worker: int = 0
    body_limit: int = 1 << 20


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
    }


def _parse_status_choices(spec: str) -> list[tuple[int, float]]:
    """``503`` or ``200:0.8,500:0.2`` → [(status, weight), ...]; raises ValueError with the reason."""
    choices = []
    for term in spec.split(","):
        code_text, _, weight_text = term.partition(":")
        if not code_text.isdigit():
            raise ValueError(f"invalid status code {code_text!r}")
        code = int(code_text)
        if not 200 <= code <= 599:
            raise ValueError(f"status code {code} out of range 200-599")
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
    """Routes of ``fastmock hp``; ``server`` is set once the core's Server exists (for /metrics)."""

    def __init__(self, config: HpConfig) -> None:
        self.config = config
        self.rng = Random(config.seed)
        self.server = None
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
        ]
        self.default_route = Route("echo", handler=self._echo, body_limit=limit)

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
        if not 1 <= len(parts) <= 2 or not all(part.isdigit() for part in parts):
            raise ValueError("expected /delay/{ms} or /delay/{ms}/{read_ms} with whole milliseconds")
        ms, read_ms = int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
        limit_ms = int(self.config.max_delay_s * 1000)
        if ms > limit_ms or read_ms > limit_ms:
            raise ValueError(f"delay above the limit of {limit_ms} ms (--max-delay)")
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
