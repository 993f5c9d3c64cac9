"""The fleet's management API: plain Python handlers on the core's Server, in the supervisor process."""

import asyncio
import hmac
import importlib.resources
import os
import random
import time
from urllib.parse import parse_qs

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from fastmock import __version__
from fastmock._core import EventStream, Response, Route
from fastmock.documents import MAX_DOCUMENT_BYTES
from fastmock.faults import FAULT_EXAMPLE, FaultSpecError
from fastmock.fleet.management.chaos import EXAMPLE as CHAOS_EXAMPLE
from fastmock.fleet.management.chaos import ChaosError, ChaosRun, parse_schedule
from fastmock.fleet.management.events import EventLog
from fastmock.fleet.management.peers import Peers, PeersError, split_count
from fastmock.fleet.ports import parse_hosts, parse_port_range, split_host_port
from fastmock.fleet.state import ALIVE, FAILED, HANDSHAKE_FAILURES, KILLED, STATE_NAMES, STATES_BY_NAME
from fastmock.fleet.supervisor import FaultTableFull, Supervisor, WorkerGone
from fastmock.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fastmock.metrics import exposition
from fastmock.runtime import log, recent_log_lines
from fastmock.units import MAX_INT63, parse_whole

__all__ = ["ManagementApi"]

ENDPOINTS = ["/", "/health", "/stats", "/endpoints", "/scale", "/kill", "/revive", "/fault", "/tls", "/chaos",
             "/events", "/score", "/stream", "/view", "/metrics", "/logs", "/shutdown"]
DASHBOARD = (importlib.resources.files("fastmock.fleet.management") / "dashboard.html").read_bytes()
TRUE = ("1", "true", "yes", "on")
SCORE_INTERVAL_S = 2.0  # the dashboard's running score is computed this often
SCORE_SHOWN = ("incidents", "detected", "missed", "recall", "alerts", "false_alerts", "precision", "detect_p50",
               "detect_p95", "notify_p50", "recover_p50", "flapping", "unknown")
# with --peers, these answer for the whole fleet (local=1: for this pod alone); the rest stay this pod's
FLEET_WIDE = ("/stats", "/endpoints", "/events", "/kill", "/revive", "/fault", "/tls", "/chaos", "/scale")
SUMMED = ("current_alive", "killed", "ports", "total_started", "total_killed", "total_revived", "bind_failures",
          "requests_total", "workers", "handshakes")
TLS_STATES = "valid, expired, not-yet-valid, expiring(DAYS), wrong-host, self-signed, untrusted-root, " \
             "incomplete-chain, weak, tls1.0-only, handshake-stall, handshake-reset"


class ApiError(Exception):
    def __init__(self, status: int, message: str, example: str = "", **extra) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **({"example": example} if example else {}), **extra}


OPEN_PATHS = ("/", "/health")  # the dashboard's page (it holds no data) and liveness stay open under --token-reads


def _json(body, status: int = 200) -> Response:
    return Response(status, orjson.dumps(body))


def _int_param(query: dict, name: str, example: str, default: int | None = None, minimum: int | None = None) -> int:
    values = query.get(name)
    if not values:
        if default is None:
            raise ApiError(400, f"missing parameter {name!r}", example)
        return default
    try:
        return parse_whole(values[-1], name, -MAX_INT63 if minimum is None else minimum)
    except ValueError as exc:
        raise ApiError(400, str(exc), example) from None


