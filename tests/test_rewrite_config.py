"""``fastmock rewrite-config``: the real CLI on real files; outputs re-parsed to check what they mean."""

import json
import os
import stat
import subprocess
import sys

import pytest
from ruamel.yaml import YAML

from helpers import free_base, start_fleet

CONFIG = """\
# uptime checks  (this comment must survive)
defaults: &defaults
  interval: 30s   # every half minute
checks:
  - name: api
    url: http://old.example/health
    <<: *defaults
  - name: db
    host: 'db.internal:5432'
    tags: [a, b]
    nested:
      deeper:
        - url: "https://x.example"
        - {url: flow.example, weight: 2}

empty:
  url:
"""

EXPECTED = """\
# uptime checks  (this comment must survive)
defaults: &defaults
  interval: 30s   # every half minute
checks:
  - name: api
    url: http://127.0.0.1:10000/health
    <<: *defaults
  - name: db
    host: '127.0.0.1:10001'
    tags: [a, b]
    nested:
      deeper:
        - url: "http://127.0.0.1:10002/health"
        - {url: http://127.0.0.1:10003/health, weight: 2}

empty:
  url: http://127.0.0.1:10004/health
"""


def endpoints_file(tmp_path, count, first=10000):
    path = tmp_path / "endpoints.txt"
    path.write_text("# from a fleet\n" + "".join(f"http://127.0.0.1:{port}/health\n"
                                                  for port in range(first, first + count)))
    return path


def rewrite(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "fastmock", "rewrite-config", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=60)


def test_every_field_at_any_depth_and_nothing_else_changes(tmp_path):
    (tmp_path / "in.yaml").write_text(CONFIG)
    result = rewrite(tmp_path / "in.yaml", tmp_path / "out.yaml", "--endpoints-file", endpoints_file(tmp_path, 5))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.yaml").read_text() == EXPECTED
    assert "5 fields replaced" in result.stderr
    data = YAML(typ="safe").load(EXPECTED)
    assert data["checks"][1]["nested"]["deeper"][1] == {"url": "http://127.0.0.1:10003/health", "weight": 2}
    assert data["checks"][0]["interval"] == "30s"


def test_too_few_endpoints_is_an_error_naming_both_counts_and_writes_nothing(tmp_path):
    (tmp_path / "in.yaml").write_text(CONFIG)
    result = rewrite(tmp_path / "in.yaml", tmp_path / "out.yaml", "--endpoints-file", endpoints_file(tmp_path, 2))
    assert result.returncode == 1
    assert "the document has 5 url/host fields but there are only 2 endpoints" in result.stderr
    assert not (tmp_path / "out.yaml").exists()


def test_cycle_reuses_the_endpoints(tmp_path):
    (tmp_path / "in.yaml").write_text(CONFIG)
    result = rewrite(tmp_path / "in.yaml", tmp_path / "out.yaml", "--endpoints-file", endpoints_file(tmp_path, 2),
                     "--cycle")
    assert result.returncode == 0
    data = YAML(typ="safe").load((tmp_path / "out.yaml").read_text())
    assert data["checks"][0]["url"] == "http://127.0.0.1:10000/health"
    assert data["checks"][1]["host"] == "127.0.0.1:10001"
    assert data["checks"][1]["nested"]["deeper"][0]["url"] == "http://127.0.0.1:10000/health"
    assert data["empty"]["url"] == "http://127.0.0.1:10000/health"


@pytest.mark.parametrize(("text", "line", "column"), [
    ("checks:\n  - url: a\n- url: b\n", 3, 1),          # a mapping and a sequence at the top level
    ("a: 1\n- b\n", 2, 1),
    ("a: [1, 2\nb: 3\n", 2, 2),                       # unclosed flow sequence
    ("a:\n  b: 1\n c: 2\n", 3, 2),                     # bad indentation
    ('{"url": "x"\n', 2, 1),                           # JSON with no closing brace
    ("url: a\nurl: b\n", 2, 1),                        # a duplicate key
])
def test_invalid_yaml_names_line_and_column_exits_2_and_keeps_out(tmp_path, text, line, column):
    (tmp_path / "in.yaml").write_text(text)
    (tmp_path / "out.yaml").write_text("untouched\n")
    result = rewrite(tmp_path / "in.yaml", tmp_path / "out.yaml", "--endpoints-file", endpoints_file(tmp_path, 5))
    assert result.returncode == 2
    assert f"line {line}, column {column}:" in result.stderr
    assert "Invalid value for 'IN'" in result.stderr
    assert (tmp_path / "out.yaml").read_text() == "untouched\n"
    assert list(tmp_path.glob(".fastmock-*")) == []


def test_stdin_to_stdout_and_json_stays_json(tmp_path):
    document = '{\n  "targets": [\n    {"url": "http://a", "host": "a:1"},\n    {"url": "http://b"}\n  ]\n}\n'
    result = rewrite("-", "-", "--endpoints-file", endpoints_file(tmp_path, 3), stdin=document)
    assert result.returncode == 0
    assert result.stdout == ('{\n  "targets": [\n    {"url": "http://127.0.0.1:10000/health", "host": "127.0.0.1:10001"},'
                             '\n    {"url": "http://127.0.0.1:10002/health"}\n  ]\n}\n')
    assert json.loads(result.stdout)["targets"][1]["url"] == "http://127.0.0.1:10002/health"


@pytest.mark.parametrize(("host_format", "host"), [("hostport", "127.0.0.1:10001"),
                                                   ("url", "http://127.0.0.1:10001/health")])
