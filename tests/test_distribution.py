"""The package as users get it: the Dockerfile's own build and install steps, run here in temporary venvs.

The build stage's commands make the sdist and, from it, the wheel; the runtime stage's pip command installs
that wheel into a fresh venv with no source tree on the path; then the CLI, one real request, the
HEALTHCHECK command and cibuildwheel's fast test subset run against the installed package.
"""

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tomllib
import venv
import zipfile
from pathlib import Path

import httpx
import pytest

from fastmock.cli import IMAGE_SCENARIO, cli

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def dockerfile_stages():
    """[(instructions)] per FROM: each instruction as (KEYWORD, argument text), continuations joined."""
    text = re.sub(r"\\\n\s*", "", (ROOT / "Dockerfile").read_text())
    stages = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, argument = line.strip().partition(" ")
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, argument.strip()))
    return stages


def pip_and_build_commands(stage, wheels):
    """The parts of a stage's RUN commands that use pip or build, with /wheels moved to ``wheels``."""
    commands = []
    for keyword, argument in stage:
        if keyword == "RUN":
            commands += [part.strip().replace("/wheels", str(wheels)) for part in argument.split("&&")
                         if "pip install" in part or "-m build" in part]
    return commands


def dockerignored(relative: str, patterns) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(relative, p) or fnmatch.fnmatch(relative.split("/")[0], p)
               or (p.startswith("**/") and fnmatch.fnmatch(name, p[3:])) for p in patterns)


def make_venv(path: Path) -> dict:
    venv.create(path, with_pip=True)
    env = {**os.environ, "PATH": f"{path / 'bin'}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(path)}
    env.pop("PYTHONPATH", None)
    return env


def run_in(env, command, cwd, timeout=600):
    result = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The Dockerfile's build stage: its COPY sources (minus .dockerignore) and its pip/build commands."""
    base = tmp_path_factory.mktemp("dist")
    context, wheels = base / "context", base / "wheels"
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    build_stage = dockerfile_stages()[0]
    for keyword, argument in build_stage:
        if keyword == "COPY":
            *sources, _ = argument.split()
            for source in sources:
                if (ROOT / source).is_dir():
                    shutil.copytree(ROOT / source, context / source, ignore=lambda folder, names: [
                        n for n in names if dockerignored(os.path.relpath(Path(folder, n), ROOT), ignore)])
                else:
                    context.mkdir(exist_ok=True)
                    shutil.copy(ROOT / source, context / source)
    env = make_venv(base / "build-venv")
    for command in pip_and_build_commands(build_stage, wheels):
        run_in(env, command, context)
    return wheels


@pytest.fixture(scope="module")
def installed(built, tmp_path_factory):
    """A fresh venv with the wheel installed by the runtime stage's own pip command (plus the test extra)."""
    path = tmp_path_factory.mktemp("runtime") / "venv"
    env = make_venv(path)
    for command in pip_and_build_commands(dockerfile_stages()[-1], built):
        run_in(env, command, path.parent)
    wheel = next(built.glob("fastmock-*.whl"))
    run_in(env, f"python -m pip install --no-cache-dir {shlex.quote(str(wheel))}[test]", path.parent)
    return path, env


def test_the_sdist_carries_the_cython_sources_and_builds_from_them(built):
    sdist = next(built.glob("fastmock-*.tar.gz"))
    with tarfile.open(sdist) as archive:
        names = {name.partition("/")[2] for name in archive.getnames()}
    assert {"src/fastmock/_core.pyx", "src/fastmock/_core.pxd", "src/fastmock/core/connection.pyx",
            "src/fastmock/core/connection.pxd", "src/fastmock/proto/echo.proto", "setup.py", "pyproject.toml"} <= names
    assert not any(name.endswith((".c", ".so")) for name in names)  # the core is built from scratch
    wheel = next(built.glob("fastmock-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
    assert any(re.fullmatch(r"fastmock/_core\..*\.so", name) for name in in_wheel)
    assert {"fastmock/proto/echo.proto", "fastmock/fleet/management/dashboard.html"} <= in_wheel
    assert not any(name.endswith((".pyx", ".pxd", ".c")) for name in in_wheel)


def test_the_installed_cli_reports_its_version_and_compiled_core(installed, tmp_path):
    path, env = installed
    version = run_in(env, "fastmock --version", tmp_path).stdout.strip()
    assert version == "fastmock 0.1.0 (compiled core: yes)"
    where = run_in(env, "python -c 'import fastmock._core as c; print(c.__file__)'", tmp_path).stdout.strip()
    assert where.startswith(str(path)) and where.endswith(".so")  # the wheel's, not the source tree's


def test_the_installed_hp_answers_and_the_healthcheck_passes(installed, tmp_path):
    path, env = installed
    proc = subprocess.Popen([path / "bin" / "fastmock", "hp", "--port", "0", "--mem-interval", "0"],
                            cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if found := re.search(r"listening on (http://\S+)", line):
                break
        url = found.group(1)
        assert httpx.get(f"{url}/health").json() == {"status": "ok"}
        healthcheck = next(argument for keyword, argument in dockerfile_stages()[-1] if keyword == "HEALTHCHECK")
        command = json.loads(healthcheck.split("CMD", 1)[1])
        assert subprocess.run(command, env={**env, "HEALTH_URL": f"{url}/health"}).returncode == 0
        assert subprocess.run(command, env={**env, "HEALTH_URL": f"{url}/status/503"},
                              stderr=subprocess.DEVNULL).returncode != 0
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_fast_subset_passes_against_the_wheel(installed, tmp_path):
    _, env = installed
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    run_in(env, config["test-command"].replace("{project}", str(ROOT)), tmp_path)


def test_the_dockerfile_lints_clean_and_agrees_with_the_cli():
    lint = subprocess.run([Path(sys.executable).parent / "hadolint", ROOT / "Dockerfile"], capture_output=True,
                          text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    runtime = dict(dockerfile_stages()[-1])
    defaults = {name: {p.name: p.default for p in cli.commands[name].params} for name in ("hp", "fleet")}
    assert {int(port) for port in runtime["EXPOSE"].split()} == {
        defaults["hp"]["port"], defaults["hp"]["grpc_port"], defaults["fleet"]["mgmt_port"]}
    assert json.loads(runtime["ENTRYPOINT"]) == ["fastmock"]
    command = json.loads(runtime["CMD"])
    cli.commands[command[0]].make_context(command[0], command[1:])  # a click usage error if CMD went stale
    assert runtime["USER"] not in ("root", "0")
    copies = [argument.split() for keyword, argument in dockerfile_stages()[-1] if keyword == "COPY"]
    assert ["examples/scenario.yaml", IMAGE_SCENARIO] in copies  # `fastmock run` with no file runs it
    assert runtime["STOPSIGNAL"] == "SIGTERM"


def test_a_clean_build_context_ignores_local_builds():
    ignore = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines() if line.strip()]
    assert dockerignored("src/fastmock/_core.c", ignore)
    assert dockerignored("src/fastmock/_core.cpython-311-x86_64-linux-gnu.so", ignore)
    assert dockerignored(".venv/bin/python", ignore)
    assert not dockerignored("src/fastmock/core/connection.pyx", ignore)
    assert not dockerignored("src/fastmock/core/connection.pxd", ignore)
