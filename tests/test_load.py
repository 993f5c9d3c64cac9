"""``fastmock load`` against real servers: exact counts, seeded statuses, retries, traces, outputs, open loop."""

import csv
import json
import socket
import subprocess
import sys
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fastmock._core import Random
from helpers import RecordingServer, start_server


def load(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "fastmock", "load", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def load_summary(tmp_path, *args, code=0):
    path = tmp_path / "summary.json"
    result = load(*args, "--summary-json", path)
    assert result.returncode == code, result.stderr
    return json.loads(path.read_text()), result.stdout


def served(server, name="fastmock_requests_total"):
    text = httpx.get(f"{server.url}/metrics").text
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and sample.labels.get("route") != "metrics")


@pytest.fixture(scope="module")
def hp():
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--seed", "9") as server:
        yield server
        server.stop()


def test_counts_are_exact(hp, tmp_path):
    before = served(hp)
    summary, text = load_summary(tmp_path, f"{hp.url}/health", "-n", 1000, "-c", 10)
    assert summary["requests"] == 1000
    assert summary["statuses"] == {"200": 1000}
    assert summary["errors"] == {}
    assert served(hp) - before == 1000
    assert "requests   1000 in" in text and "p99" in text
    latency = summary["latency_ms"]
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["p99.9"] <= latency["max"]


def test_closed_loop_keeps_every_connection_busy(hp, tmp_path):
    # Little's law: requests in flight = rate x mean latency, and -c 10 means 10 outstanding requests
    summary, text = load_summary(tmp_path, f"{hp.url}/delay/20", "-n", 300, "-c", 10)
    mean_s = summary["latency_ms"]["mean"] / 1000
    assert 9 <= summary["rps"] * mean_s <= 10.2
    assert f"mean {summary['latency_ms']['mean']:.3f}ms" in text


def test_statuses_match_the_servers_seeded_choices(tmp_path):
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--seed", "21") as server:
        summary, _ = load_summary(tmp_path, f"{server.url}/status/200:0.7,500:0.3", "-n", 2000, "-c", 1)
    rng = Random(21)
    expected = {"200": 0, "500": 0}
    for _ in range(2000):
        expected["200" if rng.random() * 1.0 < 0.7 else "500"] += 1
    assert summary["statuses"] == expected


def test_retries_back_off_doubling(hp, tmp_path):
    started = time.monotonic()
    summary, text = load_summary(tmp_path, f"{hp.url}/status/503", "-n", 1, "--retries", 3, "--retry-backoff-ms", 100,
                                 code=1)
    assert "FAIL       every request failed" in text  # with no threshold, a run where nothing worked fails
    elapsed = time.monotonic() - started
    assert summary["retries"] == 3
    assert summary["statuses"] == {"503": 1}
    assert elapsed >= 0.7  # 100 + 200 + 400 ms
    assert summary["latency_ms"]["max"] >= 700  # the request's latency includes its retries


