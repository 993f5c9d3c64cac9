"""``fastmock load URL``: closed-loop (-c) or open-loop (--rate) HTTP/1.1 load from the core's LoadEngine.

With ``--workers N`` the parent forks N processes that each run an engine with 1/N of the requests and of the
rate; their counters, histograms and records are merged exactly. ``--shard I/N`` makes this run one of N
(on other machines): its workers take the I-th N-th, and its summary (``--summary-json``, with the latency
histogram's buckets) merges exactly with the others' in ``fastmock report``.
"""

import asyncio
import csv
import json
import math
import os
import pickle
import selectors
import sys
import time
import urllib.parse
from dataclasses import dataclass

import uvloop

from fastmock._core import LatencyHistogram, LoadEngine, TlsContext
from fastmock.runtime import fork_child
from fastmock.thresholds import evaluate, measure_counts

__all__ = ["LoadConfig", "run_load", "summary_dict", "summary_text", "shard_lines", "passed", "write_records",
           "output_format_for", "OUTPUT_FORMATS", "PERCENTILES", "Progress", "LiveMetrics"]

PERCENTILES = (50, 90, 99, 99.9)
PROGRESS_INTERVAL_S = 0.25
RECORD_FIELDS = ("index", "scheduled_s", "start_s", "status", "latency_ms", "bytes", "retries", "trace_id", "error")


@dataclass(frozen=True)
class LoadConfig:
    url: str
    requests: int = -1            # -1: run for ``duration_s``
    duration_s: float = 0.0
    concurrency: int = 1          # closed loop: connections; open loop: the most connections
    rate: float = 0.0             # > 0: open loop, requests per second
    method: str = "GET"
    headers: tuple = ()           # (name, value) str pairs
    body: bytes = b""
    timeout_s: float = 30.0
    connect_timeout_s: float = 10.0
    retries: int = 0
    retry_backoff_s: float = 0.1
    trace: bool = False
    keepalive: bool = True
    workers: int = 1
    record: bool = False          # keep one record per request (for --output)
    seed: int = 0
    progress: bool = False
    cacert: str | None = None     # https: trust this CA file (else the system's)
    insecure: bool = False        # https: verify nothing
    tls_resume: bool = True       # https: offer the last session in new handshakes
    shard: int = 0                # this run is shard ``shard`` of ``shards`` (runs elsewhere take the rest)
    shards: int = 1


def client_context(config: LoadConfig) -> TlsContext:
    """The core's TLS client context of an https run: verifying with --cacert (else the system's CAs), or
    --insecure; offering the last session unless --no-tls-resume."""
    return TlsContext.client_context(config.cacert, verify=not config.insecure, resume=config.tls_resume)


