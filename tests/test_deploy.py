"""deploy/k8s: every manifest valid against the Kubernetes schemas (offline), and agreeing with the CLI."""

import os
import subprocess
import sys
from pathlib import Path

import click
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from fastmock import __version__
from fastmock.cli import cli
from fastmock.scenario import load_scenario

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = sorted((ROOT / "deploy" / "k8s").glob("*.yaml"))
KUBERNETES_VERSION = "1.30"  # sysctl net.ipv4.ip_local_reserved_ports is safe from 1.27 on


def documents():
    return [(path.name, doc) for path in MANIFESTS for doc in YAML(typ="safe").load_all(path.read_text()) if doc]


def by_kind(kind):
    return {doc["metadata"]["name"]: doc for _, doc in documents() if doc["kind"] == kind}


def pod_spec(workload):
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory):
    """The ConfigMap's scenario, where a test can read it (the pods mount it at /etc/fastmock)."""
    path = tmp_path_factory.mktemp("configmap") / "scenario.yaml"
    path.write_text(by_kind("ConfigMap")["fastmock-scenario"]["data"]["scenario.yaml"])
    return path


def parse(container, scenario_file=None):
    """The container's fastmock command line parsed by the real CLI: a usage error fails the test."""
    name, *args = container["args"]
    args = [str(scenario_file) if arg == "/etc/fastmock/scenario.yaml" else arg for arg in args]
    context = cli.commands[name].make_context(
        name, [arg.replace("$(JOB_COMPLETION_INDEX)", "0") for arg in args],
        auto_envvar_prefix=f"FASTMOCK_{name.upper()}")
    return context.params


@pytest.mark.parametrize("name,doc", documents(), ids=lambda value: value if isinstance(value, str) else "")
def test_every_manifest_is_valid(name, doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_an_invalid_manifest_is_caught():
    deployment = by_kind("Deployment")["fastmock-hp"]
    broken = {**deployment, "spec": {**deployment["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_container_runs_this_versions_image_with_a_valid_command(scenario_file):
    workloads = [*by_kind("Deployment").values(), *by_kind("CronJob").values(), *by_kind("Job").values(),
                 *by_kind("StatefulSet").values()]
    assert len(workloads) == 6
    for workload in workloads:
        for container in pod_spec(workload)["containers"]:
            assert container["image"] == f"fastmock:{__version__}"
            parse(container, scenario_file)
        assert pod_spec(workload)["securityContext"]["runAsNonRoot"] is True


def container_port(container, name_or_number):
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    return ports.get(name_or_number, name_or_number)


def test_hp_probes_ports_workers_and_grace_period_agree_with_its_options():
    spec = pod_spec(by_kind("Deployment")["fastmock-hp"])
    container = spec["containers"][0]
    options = parse(container)
    for probe in (container["readinessProbe"], container["livenessProbe"]):
        assert probe["httpGet"]["path"] == "/health"
        assert container_port(container, probe["httpGet"]["port"]) == options["port"]
    assert container_port(container, "grpc") == options["grpc_port"]
    assert spec["terminationGracePeriodSeconds"] > options["shutdown_timeout"]
    workers = next(env for env in container["env"] if env["name"] == "FASTMOCK_HP_WORKERS")
    assert workers["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    os.environ["FASTMOCK_HP_WORKERS"] = "2"  # what the kubelet puts there for a limit of 2 CPUs
    try:
        assert parse(container)["workers"] == 2
    finally:
        del os.environ["FASTMOCK_HP_WORKERS"]
    service = by_kind("Service")["fastmock-hp"]
    assert {port["targetPort"] for port in service["spec"]["ports"]} <= {p["name"] for p in container["ports"]}


def test_fleet_management_port_probes_and_reserved_ports_agree_with_its_options():
    spec = pod_spec(by_kind("Deployment")["fastmock-fleet"])
    container = spec["containers"][0]
    options = parse(container)
    assert container_port(container, container["readinessProbe"]["httpGet"]["port"]) == options["mgmt_port"]
    reserved = {s["name"]: s["value"] for s in spec["securityContext"]["sysctls"]}["net.ipv4.ip_local_reserved_ports"]
    assert reserved == f"{options['base_port']}-{options['base_port'] + options['count'] - 1}"
    assert options["max_port"] >= options["base_port"] + options["count"] - 1
    token = next(env for env in container["env"] if env["name"] == "FASTMOCK_FLEET_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] in by_kind("Secret")


def test_the_fleet_statefulset_peers_through_its_headless_service():
    pods = by_kind("StatefulSet")["fastmock-fleet-pods"]
    container = pod_spec(pods)["containers"][0]
    options = parse(container)
    headless = by_kind("Service")[pods["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None" and options["peers"] == pods["spec"]["serviceName"]
    assert headless["spec"]["selector"] == pods["spec"]["selector"]["matchLabels"]
    assert options["advertise_host"] == "$(POD_IP)" and options["seed"] is not None
    env = {env["name"]: env for env in container["env"]}
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert container_port(container, container["readinessProbe"]["httpGet"]["port"]) == options["mgmt_port"]
    reserved = {s["name"]: s["value"] for s in pod_spec(pods)["securityContext"]["sysctls"]}
    assert reserved["net.ipv4.ip_local_reserved_ports"] == f"{options['base_port']}-{options['max_port']}"
    assert env["FASTMOCK_FLEET_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] in by_kind("Secret")


def test_load_jobs_run_the_configmap_scenario_with_the_token_and_their_shards(scenario_file):
    scenario = load_scenario(str(scenario_file))  # a schema error names the line
    secret = by_kind("Secret")["fastmock-api-token"]
    assert "API_TOKEN" in secret["stringData"]
    for workload in (by_kind("CronJob")["fastmock-traffic"], by_kind("Job")["fastmock-ramp"]):
        container = pod_spec(workload)["containers"][0]
        options = parse(container, scenario_file)
        assert options["task"] in scenario.tasks
        assert container["envFrom"] == [{"secretRef": {"name": "fastmock-api-token"}}]
        mount = container["volumeMounts"][0]["mountPath"]
        assert container["args"][1] == f"{mount}/scenario.yaml"
    job = by_kind("Job")["fastmock-ramp"]
    args = pod_spec(job)["containers"][0]["args"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert args[args.index("--shard") + 1] == f"$(JOB_COMPLETION_INDEX)/{job['spec']['completions']}"


def test_the_load_shards_print_summaries_that_report_merges():
    job = by_kind("Job")["fastmock-load-shards"]
    options = parse(pod_spec(job)["containers"][0])
    assert job["spec"]["completionMode"] == "Indexed" and options["shard"] == (0, job["spec"]["completions"])
    assert options["summary_json"] == "-"  # the log's last line, for: kubectl logs … | fastmock report -


def test_the_cronjobs_scenario_runs_against_a_real_hp(hp, scenario_file):
    args = pod_spec(by_kind("CronJob")["fastmock-traffic"])["containers"][0]["args"]
    result = subprocess.run(
        [sys.executable, "-m", "fastmock", *args[:1], str(scenario_file), *args[2:]], capture_output=True,
        text=True, timeout=60, env={**os.environ, "BASE_URL": hp.url, "DURATION_SECONDS": "2", "API_TOKEN": "t"})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "fastmock: browse/" in result.stderr and "ok: 0 failed checks or requests" in result.stderr


def test_a_stale_command_line_would_fail_the_check():
    with pytest.raises(click.UsageError):
        parse({"args": ["hp", "--port", "8080", "--no-such-option"]})
