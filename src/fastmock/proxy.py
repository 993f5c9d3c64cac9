"""``fastmock proxy``: a fault-injecting reverse proxy (forwarding is in the core: core/proxy.pyx)."""

import urllib.parse
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from fastmock._core import Proxy, Response, Route
from fastmock.faults import PlanCache
from fastmock.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from fastmock.metrics import ServerCollector, duration_histogram, exposition

__all__ = ["ProxyConfig", "ProxyApp", "parse_upstream", "parse_header", "upstream_context"]


@dataclass(frozen=True)
class ProxyConfig:
    upstream_host: str
    upstream_port: int
    request_headers: tuple = ()   # (name, value) bytes pairs added to upstream requests
    response_headers: tuple = ()  # ... and set on every answer
    drop_rate: float = 0.0
    delay_s: float = 0.0
    upstream_timeout_s: float = 30.0
    faults: tuple = ()            # (path prefix, FaultPlan)
    header_faults: bool = True
    max_hang_s: float = 300.0
    seed: int = 0
    metrics_path: str = "/metrics"
    worker: int = 0
    upstream_tls: object = None   # a client ssl.SSLContext: the upstream is https


def upstream_context(ca_file: str | None, insecure: bool):
    """The client SSLContext for an https upstream: verifying with ``ca_file`` (else the system's CAs)."""
    import ssl

    context = ssl.create_default_context(cafile=ca_file)
    context.set_alpn_protocols(["http/1.1"])
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def parse_upstream(url: str) -> tuple[str, str, int]:
    """``http(s)://host:port`` → (scheme, host, port); raises ValueError for anything else."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s)://HOST[:PORT] URL")
    if parts.path not in ("", "/") or parts.query:
        raise ValueError(f"{url!r}: the upstream URL takes no path or query (requests keep their own)")
    return parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)


def parse_header(text: str) -> tuple[bytes, bytes]:
    """``'Name: value'`` → (name, value); raises ValueError."""
    name, colon, value = text.partition(":")
    name, value = name.strip(), value.strip()
    if not colon or not name or any(c in name for c in " \t\r\n") or any(c in value for c in "\r\n"):
        raise ValueError(f"{text!r} is not 'Name: value'")
    return name.encode("latin-1"), value.encode("latin-1")


class ProxyApp:
    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.proxy = None
        self.server = None

    def build(self, loop, **server_options):
        config = self.config
        routes = [Route("metrics", config.metrics_path.encode(), handler=self._metrics)]
        self.proxy = Proxy(
            loop, config.upstream_host, config.upstream_port, routes, headers=list(config.request_headers),
            response_headers=list(config.response_headers),
            drop_rate=config.drop_rate, delay_s=config.delay_s, upstream_timeout_s=config.upstream_timeout_s,
            proxy_seed=config.seed, fault_rules=[(prefix.encode(), plan) for prefix, plan in config.faults],
            header_faults=PlanCache().from_header if config.header_faults else None, seed=config.seed,
            max_hang_s=config.max_hang_s, upstream_ssl=config.upstream_tls, **server_options)
        self.server = self.proxy.server
        return self.server, self.proxy.make_protocol

    def _metrics(self, req) -> Response:
        return Response(200, exposition(ServerCollector(self.server, self.config.worker),
                                        _ProxyCollector(self.proxy)), METRICS_CONTENT_TYPE)


class _ProxyCollector:
    def __init__(self, proxy) -> None:
        self.proxy = proxy

    def collect(self):
        stats = self.proxy.stats()
        yield CounterMetricFamily("proxy_requests", "Requests to be forwarded (not local routes)",
                                  value=stats["requests"])
        yield CounterMetricFamily("proxy_forwarded", "Requests sent to the upstream", value=stats["forwarded"])
        yield CounterMetricFamily("proxy_dropped", "Requests answered 503 by --drop-rate", value=stats["dropped"])
        yield CounterMetricFamily("proxy_delayed", "Requests held by --delay-ms or a fault delay",
                                  value=stats["delayed"])
        errors = CounterMetricFamily("proxy_upstream_errors", "Upstream failures, by kind", labels=["kind"])
        for kind, count in stats["upstream_errors"]:
            errors.add_metric([kind], count)
        yield errors
        if stats["upstream_tls_failures"]:
            tls = CounterMetricFamily("proxy_upstream_tls_failures", "Failed handshakes with an https upstream, by "
                                      "reason (expired, hostname, unknown_ca, protocol, timeout, reset, ...)",
                                      labels=["reason"])
            for reason, count in sorted(stats["upstream_tls_failures"].items()):
                tls.add_metric([reason], count)
            yield tls
        yield GaugeMetricFamily("proxy_upstream_idle_connections", "Pooled keep-alive upstream connections",
                                value=stats["idle_upstream_connections"])
        yield duration_histogram("proxy_upstream_duration_seconds",
                                 "From forwarding a request to the upstream's response head",
                                 stats["upstream_duration_counts"], stats["upstream_duration_sum_s"])
