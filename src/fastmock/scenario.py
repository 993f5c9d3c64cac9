"""``fastmock run SCENARIO.yaml``: tasks of requests (a weighted mix) or steps (a flow that carries values
from one response into the next request), with templated bodies, checks and a load shape.

The file is validated against a fixed schema before anything runs: an unknown key or a bad value is an
error naming the file, the line and the key. Requests go through httpx (bodies are needed for checks and
extraction; the rates here are modest, unlike ``fastmock load``).
"""

import asyncio
import email.utils
import json
import math
import random
import ssl
import sys
import time
from dataclasses import dataclass, field

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from fastmock._core import LatencyHistogram, handshake_failure
from fastmock.documents import DocumentError, load_yaml, read_text
from fastmock.templates import TemplateError, check_templates, render
from fastmock.thresholds import THRESHOLD_EXAMPLE, evaluate, measure_counts, parse_threshold
from fastmock.units import MAX_DURATION_S, MIN_DURATION_S, parse_duration

__all__ = ["ScenarioError", "Scenario", "RunSettings", "StepTotals", "load_scenario", "chosen_tasks", "run_scenario",
           "run_summary", "run_summary_lines", "run_passed", "tls_summary"]

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class ScenarioError(ValueError):
    """The scenario file is wrong; ``str()`` names the file, line and key."""


@dataclass
class Check:
    status: list = field(default_factory=list)   # allowed statuses; empty: any 2xx/3xx
    json: object = None                           # a subset the JSON body must contain
    headers: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 1              # tries in all: 1 is no retry
    backoff_s: float = 0.2         # before the first retry; doubling, jittered, at most max_backoff_s
    max_backoff_s: float = 5.0
    on: frozenset = frozenset({"connect", "timeout", "5xx", 429})  # error kinds, "4xx"/"5xx" or statuses


NO_RETRIES = RetryPolicy()
RETRY_ON = ("connect", "timeout", "4xx", "5xx")


@dataclass
class Request:
    name: str
    method: str
    path: str
    headers: dict
    json: object
    body: str | None
    weight: float
    extract: dict
    check: Check
    retries: RetryPolicy | None


@dataclass
class Stage:
    duration_s: float
    rate: float = 0.0          # iterations per second
    concurrency: int = 0       # iterations back to back, this many at once


@dataclass
class Task:
    name: str
    requests: list             # a weighted mix: one drawn per iteration
    steps: list                # a flow: all of them, in order, per iteration
    shape: str                 # once | every | stages
    every_s: float = 0.0
    for_s: float = 0.0
    stages: list = field(default_factory=list)
    retries: RetryPolicy | None = None


@dataclass
class Scenario:
    path: str
    base_url: str
    headers: dict
    connect_timeout_s: float
    read_timeout_s: float
    seed: int
    tasks: dict
    default_task: str | None = None
    retries: RetryPolicy | None = None
    thresholds: tuple = ()


# --- loading ---------------------------------------------------------------------------------------------

class _Reader:
    """Schema checks with positions: every error says where."""

    def __init__(self, path: str) -> None:
        from faker import Faker  # slow to import: only where scenarios are read

        self.path = path
        self.faker = Faker()  # templates are checked against its providers

    def fail(self, node, key, message: str):
        line = None
        if isinstance(node, (CommentedMap, CommentedSeq)):
            try:
                line = node.lc.key(key)[0] + 1 if isinstance(node, CommentedMap) and key in node else node.lc.line + 1
            except (KeyError, TypeError, AttributeError):
                line = node.lc.line + 1
        where = f"{self.path}:{line}" if line else self.path
        return ScenarioError(f"{where}: {key}: {message}" if key is not None else f"{where}: {message}")

    def mapping(self, node, key, allowed: tuple | None, context: str) -> dict:
        """``node`` as a mapping whose keys are all ``allowed`` (None: any key)."""
        if not isinstance(node, dict):
            raise self.fail(node, key, f"{context} must be a mapping")
        for name in node if allowed is not None else ():
            if name not in allowed:
                raise self.fail(node, name, f"unknown key in {context} (allowed: {', '.join(allowed)})")
        return node

    def duration(self, parent, key) -> float:
        value = parent[key]
        try:
            seconds = parse_duration(str(value))
        except ValueError:
            raise self.fail(parent, key, f"{value!r} is not a duration (like 500ms, 10s, 2m)") from None
        if not MIN_DURATION_S <= seconds <= MAX_DURATION_S:
            raise self.fail(parent, key, "must be from 1ms to 10 years")
        return seconds

    def number(self, parent, key, minimum: float = 0.0, integer: bool = False):
        value = parent[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)):
            raise self.fail(parent, key, f"{value!r} is not a {'whole ' if integer else ''}number")
        if value < minimum:
            raise self.fail(parent, key, f"must be at least {minimum:g}")
        return value