def encode_head(config: LoadConfig) -> tuple[str, int, bytes]:
    """(host, port, the request line and headers without the empty line)."""
    parts = urllib.parse.urlsplit(config.url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rpartition("@")[2]
    lines = [f"{config.method} {target} HTTP/1.1", f"Host: {authority}"]
    names = {name.lower() for name, _ in config.headers}
    if "user-agent" not in names:
        lines.append("User-Agent: fastmock-load")
    if config.body and "content-length" not in names:
        lines.append(f"Content-Length: {len(config.body)}")
    if not config.keepalive:
        lines.append("Connection: close")
    lines += [f"{name}: {value}" for name, value in config.headers]
    return host, port, ("\r\n".join(lines) + "\r\n").encode("latin-1")


def _share(total: float, workers: int, worker: int) -> float:
    """Worker ``worker``'s part of ``total`` (whole parts, the remainder to the first ones)."""
    return total // workers + (1 if worker < total % workers else 0)


async def _run_engine(config: LoadConfig, worker: int, report):
    """Worker ``worker``'s engine: one slot of the shards' workers (shard I's workers are slots I*W …)."""
    workers = config.shards * config.workers
    worker += config.shard * config.workers
    host, port, head = encode_head(config)
    loop = asyncio.get_running_loop()
    context = client_context(config) if config.url.startswith("https:") else None
    engine = LoadEngine(
        loop, host, port, head, config.body,
        total=int(_share(config.requests, workers, worker)) if config.requests >= 0 else -1,
        duration_s=config.duration_s, concurrency=max(1, int(_share(config.concurrency, workers, worker))),
        rate=config.rate / workers, timeout_s=config.timeout_s, connect_timeout_s=config.connect_timeout_s,
        retries=config.retries, backoff_s=config.retry_backoff_s, keepalive=config.keepalive, trace=config.trace,
        record=config.record, head_request=config.method == "HEAD", seed=config.seed + worker,
        index_offset=worker, index_step=workers, tls=context, server_hostname=host if context else None)
    done = engine.start()
    while not done.done():
        await asyncio.wait([done], timeout=PROGRESS_INTERVAL_S)
        if report is not None and not done.done():
            report(engine.stats(), engine.histogram)
    return engine.stats(), engine.histogram, engine.records, engine.handshake_histogram


def _run_workers(config: LoadConfig, progress=None) -> list:
    """Fork ``config.workers`` processes, each running an engine; their results, in worker order. With
    ``progress``, each worker also sends its counters every PROGRESS_INTERVAL_S: ``progress(worker, stats,
    histogram)``. Each message on a worker's pipe is a length and a pickle of (final, payload)."""
    readers, pids = [], []
    for worker in range(config.workers):
        read_fd, write_fd = os.pipe()

        def child(worker=worker, read_fd=read_fd, write_fd=write_fd):
            os.close(read_fd)
            with open(write_fd, "wb") as pipe:
                def send(final, payload):
                    message = pickle.dumps((final, payload))
                    pipe.write(len(message).to_bytes(8, "little") + message)
                    pipe.flush()

                report = None if progress is None else \
                    lambda stats, histogram: send(False, (stats, histogram.to_dict()))
                send(True, uvloop.run(_run_engine(config, worker, report)))
            return 0

        pids.append(fork_child(f"load worker {worker}", child))
        os.close(write_fd)
        readers.append(read_fd)
    results = {}
    try:
        with selectors.DefaultSelector() as selector:
            for worker, read_fd in enumerate(readers):
                selector.register(read_fd, selectors.EVENT_READ, (worker, bytearray()))
            while selector.get_map():
                for key, _ in selector.select():
                    worker, received = key.data
                    chunk = os.read(key.fd, 1 << 20)
                    if not chunk:
                        selector.unregister(key.fd)
                        continue
                    received += chunk
                    while len(received) >= 8 and len(received) >= 8 + int.from_bytes(received[:8], "little"):
                        size = int.from_bytes(received[:8], "little")
                        final, payload = pickle.loads(received[8:8 + size])
                        del received[:8 + size]
                        if final:
                            results[worker] = payload
                        else:
                            progress(worker, payload[0], LatencyHistogram.from_dict(payload[1]))
    finally:
        for read_fd in readers:
            os.close(read_fd)
        for pid in pids:
            os.waitpid(pid, 0)
    if len(results) < config.workers:
        raise RuntimeError("a load worker failed (its message is above)")
    return [results[worker] for worker in range(config.workers)]


def run_load(config: LoadConfig, progress=None) -> dict:
    """Run the load; return the merged result: counters, histogram (LatencyHistogram) and records.
    ``progress(worker, stats, histogram)`` is told each worker's counters so far, every PROGRESS_INTERVAL_S."""
    started = time.monotonic()
    if config.workers == 1:
        report = None if progress is None else lambda stats, histogram: progress(0, stats, histogram)
        results = [uvloop.run(_run_engine(config, 0, report))]
    else:
        results = _run_workers(config, progress)
    elapsed = time.monotonic() - started
    merged, handshake_histogram = LatencyHistogram(), LatencyHistogram()
    statuses, errors, handshake_failures = {}, {}, {}
    requests = bytes_in = retries = handshakes = resumed = 0
    records = [] if config.record else None
    for stats, histogram, worker_records, worker_handshakes in results:
        merged.merge(histogram)
        handshake_histogram.merge(worker_handshakes)
        requests += stats["requests"]
        bytes_in += stats["bytes"]
        retries += stats["retries"]
        handshakes += stats["handshakes"]
        resumed += stats["resumed"]
        for totals, counts in ((statuses, stats["statuses"]), (errors, stats["errors"]),
                               (handshake_failures, stats["handshake_failures"])):
            for key, count in counts.items():
                totals[key] = totals.get(key, 0) + count
        if records is not None:
            records += worker_records
    if records is not None:
        records.sort()
    return {"requests": requests, "elapsed_s": elapsed, "rps": requests / elapsed if elapsed else 0.0,
            "statuses": dict(sorted(statuses.items())), "errors": errors, "bytes": bytes_in, "retries": retries,
            "histogram": merged, "records": records, "handshakes": handshakes, "resumed": resumed,
            "handshake_histogram": handshake_histogram, "handshake_failures": handshake_failures}


def _measure(result: dict):
    """thresholds.evaluate's ``measure`` for a load result (errors: no response; failed: those and 5xx)."""
    errors = sum(result["errors"].values())
    failed = errors + sum(count for status, count in result["statuses"].items() if int(status) >= 500)
    return measure_counts(result["requests"], errors, failed, result["elapsed_s"], result["histogram"])


def summary_dict(result: dict, config: LoadConfig, thresholds=()) -> dict:
    """The run's summary; ``thresholds`` (thresholds.Threshold) are checked and listed with their values."""
    latency = _latency(result["histogram"])
    tls = {}
    if config.url.startswith("https:"):
        tls = {"tls": {"handshakes": result["handshakes"], "resumed": result["resumed"],
                       "handshake_ms": {key: round(value * 1000, 3)
                                        for key, value in _latency(result["handshake_histogram"]).items()},
                       "failures": dict(sorted(result["handshake_failures"].items())),
                       "handshake_histogram": result["handshake_histogram"].to_dict()}}
    return {
        "kind": "load", "shard": [config.shard, config.shards],
        "url": config.url, "mode": "open" if config.rate > 0 else "closed",
        "rate": config.rate or None, "concurrency": config.concurrency, "workers": config.workers,
        "requests": result["requests"], "elapsed_s": round(result["elapsed_s"], 3), "rps": round(result["rps"], 1),
        "statuses": {str(status): count for status, count in result["statuses"].items()},
        "errors": result["errors"], "retries": result["retries"], "bytes": result["bytes"],
        "latency_ms": {key: round(value * 1000, 3) for key, value in latency.items()},
        "histogram": result["histogram"].to_dict(),
        **tls,
        "thresholds": [{**check, "value": None if math.isnan(check["value"]) else round(check["value"], 6)}
                       for check in evaluate(thresholds, _measure(result))],
    }


def _latency(histogram) -> dict:
    return {"min": histogram.min, **{f"p{p:g}": histogram.percentile(p) for p in PERCENTILES},
            "max": histogram.max, "mean": histogram.mean}


def passed(summary: dict) -> bool:
    """Whether the run passes: its thresholds, or with none, at least one request was not a failure."""
    if summary["thresholds"]:
        return all(check["ok"] for check in summary["thresholds"])
    failures = sum(summary["errors"].values()) + sum(
        count for status, count in summary["statuses"].items() if int(status) >= 500)
    return not summary["requests"] or failures < summary["requests"]


def summary_text(summary: dict) -> str:
    latency = summary["latency_ms"]
    errors = ", ".join(f"{kind} {count}" for kind, count in summary["errors"].items()) or "none"
    statuses = ", ".join(f"{status}: {count}" for status, count in summary["statuses"].items()) or "none"
    mode = f"open loop at {summary['rate']:g}/s" if summary["mode"] == "open" else \
        f"closed loop, {summary['concurrency']} connections"
    lines = [
        f"{summary['url']}: {mode}, {summary['workers']} worker(s)",
        *shard_lines(summary),
        f"  requests   {summary['requests']} in {summary['elapsed_s']:.2f}s = {summary['rps']:,.1f}/s",
        f"  statuses   {statuses}",
        f"  errors     {errors}",
        f"  retries    {summary['retries']}",
        "  latency    " + "  ".join(f"{key} {value:.3f}ms" for key, value in latency.items()),
    ]
    if "tls" in summary:
        tls = summary["tls"]
        failures = ", ".join(f"{reason} {count}" for reason, count in tls["failures"].items()) or "none"
        lines.append(f"  tls        {tls['handshakes']} handshakes ({tls['resumed']} resumed), failed: {failures}")
        if tls["handshakes"]:
            lines.append("  handshake  " + "  ".join(f"{key} {value:.3f}ms"
                                                    for key, value in tls["handshake_ms"].items()))
    for check in summary["thresholds"]:
        lines.append(f"  threshold  {check['threshold']:<16} {'pass' if check['ok'] else 'FAIL'}  "
                     f"({_shown(check)})")
    if not summary["thresholds"] and not passed(summary):
        lines.append("  FAIL       every request failed")
    return "\n".join(lines)


def shard_lines(summary: dict) -> list[str]:
    """A merged summary's shards (fastmock report), or this run's shard when it is one of several."""
    if "shards" in summary:
        shards = summary["shards"]
        missing = f" (missing: {', '.join(map(str, shards['missing']))})" if shards["missing"] else ""
        return [f"  shards     {len(shards['merged'])} of {shards['of']} merged{missing}"]
    index, count = summary["shard"]
    return [f"  shard      {index}/{count}"] if count > 1 else []


def _shown(check: dict) -> str:
    value = check["value"]
    if value is None:
        return "nothing measured"
    if check["metric"] in ("errors", "failed"):
        return f"{value * 100:.2f}%"
    if check["metric"] in ("rps", "requests"):
        return f"{value:,.1f}"
    return f"{value * 1000:.3f}ms"


OUTPUT_FORMATS = ("json", "jsonl", "csv")


def output_format_for(path: str) -> str:
    """--format when not given: from the file's extension (.json, .csv), else JSON lines."""
    extension = os.path.splitext(path)[1].lower().lstrip(".")
    return extension if extension in ("json", "csv") else "jsonl"


def write_records(records: list, file, output_format: str, summary: dict) -> None:
    """Per-request records: one JSON document {"summary", "requests"}, JSON lines, or CSV."""
    if output_format == "csv":
        writer = csv.writer(file)
        writer.writerow(RECORD_FIELDS)
        for record in records:
            writer.writerow(_record_values(record))
    elif output_format == "json":
        json.dump({"summary": summary, "requests": [dict(zip(RECORD_FIELDS, _record_values(record)))
                                                     for record in records]}, file)
        file.write("\n")
    else:
        for record in records:
            file.write(json.dumps(dict(zip(RECORD_FIELDS, _record_values(record)))) + "\n")


def _record_values(record: tuple) -> tuple:
    index, scheduled, started, status, latency, nbytes, retries, trace_id, error = record
    return (index, round(scheduled, 6), round(started, 6), status, round(latency * 1000, 3), nbytes, retries,
            trace_id, error)


class Progress:
    """The live line on a TTY: requests, rps, errors and p99 so far."""

    def __init__(self, stream=sys.stderr) -> None:
        self.stream = stream

    def __call__(self, _worker: int, stats: dict, histogram) -> None:
        errors = sum(stats["errors"].values())
        rps = stats["requests"] / stats["elapsed_s"] if stats["elapsed_s"] else 0.0
        self.stream.write(f"\r  {stats['requests']} requests  {rps:,.0f}/s  {errors} errors  "
                          f"p99 {histogram.percentile(99) * 1000:.2f}ms   ")
        self.stream.flush()

    def clear(self) -> None:
        self.stream.write("\r" + " " * 72 + "\r")
        self.stream.flush()


class LiveMetrics:
    """``--metrics-port``: the run so far for Prometheus, a collector over each worker's latest counters
    (``progress`` calls), summed at each scrape. The latency histogram's buckets are cumulative counts at
    fixed bounds (from the log-linear histogram, within its 0.1 %), so shards' buckets add up in PromQL:
    ``histogram_quantile(0.99, sum by (le) (rate(fastmock_load_latency_seconds_bucket[1m])))``."""

    BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        self.latest: dict[int, tuple] = {}
        registry = CollectorRegistry()
        registry.register(self)
        start_http_server(port, addr=host, registry=registry)

    def __call__(self, worker: int, stats: dict, histogram) -> None:
        self.latest[worker] = (stats, histogram)

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        histogram, statuses, errors = LatencyHistogram(), {}, {}
        for stats, worker_histogram in list(self.latest.values()):
            histogram.merge(worker_histogram)
            for totals, counts in ((statuses, stats["statuses"]), (errors, stats["errors"])):
                for key, count in counts.items():
                    totals[key] = totals.get(key, 0) + count
        requests = CounterMetricFamily("fastmock_load_requests", "Answered requests, by status", labels=["status"])
        for status, count in sorted(statuses.items()):
            requests.add_metric([str(status)], count)
        failed = CounterMetricFamily("fastmock_load_errors", "Requests without an answer, by kind", labels=["kind"])
        for kind, count in sorted(errors.items()):
            failed.add_metric([kind], count)
        latency = HistogramMetricFamily("fastmock_load_latency_seconds", "Latency of the answered requests")
        latency.add_metric([], [(f"{bound:g}", histogram.count_at_most(bound)) for bound in self.BUCKETS_S]
                           + [("+Inf", histogram.count)], sum_value=histogram.mean * histogram.count)
        return [requests, failed, latency]