class ManagementApi:
    """``routes``/``default_route`` for the core Server; ``stopped`` is set by POST /shutdown."""

    def __init__(self, supervisor: Supervisor, token: str | None, seed: int, advertise_host: str,
                 stream_interval_s: float = 0.25, token_reads: bool = False, ordinal: int = 0,
                 peers: Peers | None = None) -> None:
        self.supervisor = supervisor
        self.state = supervisor.state
        self.config = supervisor.config
        self.token = token
        self.token_reads = token_reads  # reads need the token too (all but / and /health)
        self.seed = seed
        self.rng = random.Random(seed)
        self.advertise_host = advertise_host
        self.url_host = f"[{advertise_host}]" if ":" in advertise_host else advertise_host
        self.ordinal = ordinal  # this pod's place in a fleet of several (--peers)
        self.peers = peers
        self.scheme = "http" if supervisor.config.tls is None else "https"
        self.stream_interval_s = stream_interval_s
        self.event_log = EventLog(self.state.name)
        self.chaos: ChaosRun | None = None
        self.scorer = None  # a score.RunningScore with --score-listen
        self.stopped = asyncio.get_running_loop().create_future()
        # path -> method -> (changes the fleet: needs the token, handler(query, req))
        self.handlers = {
            "/": {"GET": (False, self.dashboard)},
            "/health": {"GET": (False, self.health)},
            "/stats": {"GET": (False, self.stats)},
            "/endpoints": {"GET": (False, self.endpoints)},
            "/metrics": {"GET": (False, self.metrics)},
            "/logs": {"GET": (False, self.logs)},
            "/events": {"GET": (False, self.events)},
            "/score": {"GET": (False, self.score)},
            "/stream": {"GET": (False, self.stream)},
            "/view": {"GET": (False, self.view)},
            "/scale": {"GET": (True, self.scale), "POST": (True, self.scale)},
            "/kill": {"GET": (True, self.kill), "POST": (True, self.kill)},
            "/revive": {"GET": (True, self.revive), "POST": (True, self.revive)},
            "/fault": {"POST": (True, self.fault), "DELETE": (True, self.clear_fault)},
            "/tls": {"POST": (True, self.set_tls), "DELETE": (True, self.clear_tls)},
            "/chaos": {"GET": (False, self.chaos_status), "POST": (True, self.start_chaos),
                       "DELETE": (True, self.stop_chaos)},
            "/shutdown": {"POST": (True, self.shutdown)},
        }
        self.routes = []
        self.default_route = Route("mgmt", handler=self.dispatch, body_limit=MAX_DOCUMENT_BYTES,
                                   max_body_size=MAX_DOCUMENT_BYTES)

    def dispatch(self, req):
        methods = self.handlers.get(req.path)
        if methods is None:
            return _json({"error": f"no such endpoint: {req.path}", "example": "/stats", "endpoints": ENDPOINTS}, 404)
        entry = methods.get("GET" if req.method == "HEAD" else req.method)
        if entry is None:
            allowed = ", ".join(methods)
            return Response(405, orjson.dumps({"error": f"{req.method} not allowed on {req.path}",
                                               "example": f"{next(iter(methods))} {req.path}"}),
                            headers=[(b"Allow", allowed.encode())])
        changes, handler = entry
        guarded = changes or (self.token_reads and req.path not in OPEN_PATHS)
        if guarded and self.token is not None and not self._authorized(req):
            return Response(401, orjson.dumps({"error": "missing or wrong bearer token",
                                               "example": "Authorization: Bearer TOKEN"}),
                            headers=[(b"WWW-Authenticate", b'Bearer realm="fastmock fleet"')])
        query = parse_qs(req.query_string, keep_blank_values=True)
        if self.peers is not None and req.path in FLEET_WIDE and "local" not in query:
            return self._fleet_wide(req, query)
        query.pop("local", None)
        if changes:
            return self._change(handler, query, req)
        try:
            return handler(query, req)
        except ApiError as exc:
            return _json(exc.body, exc.status)

    def _authorized(self, req) -> bool:
        """A bearer token in Authorization, or (RFC 6750 §2.3) in ``access_token``: a browser's EventSource
        cannot send headers."""
        for name, value in req.headers:
            if name.lower() == "authorization":
                scheme, _, credentials = value.partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(),
                                                                          self.token.encode())
        given = parse_qs(req.query_string).get("access_token")
        return given is not None and hmac.compare_digest(given[-1].encode(), self.token.encode())

    async def _change(self, handler, query, req) -> Response:
        async with self.supervisor.lock:
            try:
                return await handler(query, req)
            except ApiError as exc:
                return _json(exc.body, exc.status)
            except WorkerGone as exc:
                return _json({"error": f"{exc}; try again in a moment"}, 503)

    # --- reading --------------------------------------------------------------------------------------

    def dashboard(self, query, req) -> Response:
        return Response(200, DASHBOARD, b"text/html; charset=utf-8")

    def health(self, query, req) -> Response:
        return _json({"status": "ok"})

    def stats(self, query, req) -> Response:
        supervisor, state, config = self.supervisor, self.state, self.config
        return _json({
            "current_alive": state.count(ALIVE, supervisor.count),
            "killed": state.count(KILLED, supervisor.count),
            "ports": supervisor.count,
            "states": _state_counts(supervisor.display_states()),
            "total_started": state.worker_total("started"),
            "total_killed": state.worker_total("killed"),
            "total_revived": state.worker_total("revived"),
            "bind_failures": state.count(FAILED, supervisor.count),
            "requests_total": sum(state.requests),
            "base_port": config.base_port,
            "max_port": config.max_port,
            **({"addresses": self._address_counts()} if len(self.state.hosts) > 1 else {}),
            "workers": len(supervisor.workers),
            "chaos": self.chaos is not None and self.chaos.describe()["active"],
            "version": __version__, "ordinal": self.ordinal, "advertise": self.advertise_host,
            **({"tls": self._tls_counts(), "handshakes": state.worker_total("handshakes"),
                "handshake_failures": {reason: state.worker_total(f"handshake_failed_{reason}")
                                       for reason in HANDSHAKE_FAILURES}} if config.tls is not None else {}),
            "pid": os.getpid(),
            "uptime_s": round(time.time() - supervisor.started_at, 3),
        })

    def _address_counts(self) -> dict[str, dict[str, int]]:
        """Per address with ports in the fleet: how many, and how many are alive."""
        state, count = self.state, self.supervisor.count
        spans = [(host, index * state.per_host, min((index + 1) * state.per_host, count))
                 for index, host in enumerate(state.hosts) if index * state.per_host < count]
        return {host: {"ports": stop - start, "alive": state.states[start:stop].tobytes().count(ALIVE)}
                for host, start, stop in spans}

    def _tls_counts(self) -> dict[str, int]:
        """Ports in the fleet per certificate state (those with any)."""
        return _tls_counts(self.state.tls[:self.supervisor.count].tobytes(), list(self.supervisor.tls_states.values()))

    def picture(self) -> tuple[list, bytes, bytes | None, list[str]]:
        """What a dashboard draws of this pod: its groups of ports ([host or None, first port, count]: each
        address's ports start a row of their own; None names ports by number), a display state per port,
        and for a --tls fleet a TLS state index per port with the states' names (index 0, 1, ...)."""
        supervisor, state = self.supervisor, self.state
        display = supervisor.display_states()
        if len(state.hosts) == 1:
            groups = [[None, supervisor.config.base_port, len(display)]]
        else:
            groups = [[host, supervisor.config.base_port, min(state.per_host, len(display) - start)]
                      for host, start in zip(state.hosts, range(0, len(display), state.per_host))]
        if self.config.tls is None:
            return groups, display, None, []
        return groups, display, state.tls[:len(display)].tobytes(), list(supervisor.tls_states.values())

    def endpoints(self, query, req) -> Response:
        example = "/endpoints?limit=1000&offset=0&state=alive&format=text"
        limit = _int_param(query, "limit", example, default=1000, minimum=0)
        offset = _int_param(query, "offset", example, default=0, minimum=0)
        state_name = query.get("state", ["alive"])[-1]
        output = query.get("format", ["text"])[-1]
        if state_name != "all" and state_name not in STATES_BY_NAME:
            raise ApiError(400, f"state must be {', '.join(STATES_BY_NAME)} or all, not {state_name!r}", example)
        if output not in ("text", "json"):
            raise ApiError(400, f"format must be text or json, not {output!r}", example)
        display = self.supervisor.display_states()
        if state_name == "all":
            slots = range(len(display))
        else:
            wanted = STATES_BY_NAME[state_name]
            slots = [slot for slot, value in enumerate(display) if value == wanted]
        slots = slots[offset:offset + limit]
        urls = [self._url(slot) for slot in slots]
        if output == "text":
            return Response(200, "".join(f"{url}\n" for url in urls).encode(), b"text/plain; charset=utf-8")
        state = self.state
        requests, faults, specs = state.requests, state.faults, self.supervisor.fault_specs
        tls, tls_states = state.tls, self.supervisor.tls_states
        several = len(state.hosts) > 1
        return _json([{"port": state.port(slot), **({"host": state.host(slot)} if several else {}), "url": url,
                       "state": STATE_NAMES[display[slot]], "fault": specs.get(faults[slot]),
                       **({"tls": tls_states[tls[slot]]} if self.config.tls is not None else {}),
                       "requests": requests[slot]} for slot, url in zip(slots, urls)])

    def _url(self, slot: int) -> str:
        """The /health URL of ``slot``: on --advertise-host (or --host) for a fleet of one address, else on
        the slot's own."""
        if len(self.state.hosts) == 1:
            return f"{self.scheme}://{self.url_host}:{self.state.port(slot)}/health"
        return f"{self.scheme}://{self.state.name(slot)}/health"

    def metrics(self, query, req) -> Response:
        return Response(200, exposition(_FleetCollector(self.supervisor)), METRICS_CONTENT_TYPE)

    def logs(self, query, req) -> Response:
        tail = _int_param(query, "tail", "/logs?tail=100", default=100, minimum=0)
        lines = list(recent_log_lines)[-tail:] if tail else []
        return Response(200, "".join(line + "\n" for line in lines).encode(), b"text/plain; charset=utf-8")

    def events(self, query, req) -> Response:
        """The event log after ``since`` (a seq), as JSON lines, oldest first."""
        example = "/events?since=0&limit=1000"
        since = _int_param(query, "since", example, default=0, minimum=0)
        limit = _int_param(query, "limit", example, default=10000, minimum=1)
        chosen = self.event_log.after(since)[:limit]
        return Response(200, b"".join(orjson.dumps(event) + b"\n" for event in chosen), b"application/x-ndjson")

    def score(self, query, req) -> Response:
        """The monitor's score so far (fleet --score-listen): its alerts against this fleet's event log."""
        if self.scorer is None:
            raise ApiError(409, "no monitor is being scored: start the fleet with --score-listen HOST:PORT and "
                                "point Alertmanager's webhook there", "fastmock fleet N --score-listen 127.0.0.1:9095")
        return _json(self.scorer.report(self.supervisor.count))

    def stream(self, query, req) -> Response:
        """Server-Sent Events for the dashboard: a snapshot, then deltas of changed ports and new events;
        with --peers, of the whole fleet (local=1: of this pod)."""
        fleet_wide = self.peers is not None and "local" not in query
        return Response(200, b"", b"text/event-stream", headers=[(b"Cache-Control", b"no-cache")],
                        events=(FleetDashboardStream if fleet_wide else DashboardStream)(
                            count=0, interval_s=self.stream_interval_s, api=self))

    def view(self, query, req) -> Response:
        """This pod's picture (``picture``) and its events after ``since`` (the newest 50): what a pod's
        fleet-wide dashboard stream asks every pod for at each tick."""
        groups, display, tls, tls_states = self.picture()
        since = _int_param(query, "since", "/view?since=0", default=self.event_log.seq, minimum=0)
        return _json({"groups": groups, "states": display.decode("latin-1").translate(_DIGITS),
                      **({"tls": tls.decode("latin-1").translate(_DIGITS), "tls_states": tls_states}
                         if tls is not None else {}),
                      "events": self.event_log.after(since)[-50:], "seq": self.event_log.seq})

    # --- changing -------------------------------------------------------------------------------------

    def _slot(self, query, example: str) -> tuple[int | str, int]:
        """(the endpoint's name, its slot) from port=P (on host=H, else the first address) or port=HOST:P."""
        if not query.get("port"):
            raise ApiError(400, "missing parameter 'port'", example)
        named, port = split_host_port(query["port"][-1].strip())
        host = named or query.get("host", [None])[-1]
        if not port.isdigit():
            raise ApiError(400, f"port must be a port number or HOST:PORT, not {query.get('port', [''])[-1]!r}",
                           example)
        slot = self.state.slot_of(int(port), host)
        if slot is None or slot >= self.supervisor.count:
            raise ApiError(404, f"port {port}{f' on {host}' if host else ''} is not in the fleet "
                                f"(ports {self._range()})", example)
        return self.state.name(slot), slot

    def _hosts_param(self, query, example: str) -> list[int]:
        """The address indexes named by host=H (a list or range, as --hosts takes), else all of them."""
        if "host" not in query:
            return list(range(len(self.state.hosts)))
        try:
            named = parse_hosts(query["host"][-1])
        except ValueError as exc:
            raise ApiError(400, f"host: {exc}", example) from None
        unknown = [host for host in named if host not in self.state.hosts]
        if unknown:
            raise ApiError(404, f"{unknown[0]} is not one of the fleet's addresses", example)
        return [self.state.hosts.index(host) for host in named]

    def _targets(self, query, example: str) -> list[int]:
        """The slots named by port=P, ports=A-B, count=K (random, seeded) or all=1."""
        count = self.supervisor.count
        if "ports" in query:
            try:
                low, high = parse_port_range(query["ports"][-1])
            except ValueError:
                raise ApiError(400, f"ports must be a range like 10000-10099, not {query['ports'][-1]!r}",
                               example) from None
            state = self.state
            slots = [index * state.per_host + port - state.base_port for index in self._hosts_param(query, example)
                     for port in range(low, high + 1)]
            if low < state.base_port or high >= state.base_port + state.per_host or max(slots) >= count:
                raise ApiError(404, f"ports {low}-{high} are not all in the fleet (ports {self._range()})", example)
            return slots
        if "count" in query:
            wanted = _int_param(query, "count", example, minimum=1)
            if wanted > count:
                raise ApiError(409, f"the fleet has only {count} ports", example, available=count)
            return sorted(self.rng.sample(range(count), wanted))
        if query.get("all", [""])[-1].lower() in TRUE:
            return list(range(count))
        return [self._slot(query, example)[1]]

    def _range(self) -> str:
        count = self.supervisor.count
        return f"{self.state.name(0)}-{self.state.name(count - 1)}" if count else "none"

    async def scale(self, query, req) -> Response:
        example = "/scale?count=100 (or count=-100 to stop the highest 100)"
        count = _int_param(query, "count", example)
        supervisor = self.supervisor
        if count >= 0:
            room = self.config.slots - supervisor.count
            if count > room:
                raise ApiError(409, f"only {room} more ports fit below --max-port {self.config.max_port}",
                               example, available=room)
            result = await supervisor.start(count)
            log(f"API: scaled up by {count}: {len(result['started'])} started, {len(result['failed'])} failed "
                f"to bind; ports {self._range()}")
            return _json({"started": len(result["started"]), "failed": self._failed(result["failed"]),
                          "ports": supervisor.count, "range": self._range()})
        if -count > supervisor.count:
            raise ApiError(409, f"the fleet has only {supervisor.count} ports", example,
                           available=supervisor.count)
        await supervisor.shrink(-count)
        log(f"API: scaled down by {-count}; ports {self._range()}")
        return _json({"stopped": -count, "ports": supervisor.count, "range": self._range()})

    def _failed(self, failed: dict[int, str]) -> dict[str, str]:
        return {str(self.state.name(slot)): reason for slot, reason in failed.items()}

    async def kill(self, query, req) -> Response:
        example = "/kill?port=10000 or /kill?count=10"
        supervisor = self.supervisor
        if "count" in query:
            count = _int_param(query, "count", example, minimum=1)
            alive = self.state.slots_in(ALIVE, 0, supervisor.count)
            if count > len(alive):
                raise ApiError(409, f"only {len(alive)} ports are alive", example, available=len(alive))
            killed = await supervisor.kill(sorted(self.rng.sample(alive, count)))
            self.event_log.record("api", "kill", killed)
            return _json({"killed": [self.state.name(slot) for slot in killed]})
        port, slot = self._slot(query, example)
        current = self.state.states[slot]
        if current != ALIVE:
            raise ApiError(409, f"port {port} is {STATE_NAMES[current]}, not alive", example, state=STATE_NAMES[current])
        if not await supervisor.kill([slot]):  # killed by its own /kill meanwhile
            raise ApiError(409, f"port {port} is already killed", example, state="killed")
        self.event_log.record("api", "kill", [slot])
        return _json({"port": port, "state": "killed"})

    async def revive(self, query, req) -> Response:
        example = "/revive?port=10000 or /revive?all=1"
        supervisor = self.supervisor
        if query.get("all", [""])[-1].lower() in TRUE:
            revived, failed = await supervisor.revive(self.state.slots_in(KILLED, 0, supervisor.count))
            if revived:
                self.event_log.record("api", "revive", revived)
            return _json({"revived": len(revived), "failed": [self.state.name(slot) for slot in sorted(failed)]})
        port, slot = self._slot(query, example)
        if self.state.states[slot] == ALIVE:
            raise ApiError(409, f"port {port} is already alive", example, state="alive")
        revived, failed = await supervisor.revive([slot])
        if failed:
            raise ApiError(503, f"port {port} could not be bound: {failed[slot]}", example, state="failed")
        self.event_log.record("api", "revive", revived)
        return _json({"port": port, "state": "alive"})

    async def fault(self, query, req) -> Response:
        example = f"POST /fault?port=10000&spec=503 (or ports=10000-10099, count=10; spec: {FAULT_EXAMPLE})"
        spec = query.get("spec", [""])[-1].strip()
        if not spec:
            raise ApiError(400, "missing parameter 'spec'", example)
        slots = self._targets(query, example)
        try:
            faulted = await self.supervisor.set_fault(slots, spec)
        except FaultSpecError as exc:
            raise ApiError(400, str(exc), example, position=exc.position) from None
        except FaultTableFull as exc:
            raise ApiError(409, f"{exc}; clear some (DELETE /fault) before adding new specs", example) from None
        self.event_log.record("api", "fault", faulted, spec=spec)
        display = self.supervisor.display_states()
        return _json({"ports": [self.state.name(slot) for slot in faulted], "spec": spec,
                      "states": sorted({STATE_NAMES.get(display[slot], "alive") for slot in faulted})})

    async def clear_fault(self, query, req) -> Response:
        slots = self._targets(query, "DELETE /fault?port=10000 (or ports=10000-10099, all=1)")
        faults = self.state.faults
        cleared = await self.supervisor.set_fault([slot for slot in slots if faults[slot]], None)
        if cleared:
            self.event_log.record("api", "clear", cleared)
        return _json({"cleared": [self.state.name(slot) for slot in cleared]})

    def _tls_fleet(self, example: str) -> None:
        if self.config.tls is None:
            raise ApiError(409, "the fleet speaks plain HTTP: start it with --tls to give ports certificate states",
                           example)

    async def set_tls(self, query, req) -> Response:
        example = f"POST /tls?ports=10000-10099&state=expired (or port=, count=, all=1; states: {TLS_STATES})"
        self._tls_fleet(example)
        state = query.get("state", [""])[-1].strip()
        if not state:
            raise ApiError(400, "missing parameter 'state'", example)
        slots = self._targets(query, example)
        try:
            changed, label = await self.supervisor.set_tls(slots, state)
        except ValueError as exc:  # TlsError (not imported here: cryptography loads only in a TLS fleet)
            raise ApiError(400, str(exc), example) from None
        except FaultTableFull as exc:
            raise ApiError(409, f"{exc}; DELETE /tls?all=1 first", example) from None
        self.event_log.record("api", "tls", changed, state=label)
        return _json({"ports": [self.state.name(slot) for slot in changed], "tls": label})

    async def clear_tls(self, query, req) -> Response:
        example = "DELETE /tls?port=10000 (or ports=10000-10099, all=1)"
        self._tls_fleet(example)
        tls = self.state.tls
        changed, _ = await self.supervisor.set_tls([slot for slot in self._targets(query, example) if tls[slot]],
                                                   "valid")
        if changed:
            self.event_log.record("api", "tls", changed, state="valid")
        return _json({"valid": [self.state.name(slot) for slot in changed]})

    def chaos_status(self, query, req) -> Response:
        return _json(self.chaos.describe() if self.chaos is not None else {"active": False})

    async def start_chaos(self, query, req) -> Response:
        try:
            schedule = parse_schedule(req.body.decode("utf-8"), self.config.base_port, self.config.max_port,
                                      self.state.hosts)
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"the schedule is not UTF-8 text (byte {exc.start})", CHAOS_EXAMPLE) from None
        except ChaosError as exc:
            raise ApiError(400, str(exc), CHAOS_EXAMPLE, rule=exc.rule, line=exc.line) from None
        for rule in schedule.rules:  # every fault spec and state gets its index now: none fails halfway later
            if rule.action == "tls":
                self._tls_fleet(CHAOS_EXAMPLE)
            if rule.spec is not None:
                try:
                    (self.supervisor.tls_index if rule.action == "tls" else self.supervisor.fault_index)(rule.spec)
                except FaultTableFull as exc:
                    raise ApiError(409, str(exc), f"DELETE /{'tls' if rule.action == 'tls' else 'fault'}?all=1") from None
        await self.start_schedule(schedule)
        return _json(self.chaos.describe())

    async def start_schedule(self, schedule) -> None:
        """Replace the running schedule (its pending reverts apply now); the caller holds the lock."""
        if self.chaos is not None:
            await self.chaos.stop()
        self.chaos = ChaosRun(self.supervisor, self.event_log, schedule, self.seed, self.ordinal)
        self.chaos.start()
        log(f"chaos: schedule of {len(schedule.rules)} rule(s) started (seed {self.chaos.seed})")

    async def stop_chaos(self, query, req) -> Response:
        if self.chaos is None:
            raise ApiError(409, "no chaos schedule is running", "POST /chaos")
        await self.chaos.stop()
        self.chaos = None
        log("chaos: schedule stopped")
        return _json({"active": False})

    # --- a fleet of several pods (--peers) ---------------------------------------------------------------

    async def _fleet_wide(self, req, query) -> Response:
        """The call answered for every pod: fanned out with local=1 and merged (peers.py says how)."""
        authorization = next((value for name, value in req.headers if name.lower() == "authorization"), None)
        try:
            pods = await self.peers.survey(authorization)
        except PeersError as exc:
            return _json({"error": str(exc)}, 503)
        live = [pod for pod in pods if pod.error is None]
        report = [{"pod": pod.name, **({"error": pod.error} if pod.error else {"ordinal": pod.ordinal,
                   "ports": pod.stats["ports"], "alive": pod.stats["current_alive"]})} for pod in pods]
        missing = "; ".join(f"{pod.name}: {pod.error}" for pod in pods if pod.error)
        if req.path == "/stats":
            return _json({**_merge_stats([pod.stats for pod in live]), "pods": report, "partial": bool(missing)})
        try:
            calls = self._fleet_calls(req.path, query, live)
        except ApiError as exc:
            return _json({**exc.body, "pods": report}, exc.status)
        answers = await asyncio.gather(*(self.peers.request(pod, req.method, req.path, pod_query, req.body,
                                                            authorization) for pod, pod_query in calls))
        for (pod, _), answer in zip(calls, answers):
            pod.answer = answer
        partial = [(b"X-Fastmock-Partial", missing.encode())] if missing else []
        called = [pod for pod, _ in calls]
        if req.path == "/endpoints":
            return self._merged_endpoints(called, query, partial)
        if req.path == "/events":
            return self._merged_events(called, query, partial)
        if req.path == "/chaos":  # each pod runs its own copy (seed + ordinal): their states side by side
            answers = [{"pod": pod.name, "status": pod.answer[0], **orjson.loads(pod.answer[2] or b"{}")}
                       for pod in called]
            return _json({"active": any(answer.get("active") for answer in answers), "pods": answers,
                          "partial": bool(missing)}, max(answer["status"] for answer in answers) if answers else 503)
        return self._merged_change(called, report, bool(missing))

    def _fleet_calls(self, path: str, query: dict, live: list) -> list[tuple]:
        """(pod, its query) for each pod the call goes to: the one that serves port=HOST:PORT, count=K
        spread over the pods as one draw over the whole fleet would spread it, else every pod."""
        if path == "/endpoints":  # every pod's first offset+limit: the merged list is cut after
            offset = _int_param(query, "offset", "/endpoints?offset=0&limit=1000", default=0, minimum=0)
            limit = _int_param(query, "limit", "/endpoints?offset=0&limit=1000", default=1000, minimum=0)
            return [(pod, {**query, "offset": ["0"], "limit": [str(offset + limit)]}) for pod in live]
        if "port" in query or "host" in query:  # one pod's port, or ports=A-B of one address (host=H)
            named, port = split_host_port(query["port"][-1].strip()) if "port" in query else (None, None)
            host = named or query.get("host", [None])[-1]
            if host is None:
                raise ApiError(400, "on a fleet of several pods, name the port's pod: port=HOST:PORT",
                               f"{path}?port=10.0.0.5:10000")
            owner = next((pod for pod in live if host == pod.stats["advertise"]
                          or host in pod.stats.get("addresses", {})), None)
            if owner is None:
                raise ApiError(404, f"no pod of the fleet serves {host}", f"{path}?port=10.0.0.5:10000")
            hosted = {"host": [host]} if host in owner.stats.get("addresses", {}) else {}
            return [(owner, {**{key: value for key, value in query.items() if key != "host"},
                             **({"port": [port]} if port is not None else {}), **hosted})]
        if "count" in query and path in ("/kill", "/fault", "/tls"):
            example = f"{path}?count=10"
            wanted = _int_param(query, "count", example, minimum=1)
            sizes = [pod.stats["current_alive" if path == "/kill" else "ports"] for pod in live]
            if wanted > sum(sizes):
                raise ApiError(409, f"the fleet has only {sum(sizes)} such ports", example, available=sum(sizes))
            shares = split_count(wanted, sizes, self.rng)
            return [(pod, {**query, "count": [str(share)]}) for pod, share in zip(live, shares) if share]
        return [(pod, query) for pod in live]

    def _merged_endpoints(self, pods: list, query: dict, partial: list) -> Response:
        offset = int(query.get("offset", ["0"])[-1])
        limit = int(query.get("limit", ["1000"])[-1])
        failed = [pod for pod in pods if pod.answer[0] != 200]
        if failed:
            return Response(failed[0].answer[0], failed[0].answer[2])
        if query.get("format", ["text"])[-1] == "json":
            entries = [{**entry, "host": entry.get("host", pod.stats["advertise"]), "pod": pod.name}
                       for pod in pods for entry in orjson.loads(pod.answer[2])]
            return Response(200, orjson.dumps(entries[offset:offset + limit]), headers=partial)
        lines = [line for pod in pods for line in pod.answer[2].splitlines(keepends=True)]
        return Response(200, b"".join(lines[offset:offset + limit]), b"text/plain; charset=utf-8", headers=partial)

    def _merged_events(self, pods: list, query: dict, partial: list) -> Response:
        limit = int(query.get("limit", ["10000"])[-1])
        events = sorted((pod.named_event(event) for pod in pods if pod.answer[0] == 200
                         for event in map(orjson.loads, pod.answer[2].splitlines())), key=lambda event: event["time"])
        return Response(200, b"".join(orjson.dumps(event) + b"\n" for event in events[:limit]),
                        b"application/x-ndjson", headers=partial)

    def _merged_change(self, pods: list, report: list, partial: bool) -> Response:
        """The pods' answers to a change as one: lists concatenated (ports named HOST:PORT), counts added;
        a pod that refused is named under ``errors`` (all refused: the first refusal, with the others)."""
        merged, errors = {}, {}
        for pod in pods:
            status, _, body = pod.answer
            answer = orjson.loads(body) if body[:1] in (b"{", b"[") else {"error": body.decode("utf-8", "replace")}
            if status != 200:
                errors[pod.name] = answer.get("error", f"HTTP {status}")
                continue
            for key, value in answer.items():
                if key == "port":
                    merged[key] = pod.endpoint(value)
                elif key == "states":  # the display states the change left: one set
                    merged[key] = sorted(set(merged.get(key, [])) | set(value))
                elif isinstance(value, list):
                    merged.setdefault(key, []).extend(pod.endpoint(item) if isinstance(item, int) else item
                                                      for item in value)
                elif isinstance(value, int) and not isinstance(value, bool):
                    merged[key] = merged.get(key, 0) + value
                else:
                    merged.setdefault(key, value)
        if errors and not merged:
            first = next(pod for pod in pods if pod.answer[0] != 200)
            return _json({"error": errors[first.name], "errors": errors, "pods": report}, first.answer[0])
        return _json({**merged, **({"errors": errors} if errors else {}), "pods": report, "partial": partial})

    async def shutdown(self, query, req) -> Response:
        if not self.stopped.done():
            self.stopped.set_result("POST /shutdown")
        return _json({"status": "stopping", "pid": os.getpid()})