_TOP = ("base_url", "headers", "timeouts", "seed", "tasks", "default_task", "retries", "thresholds")
_REQUEST = ("name", "method", "path", "headers", "json", "body", "weight", "extract", "check", "retries")
_TASK = ("requests", "steps", "load", "retries")
_CHECK = ("status", "json", "headers")


def load_scenario(path: str) -> Scenario:
    reader = _Reader(path)
    try:
        data = load_yaml(read_text(path))
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    except DocumentError as exc:
        raise ScenarioError(exc.at(path)) from None
    top = reader.mapping(data, None, _TOP, "the scenario")
    for key in ("base_url", "tasks"):
        if key not in top:
            raise reader.fail(top, None, f"missing required key {key!r}")
    timeouts = reader.mapping(top.get("timeouts", {}), "timeouts", ("connect", "read"), "timeouts")
    tasks = reader.mapping(top["tasks"], "tasks", None, "tasks")
    if not tasks:
        raise reader.fail(top, "tasks", "at least one task is needed")
    default_task = top.get("default_task")
    if default_task is not None and default_task not in tasks:
        raise reader.fail(top, "default_task", f"no task {default_task!r} (tasks: {', '.join(map(str, tasks))})")
    thresholds = top.get("thresholds", [])
    if not isinstance(thresholds, list) or not all(isinstance(text, str) for text in thresholds):
        raise reader.fail(top, "thresholds", f"must be a list like [{THRESHOLD_EXAMPLE}]")
    try:
        parsed_thresholds = tuple(parse_threshold(text) for text in thresholds)
    except ValueError as exc:
        raise reader.fail(top, "thresholds", str(exc)) from None
    return Scenario(
        path=path, base_url=str(top["base_url"]).rstrip("/"), headers={str(k): str(v) for k, v in
                                                                        top.get("headers", {}).items()},
        connect_timeout_s=reader.duration(timeouts, "connect") if "connect" in timeouts else 10.0,
        read_timeout_s=reader.duration(timeouts, "read") if "read" in timeouts else 30.0,
        seed=int(reader.number(top, "seed", integer=True)) if "seed" in top else 0,
        tasks={str(name): _task(reader, tasks, name) for name in tasks},
        default_task=None if default_task is None else str(default_task), retries=_retries(reader, top),
        thresholds=parsed_thresholds)


def _retries(reader: _Reader, node) -> RetryPolicy | None:
    """The ``retries`` mapping of ``node`` (the file, a task or a request), or None when it has none."""
    if "retries" not in node:
        return None
    spec = reader.mapping(node["retries"], "retries", ("attempts", "backoff", "max_backoff", "on"), "retries")
    on = spec.get("on", sorted(NO_RETRIES.on, key=str))
    if not isinstance(on, list) or not all(value in RETRY_ON or isinstance(value, int) and 100 <= value <= 599
                                           for value in on):
        raise reader.fail(spec, "on", f"must be a list of {', '.join(RETRY_ON)} or status codes")
    return RetryPolicy(
        attempts=int(reader.number(spec, "attempts", 1, integer=True)) if "attempts" in spec else 3,
        backoff_s=reader.duration(spec, "backoff") if "backoff" in spec else NO_RETRIES.backoff_s,
        max_backoff_s=reader.duration(spec, "max_backoff") if "max_backoff" in spec else NO_RETRIES.max_backoff_s,
        on=frozenset(on))


def _task(reader: _Reader, tasks, name) -> Task:
    node = reader.mapping(tasks[name], name, _TASK, f"task {name!r}")
    if ("requests" in node) == ("steps" in node):
        raise reader.fail(tasks, name, "a task has either 'requests' (a weighted mix) or 'steps' (a flow)")
    kind = "requests" if "requests" in node else "steps"
    items = node[kind]
    if not isinstance(items, list) or not items:
        raise reader.fail(node, kind, "must be a non-empty list")
    names: set = set()  # what the steps so far extract (a weighted mix carries nothing between requests)
    parsed = []
    for i in range(len(items)):
        parsed.append(_request(reader, items, i, f"{kind}[{i}] of task {name!r}", names))
        if kind == "steps":
            names |= parsed[-1].extract.keys()
    task = Task(name=str(name), requests=parsed if kind == "requests" else [],
                steps=parsed if kind == "steps" else [], shape="once", retries=_retries(reader, node))
    _shape(reader, node, task)
    return task


