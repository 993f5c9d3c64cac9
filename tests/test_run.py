"""``fastmock run SCENARIO``: real scenarios against real servers, read back from the JSON log lines."""

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from helpers import RecordingServer, start_server
from test_faults import CHI2_999, chi_square


@pytest.fixture(scope="module")
def hp():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        yield server
        server.stop()


def run(tmp_path, text, *args, env=None, timeout=60):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("BASE_URL", "TASK", "DURATION_SECONDS", "API_TOKEN", "LOG_LEVEL", "JOB_COMPLETION_INDEX")}
    result = subprocess.run([sys.executable, "-m", "fastmock", "run", str(path), *args], capture_output=True,
                            text=True, env={**environment, **(env or {})}, timeout=timeout)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    return result, [line for line in lines if "check" not in line], [line for line in lines if "check" in line]


MIX = """\
base_url: {url}
seed: 7
tasks:
  mix:
    requests:
      - {{name: a, path: /health, weight: 3}}
      - {{name: b, path: /status/204, weight: 1}}
    load: {{every: 5ms, for: 2s}}
"""


def test_weighted_mix_is_seeded_and_in_proportion(hp, tmp_path):
    result, lines, _ = run(tmp_path, MIX.format(url=hp.url))
    assert result.returncode == 0, result.stderr
    steps = [line["step"] for line in lines]
    assert len(steps) == 400
    assert chi_square(Counter(steps), {"a": 3, "b": 1}) < CHI2_999[1]
    _, again, _ = run(tmp_path, MIX.format(url=hp.url))
    assert Counter(line["step"] for line in again) == Counter(steps)  # the same seed, the same draws
    assert "mix/a:" in result.stderr and "ok: 0 failed" in result.stderr


def test_a_flow_carries_values_between_steps(hp, tmp_path):
    result, lines, failed = run(tmp_path, f"""\
base_url: {hp.url}
tasks:
  reserve:
    steps:
      - name: prices
        path: /status/201?item=42
        check: {{status: 201}}
        extract: {{code: json.status_code, item: json.query.item.0}}
      - name: book
        method: POST
        path: /book/{{{{ code }}}}
        json: {{item: "{{{{ item }}}}", code: "{{{{ code }}}}"}}
        check: {{status: 200, json: {{path: /book/201, method: POST}}}}
""")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line["step"] for line in lines] == ["prices", "book"]
    assert lines[1]["url"].endswith("/book/201")
    assert failed == []


def test_faker_templates_are_filled_and_seeded(tmp_path):
    capture = RecordingServer()
    scenario = f"""\
base_url: {capture.url}
seed: 3
tasks:
  people:
    requests:
      - {{name: add, method: POST, path: /people, json: {{name: "{{{{ faker.name }}}}", greeting: "hi {{{{ faker.first_name }}}}", born: "{{{{ faker.date }}}}"}}}}
    load: {{every: 10ms, for: 100ms}}
"""
    result, _, _ = run(tmp_path, scenario)
    assert result.returncode == 0, result.stderr
    bodies = [json.loads(body) for _, body in capture.requests]
    assert len(bodies) == 10
    assert all(body["name"] and body["greeting"].startswith("hi ") and len(body["born"]) == 10 for body in bodies)
    assert len({body["name"] for body in bodies}) > 5
    capture.requests.clear()
    run(tmp_path, scenario)
    # the same values again; the order may differ when a slow request makes the client open a second connection
    again = [json.loads(body) for _, body in capture.requests]
    assert sorted(again, key=json.dumps) == sorted(bodies, key=json.dumps)


def test_failed_checks_exit_1(hp, tmp_path):
    result, lines, failed = run(tmp_path, f"""\
base_url: {hp.url}
tasks:
  bad:
    requests:
      - {{name: wrong, path: /status/503, check: {{status: 200}}}}
      - {{name: shape, path: /health, check: {{json: {{status: degraded}}, headers: {{X-Nope: yes}}}}}}
    load: {{every: 50ms, for: 500ms}}
""")
    assert result.returncode == 1
    assert {line["check"] for line in failed} >= {"status"}
    assert all(line["ok"] is False for line in failed)
    assert "FAILED" in result.stderr


