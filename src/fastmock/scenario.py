"""``fastmock run SCENARIO.yaml``: tasks of requests (a weighted mix) or steps (a flow that carries values
from one response into the next request), with templated bodies, checks and a load shape.

The file is validated against a fixed schema before anything runs: an unknown key or a bad value is an
error naming the file, the line and the key. Requests go through httpx (bodies are needed for checks and
extraction; the rates here are modest, unlike ``fastmock load``).
"""

import asyncio
import json
import random
import re
import sys
import time
from dataclasses import dataclass, field

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from fastmock.documents import DocumentError, load_yaml, read_text
from fastmock.units import MAX_DURATION_S, MIN_DURATION_S, parse_duration

__all__ = ["ScenarioError", "Scenario", "RunSettings", "load_scenario", "run_scenario"]

METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
_TEMPLATE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


class ScenarioError(ValueError):
    """The scenario file is wrong; ``str()`` names the file, line and key."""


@dataclass
class Check:
    status: list = field(default_factory=list)   # allowed statuses; empty: any 2xx/3xx
    json: object = None                           # a subset the JSON body must contain
    headers: dict = field(default_factory=dict)


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


@dataclass
class Scenario:
    path: str
    base_url: str
    headers: dict
    connect_timeout_s: float
    read_timeout_s: float
    seed: int
    tasks: dict


# --- loading ---------------------------------------------------------------------------------------------

class _Reader:
    """Schema checks with positions: every error says where."""

    def __init__(self, path: str) -> None:
        self.path = path

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


_TOP = ("base_url", "headers", "timeouts", "seed", "tasks")
_REQUEST = ("name", "method", "path", "headers", "json", "body", "weight", "extract", "check")
_TASK = ("requests", "steps", "load")
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
    return Scenario(
        path=path, base_url=str(top["base_url"]).rstrip("/"), headers={str(k): str(v) for k, v in
                                                                        top.get("headers", {}).items()},
        connect_timeout_s=reader.duration(timeouts, "connect") if "connect" in timeouts else 10.0,
        read_timeout_s=reader.duration(timeouts, "read") if "read" in timeouts else 30.0,
        seed=int(reader.number(top, "seed", integer=True)) if "seed" in top else 0,
        tasks={str(name): _task(reader, tasks, name) for name in tasks})


def _task(reader: _Reader, tasks, name) -> Task:
    node = reader.mapping(tasks[name], name, _TASK, f"task {name!r}")
    if ("requests" in node) == ("steps" in node):
        raise reader.fail(tasks, name, "a task has either 'requests' (a weighted mix) or 'steps' (a flow)")
    kind = "requests" if "requests" in node else "steps"
    items = node[kind]
    if not isinstance(items, list) or not items:
        raise reader.fail(node, kind, "must be a non-empty list")
    parsed = [_request(reader, items, i, f"{kind}[{i}] of task {name!r}") for i in range(len(items))]
    task = Task(name=str(name), requests=parsed if kind == "requests" else [],
                steps=parsed if kind == "steps" else [], shape="once")
    _shape(reader, node, task)
    return task


def _request(reader: _Reader, items, index: int, context: str) -> Request:
    node = reader.mapping(items[index], index, _REQUEST, context)
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
        if not isinstance(value, str) or not (value.startswith("json.") or value.startswith("header.")):
            raise reader.fail(extract, key, "extract from 'json.a.b.0' or 'header.Name'")
    return Request(
        name=str(node.get("name", f"{method} {node['path']}")), method=method, path=str(node["path"]),
        headers={str(k): str(v) for k, v in node.get("headers", {}).items()}, json=_plain(node.get("json")),
        body=node.get("body"), weight=float(reader.number(node, "weight")) if "weight" in node else 1.0,
        extract={str(k): str(v) for k, v in extract.items()},
        check=Check(status=statuses, json=_plain(check_node.get("json")),
                    headers={str(k): str(v) for k, v in check_node.get("headers", {}).items()}))


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
    task: str | None = None              # one task, or all of them at once
    duration_s: float | None = None      # overrides 'for' and the stages' durations (DURATION_SECONDS)
    base_url: str | None = None          # BASE_URL
    api_token: str | None = None         # API_TOKEN → Authorization: Bearer
    connect_timeout_s: float | None = None
    read_timeout_s: float | None = None
    log_level: str = "info"              # info/debug: a line per request; warning/error: failures only
    shard: int = 0
    shards: int = 1
    metrics_port: int | None = None