def _request(reader: _Reader, items, index: int, context: str, names: set) -> Request:
    node = reader.mapping(items[index], index, _REQUEST, context)
    for key in ("path", "headers", "json", "body"):
        try:
            check_templates(_plain(node.get(key)), reader.faker, names)
        except TemplateError as exc:
            raise reader.fail(node, key, str(exc)) from None
    if "path" not in node:
        raise reader.fail(node, None, f"{context} needs a 'path'")
    method = str(node.get("method", "GET")).upper()
    if method not in METHODS:
        raise reader.fail(node, "method", f"{method!r} is not one of {', '.join(sorted(METHODS))}")
    if "json" in node and "body" in node:
        raise reader.fail(node, "body", "give 'json' or 'body', not both")
    check_node = reader.mapping(node.get("check", {}), "check", _CHECK, f"the check of {context}")
    statuses = check_node.get("status", [])
    statuses = statuses if isinstance(statuses, list) else [statuses]
    if not all(isinstance(s, int) and 100 <= s <= 599 for s in statuses):
        raise reader.fail(check_node, "status", "must be a status code or a list of them (100-599)")
    extract = reader.mapping(node.get("extract", {}), "extract", None, "extract")
    for key, value in extract.items():
        if not isinstance(value, str) or not (value == "json" or value.startswith(("json.", "header."))):
            raise reader.fail(extract, key, "extract from 'json' (the whole body), 'json.a.b.0' or 'header.Name'")
    return Request(
        name=str(node.get("name", f"{method} {node['path']}")), method=method, path=str(node["path"]),
        headers={str(k): str(v) for k, v in node.get("headers", {}).items()}, json=_plain(node.get("json")),
        body=node.get("body"), weight=float(reader.number(node, "weight")) if "weight" in node else 1.0,
        extract={str(k): str(v) for k, v in extract.items()},
        check=Check(status=statuses, json=_plain(check_node.get("json")),
                    headers={str(k): str(v) for k, v in check_node.get("headers", {}).items()}),
        retries=_retries(reader, node))


def _shape(reader: _Reader, node, task: Task) -> None:
    shape = node.get("load", "once")
    if shape == "once":
        return
    load = reader.mapping(shape, "load", ("every", "for", "stages"), f"the load of task {task.name!r}")
    if "stages" in load:
        if "every" in load or "for" in load:
            raise reader.fail(load, "stages", "give 'stages' or 'every'/'for', not both")
        stages = load["stages"]
        if not isinstance(stages, list) or not stages:
            raise reader.fail(load, "stages", "must be a non-empty list")
        task.shape = "stages"
        for i, stage in enumerate(stages):
            stage = reader.mapping(stage, i, ("rate", "concurrency", "duration"), f"stage {i}")
            if "duration" not in stage or ("rate" in stage) == ("concurrency" in stage):
                raise reader.fail(stage, None, f"stage {i} needs a duration and either a rate or a concurrency")
            task.stages.append(Stage(
                duration_s=reader.duration(stage, "duration"),
                rate=float(reader.number(stage, "rate", 0.001)) if "rate" in stage else 0.0,
                concurrency=int(reader.number(stage, "concurrency", 1, integer=True)) if "concurrency" in stage else 0))
        return
    if "every" not in load or "for" not in load:
        raise reader.fail(load, None, "a repeating load needs 'every' and 'for' (or 'stages', or 'once')")
    task.shape = "every"
    task.every_s = reader.duration(load, "every")
    task.for_s = reader.duration(load, "for")


