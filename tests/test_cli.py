"""The click CLI: help, versions, and usage errors that name the flag (exit 2)."""

import subprocess
import sys

import httpx
import pytest
from click.testing import CliRunner

from fastmock.cli import cli
from helpers import start_server


@pytest.fixture
def runner():
    return CliRunner()


def test_help_lists_hp(runner):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0 and "hp" in result.output


def test_hp_help_documents_every_option(runner):
    result = runner.invoke(cli, ["hp", "--help"])
    assert result.exit_code == 0
    for option in ("--host", "--port", "--workers", "--buffer-size", "--idle-timeout", "--header-timeout",
                   "--max-connections", "--shutdown-timeout", "--max-delay", "--seed", "--access-log",
                   "--mem-interval", "--max-target-size", "--max-header-size", "--max-headers"):
        assert option in result.output


def test_version_says_whether_the_core_is_compiled(runner):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.startswith("fastmock 0.") and "compiled core: yes" in result.output


@pytest.mark.parametrize("args, message", [
    (["--port", "70000"], "Invalid value for '--port': 70000 is not in the range 0<=x<=65535."),
    (["--port", "http"], "Invalid value for '--port': 'http' is not a valid integer range."),
    (["--workers", "0"], "Invalid value for '--workers': '0' is out of range (>= 1, or 'auto')"),
    (["--workers", "many"], "Invalid value for '--workers': 'many' is not a number or 'auto'"),
    (["--buffer-size", "32"], "Invalid value for '--buffer-size': 32 is not in the range 64<=x<=4096."),
    (["--idle-timeout", "soon"], "Invalid value for '--idle-timeout': invalid duration 'soon'"),
    (["--header-timeout", "0"], "Invalid value for '--header-timeout': '0' is out of range"),
    (["--max-connections", "0"], "Invalid value for '--max-connections': 0 is not in the range x>=1."),
    (["--max-delay", "5 minutes"], "Invalid value for '--max-delay': invalid duration '5 minutes'"),
    (["--max-target-size", "1Q"], "Invalid value for '--max-target-size': invalid size '1Q'"),
    (["--mem-interval", "-1"], "Invalid value for '--mem-interval': invalid duration '-1'"),
    (["--no-such-flag"], "No such option '--no-such-flag'"),
    (["--request-log", "/nonexistent/x"], "Invalid value for '--request-log': /nonexistent is not a writable"),
    (["--addr", "8080"], "Invalid value for '--addr' / '-addr': '8080' is not HOST:PORT"),
    (["-addr=:99999"], "Invalid value for '--addr' / '-addr': ':99999' is not HOST:PORT"),
    (["--addr", ":8080", "--port", "9000"], "Invalid value for '--addr': give --addr or --host/--port, not both"),
    (["--quiet=maybe"], "Invalid value for '--quiet': 'maybe' is not a valid boolean"),
    (["--quiet", "--access-log"], "Invalid value for '--quiet': --quiet turns the access log off"),
])
def test_bad_flags_are_usage_errors_naming_the_flag(runner, args, message):
    result = runner.invoke(cli, ["hp", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_options_come_from_the_environment(runner):
    result = runner.invoke(cli, ["hp"], env={"FASTMOCK_HP_PORT": "99999"})
    assert result.exit_code == 2 and "'--port'" in result.output


def test_subprocess_smoke_serves_a_request():
    with start_server("hp", "--port", "0", "--mem-interval", "0") as server:
        assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
        assert server.stop() == 0


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "fastmock", "--version"], capture_output=True, text=True,
                            check=True)
    assert "fastmock" in result.stdout


@pytest.mark.parametrize(("content", "message"), [
    (b"rules:\n  - action: kill\n\x89PNG\xff", "chaos.yaml:3:1: not UTF-8 text (byte 0x89)"),
    (b"rules: " + b"[" * 5000 + b"]" * 5000, "nested deeper than 64 levels"),
])
def test_fleet_chaos_file_errors_are_usage_errors(runner, tmp_path, content, message):
    (tmp_path / "chaos.yaml").write_bytes(content)
    result = runner.invoke(cli, ["fleet", "2", "--chaos", str(tmp_path / "chaos.yaml")])
    assert result.exit_code == 2
    assert "Invalid value for '--chaos'" in result.output and message in result.output


def test_the_modes_load_no_click():
    # every worker imports the modes; click is for the command line only
    code = ("import sys, fastmock.hp, fastmock.proxy, fastmock.load, fastmock.serve, fastmock.fleet.worker; "
            "print('click' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