def _merge_stats(each: list[dict]) -> dict:
    """The pods' /stats as one: counts added (by state, address, TLS state and failure reason too)."""
    merged = dict(each[0]) if each else {}
    for key in SUMMED:
        merged[key] = sum(stats.get(key, 0) for stats in each)
    for key in ("states", "tls", "handshake_failures"):
        if key in merged:
            merged[key] = {name: sum(stats.get(key, {}).get(name, 0) for stats in each)
                           for name in dict.fromkeys(name for stats in each for name in stats.get(key, {}))}
    merged["chaos"] = any(stats.get("chaos") for stats in each)
    for key in ("pid", "ordinal", "advertise", "addresses", "uptime_s"):  # one pod's: per pod in "pods"
        merged.pop(key, None)
    return merged


class DashboardStream(EventStream):
    """One dashboard's live view: a ``snapshot`` event, then at each tick a ``delta`` of the ports whose
    display state changed since (flat [slot, code, ...]) with the counts, and the new ``events``."""

    def __init__(self, *, api: ManagementApi, **stream_options) -> None:  # the options went to __cinit__
        self.api = api
        self.groups = None  # the groups of ports this client has, with their display states
        self.shown = None
        self.tls_shown = None  # and the TLS indexes (a --tls fleet)
        self.event_seq = api.event_log.seq
        self.quiet_ticks = 0
        self.score_due = 0.0  # when to send the running score next (--score-listen)

    def picture(self) -> tuple[list, bytes, bytes | None, list[str], list[dict]]:
        """``ManagementApi.picture()`` and the events since the last call."""
        fresh = self.api.event_log.after(self.event_seq)[-50:]
        if fresh:
            self.event_seq = fresh[-1]["seq"]
        return *self.api.picture(), fresh

    def next_event(self) -> bytes:
        api = self.api
        groups, display, tls, tls_states, fresh = self.picture()
        if groups is None:
            return b""  # nothing to show yet: a fleet-wide stream's first answers are on their way
        counts = _state_counts(display)
        tls_view = {"tls_states": tls_states, "tls_counts": _tls_counts(tls, tls_states)} if tls is not None else {}
        out = []
        if groups != self.groups:
            out.append(_sse("snapshot", {"groups": groups, "ports": len(display),
                                         "states": display.decode("latin-1").translate(_DIGITS), "counts": counts,
                                         "token_required": api.token is not None, **tls_view,
                                         **({"tls": tls.decode("latin-1").translate(_DIGITS)}
                                            if tls is not None else {})}))
        elif display != self.shown or tls != self.tls_shown:
            out.append(_sse("delta", {"changes": _changes(display, self.shown), "counts": counts, **tls_view,
                                      **({"tls_changes": _changes(tls, self.tls_shown)} if tls is not None else {})}))
        self.groups, self.shown, self.tls_shown = groups, display, tls
        if fresh:
            out.append(_sse("events", fresh))
        if api.scorer is not None and time.monotonic() >= self.score_due:
            self.score_due = time.monotonic() + SCORE_INTERVAL_S
            report = api.scorer.report(api.supervisor.count)
            out.append(_sse("score", {key: report[key] for key in SCORE_SHOWN}))
        if out:
            self.quiet_ticks = 0
            return b"".join(out)
        self.quiet_ticks += 1
        if self.quiet_ticks * self.interval_s >= self.heartbeat_s:
            self.quiet_ticks = 0
            return b": heartbeat\n\n"
        return b""