def _plain(value):
    """ruamel's round-trip containers → plain dicts and lists (for JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- running ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunSettings:
    task: str | None = None              # one task (TASK); None: the file's default_task, or its only task
    all_tasks: bool = False              # every task at once (--all)
    duration_s: float | None = None      # caps each task's whole run (DURATION_SECONDS)
    base_url: str | None = None          # BASE_URL
    api_token: str | None = None         # API_TOKEN → Authorization: Bearer
    connect_timeout_s: float | None = None
    read_timeout_s: float | None = None
    log_level: str = "info"              # info: a line per request; debug: with headers and bodies;
                                         # warning/error: failures only
    shard: int = 0
    shards: int = 1
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    thresholds: tuple = ()               # --threshold, beside the file's
    cacert: str | None = None            # https: trust this CA file (else the system's)
    insecure: bool = False               # https: verify nothing


DEBUG_BODY = 1000  # characters of a body in a LOG_LEVEL=debug line


class _Metrics:
    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

        self.registry = CollectorRegistry()
        self.requests = Counter("fastmock_run_requests", "Scenario requests", ["task", "step", "status"],
                                registry=self.registry)
        self.failures = Counter("fastmock_run_check_failures", "Failed checks and request errors",
                                ["task", "step"], registry=self.registry)
        self.retries = Counter("fastmock_run_retries", "Requests sent again by a retry policy", ["task", "step"],
                               registry=self.registry)
        self.latency = Histogram("fastmock_run_latency_seconds", "Scenario request latency", ["task", "step"],
                                 registry=self.registry)
        start_http_server(port, addr=host, registry=self.registry)


@dataclass
class StepTotals:
    requests: int = 0
    failures: int = 0      # failed checks or no response
    errors: int = 0        # no response (after its retries)
    retries: int = 0
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)  # answered requests' latencies

    def add(self, other: "StepTotals") -> None:
        self.requests += other.requests
        self.failures += other.failures
        self.errors += other.errors
        self.retries += other.retries
        self.histogram.merge(other.histogram)

    def to_dict(self) -> dict:
        return {"requests": self.requests, "failed": self.failures, "errors": self.errors, "retries": self.retries,
                "latency_ms": _latency_ms(self.histogram), "histogram": self.histogram.to_dict()}

    @classmethod
    def from_dict(cls, data: dict) -> "StepTotals":
        """A summary's step (ValueError or KeyError for one that is not)."""
        counts = [data[key] for key in ("requests", "failed", "errors", "retries")]
        if not all(type(count) is int and count >= 0 for count in counts):
            raise ValueError(f"counts {counts} are not whole numbers")
        return cls(*counts, LatencyHistogram.from_dict(data["histogram"]))


class _Retry(Exception):
    """A response the retry policy sends again (raised inside the attempt, so tenacity sees it)."""

    def __init__(self, response) -> None:
        super().__init__(f"status {response.status_code}")
        self.response = response