def test_connection_errors_are_retried_and_counted(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    summary, text = load_summary(tmp_path, f"http://127.0.0.1:{port}/", "-n", 3, "--retries", 1,
                                 "--retry-backoff-ms", 10, code=1)
    assert summary["errors"] == {"refused": 3}
    assert summary["retries"] == 3
    assert "refused 3" in text


def test_timeouts_and_no_keepalive(hp, tmp_path):
    summary, _ = load_summary(tmp_path, f"{hp.url}/delay/2000", "-n", 2, "-c", 2, "--timeout", "200ms", code=1)
    assert summary["errors"] == {"timeout": 2}
    before = served(hp, "fastmock_connections_total")
    summary, _ = load_summary(tmp_path, f"{hp.url}/health", "-n", 50, "-c", 5, "--no-keepalive")
    assert summary["statuses"] == {"200": 50}
    assert served(hp, "fastmock_connections_total") - before >= 50


def test_client_trace_ids_reach_the_server_and_the_records(tmp_path):
    recorder = RecordingServer()
    output = tmp_path / "records.jsonl"
    summary, _ = load_summary(tmp_path, f"{recorder.url}/x", "-n", 20, "-c", 2, "--client-trace", "--output", output)
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert summary["requests"] == 20 and len(records) == 20
    traces = [line.split(":", 1)[1].strip() for head, _ in recorder.requests for line in head.split("\r\n")
              if line.lower().startswith("x-trace-id:")]
    assert sorted(traces) == sorted(record["trace_id"] for record in records)
    assert len(set(traces)) == 20


@pytest.mark.parametrize(("output_format", "extension"), [("json", "out"), ("jsonl", "out"), ("csv", "out"),
                                                          (None, "json"), (None, "csv"), (None, "txt")])
def test_outputs_parse_and_match_the_summary(hp, tmp_path, output_format, extension):
    output = tmp_path / f"records.{extension}"
    chosen = ["--format", output_format] if output_format else []
    summary, _ = load_summary(tmp_path, f"{hp.url}/status/200:0.5,404:0.5", "-n", 300, "-c", 4, "--output", output,
                              *chosen)
    output_format = output_format or {"json": "json", "csv": "csv"}.get(extension, "jsonl")
    if output_format == "csv":
        with open(output, newline="") as file:
            records = list(csv.DictReader(file))
    elif output_format == "json":  # one document: the summary and the requests
        document = json.loads(output.read_text())
        assert document["summary"] == summary
        records = document["requests"]
    else:
        records = [json.loads(line) for line in output.read_text().splitlines()]
    assert [int(record["index"]) for record in records] == list(range(300))
    counts = {}
    for record in records:
        counts[str(record["status"])] = counts.get(str(record["status"]), 0) + 1
    assert counts == summary["statuses"]
    latencies = sorted(float(record["latency_ms"]) for record in records)
    assert abs(latencies[-1] - summary["latency_ms"]["max"]) <= max(0.01, latencies[-1] * 0.002)
    assert all(float(record["start_s"]) >= float(record["scheduled_s"]) for record in records)


def test_workers_split_and_merge_exactly(hp, tmp_path):
    output = tmp_path / "records.jsonl"
    summary, _ = load_summary(tmp_path, f"{hp.url}/health", "-n", 1001, "-c", 4, "--workers", 2, "--output", output)
    assert summary["requests"] == 1001 and summary["workers"] == 2
    indexes = [json.loads(line)["index"] for line in output.read_text().splitlines()]
    assert sorted(indexes) == list(range(1001))


def test_open_loop_measures_from_the_scheduled_time(hp, tmp_path):
    # one connection, a request every 10 ms, each taking 50 ms: a queue builds, and the open loop shows it
    summary, _ = load_summary(tmp_path, f"{hp.url}/delay/50", "--rate", 100, "-d", 2, "-c", 1)
    assert summary["mode"] == "open"
    assert summary["requests"] == 200
    assert summary["latency_ms"]["min"] >= 50
    assert summary["latency_ms"]["p99"] > 1000  # a closed loop would say 50 ms


def test_open_loop_holds_its_rate(hp, tmp_path):
    summary, _ = load_summary(tmp_path, f"{hp.url}/health", "--rate", 1000, "-d", 5)
    assert abs(summary["requests"] - 5000) <= 100
    assert abs(summary["rps"] - 1000) <= 20


def test_body_and_method(hp, tmp_path):
    body = tmp_path / "body.bin"
    body.write_bytes(b"x" * 5000)
    summary, _ = load_summary(tmp_path, f"{hp.url}/upload", "-n", 5, "-m", "put", "--body-file", body)
    assert summary["statuses"] == {"200": 5}
    assert summary["bytes"] > 0


@pytest.mark.parametrize(("args", "named"), [
    (["http://127.0.0.1:1/"], "-n/--requests or -d/--duration"),
    (["gopher://example.com/", "-n", "1"], "URL"),
    (["http://127.0.0.1:1/", "-n", "1", "--insecure"], "'--insecure': only for an https:// URL"),
    (["https://127.0.0.1:1/", "-n", "1", "-k", "--cacert", "/etc/hostname"], "'--cacert'"),
    (["https://127.0.0.1:1/", "-n", "1", "--cacert", "/etc/hostname"], "/etc/hostname: no CA certificate"),
    (["https://127.0.0.1:1/", "-n", "1", "--cacert", "/nonexistent.pem"], "'--cacert'"),
    (["ftp://x/", "-n", "1"], "URL"),
    (["http://127.0.0.1:1/", "-n", "0"], "--requests"),
    (["http://127.0.0.1:1/", "-n", "1", "--rate", "0"], "--rate"),
    (["http://127.0.0.1:1/", "-n", "1", "-H", "nocolon"], "--header"),
    (["http://127.0.0.1:1/", "-n", "1", "--body", "a", "--body-file", "/etc/hostname"], "--body-file"),
    (["http://127.0.0.1:1/", "-n", "1", "--output", "/nonexistent/x"], "'--output': /nonexistent is not a writable"),
    (["http://127.0.0.1:1/", "-n", "1", "--summary-json", "/nonexistent/x"], "--summary-json"),
    (["http://127.0.0.1:1/", "-n", "1", "--threshold", "p99<soon"], "'--threshold': 'p99<soon': 'soon' is not a"),
    (["http://127.0.0.1:1/", "-n", "1", "--threshold", "speed>1"], "unknown metric 'speed'"),
    (["http://127.0.0.1:1/", "--url", "http://127.0.0.1:1/", "-n", "1"], "'--url'"),
    (["-n", "1"], "give the URL"),
    (["http://127.0.0.1:1/", "-n", "1", "--format", "xml"], "--format"),
])
def test_bad_flags_are_usage_errors(args, named):
    result = load(*args)
    assert result.returncode == 2
    assert named in result.stderr


def test_thresholds_pass_fail_and_set_the_exit_code(hp, tmp_path):
    gates = ["--threshold", "p99<10s", "--threshold", "errors<1%", "--threshold", "rps>1",
             "--threshold", "requests==200"]
    summary, text = load_summary(tmp_path, f"{hp.url}/health", "-n", 200, *gates)
    assert [check["ok"] for check in summary["thresholds"]] == [True] * 4
    assert summary["thresholds"][1] == {"threshold": "errors<1%", "metric": "errors", "value": 0.0, "ok": True}
    assert "  threshold  requests==200    pass  (200.0)" in text
    # a third of the answers are 500: 'failed' counts them, 'errors' (no response) does not
    summary, text = load_summary(tmp_path, f"{hp.url}/status/200:2,500:1", "-n", 300, "--threshold", "errors<1%",
                                 "--threshold", "failed<10%", "--threshold", "p50<0.001ms", code=1)
    assert [check["ok"] for check in summary["thresholds"]] == [True, False, False]
    assert 0.25 < summary["thresholds"][1]["value"] < 0.42
    assert "  threshold  failed<10%       FAIL" in text


def test_latency_thresholds_fail_when_nothing_was_answered(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    summary, text = load_summary(tmp_path, f"http://127.0.0.1:{port}/", "-n", 2, "--threshold", "p99<1s", code=1)
    assert summary["thresholds"] == [{"threshold": "p99<1s", "metric": "p99", "value": None, "ok": False}]
    assert "(nothing measured)" in text


def test_the_old_flag_names_and_the_default_concurrency(hp, tmp_path):
    summary, _ = load_summary(tmp_path, "--url", f"{hp.url}/health", "--n", 30, "--concurrency", 3)
    assert summary["requests"] == 30 and summary["concurrency"] == 3
    summary, _ = load_summary(tmp_path, f"{hp.url}/health", "-n", 30)
    assert summary["concurrency"] == 10


def test_records_keep_the_trace_id_a_proxy_returned(hp, tmp_path):
    output = tmp_path / "records.jsonl"
    with start_server("proxy", "--upstream", hp.url, "--port", "0") as proxy:
        load_summary(tmp_path, f"{proxy.url}/health", "-n", 20, "--output", output)
    trace_ids = [json.loads(line)["trace_id"] for line in output.read_text().splitlines()]
    assert len(set(trace_ids)) == 20 and all(len(trace_id) == 32 for trace_id in trace_ids)


def test_live_progress_only_on_a_terminal(hp):
    import pexpect

    session = pexpect.spawn(sys.executable, ["-m", "fastmock", "load", f"{hp.url}/health", "-d", "1.2", "-c", "2"],
                            encoding="utf-8", timeout=30)
    session.expect(r"\r  \d+ requests  [\d,]+/s  0 errors  p99 [\d.]+ms")
    session.expect(pexpect.EOF)
    assert "statuses   200:" in session.before
    piped = load(f"{hp.url}/health", "-d", "1", "-c", "2")
    assert "\r" not in piped.stdout + piped.stderr


def test_an_output_that_cannot_be_written_is_one_line_and_leaves_no_temporary_file(hp, tmp_path):
    result = load(f"{hp.url}/health", "-n", "2", "--output", "/proc/fastmock-records")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "Error: cannot write /proc/fastmock-records" in result.stderr


# --- https -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_fleet(tmp_path_factory):
    """A --tls fleet: port base+0 valid, +1 expired, +2 wrong-host, +3 untrusted-root, +4 handshake-reset,
    +5 handshake-stall (cut after 1 s), +6 tls1.0-only."""
    from helpers import Fleet, free_base, start_fleet

    ca_dir = tmp_path_factory.mktemp("load-ca")
    base = free_base(8)
    with start_fleet(8, "--tls", "--tls-ca-dir", str(ca_dir), "--max-hang", "1s", base=base) as server:
        fleet = Fleet(server, base, 8)
        for offset, state in enumerate(["expired", "wrong-host", "untrusted-root", "handshake-reset",
                                        "handshake-stall", "tls1.0-only"], start=1):
            assert fleet.api.post("/tls", params={"port": base + offset, "state": state}).status_code == 200
        fleet.ca_file = str(ca_dir / "ca.pem")
        yield fleet
        server.stop()


def test_https_load_times_handshakes_and_resumes_sessions(tls_fleet, tmp_path):
    url = f"https://localhost:{tls_fleet.base}/health"
    summary, text = load_summary(tmp_path, url, "-n", 300, "-c", 3, "--cacert", tls_fleet.ca_file)
    assert summary["statuses"] == {"200": 300} and summary["tls"]["handshakes"] == 3
    assert summary["tls"]["failures"] == {} and summary["tls"]["handshake_ms"]["p50"] > 0
    assert "3 handshakes (0 resumed)" in text and "  handshake  min " in text
    fresh, _ = load_summary(tmp_path, url, "-n", 100, "-c", 1, "--cacert", tls_fleet.ca_file, "--new-connections")
    assert fresh["statuses"] == {"200": 100} and fresh["tls"]["handshakes"] == 100
    assert fresh["tls"]["resumed"] >= 98  # all but the first (and a ticket still in flight) resume
    full, _ = load_summary(tmp_path, url, "-n", 50, "-c", 1, "--cacert", tls_fleet.ca_file, "--new-connections",
                           "--no-tls-resume")
    assert full["tls"]["handshakes"] == 50 and full["tls"]["resumed"] == 0


@pytest.mark.parametrize(("offset", "host", "reason", "connect_timeout"), [
    (1, "localhost", "expired", "10s"),
    (2, "localhost", "hostname", "10s"),
    (2, "127.0.0.1", "hostname", "10s"),  # an address, checked against the certificate's addresses
    (3, "localhost", "unknown_ca", "10s"),
    (4, "localhost", "reset", "10s"),
    (5, "localhost", "timeout", "300ms"),  # before the port's --max-hang cuts it (a reset)
    (6, "localhost", "protocol", "10s"),  # a protocol_version alert
    (0, "127.0.0.2", "refused", "10s"),  # nothing listens there: no handshake to fail
])
def test_https_handshake_failures_are_counted_by_reason(tls_fleet, tmp_path, offset, host, reason, connect_timeout):
    summary, text = load_summary(tmp_path, f"https://{host}:{tls_fleet.base + offset}/health", "-n", 2, "-c", 1,
                                 "--cacert", tls_fleet.ca_file, "--connect-timeout", connect_timeout, code=1)
    assert summary["statuses"] == {}
    if reason == "refused":
        assert summary["errors"] == {"refused": 2} and summary["tls"]["failures"] == {}
    else:
        assert summary["errors"] == {"tls": 2} and summary["tls"]["failures"] == {reason: 2}
        assert f"failed: {reason} 2" in text


def test_an_address_is_verified_against_the_certificates_addresses(tls_fleet, tmp_path):
    summary, _ = load_summary(tmp_path, f"https://127.0.0.1:{tls_fleet.base}/health", "-n", 10, "--cacert",
                              tls_fleet.ca_file)
    assert summary["statuses"] == {"200": 10} and summary["tls"]["failures"] == {}


def test_insecure_accepts_any_certificate(tls_fleet, tmp_path):
    summary, _ = load_summary(tmp_path, f"https://localhost:{tls_fleet.base + 1}/health", "-n", 10, "-k")
    assert summary["statuses"] == {"200": 10}


def test_metrics_while_running_sum_every_worker(hp, tmp_path):
    from helpers import free_port, wait_for

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "fastmock", "load", f"{hp.url}/delay/20", "-d", "3s",
                                "-c", "8", "--workers", "2", "--metrics-port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    samples = {}

    def scraped():
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        except httpx.HTTPError:
            return False
        samples.clear()
        samples.update({(sample.name, sample.labels.get("le"), sample.labels.get("status")): sample.value
                        for family in text_string_to_metric_families(text) for sample in family.samples})
        return samples.get(("fastmock_load_requests_total", None, "200"), 0) >= 50

    try:
        wait_for(scraped)
        buckets = [value for (name, le, _), value in samples.items() if name == "fastmock_load_latency_seconds_bucket"]
        assert buckets == sorted(buckets) and buckets[-1] == samples[("fastmock_load_latency_seconds_count", None, None)]
        assert samples[("fastmock_load_latency_seconds_bucket", "0.01", None)] == 0  # every answer took 20 ms+
        assert samples[("fastmock_load_latency_seconds_sum", None, None)] >= 0.02 * buckets[-1]
        assert samples[("fastmock_load_requests_total", None, "200")] == buckets[-1]
    finally:
        process.wait(30)
