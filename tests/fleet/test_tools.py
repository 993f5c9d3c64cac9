"""The fleet's clients: ``fleet --detach``, ``ctl``, ``shell`` (through a pseudo-terminal)."""

import json
import os
import re
import socket
import ssl
import subprocess
import sys

import httpx
import pexpect
import pytest

from helpers import exited, free_base, free_port, refused, start_fleet


@pytest.fixture
def state_home(tmp_path):
    """A private $XDG_STATE_HOME, where --detach puts its PID and log files."""
    return {**os.environ, "XDG_STATE_HOME": str(tmp_path)}


def fastmock(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, "-m", "fastmock", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_detach_then_every_ctl_command_then_stop(tmp_path, state_home):
    base, mgmt = free_base(100), free_port()
    url = f"http://127.0.0.1:{mgmt}"
    started = fastmock("fleet", "100", "--base-port", str(base), "--mgmt-port", str(mgmt), "--detach", env=state_home)
    assert started.returncode == 0, started.stderr
    pid_file = tmp_path / "fastmock" / f"fleet-{mgmt}.pid"
    pid = int(pid_file.read_text())
    try:
        out = started.stdout
        assert f"pid         {pid}" in out
        assert f"management  {url}" in out
        assert f"ports       {base}-{base + 99} (100 alive, 0 failed to bind)" in out
        assert str(tmp_path / "fastmock" / f"fleet-{mgmt}.log") in out
        assert f"fastmock ctl --url {url} stats" in out
        assert httpx.get(f"http://127.0.0.1:{base + 99}/health").json()["port"] == base + 99

        again = fastmock("fleet", "10", "--base-port", str(base + 200), "--mgmt-port", str(mgmt), "--detach",
                         env=state_home)
        assert again.returncode == 1
        assert f"cannot use management port {mgmt}" in again.stderr and "already running" in again.stderr

        def ctl(*args):
            return fastmock("ctl", "--url", url, *args)

        stats = ctl("stats")
        assert stats.returncode == 0
        assert any(line.split() == ["current_alive", "100"] for line in stats.stdout.splitlines())
        assert any(line.split() == ["states.alive", "100"] for line in stats.stdout.splitlines())
        assert "{" not in stats.stdout  # a table, no dict repr
        assert json.loads(ctl("stats", "--json").stdout)["current_alive"] == 100

        table = ctl("endpoints", "3").stdout.splitlines()
        assert table[0].split() == ["PORT", "STATE", "REQUESTS", "URL"]
        assert table[1].split()[:2] == [str(base), "alive"]
        assert len(table) == 4
        entries = json.loads(ctl("endpoints", "2", "--state", "all", "--json").stdout)
        assert [entry["port"] for entry in entries] == [base, base + 1]

        assert ctl("kill", str(base + 5)).stdout.strip() == f"port {base + 5}: killed"
        assert refused(base + 5)
        assert ctl("endpoints", "--state", "killed").stdout.splitlines()[1].split()[0] == str(base + 5)
        twice = ctl("kill", str(base + 5))
        assert twice.returncode == 1
        assert twice.stderr.strip() == f"Error: port {base + 5} is killed, not alive (HTTP 409)"
        assert ctl("revive", str(base + 5)).stdout.strip() == f"port {base + 5}: alive"
        assert ctl("kill", "80").stderr.strip().startswith("Error: port 80 is not in the fleet")

        assert ctl("scale", "5").stdout.strip() == f"started 5 ports; the fleet has 105 ({base}-{base + 104})"
        assert ctl("scale", "-5").stdout.strip() == f"stopped 5 ports; the fleet has 100 ({base}-{base + 99})"

        status = ctl("status")
        assert status.returncode == 0
        assert f"fleet at {url} is up (pid {pid}" in status.stdout
        assert f"100 ports {base}-{base + 99}: 100 alive, 0 killed, 0 failed" in status.stdout

        logs = ctl("logs", "--tail", "3").stdout.splitlines()
        assert len(logs) == 3
        assert logs[-1] == f"fastmock: API: scaled down by 5; ports {base}-{base + 99}"

        stopped = ctl("stop")
        assert stopped.returncode == 0
        assert stopped.stdout.strip() == f"fleet stopped (pid {pid})"
        assert exited(pid)
        assert not pid_file.exists()
        assert refused(base) and refused(mgmt)
    finally:
        if not exited(pid):
            os.kill(pid, 9)


@pytest.mark.parametrize("command", [["stats"], ["status"], ["endpoints"], ["kill", "10000"], ["stop"]])
def test_ctl_without_a_fleet_says_so_in_one_line(command):
    url = f"http://127.0.0.1:{free_port()}"
    result = fastmock("ctl", "--url", url, *command)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    output = (result.stdout + result.stderr).strip()
    assert len(output.splitlines()) == 1
    assert f"{url}" in output and "Connection refused" in output


def test_ctl_shows_token_errors_and_json_status():
    base = free_base(5)
    with start_fleet(5, "--token", "t0k", base=base) as fleet:
        denied = fastmock("ctl", "--url", fleet.url, "kill", str(base))
        assert denied.returncode == 1
        assert denied.stderr.strip() == "Error: missing or wrong bearer token (HTTP 401)"
        allowed = fastmock("ctl", "--url", fleet.url, "--token", "t0k", "kill", str(base), "--json")
        assert json.loads(allowed.stdout) == {"port": base, "state": "killed"}
        status = json.loads(fastmock("ctl", "--url", fleet.url, "status", "--json").stdout)
        assert status["up"] is True and status["killed"] == 1


def test_a_tls_fleet_detaches(tmp_path, state_home):
    """--detach asks a port whether it serves: over https, whatever CA the fleet's certificates have."""
    base, mgmt = free_base(3), free_port()
    started = fastmock("fleet", "3", "--base-port", str(base), "--mgmt-port", str(mgmt), "--tls", "--tls-ca-dir",
                       tmp_path / "ca", "--detach", env=state_home)
    assert started.returncode == 0, started.stderr
    try:
        trusted = ssl.create_default_context(cafile=tmp_path / "ca" / "ca.pem")
        assert httpx.get(f"https://localhost:{base + 2}/health", verify=trusted).json()["port"] == base + 2
    finally:
        stopped = fastmock("ctl", "--url", f"http://127.0.0.1:{mgmt}", "stop")
    assert stopped.returncode == 0, stopped.stderr


def test_detach_that_cannot_listen_reports_it(state_home):
    result = fastmock("fleet", "5", "--base-port", str(free_base(5)), "--mgmt-port", "9", "--host", "192.0.2.1",
                      "--detach", env=state_home)
    assert result.returncode == 1
    assert "cannot use management port 9 on 192.0.2.1" in result.stderr


def test_detach_that_binds_no_port_stops_the_fleet_it_started(state_home):
    base = free_base(1)
    with socket.create_server(("127.0.0.1", base)):  # the fleet's only port is taken
        result = fastmock("fleet", "1", "--base-port", str(base), "--mgmt-port", str(free_port()), "--detach",
                          env=state_home)
    assert result.returncode == 1
    assert "started but does not answer: no port is alive; it was stopped" in result.stderr
    pid = int(re.search(r"the fleet \(pid (\d+)\)", result.stderr).group(1))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_shell_session(tmp_path, state_home):
    base, mgmt = free_base(50), free_port()
    shell = pexpect.spawn(sys.executable, ["-m", "fastmock", "shell", "--url", f"http://127.0.0.1:{mgmt}"],
                          env=state_home, encoding="utf-8", timeout=30, dimensions=(50, 200))
    prompt = r"\(fastmock\) "
    pid = None
    try:
        shell.expect(prompt)
        shell.sendline("status")
        shell.expect("no fleet answering")
        shell.expect(prompt)
        shell.sendline(f"start 50 --base-port {base} --max-port {base + 100}")
        shell.expect(rf"fleet started: pid (\d+), ports {base}-{base + 49} \(50 alive, 0 failed\)")
        pid = int(shell.match.group(1))
        shell.expect(prompt)
        for line, expected in [
            ("stats", r"current_alive\s+50"),
            ("endpoints 2", rf"PORT\s+STATE\s+REQUESTS\s+URL\r\n{base}\s+alive"),
            (f"kill {base + 1}", f"port {base + 1}: killed"),
            (f"kill {base + 1}", rf"error: port {base + 1} is killed, not alive \(HTTP 409\)"),
            (f"revive {base + 1}", f"port {base + 1}: alive"),
            ("scale 3", "started 3 ports; the fleet has 53"),
            ("status", r"53 ports .*: 53 alive, 0 killed, 0 failed"),
            ("logs --tail 2", "API: scaled up by 3"),
            (f"fault {base + 2} 503", rf"1 port\(s\) {base + 2}: 503 \(degraded\)"),
            ("status", r"53 ports .*: 52 alive, 0 killed, 0 failed, 1 degraded"),
            ("events --since 0", rf"fault\s+1\s+{base + 2}"),
            ("clear", "cleared the faults of 1 port"),
            ("kill", r"Missing argument 'PORT'.*\r\nUsage: kill \[OPTIONS\] PORT"),  # ctl's command, ctl's usage
            ("kill notaport", r"Invalid value for 'PORT': 'notaport' is not a valid integer range"),
            ("stats now", r"Got unexpected extra argument \(now\)"),
            ("help logs", r"--tail INTEGER RANGE\s+How many lines.\s+\[default: 100; x>=0\]"),
            ("frobnicate 1", r"unknown command: frobnicate \(type help for the list\)"),
        ]:
            shell.sendline(line)
            shell.expect(expected)
            shell.expect(prompt)
        shell.sendline("help")
        shell.expect(prompt)
        listed = shell.before.split("Documented commands")[1].split()
        assert {"start", "stop_all", "stats", "endpoints", "kill", "revive", "scale", "status", "logs", "fault",
                "clear", "events", "chaos", "stop", "help", "quit", "exit"} <= set(listed)
        assert "EOF" not in shell.before
        shell.send("stop_\t")  # tab completion
        shell.expect("stop_all")
        shell.sendline("")
        shell.expect(rf"fleet stopped \(pid {pid}\)")
        shell.expect(prompt)
        assert refused(base)
        shell.sendeof()
        shell.expect(pexpect.EOF)
        shell.close()
        assert shell.exitstatus == 0
        assert "stats now" in (tmp_path / "fastmock" / "shell_history").read_text()
    finally:
        if shell.isalive():
            shell.terminate(force=True)
        if pid is not None and not exited(pid):  # the fleet the shell started
            os.kill(pid, 9)