class FleetDashboardStream(DashboardStream):
    """The dashboard of a fleet of several pods (--peers): every pod's picture (``/view``) side by side in
    ordinal order, with its ports named HOST:PORT and its events named by pod. The pods are asked again at
    each tick while the answers last received are shown: the stream itself never waits for a pod, and a pod
    that does not answer drops out of the picture (a new snapshot) until it answers again."""

    def __init__(self, *, api: ManagementApi, **stream_options) -> None:
        super().__init__(api=api)
        self.latest = (None, b"", None, [], [])
        self.asking = None  # the round of questions in flight
        self.since = {}  # per pod: the last event it sent

    def picture(self) -> tuple[list, bytes, bytes | None, list[str], list[dict]]:
        if self.asking is None or self.asking.done():
            self.asking = asyncio.get_running_loop().create_task(self._ask_every_pod())
        picture, self.latest = self.latest, (*self.latest[:4], [])  # events are sent once
        return picture

    async def _ask_every_pod(self) -> None:
        api = self.api
        authorization = f"Bearer {api.token}" if api.token else None  # the fleet's token: every pod has it
        try:
            pods = [pod for pod in await api.peers.survey(authorization) if pod.error is None]
        except PeersError:
            return
        answers = await asyncio.gather(*(
            api.peers.request(pod, "GET", "/view", {"since": [str(self.since[pod.name])]} if pod.name in self.since
                              else {}, b"", authorization) for pod in pods))  # (a first answer: no events yet)
        views = [(pod, orjson.loads(body)) for pod, (status, _, body) in zip(pods, answers) if status == 200]
        groups, display, tls, tls_states, fresh = [], [], [], [], []
        for pod, view in views:
            groups += [[host or pod.stats["advertise"], first, count] for host, first, count in view["groups"]]
            display.append(view["states"].encode("latin-1").translate(_UNDIGITS))
            names = view.get("tls_states", ["valid"])  # this pod's numbering, renumbered to the fleet's
            tls_states += [name for name in names if name not in tls_states]
            renumber = bytes(tls_states.index(names[index]) if index < len(names) else 0 for index in range(256))
            indexes = view.get("tls", "0" * len(display[-1])).encode("latin-1").translate(_UNDIGITS)
            tls.append(indexes.translate(renumber))
            fresh += [pod.named_event(event) for event in view["events"]]
            self.since[pod.name] = view["seq"]
        any_tls = any("tls" in view for _, view in views)
        fresh.sort(key=lambda event: event["time"])
        self.latest = (groups, b"".join(display), b"".join(tls) if any_tls else None, tls_states if any_tls else [],
                       self.latest[4] + fresh)


