"""fastmock score against real monitors: Debian's Prometheus probing a --tls fleet's ports through the blackbox
exporter, an alert rule, and Alertmanager sending its webhook to ``fastmock score --listen``."""

import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import httpx
import pytest

from helpers import AUTH, TOKEN, free_port, start_fleet, wait_for

BINARIES = ("prometheus", "prometheus-alertmanager", "prometheus-blackbox-exporter")
EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "monitor-scoring"  # the configs this test runs
FOR_S, SCRAPE_S = 2, 1  # (as the example sets them) the rule's for: and the probe and evaluation interval
OUTAGE_S = 7            # the planted outages the rule can see
GROUP_WAIT_S = 1        # Alertmanager's wait before it sends a new alert: the notify latency's part
TOLERANCE_S = 1.5       # the notifier's and the test's own delays on a loaded 2-core machine


@pytest.fixture(scope="module")
def monitors_installed():
    if not all(map(shutil.which, BINARIES)) and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus",
                        "prometheus-alertmanager", "prometheus-blackbox-exporter"], capture_output=True, timeout=900,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not all(map(shutil.which, BINARIES)):
        pytest.skip("Debian's prometheus, prometheus-alertmanager and prometheus-blackbox-exporter are not "
                    "installed and could not be (apt-get needs root and the package registry)")