def test_host_format(tmp_path, host_format, host):
    document = '{"a": {"url": "http://a"}, "b": {"host": "b:1"}}\n'
    result = rewrite("-", "-", "--endpoints-file", endpoints_file(tmp_path, 2), "--host-format", host_format,
                     stdin=document)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"a": {"url": "http://127.0.0.1:10000/health"}, "b": {"host": host}}


def test_dry_run_prints_a_unified_diff_and_writes_nothing(tmp_path):
    (tmp_path / "in.yaml").write_text(CONFIG)
    result = rewrite(tmp_path / "in.yaml", tmp_path / "out.yaml", "--endpoints-file", endpoints_file(tmp_path, 5),
                     "--dry-run")
    assert result.returncode == 0
    assert result.stdout.startswith(f"--- {tmp_path / 'in.yaml'}\n+++ {tmp_path / 'out.yaml'}\n@@ ")
    assert "-    url: http://old.example/health\n+    url: http://127.0.0.1:10000/health\n" in result.stdout
    assert " # uptime checks" not in result.stdout.split("@@")[0]
    assert not (tmp_path / "out.yaml").exists()


def test_custom_fields(tmp_path):
    (tmp_path / "in.yaml").write_text("a:\n  target: x   # here\n  url: keep\n")
    result = rewrite(tmp_path / "in.yaml", "-", "--field", "target", "--endpoints-file", endpoints_file(tmp_path, 1))
    assert result.stdout == "a:\n  target: http://127.0.0.1:10000/health   # here\n  url: keep\n"


def test_endpoints_from_a_running_fleet(tmp_path):
    base = free_base(3)
    (tmp_path / "in.yaml").write_text("- url: a\n- url: b\n- url: c\n")
    with start_fleet(3, base=base) as fleet:
        result = rewrite(tmp_path / "in.yaml", tmp_path / "out.yaml", "--endpoints-url",
                         f"{fleet.url}/endpoints?limit=10")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.yaml").read_text() == "".join(f"- url: http://127.0.0.1:{base + i}/health\n"
                                                            for i in range(3))


def test_unreachable_endpoints_url_is_one_clear_line(tmp_path):
    (tmp_path / "in.yaml").write_text("url: a\n")
    result = rewrite(tmp_path / "in.yaml", tmp_path / "out.yaml", "--endpoints-url", "http://127.0.0.1:9/endpoints")
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: cannot read endpoints from http://127.0.0.1:9/endpoints")
    assert not (tmp_path / "out.yaml").exists()


@pytest.mark.parametrize(("target", "message"), [
    ("missing/out.yaml", "is not a writable directory"),
    ("/proc/out.yaml", "cannot write /proc/out.yaml"),
])
def test_an_out_that_cannot_be_written_is_one_clear_line_and_leaves_nothing(tmp_path, target, message):
    (tmp_path / "in.yaml").write_text(CONFIG)
    target = tmp_path / target if not target.startswith("/") else target
    result = rewrite(tmp_path / "in.yaml", target, "--endpoints-file", endpoints_file(tmp_path, 5))
    assert result.returncode in (1, 2) and message in result.stderr and "Traceback" not in result.stderr
    assert list(tmp_path.rglob(".fastmock-*")) == [] and not os.path.exists(target)


def test_in_that_is_not_utf8_is_a_usage_error(tmp_path):
    (tmp_path / "in.yaml").write_bytes(b"url: a\nname: \xff\n")
    result = rewrite(tmp_path / "in.yaml", "-", "--endpoints-file", endpoints_file(tmp_path, 5))
    assert result.returncode == 2
    assert "in.yaml:2:7: not UTF-8 text (byte 0xff)" in result.stderr and "Invalid value for 'IN'" in result.stderr


@pytest.mark.parametrize("content", ['[1, 2]', '[{"port": 1}]', '{"url": "x"}', "[" * 100000])
def test_an_endpoints_file_that_is_not_a_list_of_urls_is_one_clear_line(tmp_path, content):
    (tmp_path / "in.yaml").write_text("url: a\n")
    (tmp_path / "endpoints.json").write_text(content)
    result = rewrite(tmp_path / "in.yaml", "-", "--endpoints-file", tmp_path / "endpoints.json")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "endpoint" in result.stderr


def test_deep_nesting_names_where(tmp_path):
    (tmp_path / "in.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    result = rewrite(tmp_path / "in.yaml", "-", "--endpoints-file", endpoints_file(tmp_path, 5))
    assert result.returncode == 2 and "in.yaml: line 1, column " in result.stderr and "nesting" in result.stderr


def test_rewriting_in_place_keeps_the_files_mode(tmp_path):
    path = tmp_path / "in.yaml"
    path.write_text("url: a\n")
    path.chmod(0o644)
    assert rewrite(path, path, "--endpoints-file", endpoints_file(tmp_path, 1)).returncode == 0
    assert path.read_text() == "url: http://127.0.0.1:10000/health\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_endpoints_url_must_be_http(tmp_path):
    (tmp_path / "in.yaml").write_text("url: a\n")
    result = rewrite(tmp_path / "in.yaml", "-", "--endpoints-url", "file:///etc/passwd")
    assert result.returncode == 2 and "Invalid value for '--endpoints-url'" in result.stderr


def test_a_hundred_thousand_fields(tmp_path):
    (tmp_path / "in.yaml").write_text("".join(f"- url: old{i}\n  name: n{i}\n" for i in range(100000)))
    result = rewrite(tmp_path / "in.yaml", tmp_path / "out.yaml", "--endpoints-file",
                     endpoints_file(tmp_path, 100000))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out.yaml").read_text().splitlines()
    assert lines[0] == "- url: http://127.0.0.1:10000/health" and lines[-2] == "- url: http://127.0.0.1:109999/health"
