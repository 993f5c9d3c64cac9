"""Parser throughput, sans-IO (run: pytest benchmarks/bench_parser.py)."""

import pytest

from fastmock._core import RequestParser

# a typical 200-byte GET, as a browser-ish client sends it
TYPICAL_GET = (
    b"GET /api/v1/items?id=42&sort=desc HTTP/1.1\r\n"
    b"Host: service.example.internal:8080\r\n"
    b"User-Agent: monitor/2.3 (+https://example.org)\r\n"
    b"Accept: application/json\r\n"
    b"Accept-Encoding: gzip\r\n"
    b"X-Request-Id: 7f3a9c\r\n"
    b"\r\n"
)
PIPELINE_64 = TYPICAL_GET * 64


def test_typical_get(benchmark):
    assert 190 <= len(TYPICAL_GET) <= 210
    parser = RequestParser()
    events = benchmark(parser.feed, TYPICAL_GET)
    assert len(events) == 2 and events[0].path == "/api/v1/items"
    benchmark.extra_info["requests_per_s"] = 1 / benchmark.stats.stats.median


@pytest.mark.parametrize("depth", [64])
def test_pipelined_buffer(benchmark, depth):
    parser = RequestParser()
    events = benchmark(parser.feed, PIPELINE_64)
    assert len(events) == 2 * depth
    benchmark.extra_info["requests_per_s"] = depth / benchmark.stats.stats.median
