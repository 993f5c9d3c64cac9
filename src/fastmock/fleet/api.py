"""The fleet's management API: plain Python handlers on the core's Server, in the supervisor process."""

import asyncio
import hmac
import os
import random
import time
from urllib.parse import parse_qs

import orjson
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from fastmock._core import Response, Route
from fastmock.fleet.state import ALIVE, FAILED, KILLED, STATE_NAMES, STATES_BY_NAME
from fastmock.fleet.supervisor import Supervisor, WorkerGone
from fastmock.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fastmock.serve import log, recent_log_lines

__all__ = ["ManagementApi"]

ENDPOINTS = ["/health", "/stats", "/endpoints", "/scale", "/kill", "/revive", "/metrics", "/logs", "/shutdown"]


class ApiError(Exception):
    def __init__(self, status: int, message: str, example: str = "", **extra) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **({"example": example} if example else {}), **extra}


def _json(body, status: int = 200) -> Response:
    return Response(status, orjson.dumps(body))


def _int_param(query: dict, name: str, example: str, default: int | None = None, minimum: int | None = None) -> int:
    values = query.get(name)
    if not values:
        if default is None:
            raise ApiError(400, f"missing parameter {name!r}", example)
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {values[-1]!r}", example) from None
    if minimum is not None and value < minimum:
        raise ApiError(400, f"{name} must be at least {minimum}", example)
    return value