class _Runner:
    def __init__(self, scenario: Scenario, settings: RunSettings, tasks: list) -> None:
        import httpx
        from faker import Faker

        self.scenario = scenario
        self.settings = settings
        self.tasks = tasks
        headers = dict(scenario.headers)
        if settings.api_token:
            headers["Authorization"] = f"Bearer {settings.api_token}"
        timeout = httpx.Timeout(settings.read_timeout_s or scenario.read_timeout_s,
                                connect=settings.connect_timeout_s or scenario.connect_timeout_s)
        verify = False if settings.insecure else \
            ssl.create_default_context(cafile=settings.cacert) if settings.cacert else True
        self.client = httpx.AsyncClient(base_url=settings.base_url or scenario.base_url, headers=headers,
                                        timeout=timeout, verify=verify)
        self.handshakes = LatencyHistogram()  # how long each TLS handshake took
        self.handshake_failures: dict[str, int] = {}
        self.faker = Faker()
        self.faker.seed_instance(scenario.seed + settings.shard)
        self.rng = random.Random(scenario.seed + settings.shard)
        self.quiet = settings.log_level.lower() in ("warning", "error", "critical")
        self.debug = settings.log_level.lower() == "debug"
        self.totals: dict[tuple[str, str], StepTotals] = {}
        self.metrics = _Metrics(settings.metrics_host, settings.metrics_port) if settings.metrics_port else None
        self.pending: set = set()
        self.started = time.monotonic()

    def _log(self, record: dict) -> None:
        sys.stdout.write(json.dumps({"time": round(time.time(), 6), **record}, default=str) + "\n")
        sys.stdout.flush()

    def _policy(self, task: Task, request: Request) -> RetryPolicy:
        return request.retries or task.retries or self.scenario.retries or NO_RETRIES

    async def _send(self, task: Task, request: Request, policy: RetryPolicy, args: tuple):
        """The request, sent again as ``policy`` says (jittered exponential backoff, Retry-After honoured up
        to max_backoff); each retry is logged and counted. Returns the last response or raises its error."""
        import httpx
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, _Retry):
                return True
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else \
                "connect" if isinstance(exc, (httpx.ConnectError, httpx.RemoteProtocolError)) else None
            return kind in policy.on

        def wait(state) -> float:
            backoff = min(policy.max_backoff_s, policy.backoff_s * 2 ** (state.attempt_number - 1))
            backoff = backoff / 2 + self.rng.uniform(0, backoff / 2)  # jitter: retries of many clients spread
            exc = state.outcome.exception()
            if isinstance(exc, _Retry):
                backoff = max(backoff, min(policy.max_backoff_s, _retry_after(exc.response)))
            return backoff

        def before_sleep(state) -> None:
            totals = self.totals.setdefault((task.name, request.name), StepTotals())
            totals.retries += 1
            if self.metrics:
                self.metrics.retries.labels(task.name, request.name).inc()
            self._log({"task": task.name, "step": request.name, "retry": state.attempt_number,
                       "reason": str(state.outcome.exception()) or type(state.outcome.exception()).__name__,
                       "wait_ms": round(state.upcoming_sleep * 1000, 3)})

        def last_outcome(state):
            exc = state.outcome.exception()
            if isinstance(exc, _Retry):
                return exc.response
            raise exc

        async for attempt in AsyncRetrying(stop=stop_after_attempt(policy.attempts), wait=wait,
                                           retry=retry_if_exception(retryable), before_sleep=before_sleep,
                                           retry_error_callback=last_outcome):
            with attempt:
                response = await self.client.request(*args[:2], **args[2], extensions={"trace": self._tracer()})
                status = response.status_code
                if status in policy.on or f"{status // 100}xx" in policy.on:
                    raise _Retry(response)
        return response

    def _tracer(self):
        """httpx's trace hook for one request: times its TLS handshake, if it makes one."""
        import httpcore

        started = 0.0

        async def trace(event: str, info: dict) -> None:
            nonlocal started
            if event == "connection.start_tls.started":
                started = time.monotonic()
            elif event == "connection.start_tls.complete":
                self.handshakes.record(time.monotonic() - started)
            elif event == "connection.start_tls.failed":
                exc = info["exception"]  # httpcore's ConnectError, raised from the ssl module's
                while not isinstance(exc, (ssl.SSLError, ConnectionError)) and (exc.__cause__ or exc.__context__):
                    exc = exc.__cause__ or exc.__context__
                reason = "timeout" if isinstance(exc, httpcore.TimeoutException) else handshake_failure(exc)
                self.handshake_failures[reason] = self.handshake_failures.get(reason, 0) + 1

        return trace

    async def _call(self, task: Task, request: Request, variables: dict) -> bool:
        import httpx

        key = (task.name, request.name)
        totals = self.totals.setdefault(key, StepTotals())
        record = {"task": task.name, "step": request.name, "method": request.method}
        started = time.monotonic()
        try:
            path = render(request.path, variables, self.faker)
            kwargs = {"headers": render(request.headers, variables, self.faker)}
            if request.json is not None:
                kwargs["json"] = render(request.json, variables, self.faker)
            elif request.body is not None:
                kwargs["content"] = str(render(request.body, variables, self.faker)).encode()
            response = await self._send(task, request, self._policy(task, request), (request.method, path, kwargs))
        except (httpx.HTTPError, TemplateError) as exc:
            totals.requests += 1
            totals.failures += 1
            totals.errors += 1
            message = str(exc) or type(exc).__name__
            self._log({**record, "url": str(request.path), "status": None,
                       "latency_ms": round((time.monotonic() - started) * 1000, 3), "ok": False, "error": message})
            if self.metrics:
                self.metrics.failures.labels(*key).inc()
            return False
        latency = time.monotonic() - started
        failures = _check(request.check, response)
        for name, value in request.extract.items():
            try:
                variables[name] = _extract(value, response)
            except (KeyError, IndexError, ValueError, TypeError):
                failures.append(("extract", f"{name}: nothing at {value}"))
        totals.requests += 1
        totals.histogram.record(latency)
        ok = not failures
        if not ok:
            totals.failures += 1
        if not (self.quiet and ok):
            line = {**record, "url": str(response.url), "status": response.status_code,
                    "latency_ms": round(latency * 1000, 3), "ok": ok,
                    "error": "; ".join(message for _, message in failures) or None}
            if self.debug:
                line["request"] = {"headers": dict(response.request.headers),
                                   "body": response.request.content.decode("utf-8", "replace")[:DEBUG_BODY]}
                line["response"] = {"headers": dict(response.headers), "body": response.text[:DEBUG_BODY]}
            self._log(line)
        for check, message in failures:
            self._log({"task": task.name, "step": request.name, "check": check, "ok": False, "error": message})
        if self.metrics:
            self.metrics.requests.labels(task.name, request.name, str(response.status_code)).inc()
            self.metrics.latency.labels(*key).observe(latency)
            if failures:
                self.metrics.failures.labels(*key).inc()
        return ok

    async def _iteration(self, task: Task) -> None:
        if task.requests:
            request = self.rng.choices(task.requests, weights=[r.weight for r in task.requests])[0]
            await self._call(task, request, {})
            return
        variables: dict = {}
        for step in task.steps:
            if not await self._call(task, step, variables):
                return  # a flow stops at its first failed step: later steps need its values

    def _launch(self, task: Task) -> None:
        job = asyncio.ensure_future(self._iteration(task))
        self.pending.add(job)
        job.add_done_callback(self.pending.discard)

    async def _run_task(self, task: Task) -> None:
        settings = self.settings
        if task.shape == "once":
            if settings.shard == 0:
                await self._iteration(task)
            return
        # DURATION_SECONDS is the task's whole length: it replaces `for`, and cuts stages that run past it
        task_end = time.monotonic() + settings.duration_s if settings.duration_s else math.inf
        if task.shape == "every":  # the old per-second loop; iterations start on time even if one is slow
            length = settings.duration_s or task.for_s
            count = int(length / task.every_s + 1e-9)
            start = time.monotonic()
            for k in range(count):
                await asyncio.sleep(max(0.0, start + k * task.every_s - time.monotonic()))
                if time.monotonic() - start >= length:
                    break  # `for` is wall time: iterations that fell behind are not made up after it
                if k % settings.shards == settings.shard:
                    self._launch(task)
            return
        for stage in task.stages:
            deadline = min(time.monotonic() + stage.duration_s, task_end)
            if stage.rate:
                rate = stage.rate / settings.shards
                start = time.monotonic()
                for k in range(int(stage.duration_s * rate + 1e-9)):
                    await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
                    if time.monotonic() >= deadline:
                        break
                    self._launch(task)
            else:
                workers = stage.concurrency // settings.shards + (settings.shard < stage.concurrency % settings.shards)

                async def loop():
                    while time.monotonic() < deadline:
                        await self._iteration(task)

                await asyncio.gather(*(loop() for _ in range(workers)))
            if time.monotonic() >= task_end:
                return

    async def run(self) -> dict:
        try:
            await asyncio.gather(*(self._run_task(task) for task in self.tasks))
            while self.pending:
                await asyncio.gather(*list(self.pending))
        finally:
            await self.client.aclose()
        steps = {f"{task}/{step}": totals for (task, step), totals in sorted(self.totals.items())}
        return run_summary(steps, time.monotonic() - self.started,
                           self.scenario.thresholds + tuple(self.settings.thresholds),
                           tls_summary(self.handshakes, self.handshake_failures),
                           (self.settings.shard, self.settings.shards), [task.name for task in self.tasks])