def test_a_connection_error_is_a_failure(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result, lines, _ = run(tmp_path, f"base_url: http://127.0.0.1:{port}\ntasks:\n  t:\n    requests:\n"
                                     f"      - {{path: /}}\n")
    assert result.returncode == 1
    assert lines[0]["ok"] is False and lines[0]["status"] is None and lines[0]["error"]


def test_environment_overrides(hp, tmp_path):
    capture = RecordingServer()
    scenario = """\
base_url: http://127.0.0.1:1
timeouts: {connect: 1s, read: 1s}
tasks:
  one:
    requests: [{path: /one}]
    load: {every: 100ms, for: 10s}
  two:
    requests: [{path: /two}]
"""
    started = time.monotonic()
    result, lines, _ = run(tmp_path, scenario, env={"BASE_URL": capture.url, "TASK": "one", "DURATION_SECONDS": "0.5",
                                                    "API_TOKEN": "tok", "LOG_LEVEL": "warning"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 8  # DURATION_SECONDS, not the file's 10 s
    assert lines == []  # LOG_LEVEL=warning: failures only
    heads = [head for head, _ in capture.requests]
    assert len(heads) == 5
    assert all(head.startswith("GET /one ") and "authorization: Bearer tok" in head.lower().replace("bearer", "Bearer")
               for head in heads)


def test_shards_split_the_iterations(hp, tmp_path):
    scenario = MIX.format(url=hp.url).replace("for: 2s", "for: 500ms")
    counts = [len(run(tmp_path, scenario, "--shard", f"{i}/2")[1]) for i in range(2)]
    assert counts == [50, 50]
    _, from_env, _ = run(tmp_path, scenario, "--shard", "2", env={"JOB_COMPLETION_INDEX": "1"})
    assert len(from_env) == 50


def test_stages_of_rate_and_concurrency(hp, tmp_path):
    result, lines, _ = run(tmp_path, f"""\
base_url: {hp.url}
tasks:
  ramp:
    requests: [{{path: /health}}]
    load:
      stages:
        - {{rate: 40, duration: 1s}}
        - {{concurrency: 2, duration: 300ms}}
""")
    assert result.returncode == 0
    assert len(lines) >= 40 + 2


def test_metrics_while_running(hp, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "scenario.yaml"
    path.write_text(MIX.format(url=hp.url).replace("for: 2s", "for: 3s"))
    process = subprocess.Popen([sys.executable, "-m", "fastmock", "run", str(path), "--metrics-port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        text = ""
        for _ in range(50):
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
                if 'fastmock_run_requests_total{status="200",step="a",task="mix"}' in text:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert 'fastmock_run_requests_total{status="200",step="a",task="mix"}' in text
        assert "fastmock_run_latency_seconds_bucket" in text
    finally:
        process.wait(30)


@pytest.mark.parametrize(("text", "message"), [
    ("base_url: http://x\ntasks:\n  t:\n    requests: [{path: /}]\n    lod: once\n", ":5: lod: unknown key in task 't'"),
    ("base_url: http://x\ntasks:\n  t:\n    requests:\n      - {path: /, wieght: 2}\n", ":5: wieght: unknown key"),
    ("base_url: http://x\ntasks:\n  t:\n    requests: [{method: GET}]\n", "needs a 'path'"),
    ("base_url: http://x\ntasks:\n  t:\n    requests: [{path: /}]\n    load: {every: soon, for: 1s}\n",
     "every: 'soon' is not a duration"),
    ("base_url: http://x\ntasks:\n  t:\n    steps: [{path: /}]\n    requests: [{path: /}]\n", "either 'requests'"),
    ("tasks: {}\n", "missing required key 'base_url'"),
    ("base_url: http://x\ntasks:\n  t:\n    requests: [{path: /, method: FETCH}]\n", "'FETCH' is not one of"),
    ("base_url: [oops\ntasks: {}\n", ":2:6: expected"),
])
def test_schema_errors_name_file_line_and_key(tmp_path, text, message):
    result, _, _ = run(tmp_path, text)
    assert result.returncode == 2
    assert "scenario.yaml" in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_task_is_a_usage_error(hp, tmp_path):
    result, _, _ = run(tmp_path, MIX.format(url=hp.url), "--task", "nope")
    assert result.returncode == 2
    assert "no task 'nope'" in result.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("base_url: http://x\ntasks: " + "[" * 5000 + "]" * 5000 + "\n", ":2:71: nested deeper than 64 levels"),
    ("base_url: http://x\nseed: " + "7" * 5000 + "\ntasks: {}\n", ":2:7: a number of more than 100 digits"),
    ("a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
     ":6:36: more than 1000000 values once aliases are expanded"),
    ("base_url: http://x\ntasks:\n  t:\n    requests: [{path: /}]\n    load: {every: 0.01ms, for: 2s}\n",
     ":5: every: must be from 1ms to 10 years"),
])
def test_hostile_files_are_usage_errors_at_once(tmp_path, text, message):
    started = time.monotonic()
    result, _, _ = run(tmp_path, text)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert time.monotonic() - started < 20  # the alias bomb took 24 s and 2 GB


def test_a_binary_file_is_a_usage_error(tmp_path):
    path = tmp_path / "scenario.yaml"
    path.write_bytes(b"base_url: http://x\n\x89PNG\r\n\x1a\n\xff\xfe")
    result = subprocess.run([sys.executable, "-m", "fastmock", "run", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "scenario.yaml:2:1: not UTF-8 text (byte 0x89)" in result.stderr and "Traceback" not in result.stderr


def test_templates_reach_only_public_faker_providers(hp, tmp_path):
    text = f"base_url: {hp.url}\ntasks:\n  t:\n    requests: [{{path: /, json: {{a: '{{{{ faker.__class__ }}}}'}}}}]\n"
    result, records, _ = run(tmp_path, text)
    assert result.returncode == 2 and records == []  # refused before anything ran
    assert "scenario.yaml:4: json: {{ faker.__class__ }}: no names starting with '_'" in result.stderr


@pytest.mark.parametrize(("template", "message"), [
    ("{{ faker.nope }}", "no faker provider 'nope'"),
    ("{{ faker.pyint(1, 2, 3, 4) }}", "faker.pyint: too many positional arguments"),
    ("{{ faker.pyint(lo=1) }}", "faker.pyint: got an unexpected keyword argument 'lo'"),
    ("{{ price * 2 }}", "no value named 'price' (extracted by an earlier step: none yet)"),
    ("{{ open('/etc/passwd') }}", "only faker providers and int, float, str, round can be called"),
    ("{{ [1, 2] }}", "List is not allowed in a template"),
    ("{{ 1 + }}", "not an expression"),
])
def test_templates_are_checked_before_the_run(tmp_path, template, message):
    text = f"base_url: http://127.0.0.1:1\ntasks:\n  t:\n    requests:\n      - path: /x\n        body: \"{template}\"\n"
    result, records, _ = run(tmp_path, text)
    assert result.returncode == 2 and records == []
    assert "scenario.yaml:6: body: " in result.stderr and message in result.stderr, result.stderr


def test_templates_take_arguments_and_compute_from_extracted_values(tmp_path):
    capture = RecordingServer(lambda n: b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n"
                                        b"\r\n" + b'{"items": [{"id": "a7", "price": 12.5}]}')
    result, lines, _ = run(tmp_path, f"""\
base_url: {capture.url}
seed: 3
tasks:
  flow:
    steps:
      - {{name: prices, path: /prices, extract: {{item: json.items.0}}}}
      - name: book
        method: POST
        path: /reservations/{{{{ item.id + '-' + 'x' }}}}
        json: {{total: "{{{{ item.price * 2 + 1 }}}}", n: "{{{{ faker.pyint(1, 10) }}}}",
               day: "{{{{ faker.date_between('-1y', 'today') }}}}", half: "{{{{ item['price'] // 2 }}}}"}}
""")
    assert result.returncode == 0, result.stderr
    head, body = capture.requests[1]
    assert head.startswith("POST /reservations/a7-x ")
    sent = json.loads(body)
    assert sent["total"] == 26.0 and sent["half"] == 6.0 and 1 <= sent["n"] <= 10
    assert sent["day"][:2] == "20" and len(sent["day"]) == 10


TWO_TASKS = """\
base_url: {url}
{default}tasks:
  first:
    requests: [{{path: /first}}]
  second:
    requests: [{{path: /second}}]
"""


def test_which_task_runs(tmp_path):
    capture = RecordingServer()

    def paths(*args, default="", env=None):
        capture.requests.clear()
        result, _, _ = run(tmp_path, TWO_TASKS.format(url=capture.url, default=default), *args, env=env)
        return result, sorted(head.split()[1] for head, _ in capture.requests)

    result, sent = paths()
    assert result.returncode == 2 and sent == []
    assert "has several tasks (first, second): choose one with --task" in result.stderr
    assert paths(default="default_task: second\n")[1] == ["/second"]
    assert paths(default="default_task: second\n", env={"TASK": "first"})[1] == ["/first"]
    assert paths("--all")[1] == ["/first", "/second"]
    result, _ = paths("--all", "--task", "first")
    assert result.returncode == 2 and "'--all'" in result.stderr
    result, _ = paths(default="default_task: third\n")
    assert result.returncode == 2 and "scenario.yaml:2: default_task: no task 'third'" in result.stderr
    single = f"base_url: {capture.url}\ntasks:\n  only:\n    requests: [{{path: /only}}]\n"
    capture.requests.clear()
    assert run(tmp_path, single)[0].returncode == 0 and capture.requests[0][0].startswith("GET /only ")


def test_duration_seconds_caps_the_whole_task(hp, tmp_path):
    text = f"""\
base_url: {hp.url}
tasks:
  t:
    requests: [{{path: /health}}]
    load: {{stages: [{{rate: 20, duration: 1s}}, {{rate: 20, duration: 30s}}]}}
"""
    started = time.monotonic()
    result, lines, _ = run(tmp_path, text, env={"DURATION_SECONDS": "1.5"})
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20  # not the stages' 31 s
    assert 20 <= len(lines) <= 31  # all of the first stage, half a second of the second


def test_retries_back_off_honour_retry_after_and_are_counted(tmp_path):
    answers = [b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"]
    capture = RecordingServer(lambda n: answers[min(n, 2)])
    started = time.monotonic()
    result, lines, _ = run(tmp_path, f"""\
base_url: {capture.url}
retries: {{attempts: 2}}
tasks:
  t:
    retries: {{attempts: 3, backoff: 10ms, max_backoff: 5s}}
    requests: [{{name: r, path: /x}}]
""")
    assert result.returncode == 0, result.stderr
    assert len(capture.requests) == 3  # the task's policy (3 attempts) wins over the file's
    assert time.monotonic() - started >= 1  # Retry-After: 1
    retries = [line for line in lines if "retry" in line]
    assert [(line["retry"], line["reason"]) for line in retries] == [(1, "status 503"), (2, "status 429")]
    assert retries[1]["wait_ms"] >= 1000
    assert [line["status"] for line in lines if "status" in line] == [200]
    assert "t/r: 1 requests, 0 failed, 2 retries" in result.stderr


def test_retries_give_up_with_the_last_answer(tmp_path):
    capture = RecordingServer(lambda n: b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")
    text = (f"base_url: {capture.url}\ntasks:\n  t:\n    requests:\n      - path: /x\n"
            f"        retries: {{attempts: 2, backoff: 1ms, on: [5xx]}}\n")
    result, lines, _ = run(tmp_path, text)
    assert result.returncode == 1 and len(capture.requests) == 2
    assert lines[-1]["status"] == 500 and lines[-1]["ok"] is False


def test_thresholds_decide_the_exit_code(hp, tmp_path):
    text = MIX.format(url=hp.url).replace("for: 2s", "for: 200ms").replace("/status/204", "/status/500")
    passing = text.replace("tasks:", "thresholds: ['failed<60%', 'p99<10s', 'requests>=20']\ntasks:")
    result, _, _ = run(tmp_path, passing)
    assert result.returncode == 0, result.stderr  # failed checks, but under the threshold
    assert "threshold failed<60%: pass" in result.stderr
    result, _, _ = run(tmp_path, passing, "--threshold", "failed<1%")
    assert result.returncode == 1 and "threshold failed<1%: FAIL" in result.stderr
    result, _, _ = run(tmp_path, text.replace("tasks:", "thresholds: ['p99<soon']\ntasks:"))
    assert result.returncode == 2 and "thresholds: 'p99<soon': 'soon' is not a duration" in result.stderr


def test_debug_logs_add_headers_and_bodies(hp, tmp_path):
    text = f"base_url: {hp.url}\ntasks:\n  t:\n    requests: [{{method: POST, path: /echo, body: hello}}]\n"
    result, lines, _ = run(tmp_path, text, env={"LOG_LEVEL": "DEBUG"})
    assert result.returncode == 0, result.stderr
    assert lines[0]["request"]["body"] == "hello"
    assert lines[0]["response"]["headers"]["content-type"] == "application/json"
    assert '"method": "POST"' in lines[0]["response"]["body"] or "POST" in lines[0]["response"]["body"]


def test_a_repeating_load_ends_when_its_for_does(hp, tmp_path):
    text = f"base_url: {hp.url}\ntasks:\n  t:\n    requests: [{{path: /delay/50}}]\n    load: {{every: 1ms, for: 1s}}\n"
    started = time.monotonic()
    result, records, _ = run(tmp_path, text)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 10  # 1,000 iterations asked; none is started after the second is over
    assert 0 < len(records) <= 1000


EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "scenario.yaml")


@pytest.mark.parametrize(("task", "duration", "requests"), [
    (None, None, 1),                       # default_task: ping_once
    ("ping_loop", "2.5", 2),              # every 1s: at 0 s and 1 s (2.5 s hold two whole periods)
    ("price_reservation", "1.2", 6),       # a rate of 2 for 1.2 s: 3 flows of 2 steps
])
def test_the_shipped_examples_run_against_hp(hp, tmp_path, task, duration, requests):
    env = {"BASE_URL": hp.url, **({"TASK": task} if task else {}), **({"DURATION_SECONDS": duration} if duration else {})}
    with open(EXAMPLE) as example:
        result, lines, failed = run(tmp_path, example.read(), env=env)
    assert result.returncode == 0, result.stderr
    assert failed == [] and len(lines) == requests and all(line["ok"] for line in lines)
    assert "threshold failed<1%: pass" in result.stderr


def test_https_runs_time_handshakes_and_count_failures_by_reason(tmp_path):
    ca_dir = tmp_path / "ca"
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--grpc-port", "0", "--tls",
                      "--tls-ca-dir", str(ca_dir)) as server:
        url = server.url.replace("127.0.0.1", "localhost")
        scenario = (f"base_url: {url}\ntasks:\n  t:\n    requests:\n      - {{path: /health, check: {{status: 200}}}}\n"
                    f"    load: {{every: 10ms, for: 200ms}}\n")
        result, lines, _ = run(tmp_path, scenario, "--cacert", str(ca_dir / "ca.pem"))
        assert result.returncode == 0, result.stderr
        assert lines and all(line["ok"] and line["url"].startswith("https://") for line in lines)
        handshakes = re.search(r"fastmock: tls: (\d+) handshakes, p50 [0-9.]+ms p99 [0-9.]+ms; failed: none",
                               result.stderr)
        assert handshakes and 1 <= int(handshakes.group(1)) <= len(lines)  # a pool: connections are reused
        result, _, _ = run(tmp_path, scenario, "--cacert", str(ca_dir / "ca-key.pem"))  # a key, not a CA
        assert result.returncode == 2 and "'--cacert'" in result.stderr and "no CA certificate" in result.stderr
        result, lines, _ = run(tmp_path, scenario)  # the system's CAs do not know fastmock's
        assert result.returncode == 1 and lines and not any(line["ok"] for line in lines)
        assert "failed: unknown_ca " in result.stderr
        result, lines, _ = run(tmp_path, scenario, "--insecure")
        assert result.returncode == 0 and all(line["ok"] for line in lines)