class ManagementApi:
    """``routes``/``default_route`` for the core Server; ``stopped`` is set by POST /shutdown."""

    def __init__(self, supervisor: Supervisor, token: str | None, seed: int, advertise_host: str) -> None:
        self.supervisor = supervisor
        self.state = supervisor.state
        self.config = supervisor.config
        self.token = token
        self.rng = random.Random(seed)
        self.url_host = f"[{advertise_host}]" if ":" in advertise_host else advertise_host
        self.lock = asyncio.Lock()  # one change at a time: the fleet's size and states stay consistent
        self.stopped = asyncio.get_running_loop().create_future()
        self.handlers = {
            "/health": (("GET", "HEAD"), False, self.health),
            "/stats": (("GET", "HEAD"), False, self.stats),
            "/endpoints": (("GET", "HEAD"), False, self.endpoints),
            "/metrics": (("GET", "HEAD"), False, self.metrics),
            "/logs": (("GET", "HEAD"), False, self.logs),
            "/scale": (("GET", "POST"), True, self.scale),
            "/kill": (("GET", "POST"), True, self.kill),
            "/revive": (("GET", "POST"), True, self.revive),
            "/shutdown": (("POST",), True, self.shutdown),
        }
        self.routes = []
        self.default_route = Route("mgmt", handler=self.dispatch, body_limit=65536)

    def dispatch(self, req):
        entry = self.handlers.get(req.path)
        if entry is None:
            return _json({"error": f"no such endpoint: {req.path}", "example": "/stats", "endpoints": ENDPOINTS}, 404)
        methods, changes, handler = entry
        if req.method not in methods:
            return Response(405, orjson.dumps({"error": f"{req.method} not allowed on {req.path}",
                                               "example": f"{methods[0]} {req.path}"}),
                            headers=[(b"Allow", ", ".join(methods).encode())])
        if changes and self.token is not None and not self._authorized(req):
            return Response(401, orjson.dumps({"error": "missing or wrong bearer token",
                                               "example": "Authorization: Bearer TOKEN"}),
                            headers=[(b"WWW-Authenticate", b'Bearer realm="fastmock fleet"')])
        query = parse_qs(req.query_string, keep_blank_values=True)
        if changes:
            return self._change(handler, query)
        try:
            return handler(query)
        except ApiError as exc:
            return _json(exc.body, exc.status)

    def _authorized(self, req) -> bool:
        for name, value in req.headers:
            if name.lower() == "authorization":
                scheme, _, credentials = value.partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(),
                                                                          self.token.encode())
        return False

    async def _change(self, handler, query) -> Response:
        async with self.lock:
            try:
                return await handler(query)
            except ApiError as exc:
                return _json(exc.body, exc.status)
            except WorkerGone as exc:
                return _json({"error": f"{exc}; try again in a moment"}, 503)

    # --- reading --------------------------------------------------------------------------------------

    def health(self, query) -> Response:
        return _json({"status": "ok"})

    def stats(self, query) -> Response:
        supervisor, state, config = self.supervisor, self.state, self.config
        return _json({
            "current_alive": state.count(ALIVE, supervisor.count),
            "killed": state.count(KILLED, supervisor.count),
            "ports": supervisor.count,
            "total_started": state.worker_total("started"),
            "total_killed": state.worker_total("killed"),
            "total_revived": state.worker_total("revived"),
            "bind_failures": state.count(FAILED, supervisor.count),
            "requests_total": sum(state.requests),
            "base_port": config.base_port,
            "max_port": config.max_port,
            "workers": len(supervisor.workers),
            "pid": os.getpid(),
            "uptime_s": round(time.time() - supervisor.started_at, 3),
        })

    def endpoints(self, query) -> Response:
        example = "/endpoints?limit=1000&offset=0&state=alive&format=text"
        limit = _int_param(query, "limit", example, default=1000, minimum=0)
        offset = _int_param(query, "offset", example, default=0, minimum=0)
        state_name = query.get("state", ["alive"])[-1]
        output = query.get("format", ["text"])[-1]
        if state_name != "all" and state_name not in STATES_BY_NAME:
            raise ApiError(400, f"state must be alive, killed, failed or all, not {state_name!r}", example)
        if output not in ("text", "json"):
            raise ApiError(400, f"format must be text or json, not {output!r}", example)
        states = self.state.states[:self.supervisor.count].tobytes()
        if state_name == "all":
            slots = range(len(states))
        else:
            wanted = STATES_BY_NAME[state_name]
            slots = [slot for slot, value in enumerate(states) if value == wanted]
        slots = slots[offset:offset + limit]
        base = self.config.base_port
        if output == "text":
            text = "".join(f"http://{self.url_host}:{base + slot}/health\n" for slot in slots)
            return Response(200, text.encode(), b"text/plain; charset=utf-8")
        requests = self.state.requests
        return _json([{"port": base + slot, "url": f"http://{self.url_host}:{base + slot}/health",
                       "state": STATE_NAMES[states[slot]], "requests": requests[slot]} for slot in slots])

    def metrics(self, query) -> Response:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_FleetCollector(self.supervisor))
        ProcessCollector(registry=registry)
        return Response(200, generate_latest(registry), METRICS_CONTENT_TYPE)

    def logs(self, query) -> Response:
        tail = _int_param(query, "tail", "/logs?tail=100", default=100, minimum=0)
        lines = list(recent_log_lines)[-tail:] if tail else []
        return Response(200, "".join(line + "\n" for line in lines).encode(), b"text/plain; charset=utf-8")

    # --- changing -------------------------------------------------------------------------------------

    def _slot(self, query, example: str) -> tuple[int, int]:
        port = _int_param(query, "port", example)
        slot = port - self.config.base_port
        if not 0 <= slot < self.supervisor.count:
            raise ApiError(404, f"port {port} is not in the fleet (ports {self._range()})", example)
        return port, slot

    def _range(self) -> str:
        base = self.config.base_port
        return f"{base}-{base + self.supervisor.count - 1}" if self.supervisor.count else "none"

    async def scale(self, query) -> Response:
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
        return {str(self.config.base_port + slot): reason for slot, reason in failed.items()}

    async def kill(self, query) -> Response:
        example = "/kill?port=10000 or /kill?count=10"
        if "count" in query:
            count = _int_param(query, "count", example, minimum=1)
            alive = self.state.slots_in(ALIVE, 0, self.supervisor.count)
            if count > len(alive):
                raise ApiError(409, f"only {len(alive)} ports are alive", example, available=len(alive))
            killed = await self._each_worker("kill", sorted(self.rng.sample(alive, count)), "killed")
            log(f"API: killed {len(killed)} random ports")
            return _json({"killed": [self.config.base_port + slot for slot in killed]})
        port, slot = self._slot(query, example)
        current = self.state.states[slot]
        if current != ALIVE:
            raise ApiError(409, f"port {port} is {STATE_NAMES[current]}, not alive", example, state=STATE_NAMES[current])
        reply = await self.supervisor.worker(slot // self.supervisor.per_worker).call("kill", slots=[slot])
        if slot not in reply["killed"]:  # killed by its own /kill meanwhile
            raise ApiError(409, f"port {port} is already killed", example, state="killed")
        log(f"API: killed port {port}")
        return _json({"port": port, "state": "killed"})

    async def revive(self, query) -> Response:
        example = "/revive?port=10000 or /revive?all=1"
        if query.get("all", [""])[-1].lower() in ("1", "true", "yes", "on"):
            killed = self.state.slots_in(KILLED, 0, self.supervisor.count)
            revived = await self._each_worker("start", killed, "started", revive=True)
            failed = sorted(set(killed) - set(revived))
            log(f"API: revived {len(revived)} ports, {len(failed)} failed to bind")
            return _json({"revived": len(revived), "failed": [self.config.base_port + slot for slot in failed]})
        port, slot = self._slot(query, example)
        if self.state.states[slot] == ALIVE:
            raise ApiError(409, f"port {port} is already alive", example, state="alive")
        reply = await self.supervisor.worker(slot // self.supervisor.per_worker).call("start", slots=[slot],
                                                                                       revive=True)
        if reply["failed"]:
            raise ApiError(503, f"port {port} could not be bound: {reply['failed'][str(slot)]}", example,
                           state="failed")
        log(f"API: revived port {port}")
        return _json({"port": port, "state": "alive"})

    async def _each_worker(self, op: str, slots: list[int], key: str, **args) -> list[int]:
        """Send ``op`` for ``slots`` to their workers at once; the slots their replies list under ``key``."""
        groups = self.supervisor.by_worker(slots)
        calls = [self.supervisor.worker(index).call(op, slots=group, **args) for index, group in groups.items()]
        return [slot for reply in await asyncio.gather(*calls) for slot in reply[key]]

    async def shutdown(self, query) -> Response:
        if not self.stopped.done():
            self.stopped.set_result("POST /shutdown")
        return _json({"status": "stopping", "pid": os.getpid()})


class _FleetCollector:
    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self):
        supervisor, state = self.supervisor, self.supervisor.state
        ports = GaugeMetricFamily("fastmock_fleet_ports", "Fleet ports by state", labels=["state"])
        for value, name in STATE_NAMES.items():
            ports.add_metric([name], state.count(value, supervisor.count))
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