def tls_summary(handshakes: LatencyHistogram, failures: dict) -> dict | None:
    """A run summary's ``tls``: its handshakes' times and failures by reason; None when it made none."""
    if not (handshakes.count or failures):
        return None
    return {"handshakes": handshakes.count, "handshake_ms": _latency_ms(handshakes),
            "failures": dict(sorted(failures.items())), "handshake_histogram": handshakes.to_dict()}


def run_summary(steps: dict, elapsed_s: float, thresholds, tls: dict | None, shard: tuple, tasks: list) -> dict:
    """A run's summary (``run --summary-json``, and what ``fastmock report`` merges): per task/step and in
    all, counts and latency histograms, the TLS handshakes (``tls``, or None over http) and ``thresholds``
    judged on all the steps."""
    everything = StepTotals()
    for totals in steps.values():
        everything.add(totals)
    checks = evaluate(thresholds, measure_counts(everything.requests, everything.errors, everything.failures,
                                                 elapsed_s, everything.histogram))
    return {"kind": "run", "shard": list(shard), "tasks": tasks, **everything.to_dict(),
            "elapsed_s": round(elapsed_s, 3), "rps": round(everything.requests / elapsed_s, 1) if elapsed_s else 0.0,
            "steps": {name: totals.to_dict() for name, totals in steps.items()}, **({"tls": tls} if tls else {}),
            "thresholds": [{**check, "value": None if math.isnan(check["value"]) else round(check["value"], 6)}
                           for check in checks]}


