"""Types of the compiled core's Python surface."""

from collections.abc import Awaitable, Callable
from typing import Any

class Request:
    method: str
    http_minor: int
    keep_alive: bool
    chunked: bool
    expect_continue: bool
    content_length: int
    body: bytes
    body_size: int
    body_truncated: bool
    client_addr: str | None
    server_addr: str | None
    tls: Any
    read_pause_s: float
    fault_plan: FaultPlan | None
    @property
    def target(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query_string(self) -> str: ...
    @property
    def http_version(self) -> str: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...

class Data:
    data: bytes

class EndOfMessage: ...

class ResponseHead:
    status: int
    reason: str
    http_minor: int
    keep_alive: bool
    chunked: bool
    content_length: int
    headers: list[tuple[str, str]]

class RequestParser:
    no_body: bool
    def __init__(self, *, max_target_size: int = 8192, max_header_size: int = 65536,
                 max_headers: int = 100, response: bool = False) -> None: ...
    def feed(self, data: bytes | bytearray | memoryview) -> list[Request | ResponseHead | Data | EndOfMessage]: ...
    @property
    def buffered(self) -> int: ...

CONTINUE_100: bytes

def refresh_date() -> None: ...
def status_phrase(status: int) -> str: ...
def render(status: int, body: bytes = b"", content_type: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
           *, keep_alive: bool = True, http10: bool = False, head_only: bool = False) -> bytes: ...
def error_response(status: int, msg: str) -> bytes: ...
def pattern_buffer(size: int) -> memoryview: ...

class StaticResponse:
    status: int
    def __init__(self, status: int, body: bytes, content_type: bytes,
                 extra_headers: list[tuple[bytes, bytes]] | None = None) -> None: ...
    def bytes_for(self, *, keep_alive: bool = True, http10: bool = False, head_only: bool = False) -> bytes: ...

class PatternStream:
    remaining: int
    frame_size: int
    def __init__(self, length: int, start: int = 0, *, frame_size: int = 0, restart_frames: bool = False,
                 frame_delay_s: float = 0.0) -> None: ...

class EventStream:
    count: int
    interval_s: float
    size: int
    heartbeat_s: float
    sent: int
    def __init__(self, count: int = 10, interval_s: float = 1.0, size: int = 0, heartbeat_s: float = 15.0,
                 **subclass_options: Any) -> None: ...
    def next_event(self) -> bytes: ...

WS_ECHO: int
WS_ANSWER_ONCE: int

class WebSocket:
    def __init__(self, mode: int = ..., max_message: int = 16777216, idle_timeout_s: float = 0.0,
                 ping_interval_s: float = 0.0) -> None: ...
    def receive(self, writer: ResponseWriter, data: bytes) -> None: ...

class Response:
    status: int
    body: bytes
    content_type: bytes
    headers: list[tuple[bytes, bytes]] | None
    delay_s: float
    stream: PatternStream | None
    events: EventStream | None
    websocket: WebSocket | None
    def __init__(self, status: int = 200, body: bytes = b"", content_type: bytes = b"application/json",
                 headers: list[tuple[bytes, bytes]] | None = None, delay_s: float = 0.0,
                 stream: PatternStream | None = None, events: EventStream | None = None,
                 websocket: WebSocket | None = None) -> None: ...

class ResponseWriter:
    body_open: bool
    closed: bool
    reset: bool
    def __init__(self, buffer_size: int = 65536) -> None: ...
    def send_response(self, response: Response, *, keep_alive: bool = True, http10: bool = False,
                      head_only: bool = False, truncate: bool = False, drip_rate: float = 0.0) -> None: ...
    def take(self) -> bytes: ...
    def run_due(self) -> None: ...
    def tick(self) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...

class Random:
    def __init__(self, seed: int) -> None: ...
    def random(self) -> float: ...

DURATION_BOUNDS: tuple[float, ...]

class Route:
    name: str
    path: bytes | None
    prefix: bool
    def __init__(self, name: str, path: bytes | None = None, *, prefix: bool = False,
                 static: StaticResponse | None = None, static_draining: StaticResponse | None = None,
                 handler: Callable[[Request], Response | Awaitable[Response]] | None = None,
                 on_head: Callable[[Request], Response | None] | None = None, body_limit: int = 1048576,
                 max_body_size: int = 0) -> None: ...

class Server:
    def __init__(self, loop: Any, routes: list[Route], default_route: Route, *, max_target_size: int = 8192,
                 max_header_size: int = 65536, max_headers: int = 100, idle_timeout_s: float = 10.0,
                 header_timeout_s: float = 10.0, body_timeout_s: float = 30.0, body_min_rate: float = 1024,
                 max_connections: int = 262144, buffer_size: int = 262144,
                 access_log: Callable[[Request, int, int, float], None] | None = None,
                 fault_rules: list[tuple[bytes, FaultPlan]] | None = None,
                 header_faults: Callable[[str], FaultPlan] | None = None, seed: int = 0,
                 max_hang_s: float = 300.0, request_log: RequestLog | None = None,
                 log: Callable[[str], None] | None = None) -> None: ...
    def make_protocol(self) -> Any: ...
    def start(self) -> None: ...
    def bound_tick(self, timeout_s: float) -> None: ...
    def stop(self) -> None: ...
    def drain(self) -> None: ...
    def abort_all(self) -> None: ...
    @property
    def open_connections(self) -> int: ...
    def stats(self) -> dict[str, Any]: ...

class FleetPort:
    port: int
    slot: int
    listener: Any
    @property
    def requests(self) -> int: ...
    def __call__(self) -> Any: ...

class PortGroup:
    server: Server
    def __init__(self, loop: Any, counters: Any, on_kill: Callable[[FleetPort, Any], None],
                 **server_options: Any) -> None: ...
    def port(self, port: int, slot: int) -> FleetPort: ...
    def close_connections(self, port: FleetPort, keep: Any = None) -> None: ...

FAULT_KIND_NAMES: tuple[str, ...]
DELAY_KIND_NAMES: tuple[str, ...]

class FaultPlan:
    spec: str
    def __init__(self, spec: str, outcomes: list[tuple[str, int, float, float]],
                 delay: tuple[str, float, float] = ("none", 0.0, 0.0)) -> None: ...
    def sample(self, rng: Random) -> tuple[str, int, float, float]: ...

class RequestLog:
    def __init__(self, capacity: int, sink: Callable[[dict[str, Any]], None] | None = None) -> None: ...
    def last(self, limit: int) -> list[dict[str, Any]]: ...
    def __len__(self) -> int: ...
    def append(self, method: str, path: str, client: str, status: int, *, latency_s: float = 0.0) -> None: ...

class Proxy:
    server: Server
    def __init__(self, loop: Any, upstream_host: str, upstream_port: int, routes: list[Route], *,
                 headers: list[tuple[bytes, bytes]] | None = None, drop_rate: float = 0.0, delay_s: float = 0.0,
                 upstream_timeout_s: float = 30.0, max_idle: int = 256, proxy_seed: int = 0,
                 **server_options: Any) -> None: ...
    def make_protocol(self) -> Any: ...
    def stats(self) -> dict[str, Any]: ...

class LatencyHistogram:
    count: int
    min: float
    max: float
    mean: float
    def record(self, seconds: float) -> None: ...
    def percentile(self, percent: float) -> float: ...
    def merge(self, other: LatencyHistogram) -> None: ...
    def count_at_most(self, seconds: float) -> int: ...
    def to_dict(self) -> dict[str, Any]: ...
    @staticmethod
    def from_dict(data: Any) -> LatencyHistogram: ...

HISTOGRAM_LAYOUT: str

LOAD_ERROR_NAMES: tuple[str, ...]

def handshake_failure(exc: BaseException) -> str: ...

class LoadEngine:
    histogram: LatencyHistogram
    handshake_histogram: LatencyHistogram
    records: list[tuple] | None
    def __init__(self, loop: Any, host: str, port: int, head: bytes, body: bytes = b"", *, total: int = -1,
                 duration_s: float = 0.0, concurrency: int = 1, rate: float = 0.0, timeout_s: float = 30.0,
                 connect_timeout_s: float = 10.0, retries: int = 0, backoff_s: float = 0.1, keepalive: bool = True,
                 trace: bool = False, record: bool = False, head_request: bool = False, seed: int = 0,
                 index_offset: int = 0, index_step: int = 1, ssl: Any = None, server_hostname: str | None = None,
                 resume: Any = None) -> None: ...
    def start(self) -> Any: ...
    def stats(self) -> dict[str, Any]: ...
