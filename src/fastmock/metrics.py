"""Prometheus exposition of the core's counters (read at scrape time, never kept twice)."""

import os

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from fastmock._core import DURATION_BOUNDS
from fastmock.tls_accept import handshakes

__all__ = ["CONTENT_TYPE", "ServerCollector", "metrics_text", "exposition", "duration_histogram"]

CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class ServerCollector:
    def __init__(self, server, worker: int) -> None:
        self._server = server
        self._worker = worker

    def collect(self):
        stats = self._server.stats()
        # with --workers N each scrape reaches one worker: say which, so scrapes can be told apart
        info = GaugeMetricFamily("fastmock_worker_info", "The worker process that answered",
                                 labels=["worker", "pid"])
        info.add_metric([str(self._worker), str(os.getpid())], 1)
        yield info
        requests = CounterMetricFamily("fastmock_requests", "Requests answered", labels=["route", "status"])
        for route, status, count in stats["requests"]:
            requests.add_metric([route, str(status)], count)
        yield requests
        sent = CounterMetricFamily("fastmock_response_bytes", "Bytes sent, by route", labels=["route"])
        bodies = CounterMetricFamily("fastmock_request_body_bytes", "Request body bytes received, by route",
                                     labels=["route"])
        for route, body_bytes, sent_bytes in stats["route_bytes"]:
            sent.add_metric([route], sent_bytes)
            bodies.add_metric([route], body_bytes)
        yield sent
        yield bodies
        yield CounterMetricFamily("fastmock_request_bytes", "Bytes received (heads and bodies)",
                                  value=stats["bytes_in"])
        yield CounterMetricFamily("fastmock_connections", "Connections accepted", value=stats["connections_total"])
        yield CounterMetricFamily("fastmock_connections_rejected",
                                  "Connections closed at once by --max-connections or near the open-files limit",
                                  value=stats["connections_rejected"])
        yield GaugeMetricFamily("fastmock_connections_open", "Open connections", value=stats["connections_open"])
        if handshakes.completed or handshakes.failed:  # a TLS port (on a plain one both stay 0)
            yield CounterMetricFamily("fastmock_tls_handshakes", "TLS handshakes completed", value=handshakes.completed)
            failed = CounterMetricFamily("fastmock_tls_handshake_failures", "TLS handshakes that failed, by reason "
                                         "(timeout, reset, plain_http, protocol: the client's alert or garbage, other)",
                                         labels=["reason"])
            for reason, count in sorted(handshakes.failed.items()):
                failed.add_metric([reason], count)
            yield failed
        faults = CounterMetricFamily("fastmock_faults_injected", "Fault outcomes drawn, by kind", labels=["kind"])
        for kind, count in stats["faults"]:
            faults.add_metric([kind], count)
        yield faults
        yield duration_histogram("fastmock_request_duration_seconds", "From the parsed request head to the response",
                                 stats["duration_counts"], stats["duration_sum_s"])


def duration_histogram(name: str, documentation: str, counts, sum_s: float) -> HistogramMetricFamily:
    """A histogram over the core's DURATION_BOUNDS from its per-bucket counts (the last one: +Inf)."""
    buckets, cumulative = [], 0
    for bound, count in zip(DURATION_BOUNDS + (float("inf"),), counts):
        cumulative += count
        buckets.append((str(bound) if bound != float("inf") else "+Inf", cumulative))
    return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=sum_s)


def exposition(*collectors) -> bytes:
    """The Prometheus text page of ``collectors`` and the process's own metrics (a fresh registry each
    scrape is cheap and keeps nothing)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    ProcessCollector(registry=registry)
    return generate_latest(registry)


def metrics_text(server, worker: int = 0) -> bytes:
    """The Prometheus text page for ``server``."""
    return exposition(ServerCollector(server, worker))