class Started:
    """Processes this test starts, stopped (by PID) at the end."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.processes = []

    def run(self, name, *args, stdout=None):
        log = open(self.tmp_path / f"{name}.log", "wb")
        self.processes.append(subprocess.Popen([*args], stdout=stdout or log, stderr=log))
        return self.processes[-1]

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_the_score_matches_what_prometheus_and_alertmanager_could_see(monitors_installed, tmp_path):
    blackbox_port, prometheus_port, alertmanager_port, listen = (free_port() for _ in range(4))
    started = Started(tmp_path)
    with start_fleet(8, "--token", TOKEN, "--tls", "--tls-ca-dir", tmp_path / "ca") as fleet:
        api = httpx.Client(base_url=fleet.url, headers=AUTH, timeout=10)
        ports = [entry["port"] for entry in api.get("/endpoints", params={"format": "json"}).json()]
        renamed = {"127.0.0.1:9115": f"127.0.0.1:{blackbox_port}", "127.0.0.1:9093": f"127.0.0.1:{alertmanager_port}",
                   "127.0.0.1:9095": f"127.0.0.1:{listen}", "/tmp/fastmock-ca": str(tmp_path / "ca"),
                   **{str(10000 + index): str(port) for index, port in enumerate(ports)}}
        for name in ("blackbox.yml", "alertmanager.yml", "rules.yml", "prometheus.yml", "outages.yaml"):
            text = (EXAMPLE / name).read_text()  # the shipped example, on this test's ports and CA
            (tmp_path / name).write_text(re.sub("|".join(map(re.escape, renamed)), lambda m: renamed[m[0]], text))
        try:
            started.run("blackbox", "prometheus-blackbox-exporter", f"--config.file={tmp_path / 'blackbox.yml'}",
                        f"--web.listen-address=127.0.0.1:{blackbox_port}")
            started.run("alertmanager", "prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
                        f"--web.listen-address=127.0.0.1:{alertmanager_port}", "--cluster.listen-address=",
                        f"--storage.path={tmp_path / 'am'}")
            started.run("prometheus", "prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                        f"--web.listen-address=127.0.0.1:{prometheus_port}", f"--storage.tsdb.path={tmp_path / 'tsdb'}")
            scorer = started.run("score", sys.executable, "-m", "fastmock", "score", "--fleet", fleet.url,
                                 "--listen", f"127.0.0.1:{listen}", "--json", stdout=subprocess.PIPE)
            prometheus = f"http://127.0.0.1:{prometheus_port}"

            def probing_every_port():
                try:
                    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": "probe_success == 1"}).json()
                except (httpx.HTTPError, ValueError):  # not up yet, or "Service Unavailable" while it starts
                    return False
                return len(answer["data"]["result"]) == len(ports)

            wait_for(probing_every_port, timeout=60)
            # the seeded schedule: one long kill, two blips shorter than the rule's for:, one long 503 fault, one
            # long expired certificate
            api.post("/chaos", content=(tmp_path / "outages.yaml").read_bytes()).raise_for_status()
            wait_for(lambda: not api.get("/chaos").json()["active"], timeout=OUTAGE_S + 10)

            def no_alert_active():
                answer = httpx.get(f"http://127.0.0.1:{alertmanager_port}/api/v2/alerts").json()
                return not [alert for alert in answer if alert["status"]["state"] == "active"]

            wait_for(no_alert_active, timeout=30)
            time.sleep(2 * SCRAPE_S)  # the resolved notices go out after the alerts end
            scorer.send_signal(signal.SIGINT)
            report = json.loads(scorer.communicate(timeout=30)[0])
            planted = {}  # rule name -> the ports it hit
            for event in map(json.loads, api.get("/events").text.splitlines()):
                if event["action"] in ("kill", "fault", "tls"):
                    planted.setdefault(event["name"], []).extend(event["ports"])
            assert [len(planted[name]) for name in ("long-kill", "blip", "errors", "expired")] == [1, 2, 1, 1], planted
            long_outages = planted["long-kill"] + planted["errors"] + planted["expired"]
            rows = {}
            for row in report["incidents_list"]:
                rows.setdefault(int(row["endpoint"]), []).append(row)
            for port in long_outages:
                [row] = rows[port]
                assert row["detected"], (port, report)
                assert FOR_S <= row["detect_s"] <= FOR_S + 2 * SCRAPE_S + TOLERANCE_S, row
                assert GROUP_WAIT_S <= row["notify_s"] - row["detect_s"] <= GROUP_WAIT_S + TOLERANCE_S, row
                assert row["recover_s"] is not None, (row, report)
                assert 0 <= row["recover_s"] <= 2 * SCRAPE_S + TOLERANCE_S, row
            blips = [row for port in set(planted["blip"]) for row in rows[port]]
            assert len(blips) == 2 and not any(row["detected"] for row in blips), blips
            assert (report["incidents"], report["missed"], report["false_alerts"], report["unknown"]) == (5, 2, 0, 0)
            assert sorted(report["by_kind"]) == ["degraded", "killed", "tls"] and report["by_kind"]["tls"]["recall"] == 1

            def polled(*args):
                result = subprocess.run([sys.executable, "-m", "fastmock", "score", "--fleet", fleet.url,
                                         "--prometheus", prometheus, "--json", *args],
                                        capture_output=True, text=True, timeout=60)
                assert result.returncode == 0, result.stderr
                return {int(row["endpoint"]): row for row in json.loads(result.stdout)["incidents_list"]
                        if row["detected"]}

            every_second, fine = polled(), polled("--step", "5ms")  # 5 ms: more steps than one query may ask
            for port in long_outages:  # probe_success == 0 shows within a probe
                for sampled in (every_second[port], fine[port]):  # (a probe may also have caught a blip)
                    assert 0 <= sampled["detect_s"] <= SCRAPE_S + TOLERANCE_S, sampled
                    assert 0 <= sampled["recover_s"] <= SCRAPE_S + TOLERANCE_S, sampled
            firing = polled("--query", 'ALERTS{alertstate="firing"}')  # the rule's own series: after its for:
            assert set(firing) == set(long_outages), firing
            for port in long_outages:
                assert FOR_S <= firing[port]["detect_s"] <= FOR_S + 2 * SCRAPE_S + TOLERANCE_S, firing[port]
            empty = subprocess.run([sys.executable, "-m", "fastmock", "score", "--fleet", fleet.url, "--prometheus",
                                    prometheus, "--query", 'probe_success{job="none"} == 0'],
                                   capture_output=True, text=True, timeout=60)
            assert empty.returncode == 2 and "has no series" in empty.stderr, empty.stderr
        finally:
            started.stop()
        fleet.stop()