def _changes(new: bytes, old: bytes) -> list[int]:
    """Flat [slot, new value, ...] where ``new`` differs from ``old`` (same length)."""
    changes = []
    for block in range(0, len(new), 64):  # whole blocks compare at C speed; most are unchanged
        fresh = new[block:block + 64]
        if fresh != old[block:block + 64]:
            stale = old[block:block + 64]
            changes += [value for i, code in enumerate(fresh) if code != stale[i] for value in (block + i, code)]
    return changes


_DIGITS = {code: chr(48 + code) for code in range(256)}  # a byte per port as one character: "0" is 0
_UNDIGITS = bytes((code - 48) % 256 for code in range(256))  # and back (after encoding as latin-1)


def _state_counts(display: bytes) -> dict[str, int]:
    """Ports per display state name, from ``Supervisor.display_states()``."""
    return {name: display.count(code) for code, name in STATE_NAMES.items()}


def _tls_counts(indexes: bytes, names: list[str]) -> dict[str, int]:
    """Ports per certificate state (those with any), from a TLS state index per port."""
    return {name: count for index, name in enumerate(names) if (count := indexes.count(index))}


def _sse(name: str, data) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


class _FleetCollector:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self):
        supervisor, state = self.supervisor, self.supervisor.state
        ports = GaugeMetricFamily("fastmock_fleet_ports", "Fleet ports by state (an alive port with a fault: "
                                  "its category)", labels=["state"])
        for name, count in _state_counts(supervisor.display_states()).items():
            ports.add_metric([name], count)
        yield ports
        yield GaugeMetricFamily("fastmock_fleet_workers", "Port worker processes running",
                                value=len(supervisor.workers))
        requests = CounterMetricFamily("fastmock_fleet_requests", "Requests answered by fleet ports, by worker",
                                       labels=["worker"])
        per_worker = supervisor.per_worker
        for index in range(-(-supervisor.count // per_worker)):
            requests.add_metric([str(index)], sum(state.requests[index * per_worker:(index + 1) * per_worker]))
        yield requests
        for field, help_text in (("started", "Ports started (at start-up and by scaling)"),
                                 ("killed", "Ports killed (per-port /kill and the API)"),
                                 ("revived", "Ports revived")):
            yield CounterMetricFamily(f"fastmock_fleet_{field}", help_text, value=state.worker_total(field))
        if supervisor.config.tls is None:
            return
        tls = GaugeMetricFamily("fastmock_fleet_tls_ports", "Fleet ports by certificate state", labels=["state"])
        indexes = state.tls[:supervisor.count].tobytes()
        for index, name in supervisor.tls_states.items():
            tls.add_metric([name], indexes.count(index))
        yield tls
        yield CounterMetricFamily("fastmock_fleet_tls_handshakes", "TLS handshakes completed by fleet ports",
                                  value=state.worker_total("handshakes"))
        failures = CounterMetricFamily("fastmock_fleet_tls_handshake_failures",
                                       "TLS handshakes that failed, by reason (as the server saw it)",
                                       labels=["reason"])
        for reason in HANDSHAKE_FAILURES:
            failures.add_metric([reason], state.worker_total(f"handshake_failed_{reason}"))
        yield failures