def run_summary_lines(summary: dict) -> list[str]:
    """The summary as the lines a run ends with on stderr (each after "fastmock: ")."""
    lines = [f"{name}: {step['requests']} requests, {step['failed']} failed, {step['retries']} retries, "
             f"p50 {step['latency_ms']['p50']:.1f}ms p99 {step['latency_ms']['p99']:.1f}ms"
             for name, step in summary["steps"].items()]
    if "tls" in summary:
        tls = summary["tls"]
        failed = ", ".join(f"{reason} {count}" for reason, count in tls["failures"].items())
        lines.append(f"tls: {tls['handshakes']} handshakes, p50 {tls['handshake_ms']['p50']:.1f}ms "
                     f"p99 {tls['handshake_ms']['p99']:.1f}ms; failed: {failed or 'none'}")
    if not summary["thresholds"]:  # every failed check or request fails the run
        lines.append(f"{'FAILED' if summary['failed'] else 'ok'}: {summary['failed']} failed checks or requests")
    for check in summary["thresholds"]:
        value = "nothing measured" if check["value"] is None else f"{check['value']:g}"
        lines.append(f"threshold {check['threshold']}: {'pass' if check['ok'] else 'FAIL'} ({value})")
    return lines


def run_passed(summary: dict) -> bool:
    """Its thresholds all hold; without any, no check or request failed."""
    if summary["thresholds"]:
        return all(check["ok"] for check in summary["thresholds"])
    return not summary["failed"]


def _latency_ms(histogram) -> dict:
    return {"p50": round(histogram.percentile(50) * 1000, 3), "p99": round(histogram.percentile(99) * 1000, 3)}


def _retry_after(response) -> float:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date); 0 without one."""
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return 0.0


def _check(check: Check, response) -> list:
    failures = []
    status = response.status_code
    if check.status and status not in check.status or not check.status and not 200 <= status < 400:
        failures.append(("status", f"status {status}, expected {check.status or '2xx or 3xx'}"))
    if check.json is not None:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not _contains(body, check.json):
            failures.append(("json", f"the body does not contain {json.dumps(check.json)}"))
    for name, value in check.headers.items():
        if response.headers.get(name) != value:
            failures.append(("header", f"{name}: {response.headers.get(name)!r}, expected {value!r}"))
    return failures


def _contains(actual, expected) -> bool:
    """Whether ``expected`` is a subset of ``actual`` (mappings by key, everything else equal)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in expected.items())
    return actual == expected


def _extract(path: str, response):
    source, _, rest = path.partition(".")
    if source == "header":
        value = response.headers.get(rest)
        if value is None:
            raise KeyError(rest)
        return value
    value = response.json()
    for part in rest.split(".") if rest else ():
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def chosen_tasks(scenario: Scenario, settings: RunSettings) -> list:
    """The tasks to run: TASK/--task, every one with --all, else the file's default_task or its only task."""
    names = ", ".join(scenario.tasks)
    if settings.task is not None:
        if settings.task not in scenario.tasks:
            raise ScenarioError(f"{scenario.path}: no task {settings.task!r} (tasks: {names})")
        return [scenario.tasks[settings.task]]
    if settings.all_tasks:
        return list(scenario.tasks.values())
    if scenario.default_task is not None:
        return [scenario.tasks[scenario.default_task]]
    if len(scenario.tasks) == 1:
        return list(scenario.tasks.values())
    raise ScenarioError(f"{scenario.path} has several tasks ({names}): choose one with --task (or TASK=NAME), "
                        f"name one as default_task in the file, or run them all at once with --all")


def run_scenario(scenario: Scenario, settings: RunSettings) -> dict:
    """Run the chosen tasks; their summary (run_summary)."""
    return asyncio.run(_Runner(scenario, settings, chosen_tasks(scenario, settings)).run())