class _Metrics:
    def __init__(self, port: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

        self.registry = CollectorRegistry()
        self.requests = Counter("fastmock_run_requests", "Scenario requests", ["task", "step", "status"],
                                registry=self.registry)
        self.failures = Counter("fastmock_run_check_failures", "Failed checks and request errors",
                                ["task", "step"], registry=self.registry)
        self.latency = Histogram("fastmock_run_latency_seconds", "Scenario request latency", ["task", "step"],
                                 registry=self.registry)
        start_http_server(port, addr="127.0.0.1", registry=self.registry)


class _Runner:
    def __init__(self, scenario: Scenario, settings: RunSettings) -> None:
        import httpx
        from faker import Faker

        self.scenario = scenario
        self.settings = settings
        headers = dict(scenario.headers)
        if settings.api_token:
            headers["Authorization"] = f"Bearer {settings.api_token}"
        timeout = httpx.Timeout(settings.read_timeout_s or scenario.read_timeout_s,
                                connect=settings.connect_timeout_s or scenario.connect_timeout_s)
        self.client = httpx.AsyncClient(base_url=settings.base_url or scenario.base_url, headers=headers,
                                        timeout=timeout)
        self.faker = Faker()
        self.faker.seed_instance(scenario.seed + settings.shard)
        self.rng = random.Random(scenario.seed + settings.shard)
        self.quiet = settings.log_level.lower() in ("warning", "error", "critical")
        self.totals: dict[tuple[str, str], list] = {}   # (task, step) -> [requests, failures, latencies]
        self.metrics = _Metrics(settings.metrics_port) if settings.metrics_port else None
        self.pending: set = set()

    def _log(self, record: dict) -> None:
        sys.stdout.write(json.dumps({"ts": round(time.time(), 6), **record}) + "\n")
        sys.stdout.flush()

    # templates: {{ faker.name }}, {{ faker.date }}, ... or {{ name }} of a value extracted by an earlier step
    def _render(self, value, variables: dict):
        if isinstance(value, dict):
            return {k: self._render(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render(v, variables) for v in value]
        if not isinstance(value, str):
            return value
        whole = _TEMPLATE.fullmatch(value.strip())
        if whole:  # a lone template keeps the value's type (an extracted number stays a number in JSON)
            return self._lookup(whole.group(1), variables)
        return _TEMPLATE.sub(lambda match: str(self._lookup(match.group(1), variables)), value)

    def _lookup(self, name: str, variables: dict):
        if name.startswith("faker."):
            provider_name = name[len("faker."):]
            # a provider is a public method: no dunder (faker.__class__) and no path into other objects
            provider = None if "." in provider_name or provider_name.startswith("_") \
                else getattr(self.faker, provider_name, None)
            if not callable(provider):
                raise KeyError(f"no faker provider {name[len('faker.'):]!r}")
            result = provider()
            return result.isoformat() if hasattr(result, "isoformat") else result
        if name not in variables:
            raise KeyError(f"no value named {name!r} (extract it in an earlier step)")
        return variables[name]

    async def _call(self, task: Task, request: Request, variables: dict) -> bool:
        import httpx

        key = (task.name, request.name)
        totals = self.totals.setdefault(key, [0, 0, []])
        record = {"task": task.name, "step": request.name, "method": request.method}
        started = time.monotonic()
        try:
            path = self._render(request.path, variables)
            kwargs = {"headers": self._render(request.headers, variables)}
            if request.json is not None:
                kwargs["json"] = self._render(request.json, variables)
            elif request.body is not None:
                kwargs["content"] = str(self._render(request.body, variables)).encode()
            response = await self.client.request(request.method, path, **kwargs)
        except (httpx.HTTPError, KeyError) as exc:
            totals[0] += 1
            totals[1] += 1
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
        totals[0] += 1
        totals[2].append(latency)
        ok = not failures
        if not ok:
            totals[1] += 1
        if not (self.quiet and ok):
            self._log({**record, "url": str(response.url), "status": response.status_code,
                       "latency_ms": round(latency * 1000, 3), "ok": ok,
                       "error": "; ".join(message for _, message in failures) or None})
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
            length = settings.duration_s or stage.duration_s
            if stage.rate:
                rate = stage.rate / settings.shards
                start = time.monotonic()
                for k in range(int(length * rate + 1e-9)):
                    await asyncio.sleep(max(0.0, start + k / rate - time.monotonic()))
                    if time.monotonic() - start >= length:
                        break
                    self._launch(task)
            else:
                workers = stage.concurrency // settings.shards + (settings.shard < stage.concurrency % settings.shards)
                deadline = time.monotonic() + length

                async def loop():
                    while time.monotonic() < deadline:
                        await self._iteration(task)

                await asyncio.gather(*(loop() for _ in range(workers)))

    async def run(self) -> int:
        tasks = [self.scenario.tasks[self.settings.task]] if self.settings.task else list(self.scenario.tasks.values())
        try:
            await asyncio.gather(*(self._run_task(task) for task in tasks))
            while self.pending:
                await asyncio.gather(*list(self.pending))
        finally:
            await self.client.aclose()
        failed = sum(totals[1] for totals in self.totals.values())
        for (task, step), (requests, failures, latencies) in sorted(self.totals.items()):
            latencies.sort()
            p50 = latencies[len(latencies) // 2] * 1000 if latencies else 0.0
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000 if latencies else 0.0
            sys.stderr.write(f"fastmock: {task}/{step}: {requests} requests, {failures} failed, "
                             f"p50 {p50:.1f}ms p99 {p99:.1f}ms\n")
        sys.stderr.write(f"fastmock: {'FAILED' if failed else 'ok'}: {failed} failed checks or requests\n")
        return 1 if failed else 0


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
    for part in rest.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def run_scenario(scenario: Scenario, settings: RunSettings) -> int:
    if settings.task is not None and settings.task not in scenario.tasks:
        raise ScenarioError(f"{scenario.path}: no task {settings.task!r} (tasks: {', '.join(scenario.tasks)})")
    return asyncio.run(_Runner(scenario, settings).run())
