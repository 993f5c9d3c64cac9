"""The ``fastmock`` command line: one click group, one subcommand per mode."""

import difflib
import errno
import functools
import importlib.util
import json
import math
import os
import re
import secrets
import socket
import ssl
import sys
import time
import urllib.parse
from pathlib import Path

import click
from click.core import ParameterSource
import dotenv

from fastmock import __version__
from fastmock.client import DEFAULT_URL, FleetClient, FleetError
from fastmock.documents import MAX_DOCUMENT_BYTES, DocumentError, decode_text, read_text
from fastmock.ctl import ctl
from fastmock.fleet import FleetConfig, ports_per_worker, run_fleet
from fastmock.fleet.management.chaos import ChaosError, parse_schedule
from fastmock.fleet.management.detach import DetachError, default_paths, start_detached
from fastmock.fleet.management.peers import PeersError, parse_peers
from fastmock.fleet.ports import parse_hosts, split_host_port
from fastmock.faults import FAULT_EXAMPLE, FaultSpecError, parse_fault_spec
from fastmock.hp import HpApp, HpConfig
from fastmock.load import (OUTPUT_FORMATS, LiveMetrics, LoadConfig, Progress, output_format_for, passed, run_load,
                           summary_dict, summary_text, write_records)
from fastmock.proxy import ProxyApp, ProxyConfig, parse_header, parse_upstream, upstream_context
from fastmock.rewrite import HOST_FORMATS, ConfigError, EndpointsError, fetch_endpoints, parse_endpoints, rewrite
from fastmock.scenario import (RunSettings, ScenarioError, chosen_tasks, load_scenario, run_passed, run_scenario,
                               run_summary_lines)
from fastmock.shell import run_shell
from fastmock.runtime import available_cpus, raise_open_files_limit, ready_announcer, write_whole
from fastmock.serve import ServeConfig, StartError, serve
from fastmock.params import Duration, Size
from fastmock.units import parse_duration, parse_share
from fastmock.score import BAD_KINDS, DEFAULT_BAD, KIND_METRICS, SCORE_METRICS, endpoint_key, score_metric, score_text
from fastmock.thresholds import THRESHOLD_EXAMPLE, evaluate, parse_threshold

__all__ = ["cli", "main"]

CONTEXT_SETTINGS = {"auto_envvar_prefix": "FASTMOCK", "help_option_names": ["-h", "--help"]}


class FaultRule(click.ParamType):
    """``PREFIX=SPEC`` → (prefix, FaultPlan); a spec error names its position."""

    name = "PREFIX=SPEC"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        prefix, equals, spec = value.partition("=")
        if not equals or not prefix.startswith("/"):
            self.fail(f"{value!r} is not PREFIX=SPEC with PREFIX a path (e.g. '/api=503:1,ok:9')", param, ctx)
        try:
            return prefix, parse_fault_spec(spec)
        except FaultSpecError as exc:
            self.fail(str(exc), param, ctx)


class EnvOption(click.Option):
    """An option whose value may come from the environment: then its errors name the variable, and a missing
    required one says which variables would give it."""

    def _variables(self, ctx) -> list[str]:
        if self.envvar:
            return [self.envvar] if isinstance(self.envvar, str) else list(self.envvar)
        prefix = ctx.auto_envvar_prefix
        return [f"{prefix}_{self.name.upper()}"] if prefix and self.name else []

    def process_value(self, ctx, value):
        try:
            return super().process_value(ctx, value)
        except click.MissingParameter:
            variables = self._variables(ctx)
            if not variables:
                raise
            where = "the environment or ./.env" if ctx.command.name == "proxy" else "the environment"
            raise click.MissingParameter(f"Give it, or set {' or '.join(variables)} in {where}.",
                                         ctx=ctx, param=self) from None
        except click.BadParameter as exc:
            if ctx.get_parameter_source(self.name) != ParameterSource.ENVIRONMENT:
                raise
            variable = next(name for name in self._variables(ctx) if name in os.environ)
            raise click.BadParameter(f"{variable}={os.environ[variable]}: {exc.message}", ctx=ctx,
                                     param=self) from None


option = functools.partial(click.option, cls=EnvOption)


class Workers(click.ParamType):
    """``N`` (at least 1) or ``auto``: one per available CPU (the cgroup quota counts), or (``per_cpu=False``)
    None: the mode decides."""

    name = "N|auto"

    def __init__(self, per_cpu: bool = True) -> None:
        self.per_cpu = per_cpu

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value is None:
            return value
        if str(value).lower() == "auto":
            return available_cpus() if self.per_cpu else None
        try:
            workers = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or 'auto'", param, ctx)
        if workers < 1:
            self.fail(f"{value!r} is out of range (>= 1, or 'auto')", param, ctx)
        return workers


class OutputPath(click.Path):
    """A file written later (after a run): its directory must exist now, not when the results are in."""

    def __init__(self, allow_dash: bool = False) -> None:
        super().__init__(dir_okay=False, writable=True, allow_dash=allow_dash)

    def convert(self, value, param, ctx):
        path = super().convert(value, param, ctx)
        directory = os.path.dirname(os.path.abspath(path))
        if path != "-" and not (os.path.isdir(directory) and os.access(directory, os.W_OK)):
            self.fail(f"{directory} is not a writable directory", param, ctx)
        return path


class Parsed(click.ParamType):
    """A value that ``parse`` turns into a tuple; its ValueError is the usage error."""

    def __init__(self, name: str, parse, envvar_list_splitter: str | None = None) -> None:
        self.name = name
        self.parse = parse
        self.envvar_list_splitter = envvar_list_splitter

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


READY_FILE_OPTION = option(
    "--ready-file", type=OutputPath(), default=None,
    help="Once every port accepts, write a JSON document here (pid, url, ...); it is removed at exit. "
         "For scripts that wait for the server.")


def tls_options(what: str):
    """The TLS options of a serving mode (hp, fleet, proxy): ``what`` says what --tls does there."""
    def apply(command):
        for decorator in reversed((
            option("--tls", is_flag=True,
                   help=f"{what}: certificates from the local CA (see 'fastmock tls'); the SNI name STATE.fastmock.test "
                        "chooses a certificate state (expired, wrong-host, ...)."),
            option("--certfile", type=click.Path(exists=True, dir_okay=False), default=None,
                   help="With --tls: your own certificate chain (PEM) for the valid state."),
            option("--keyfile", type=click.Path(exists=True, dir_okay=False), default=None,
                   help="With --certfile: its key, if not in the same file."),
            option("--ca-file", type=click.Path(exists=True, dir_okay=False), default=None,
                   help="With --certfile: the intermediate certificates (PEM) to send after it, if not in it."),
            option("--tls-key", type=click.Choice(["p256", "p384", "rsa2048", "rsa4096"]), default="p256",
                   show_default=True, help="Key type of the certificates fastmock makes."),
            option("--tls-ca-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                   help="Where the local CA lives  [default: $XDG_STATE_HOME/fastmock/tls]"),
            option("--tls-ca-out", type=OutputPath(), default=None,
                   help="Also write the CA certificate (PEM, public) here, for clients to trust."),
            option("--tls-resume/--no-tls-resume", default=True, show_default=True,
                   help="Offer session resumption (tickets)."),
        )):
            command = decorator(command)
        return command
    return apply


def _write_or_fail(path: str, write) -> None:
    """write_whole, with a failure (a full disk, /proc) as one clear line; nothing is left behind."""
    try:
        write_whole(path, write)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


def _version_message() -> str:
    from fastmock import _core

    compiled = _core.__file__.endswith((".so", ".pyd"))
    return f"fastmock {__version__} (compiled core: {'yes' if compiled else 'no'})"


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, message=_version_message())
@click.pass_context
def cli(ctx):
    """Fast, numerous, misbehaving fake HTTP servers."""
    if ctx.invoked_subcommand == "proxy":
        # the old proxy's settings may sit in ./.env; the environment and the flags win over it
        dotenv.load_dotenv(os.path.join(os.getcwd(), ".env"), override=False)


def parse_addr(text: str) -> tuple[str, int]:
    """The old server's ``HOST:PORT`` (``:8080`` is every address, ``[::1]:8080`` IPv6); ValueError."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. :8080 or 127.0.0.1:8080)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@cli.command()
@option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (:: for IPv6).")
@option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
        help="Port to listen on (0 picks a free one).")
@option("--addr", "-addr", "addr", type=Parsed("HOST:PORT", parse_addr), default=None,
        help="The old server's HOST:PORT (':8080': every address), instead of --host and --port.")
@option("--workers", type=Workers(), default="1", show_default=True,
        help="Processes sharing the port (SO_REUSEPORT), or 'auto' for one per CPU.")
@option("--buffer-size", type=click.IntRange(64, 4096), default=1024, show_default=True,
        help="Read/write buffer size in KB (also the streaming pattern buffer).")
@option("--idle-timeout", type=Duration(minimum=0.01), default="10s", show_default=True,
        help="Close a keep-alive connection idle this long (bare number: seconds).")
@option("--header-timeout", type=Duration(minimum=0.01), default="10s", show_default=True,
        help="Answer 408 and close if a request head takes longer (bare number: seconds).")
@option("--body-timeout", type=Duration(), default="30s", show_default=True,
        help="Answer 408 and close if a request body takes longer than this plus a second per "
             "--body-min-rate bytes received (bare number: seconds); 0 turns it off.")
@option("--body-min-rate", type=Size(minimum=1), default="1K", show_default=True,
        help="Bytes per second a slow request body must average to earn more time (see --body-timeout).")
@option("--max-connections", type=click.IntRange(1), default=262144, show_default=True,
        help="Open connections per worker; beyond it new ones are closed at once.")
@option("--shutdown-timeout", type=Duration(), default="30s", show_default=True,
        help="On SIGTERM, how long in-flight responses may finish (bare number: seconds).")
@option("--max-delay", type=Duration(bare_unit="ms"), default="10m", show_default=True,
        help="Longest /delay accepted (bare number: milliseconds).")
@option("--max-target-size", type=Size(1, 1 << 20), default="8K", show_default=True,
        help="Longest request-target; longer gets 414.")
@option("--max-header-size", type=Size(1, 1 << 24), default="64K", show_default=True,
        help="Largest header section; larger gets 431.")
@option("--max-headers", type=click.IntRange(1, 4096), default=100, show_default=True,
        help="Most header fields in a request; more gets 431.")
@option("--max-upload", type=Size(), default="0", show_default=True,
        help="Largest /upload body (e.g. 10G); larger gets 413. 0: no limit.")
@option("--seed", type=int, default=None, help="Seed of the random choices (worker k uses seed+k).")
@option("--fault", "faults", type=FaultRule(), multiple=True, metavar="PREFIX=SPEC",
        help=f"Apply a fault spec to requests whose path starts with PREFIX (repeatable; the first "
             f"match wins), e.g. '/api=503:1,ok:9'. Spec: {FAULT_EXAMPLE}")
@option("--header-faults/--no-header-faults", default=True, show_default=True,
        help="Honour an X-Fastmock-Fault: SPEC request header.")
@option("--max-hang", type=Duration(), default="5m", show_default=True,
        help="Longest a 'timeout' fault (or a fault's delay) holds a connection (bare number: seconds).")
@option("--ws-max-message", type=Size(1, 1 << 30), default="16M", show_default=True,
        help="Largest WebSocket message; larger closes the connection with 1009.")
@option("--ws-idle-timeout", type=Duration(), default="5m", show_default=True,
        help="Close a WebSocket (1001) that sent nothing this long (bare number: seconds); 0: never.")
@option("--ws-ping-interval", type=Duration(), default="0", show_default=True,
        help="Ping an idle WebSocket this often; its pong keeps it open (bare number: seconds); 0: no pings.")
@option("--sse-heartbeat", type=Duration(minimum=0.01), default="15s", show_default=True,
        help="A comment line on an idle /sse stream this often (bare number: seconds).")
@option("--grpc-port", type=click.IntRange(0, 65535), default=50051, show_default=True,
        help="Port of the gRPC echo service (EchoService, health, reflection; needs fastmock[grpc]); "
             "0 turns it off. At the default, a missing extra or a busy port is only logged.")
@option("--grpc-tls", is_flag=True, help="The gRPC port speaks TLS, with the valid certificate (needs --tls).")
@option("--grpc-threads", type=click.IntRange(1, 1024), default=16, show_default=True,
        help="Threads serving gRPC calls per worker (each open StreamEcho holds one).")
@option("--request-log-size", type=click.IntRange(0), default=10000, show_default=True,
        help="Requests kept for /getlogs (per worker); 0 turns the request log off.")
@option("--request-log", "request_log_path", type=OutputPath(), default=None,
        help="Also append every request to this file as a JSON line.")
@option("--access-log", is_flag=True, help="Write one JSON line per request to stdout.")
@option("--quiet", type=click.BOOL, is_flag=False, flag_value=True, default=None,
        help="No access log (the default); --quiet=false is --access-log, as the old server had it.")
@option("--mem-interval", type=Duration(), default="10s", show_default=True,
        help="Print RSS, connections, requests and bytes to stderr this often; 0 turns it off.")
@tls_options("The port speaks TLS")
@option("--tls-port", type=click.IntRange(0, 65535), default=None,
        help="TLS on this port beside the plain --port, with the same routes (implies --tls; 0 picks one).")
@option("--advertise-host", default=None,
        help="With --tls: a host name clients use, added to the certificate's names.")
@READY_FILE_OPTION
def hp(host, port, addr, workers, buffer_size, idle_timeout, header_timeout, body_timeout, body_min_rate, max_connections,
       shutdown_timeout, max_delay, max_target_size, max_header_size, max_headers, max_upload, seed, faults,
       header_faults, max_hang, ws_max_message, ws_idle_timeout, ws_ping_interval, sse_heartbeat, grpc_port, grpc_tls,
       grpc_threads, request_log_size, request_log_path, access_log,
       quiet, mem_interval, tls_port, advertise_host, ready_file, **tls):
    """One port, very fast: echo, health, status codes, delays, streaming, uploads, metrics.

    Every option may also be set as FASTMOCK_HP_<OPTION>, e.g. FASTMOCK_HP_PORT=9000.
    """
    if addr is not None:
        source = click.get_current_context().get_parameter_source
        if ParameterSource.COMMANDLINE in (source("host"), source("port")):
            raise click.BadParameter("give --addr or --host/--port, not both", param_hint="'--addr'")
        host, port = addr
    if quiet is not None and access_log and quiet:
        raise click.BadParameter("--quiet turns the access log off: not with --access-log", param_hint="'--quiet'")
    access_log = access_log or quiet is False
    if tls_port is not None:
        tls["tls"] = True
    contexts = _tls_contexts(hosts=(host, advertise_host), **tls)
    grpc_credentials = None
    if grpc_tls:
        if contexts is None:
            raise click.BadParameter("needs --tls (or --tls-port)", param_hint="'--grpc-tls'")
        grpc_credentials = _pem_pair(contexts, tls["certfile"], tls["keyfile"], tls["ca_file"])
    seed = secrets.randbits(32) if seed is None else seed
    grpc_required = click.get_current_context().get_parameter_source("grpc_port") != ParameterSource.DEFAULT
    if grpc_port and grpc_required and importlib.util.find_spec("grpc") is None:  # find_spec: no import before fork
        raise click.BadParameter("the gRPC service needs the grpc extra: pip install 'fastmock[grpc]' "
                                 "(or --grpc-port 0)", param_hint="'--grpc-port'")
    config = ServeConfig(
        name="hp", host=host, port=port, workers=workers, buffer_size=buffer_size * 1024,
        idle_timeout_s=idle_timeout, header_timeout_s=header_timeout, body_timeout_s=body_timeout,
        body_min_rate=body_min_rate, max_connections=max_connections, shutdown_timeout_s=shutdown_timeout,
        max_target_size=max_target_size,
        max_header_size=max_header_size, max_headers=max_headers, access_log=access_log,
        mem_interval_s=mem_interval, ready_file=ready_file,
        tls=contexts, tls_port=tls_port, tls_stall_s=max_hang, tls_ca=None if contexts is None else contexts.trust,
    )
    _serve_until_stopped(config, lambda worker: HpApp(HpConfig(
        max_delay_s=max_delay, seed=seed + worker, worker=worker, max_upload_size=max_upload,
        faults=faults, header_faults=header_faults, max_hang_s=max_hang, request_log_size=request_log_size,
        request_log_path=request_log_path, sse_heartbeat_s=sse_heartbeat, ws_max_message=ws_max_message,
        ws_idle_timeout_s=ws_idle_timeout, ws_ping_interval_s=ws_ping_interval,
        grpc_host=host, grpc_port=grpc_port, grpc_required=grpc_required, grpc_threads=grpc_threads,
        grpc_reuse_port=workers > 1, grpc_tls=grpc_credentials)))


def _pem_pair(contexts, certfile, keyfile, ca_file) -> tuple[bytes, bytes]:
    """(key, certificate chain) of the valid state, as PEM: the user's files, or the local CA's leaf."""
    if certfile is None:
        issued = contexts.authority.issue("valid")
        return issued.key_pem, issued.chain_pem
    from fastmock.tls import read_pem_files

    chain_pem, key_pem = read_pem_files(certfile, keyfile, ca_file)
    return key_pem, chain_pem


def _tls_contexts(tls, certfile, keyfile, ca_file, tls_key, tls_ca_dir, tls_ca_out, tls_resume, hosts=()):
    """The ContextSet of --tls (None without it); bad files are usage errors naming them. The certificates
    fastmock makes name localhost, 127.0.0.1, ::1, ``hosts`` and *.fastmock.test."""
    from fastmock.tls import DEFAULT_HOSTS, SNI_DOMAIN, CertificateAuthority, ContextSet, TlsError, \
        file_server_context

    if not tls:
        for name, value in (("--certfile", certfile), ("--keyfile", keyfile), ("--ca-file", ca_file),
                            ("--tls-ca-out", tls_ca_out)):
            if value is not None:
                raise click.BadParameter("only with --tls", param_hint=f"'{name}'")
        return None
    for name, value in (("--keyfile", keyfile), ("--ca-file", ca_file)):
        if value is not None and certfile is None:
            raise click.BadParameter("needs --certfile", param_hint=f"'{name}'")
    wildcard = ("0.0.0.0", "::", "", None)
    names = (*DEFAULT_HOSTS, *(host for host in hosts if host not in wildcard), f"*.{SNI_DOMAIN}")
    try:
        valid = file_server_context(certfile, keyfile, tls_resume, ca_file) if certfile is not None else None
    except TlsError as exc:
        raise click.BadParameter(str(exc), param_hint="'--certfile'") from None
    try:
        authority = CertificateAuthority(tls_ca_dir, tls_key, names)
    except TlsError as exc:
        raise click.BadParameter(str(exc), param_hint="'--tls-ca-dir'") from None
    if tls_ca_out is not None:
        _write_or_fail(tls_ca_out, lambda file: file.write(authority.pem.decode()))
    click.echo(f"fastmock: TLS with the local CA {tls_ca_out or authority.cert_path} "
               f"(trust it: fastmock tls trust-help)", err=True)
    contexts = ContextSet(authority, tls_resume, valid)
    contexts.trust = None if certfile is not None else str(tls_ca_out or authority.cert_path)
    contexts.get("valid")  # made now: a fleet's workers inherit it
    return contexts


def _serve_until_stopped(config: ServeConfig, make_app) -> None:
    """Serve a one-port mode and exit with its status; a port that cannot be bound is one clear line."""
    try:
        status = serve(config, make_app)
    except StartError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise click.ClickException(f"port {config.port} on {config.host} is in use: another program "
                                       f"listens there (--port)") from None
        raise click.ClickException(f"cannot listen on {config.host} port {config.port}: "
                                   f"{exc.strerror or exc}") from exc
    sys.exit(status)


def _host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` → (HOST, PORT), ``:PORT`` every address (as Prometheus' tools read it); ValueError else."""
    host, port = split_host_port(text.strip())
    if host is None or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT or :PORT (e.g. 127.0.0.1:9095)")
    return host or "0.0.0.0", int(port)


@cli.command()
@click.argument("count", type=click.IntRange(1))
@option("--base-port", type=click.IntRange(1, 65535), default=10000, show_default=True,
        help="First port of the fleet.")
@option("--max-port", type=click.IntRange(1, 65535), default=60000, show_default=True,
        help="Highest port the fleet may use (scaling up stops there).")
@option("--host", default="127.0.0.1", show_default=True,
        help="Address the ports listen on (and the management API).")
@option("--hosts", type=Parsed("ADDRESSES", parse_hosts), default=None,
        help="Serve --base-port..--max-port on each of these addresses in turn, e.g. 127.0.0.1-127.0.0.20 "
             "or 10.0.0.5,10.0.0.9 (every 127.0.0.0/8 address works on Linux)  [default: --host]")
@option("--advertise-host", default=None,
        help="Host named in /endpoints URLs  [default: --host, or localhost for 0.0.0.0]")
@option("--mgmt-port", type=click.IntRange(0, 65535), default=9999, show_default=True,
        help="Port of the management API (on --host; 0 picks a free one).")
@option("--peers", default=None,
        help="The fleet's other pods: a DNS name (a headless Service: every address is a pod; NAME:PORT "
             "if their management port differs) or HOST:PORT,...; this API then answers for all of them.")
@option("--score-listen", type=Parsed("HOST:PORT", _host_port), default=None,
        help="Receive the monitor's Alertmanager webhook here and score it against this fleet's events as it "
             "runs (GET /score, the dashboard); see 'fastmock score'.")
@option("--score-target-label", default=None,
        help="With --score-listen: the alert label that names the endpoint (a URL, HOST:PORT or port)  "
             "[default: instance]")
@option("--ordinal", type=click.IntRange(0), default=None,
        help="This pod's place among --peers (chaos draws from seed + ordinal)  [default: the N of a "
             "hostname ending in -N, as a StatefulSet's pods are named, else 0]")
@option("--workers", type=Workers(per_cpu=False), default="auto", show_default=True,
        help="Port worker processes; 'auto': one per 12,500 ports (fewer ports each under a low "
             "open-files limit).")
@option("--token", default=None, help="Require 'Authorization: Bearer TOKEN' on changing API calls.")
@option("--token-reads", is_flag=True,
        help="Require the token on reads too (all but the dashboard page and /health).")
@option("--seed", type=int, default=None, help="Seed of random choices (/kill?count=K).")
@option("--reserve-ports", is_flag=True,
        help="Add the fleet's part of the ephemeral range to net.ipv4.ip_local_reserved_ports while "
             "it runs (needs root).")
@option("--idle-timeout", type=Duration(minimum=0.01), default="10s", show_default=True,
        help="Close a keep-alive connection idle this long (bare number: seconds).")
@option("--header-timeout", type=Duration(minimum=0.01), default="10s", show_default=True,
        help="Answer 408 and close if a request head takes longer (bare number: seconds).")
@option("--max-connections", type=click.IntRange(1), default=262144, show_default=True,
        help="Open connections per worker; beyond it new ones are closed at once.")
@option("--chaos", "chaos_file", type=click.Path(exists=True, dir_okay=False), default=None,
        help="Run this chaos schedule (YAML) from the start; see POST /chaos.")
@tls_options("Every port speaks TLS, in a certificate state of its own (POST /tls; valid at first)")
@option("--max-hang", type=Duration(), default="5m", show_default=True,
        help="How long a port in the handshake-stall state holds a connection (bare number: seconds).")
@option("--detach", is_flag=True,
        help="Run in the background (own session); return once every port accepts.")
@option("--pid-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="Write the fleet's PID here while it runs  [default with --detach: "
             "$XDG_STATE_HOME/fastmock/fleet-MGMT_PORT.pid]")
@option("--log-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="With --detach: where the fleet's output goes  [default: "
             "$XDG_STATE_HOME/fastmock/fleet-MGMT_PORT.log]")
@READY_FILE_OPTION
def fleet(count, base_port, max_port, host, hosts, advertise_host, mgmt_port, peers, score_listen, score_target_label,
          ordinal, workers, token, token_reads, seed, reserve_ports, idle_timeout, header_timeout, max_connections,
          chaos_file, max_hang, detach, pid_file, log_file, ready_file, **tls):
    """COUNT mock servers, one per port from --base-port, with a management API.

    Each port answers GET /health and GET /kill (which closes that port). The management API
    (GET /stats, /endpoints, /metrics; GET|POST /kill, /revive, /scale; POST /shutdown) is on
    --mgmt-port. Every option may also be set as FASTMOCK_FLEET_<OPTION>.
    """
    if token_reads and token is None:
        raise click.BadParameter("needs --token", param_hint="'--token-reads'")
    if max_port < base_port:
        raise click.BadParameter(f"{max_port} is below --base-port {base_port}", param_hint="'--max-port'")
    addresses = hosts or (host,)
    per_host = max_port - base_port + 1
    if count > len(addresses) * per_host:
        on = f" on each of {len(addresses)} addresses" if hosts else ""
        raise click.BadParameter(f"{count} ports do not fit in {base_port}-{max_port} ({per_host} ports{on})",
                                 param_hint="'COUNT'")
    if hosts:
        _check_local(hosts)
        if advertise_host is not None and len(hosts) > 1:
            raise click.BadParameter("names one host: the URLs of a fleet on several addresses name each "
                                     "port's own", param_hint="'--advertise-host'")
    mgmt_shared = host in addresses[:-(-count // per_host)]  # an address with fleet ports on it
    if mgmt_shared and base_port <= mgmt_port < base_port + min(count, per_host):
        raise click.BadParameter(f"{mgmt_port} is one of the fleet's ports {base_port}-"
                                 f"{base_port + min(count, per_host) - 1} on {host}", param_hint="'--mgmt-port'")
    try:
        ports_per_worker(count, workers, raise_open_files_limit())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--workers'") from None
    chaos = None
    if chaos_file is not None:
        try:
            chaos = parse_schedule(read_text(chaos_file), base_port, max_port, addresses)
        except OSError as exc:
            raise click.BadParameter(f"{chaos_file}: {exc.strerror}", param_hint="'--chaos'") from None
        except DocumentError as exc:
            raise click.BadParameter(exc.at(chaos_file), param_hint="'--chaos'") from None
        except ChaosError as exc:
            where = f"{chaos_file}:{exc.line}:{exc.column or 1}" if exc.line else chaos_file
            raise click.BadParameter(f"{where}: {exc}", param_hint="'--chaos'") from None
        if not tls["tls"] and any(rule.action == "tls" for rule in chaos.rules):
            raise click.BadParameter(f"{chaos_file}: a tls action needs --tls", param_hint="'--chaos'")
    if peers is not None:
        try:
            parse_peers(peers, mgmt_port, {(host, mgmt_port), (advertise_host or host, mgmt_port)})
        except PeersError as exc:
            raise click.BadParameter(str(exc), param_hint="'--peers'") from None
        seed = 0 if seed is None else seed  # every pod the same: chaos draws from seed + ordinal
    if ordinal is None:
        numbered = re.search(r"-([0-9]+)$", socket.gethostname())
        ordinal = int(numbered.group(1)) if numbered and peers is not None else 0
    contexts = _tls_contexts(hosts=(host, advertise_host, *(hosts or ())), **tls)
    config = FleetConfig(
        count=count, base_port=base_port, max_port=max_port, host=host, hosts=hosts or (),
        advertise_host=advertise_host,
        mgmt_port=mgmt_port, workers=workers, token=token, token_reads=token_reads,
        seed=secrets.randbits(32) if seed is None else seed, reserve_ports=reserve_ports,
        idle_timeout_s=idle_timeout, header_timeout_s=header_timeout, max_connections=max_connections,
        chaos=chaos, tls=contexts, max_hang_s=max_hang, peers=peers, ordinal=ordinal, score_listen=score_listen,
        score_target_label=score_target_label or "instance",
    )
    if score_target_label is not None and score_listen is None:
        raise click.BadParameter("only with --score-listen", param_hint="'--score-target-label'")
    if detach:
        if ready_file is not None:
            raise click.BadParameter("only in the foreground (--detach itself returns once the fleet is ready)",
                                     param_hint="'--ready-file'")
        _detach(config, pid_file, log_file)
        return
    if log_file is not None:
        raise click.BadParameter("only with --detach (in the foreground the log is stderr)",
                                 param_hint="'--log-file'")
    try:
        with ready_announcer(ready_file) as announce:
            status = run_fleet(config, pid_file, ready=announce)
    except PermissionError as exc:
        raise click.ClickException(f"--reserve-ports needs root: {exc.strerror} ({exc.filename})") from exc
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host} port {mgmt_port} (--mgmt-port): "
                                   f"{exc.strerror or exc}") from exc
    sys.exit(status)


def _check_local(hosts) -> None:
    """Every address of --hosts is one this machine can listen on (a usage error names the first that is not)."""
    for address in hosts:
        try:
            with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
                sock.bind((address, 0))
        except OSError as exc:
            raise click.BadParameter(f"{address} is not an address of this machine ({exc.strerror})",
                                     param_hint="'--hosts'") from None


def _detach(config, pid_file, log_file) -> None:
    if config.mgmt_port == 0:
        raise click.BadParameter("--detach needs a fixed management port", param_hint="'--mgmt-port'")
    default_pid_file, default_log_file = default_paths(config.mgmt_port)
    try:
        info = start_detached(config, pid_file or default_pid_file, log_file or default_log_file)
    except DetachError as exc:
        raise click.ClickException(str(exc)) from None
    ctl = "fastmock ctl" if config.mgmt_port == 9999 and config.host == "127.0.0.1" else \
        f"fastmock ctl --url {info['url']}"
    click.echo(f"fleet running in the background\n"
               f"  pid         {info['pid']}\n"
               f"  management  {info['url']}\n"
               f"  ports       {info['ports']} ({info['alive']} alive, {info['failed']} failed to bind)\n"
               f"  log         {info['log']}\n"
               f"  pid file    {info['pid_file']}\n"
               f"next:\n"
               f"  {ctl} stats\n"
               f"  {ctl} endpoints 10\n"
               f"  {ctl} kill {config.base_port}\n"
               f"  {ctl} logs\n"
               f"  {ctl} stop")


UPSTREAM_URL = Parsed("URL", parse_upstream)
HEADER_LINE = Parsed("'NAME: VALUE'", parse_header, envvar_list_splitter="\n")  # several headers: one per line
THRESHOLD = Parsed("METRIC<VALUE", parse_threshold)


@cli.command()
@option("--upstream", type=UPSTREAM_URL, required=True, envvar=["FASTMOCK_PROXY_UPSTREAM", "UPSTREAM_BASE_URL"],
        help="Where requests go: http(s)://HOST[:PORT] (env UPSTREAM_BASE_URL).")
@option("--upstream-ca", type=click.Path(exists=True, dir_okay=False), default=None,
        help="An https upstream: trust the CA in this PEM file instead of the system's.")
@option("--upstream-insecure", is_flag=True, help="An https upstream: verify no certificate.")
@option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
        help="Port to listen on (0 picks a free one).")
@option("--workers", type=Workers(), default="1", show_default=True,
        help="Processes sharing the port (SO_REUSEPORT), or 'auto'.")
@option("--delay-ms", type=click.IntRange(0), default=0, show_default=True,
        envvar=["FASTMOCK_PROXY_DELAY_MS", "PROXY_DELAY_MS"],
        help="Wait this long before forwarding each request (env PROXY_DELAY_MS).")
@option("--drop-rate", type=click.FloatRange(0, 1), default=0.0, show_default=True,
        envvar=["FASTMOCK_PROXY_DROP_RATE", "PROXY_DROP_RATE"],
        help="Fraction of requests answered 503 without forwarding (env PROXY_DROP_RATE).")
@option("--request-header", "--header", "request_headers", type=HEADER_LINE, multiple=True,
        envvar=["FASTMOCK_PROXY_REQUEST_HEADER", "FASTMOCK_PROXY_HEADER"],
        help="A header added to upstream requests (repeatable; --header is the same).")
@option("--response-header", "response_headers", type=HEADER_LINE, multiple=True,
        envvar=["FASTMOCK_PROXY_RESPONSE_HEADER", "PROXY_MOD_HEADER"],
        help="A header set on every answer, replacing an upstream field of that name (repeatable; "
             "env PROXY_MOD_HEADER, one per line).")
@option("--fault", "faults", type=FaultRule(), multiple=True, metavar="PREFIX=SPEC",
        help="A fault spec for requests whose path starts with PREFIX (repeatable), e.g. '/=503:1,ok:9'.")
@option("--header-faults/--no-header-faults", default=True, show_default=True,
        help="Honour an X-Fastmock-Fault: SPEC request header.")
@option("--max-hang", type=Duration(), default="5m", show_default=True,
        help="Longest a 'timeout' fault holds a connection (bare number: seconds).")
@option("--upstream-timeout", type=Duration(minimum=0.001), default="30s", show_default=True,
        help="From the whole request to the upstream's response head; past it, 504 (bare number: seconds).")
@option("--seed", type=int, default=None, envvar=["FASTMOCK_PROXY_SEED", "RNG_SEED"],
        help="Seed of drops, faults and generated ids; worker k uses seed+k (env RNG_SEED).")
@option("--metrics-path", default="/metrics", show_default=True,
        help="Path answered by the proxy itself with Prometheus metrics.")
@option("--idle-timeout", type=Duration(minimum=0.01), default="60s", show_default=True,
        help="Close a client connection idle this long (bare number: seconds).")
@option("--shutdown-timeout", type=Duration(), default="30s", show_default=True,
        help="On SIGTERM, how long in-flight exchanges may finish (bare number: seconds).")
@tls_options("The proxy's port speaks TLS (it terminates TLS)")
@READY_FILE_OPTION
def proxy(upstream, upstream_ca, upstream_insecure, host, port, workers, delay_ms, drop_rate, request_headers,
          response_headers, faults, header_faults, max_hang, upstream_timeout, seed, metrics_path, idle_timeout,
          shutdown_timeout, ready_file, **tls):
    """A fault-injecting reverse proxy in front of --upstream.

    Adds X-Forwarded-For/-Proto, Via and X-Trace-Id/X-Request-Id (the client's own when it sent them; on
    every answer, forwarded or not), strips hop-by-hop headers, streams bodies both ways. Reads
    UPSTREAM_BASE_URL, PROXY_DELAY_MS, PROXY_DROP_RATE, PROXY_MOD_HEADER and RNG_SEED from the environment
    and from ./.env; flags win.
    """
    if not metrics_path.startswith("/"):
        raise click.BadParameter("must start with /", param_hint="'--metrics-path'")
    seed = secrets.randbits(32) if seed is None else seed
    scheme, upstream_host, upstream_port = upstream
    if scheme != "https":
        for name, value in (("--upstream-ca", upstream_ca), ("--upstream-insecure", upstream_insecure or None)):
            if value is not None:
                raise click.BadParameter("only for an https:// --upstream", param_hint=f"'{name}'")
    if upstream_ca is not None and upstream_insecure:
        raise click.BadParameter("--upstream-insecure verifies nothing: not with --upstream-ca",
                                 param_hint="'--upstream-ca'")
    upstream_tls = None
    if scheme == "https":
        try:
            upstream_tls = upstream_context(upstream_ca, upstream_insecure)
        except (ssl.SSLError, ValueError) as exc:
            raise click.BadParameter(f"{upstream_ca}: no CA certificate in it ({exc})",
                                     param_hint="'--upstream-ca'") from None
    contexts = _tls_contexts(hosts=(host,), **tls)
    config = ServeConfig(name="proxy", host=host, port=port, workers=workers, idle_timeout_s=idle_timeout,
                         shutdown_timeout_s=shutdown_timeout, mem_interval_s=0, ready_file=ready_file,
                         tls=contexts, tls_stall_s=max_hang, tls_ca=None if contexts is None else contexts.trust)
    _serve_until_stopped(config, lambda worker: ProxyApp(ProxyConfig(
        upstream_host=upstream_host, upstream_port=upstream_port, request_headers=request_headers,
        response_headers=response_headers, drop_rate=drop_rate,
        delay_s=delay_ms / 1000, upstream_timeout_s=upstream_timeout, faults=faults,
        header_faults=header_faults, max_hang_s=max_hang, seed=seed + worker, metrics_path=metrics_path,
        worker=worker, upstream_tls=upstream_tls)))


class Shard(click.ParamType):
    """``I/N`` (this is shard I of N), or ``N`` with I from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)."""

    name = "I/N"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        index_text, slash, count_text = str(value).rpartition("/")
        if not slash:
            index_text = os.environ.get("JOB_COMPLETION_INDEX")
            if index_text is None:
                self.fail(f"{value!r} has no index: give I/N, or set JOB_COMPLETION_INDEX", param, ctx)
        if not (index_text.isdigit() and count_text.isdigit()) or not int(index_text) < int(count_text):
            self.fail(f"{value!r} is not I/N with 0 <= I < N", param, ctx)
        return int(index_text), int(count_text)


METRICS_HOST = option("--metrics-host", default="127.0.0.1", show_default=True,
                      help="The address of --metrics-port (0.0.0.0: for a Prometheus elsewhere, as in a pod).")


class LoadUrl(click.ParamType):
    name = "URL"

    def convert(self, value, param, ctx):
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(f"{value!r} is not an http(s)://HOST[:PORT]/PATH URL", param, ctx)
        try:
            parts.port  # noqa: B018 (reading it checks it: a port out of range raises)
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)
        return value


@cli.command()
@click.argument("url", type=LoadUrl(), required=False)
@option("--url", "url_option", type=LoadUrl(), default=None, help="The URL (instead of the argument).")
@option("-n", "--requests", "--n", type=click.IntRange(1), default=None, help="How many requests.")
@option("-d", "--duration", type=Duration(minimum=0.001), default=None,
        help="How long to send (bare number: seconds); with -n, whichever ends first.")
@option("-c", "--concurrency", type=click.IntRange(1), default=None,
        help="Connections: the closed loop's (default 10), or the most the open loop opens (default 256).")
@option("--rate", type=click.FloatRange(0, min_open=True), default=None,
        help="Open loop: this many requests per second, latency measured from each one's scheduled time.")
@option("-m", "--method", default="GET", show_default=True, help="Request method.")
@option("-H", "--header", "headers", type=HEADER_LINE, multiple=True, help="'Name: value' (repeatable).")
@option("--body", default=None, help="Request body.")
@option("--body-file", type=click.File("rb"), default=None, help="Request body from a file.")
@option("--timeout", type=Duration(minimum=0.001), default="30s", show_default=True,
        help="Per request, from sending to the end of the response (bare number: seconds).")
@option("--connect-timeout", type=Duration(minimum=0.001), default="10s", show_default=True,
        help="Per connection attempt (bare number: seconds).")
@option("--retries", type=click.IntRange(0), default=0, show_default=True,
        help="Retries of a request that met a connection error or a 5xx.")
@option("--retry-backoff-ms", type=click.IntRange(0), default=100, show_default=True,
        help="Wait before the first retry; it doubles for each next one.")
@option("--client-trace", is_flag=True, help="Send a new X-Trace-Id with each request (and record it).")
@option("--keepalive/--no-keepalive", " /--new-connections", default=True, show_default=True,
        help="Reuse connections, or a new connection (and over https a handshake) per request.")
@option("--cacert", type=click.Path(exists=True, dir_okay=False), default=None,
        help="https: trust the CA in this PEM file (e.g. fastmock's, see 'fastmock tls ca') instead of the system's.")
@option("--insecure", "-k", is_flag=True, help="https: verify no certificate.")
@option("--tls-resume/--no-tls-resume", default=True, show_default=True,
        help="https: offer the last TLS session in new handshakes (resumption).")
@option("--workers", type=Workers(), default="1", show_default=True,
        help="Processes (each on its share of requests and rate), or 'auto' for one per CPU.")
@option("--output", type=OutputPath(), default=None,
        help="Write one record per request here.")
@option("--format", "output_format", type=click.Choice(OUTPUT_FORMATS), default=None,
        help="Format of --output: json (one document: summary and requests), jsonl (one request per "
             "line) or csv  [default: from the extension, else jsonl]")
@option("--summary-json", type=OutputPath(allow_dash=True), default=None,
        help="Write the summary (thresholds, latency histogram) here as JSON, for 'fastmock report'; "
             "'-': as stdout's last line.")
@option("--shard", type=Shard(), default="0/1", show_default=True,
        help="This run is shard I of N (on other machines): its share of -n, -c and --rate "
             "(N alone: I from JOB_COMPLETION_INDEX).")
@option("--metrics-port", type=click.IntRange(1, 65535), default=None,
        help="Serve Prometheus metrics (requests, errors, a latency histogram) on PORT while running.")
@METRICS_HOST
@option("--threshold", "thresholds", type=THRESHOLD, multiple=True,
        help=f"Exit 1 unless this holds (repeatable), e.g. {THRESHOLD_EXAMPLE}. Without any, exit 1 "
             f"when every request failed (no response or 5xx).")
@option("--seed", type=int, default=0, show_default=True, help="Seed of the generated trace ids.")
def load(url, url_option, requests, duration, concurrency, rate, method, headers, body, body_file, timeout,
         connect_timeout, retries, retry_backoff_ms, client_trace, keepalive, cacert, insecure, tls_resume, workers,
         output, output_format, summary_json, shard, metrics_port, metrics_host, thresholds, seed):
    """Send HTTP/1.1 load to URL and report rates, statuses, errors and latency percentiles.

    Exits 1 when a --threshold fails (or, with none, when every request failed), for CI.
    """
    if url is not None and url_option is not None:
        raise click.BadParameter("give the URL once: as the argument or as --url", param_hint="'--url'")
    url = url or url_option
    if url is None:
        raise click.UsageError("give the URL (as the argument, or --url)")
    if requests is None and duration is None:
        raise click.UsageError("give -n/--requests or -d/--duration")
    if body is not None and body_file is not None:
        raise click.BadParameter("give --body or --body-file, not both", param_hint="'--body-file'")
    if not url.startswith("https:"):
        source = click.get_current_context().get_parameter_source
        for name in ("cacert", "insecure", "tls_resume"):
            if source(name) == ParameterSource.COMMANDLINE:
                raise click.BadParameter("only for an https:// URL", param_hint=f"'--{name.replace('_', '-')}'")
    _check_cacert(cacert, insecure)
    config = LoadConfig(
        url=url, requests=requests if requests is not None else -1, duration_s=duration or 0.0,
        concurrency=concurrency or (256 if rate else 10), rate=rate or 0.0, method=method.upper(),
        headers=tuple((name.decode(), value.decode()) for name, value in headers),
        body=body_file.read() if body_file else (body or "").encode(), timeout_s=timeout,
        connect_timeout_s=connect_timeout, retries=retries, retry_backoff_s=retry_backoff_ms / 1000,
        trace=client_trace, keepalive=keepalive, workers=workers, record=output is not None, seed=seed,
        cacert=cacert, insecure=insecure, tls_resume=tls_resume, shard=shard[0], shards=shard[1])
    progress = Progress() if sys.stderr.isatty() and workers == 1 else None
    metrics = None
    if metrics_port is not None:
        try:
            metrics = LiveMetrics(metrics_host, metrics_port)
        except OSError as exc:
            raise click.BadParameter(f"cannot listen on {metrics_host}:{metrics_port}: {exc.strerror or exc}",
                                     param_hint="'--metrics-port'") from None
    listeners = [listener for listener in (progress, metrics) if listener is not None]

    def tell(*update) -> None:
        for listener in listeners:
            listener(*update)

    result = run_load(config, tell if listeners else None)
    if progress is not None:
        progress.clear()
    summary = summary_dict(result, config, thresholds)
    click.echo(summary_text(summary))
    if output is not None:
        _write_or_fail(output, lambda file: write_records(result["records"], file,
                                                          output_format or output_format_for(output), summary))
    _write_summary(summary_json, summary)
    if not passed(summary):
        sys.exit(1)


def _write_summary(path: str | None, summary: dict) -> None:
    """--summary-json: indented into a file, or one line on stdout (``-``: for logs that report reads)."""
    if path == "-":
        click.echo(json.dumps(summary, separators=(",", ":")))
    elif path is not None:
        _write_or_fail(path, lambda file: json.dump(summary, file, indent=2))


@cli.command()
@click.argument("summaries", metavar="SUMMARY...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@option("--threshold", "thresholds", type=THRESHOLD, multiple=True,
        help=f"Exit 1 unless this holds (repeatable; beside the summaries' own), e.g. {THRESHOLD_EXAMPLE}.")
@option("--summary-json", type=OutputPath(allow_dash=True), default=None,
        help="Write the merged summary here as JSON ('-': as stdout's last line).")
def report(summaries, thresholds, summary_json):
    """Merge the summaries of load or run shards (--shard I/N --summary-json FILE) into one, exactly: counts
    and latency histograms add, so the percentiles are those of one run over all the requests. SUMMARY '-'
    reads JSON lines from stdin (kubectl logs of shards run with --summary-json -): other lines are skipped.

    Prints the merged summary and its thresholds' verdicts; exits 1 when one fails.
    """
    from fastmock.report import ReportError, merge_summaries, read_summaries, report_passed, report_text

    found = []
    try:
        for name in summaries:
            with click.open_file(name, encoding="utf-8", errors="replace") as file:
                found += read_summaries("stdin" if name == "-" else name, file.read())
        merged = merge_summaries(found, thresholds)
    except ReportError as exc:
        raise click.BadParameter(str(exc), param_hint="'SUMMARY'") from None
    click.echo(report_text(merged))
    _write_summary(summary_json, merged)
    if not report_passed(merged):
        sys.exit(1)


def _check_cacert(cacert, insecure) -> None:
    """--cacert must hold a CA certificate, and means nothing with --insecure."""
    if cacert is not None and insecure:
        raise click.BadParameter("--insecure verifies nothing: not with --cacert", param_hint="'--cacert'")
    if cacert is not None:
        try:
            ssl.create_default_context(cafile=cacert)
        except (ssl.SSLError, ValueError) as exc:
            raise click.BadParameter(f"{cacert}: no CA certificate in it ({exc})", param_hint="'--cacert'") from None


def _signed_duration(text: str) -> tuple:
    """``-2s`` or ``1.5s``: seconds with a sign (a clock may be behind)."""
    text = text.strip()
    return (-parse_duration(text[1:]) if text.startswith("-") else parse_duration(text),)


@cli.command()
@option("--fleet", "fleet_url", metavar="URL", default=None,
        callback=lambda ctx, param, url: url and _http_url(url, param, ctx),
        help="The fleet's management API: the truth from its /events, its endpoints from /endpoints.")
@option("--token", default=None, help="With --fleet: its bearer token, if it was started with --token-reads.")
@option("--events", "events_file", type=click.File("rb"), default=None,
        help="The truth from a saved event log (GET /events: JSON lines) instead.")
@option("--endpoints-file", type=click.File("rb"), default=None,
        help="With --events: the fleet's endpoints (a saved GET /endpoints: a URL a line, or JSON), so that "
             "alerts naming others are listed as unknown.")
@option("--alerts", "alerts_file", type=click.File("rb"), default=None,
        help="The monitor's alerts: CSV (time,target,state) or JSON lines ({time, target, state}); "
             "state firing or resolved, time epoch seconds or RFC 3339.")
@option("--listen", metavar="HOST:PORT", default=None,
        help="Receive Alertmanager's webhook on HOST:PORT (point a webhook_config at http://HOST:PORT/) "
             "until --duration or Ctrl-C, then score.")
@option("--duration", type=Duration(minimum=0.001), default=None, help="With --listen: how long to listen.")
@option("--prometheus", metavar="URL", default=None,
        callback=lambda ctx, param, url: url and _http_url(url, param, ctx),
        help="Read the alerts from this Prometheus server: --query sampled every --step over the events' time.")
@option("--query", default="probe_success == 0", show_default=True,
        help="With --prometheus: a series is firing while it has samples (e.g. ALERTS{alertstate=\"firing\"}).")
@option("--step", type=Duration(minimum=0.001), default="1s", show_default=True,
        help="With --prometheus: the sampling step.")
@option("--target-label", default="instance", show_default=True,
        help="The alert label that names the endpoint (a URL, HOST:PORT or port).")
@option("--bad", default=",".join(DEFAULT_BAD), show_default=True,
        help=f"What counts as an outage: any of {', '.join(BAD_KINDS)}.")
@option("--alert-on-expiring", is_flag=True, help="Count expiring(DAYS) certificates as outages too.")
@option("--flaky-above", type=Parsed("SHARE", lambda text: (parse_share(text),)), default="0", show_default=True,
        help="A flaky port (some answers fail) is down only when more than this share fails, e.g. 20%.")
@option("--slow-above", type=Duration(), default="0s", show_default=True,
        help="A slow port is down only when its typical delay is longer (a dripping one always is).")
@option("--grace", type=Duration(), default="0s", show_default=True,
        help="An alert this long before an outage began or after it ended still belongs to it (and is no "
             "false alert).")
@option("--skew", type=Parsed("DURATION", _signed_duration), default="0s", show_default=True,
        help="How far the monitor's clock is ahead of the fleet's (negative: behind).")
@option("--max-size", type=Size(minimum=1), default="256M", show_default=True,
        help="The largest events, endpoints or alerts file read.")
@option("--json", "as_json", is_flag=True, help="Print the report as JSON (every incident, every false alert).")
@option("--threshold", "thresholds", type=Parsed("METRIC<VALUE", lambda text: parse_threshold(text, SCORE_METRICS)),
        multiple=True, help=f"Exit 1 unless this holds (repeatable), e.g. 'recall>=0.99', 'detect_p95<60s', "
                            f"'killed.recall>=1'; metrics: {', '.join(m for m in SCORE_METRICS if '.' not in m)}; "
                            f"for one kind of outage KIND.METRIC, KIND one of {', '.join(BAD_KINDS)} and METRIC one "
                            f"of {', '.join(KIND_METRICS)}.")
def score(fleet_url, token, events_file, endpoints_file, alerts_file, listen, duration, prometheus, query, step,
          target_label, bad, alert_on_expiring, flaky_above, slow_above, grace, skew, max_size, as_json, thresholds):
    """Grade an uptime monitor against the outages a fleet recorded: per outage how soon it alerted and
    saw the recovery, which it missed, which of its alerts were false. Exit 1 when a --threshold fails."""
    from fastmock.fleet.management.events import EVENT_LOG_SIZE
    from fastmock.score import (Badness, ScoreError, WebhookAlerts, alerts_from_prometheus, alerts_from_text,
                                incidents_from_events, log_starts_late)
    from fastmock.score import score as grade

    if (fleet_url is None) == (events_file is None):
        raise click.UsageError("give the truth: --fleet URL or --events FILE (one of them)")
    if [alerts_file, listen, prometheus].count(None) != 2:
        raise click.UsageError("give the alerts: --alerts FILE, --listen HOST:PORT or --prometheus URL (one of them)")
    if duration is not None and listen is None:
        raise click.BadParameter("only with --listen", param_hint="'--duration'")
    if endpoints_file is not None and events_file is None:
        raise click.BadParameter("only with --events (--fleet names its own endpoints)",
                                 param_hint="'--endpoints-file'")
    kinds = tuple(kind.strip() for kind in bad.split(",") if kind.strip())
    unknown = [kind for kind in kinds if kind not in BAD_KINDS]
    if unknown or not kinds:
        raise click.BadParameter(f"{unknown[0] if unknown else bad!r}: not one of {', '.join(BAD_KINDS)}",
                                 param_hint="'--bad'")
    if token is not None and fleet_url is None:
        raise click.BadParameter("only with --fleet", param_hint="'--token'")
    received = WebhookAlerts(target_label)
    if listen is not None:
        if fleet_url is not None:  # the truth is read after listening: a wrong URL or token must not waste that
            _truth(fleet_url, token, None, max_size, limit=1)
        _receive_webhooks(listen, duration, received)
    events, endpoints = _truth(fleet_url, token, events_file, max_size)
    horizon = log_starts_late(events)
    if endpoints_file is not None:
        try:
            endpoints = parse_endpoints(_read_text(endpoints_file, max_size, "'--endpoints-file'"))
        except EndpointsError as exc:
            raise click.BadParameter(f"{endpoints_file.name}: {exc}", param_hint="'--endpoints-file'") from None
    incidents = incidents_from_events(events, Badness(kinds, flaky_above[0], slow_above, alert_on_expiring))
    by_port = not any(isinstance(port, str) for event in events for port in event.get("ports", []))
    until = time.time() if listen or prometheus else max([event["time"] for event in events] or [0.0])
    try:
        if alerts_file is not None:
            alerts = alerts_from_text(alerts_file.name, _read_text(alerts_file, max_size, "'--alerts'"), by_port)
            until = max([until, *(alert.end or alert.start for alert in alerts)])
        elif listen is not None:
            alerts = received.spells(by_port)
        else:
            first = min([event["time"] for event in events] or [until - 3600])
            alerts = alerts_from_prometheus(prometheus, query, first - 60, until, step, target_label, by_port)
    except ScoreError as exc:
        raise click.BadParameter(str(exc), param_hint="'--prometheus'" if prometheus else "'--alerts'") from None
    if horizon is not None:  # alerts about outages the log no longer holds would all look false
        kept = [alert for alert in alerts if alert.end is None or alert.end - skew[0] >= horizon]
        click.echo(f"fastmock: warning: the event log no longer holds its first events (a fleet keeps the last "
                   f"{EVENT_LOG_SIZE:,} a pod); scoring from {horizon:.3f}, without {len(alerts) - len(kept)} "
                   f"alert(s) that ended before", err=True)
        alerts = kept
    if endpoints is not None:
        endpoints = {endpoint_key(url, by_port) for url in endpoints}
    report = grade(incidents, alerts, until, grace, skew[0], endpoints, received.unlabeled)
    report["thresholds"] = [{**check, "value": None if math.isnan(check["value"]) else check["value"]}
                            for check in evaluate(thresholds, lambda metric: score_metric(report, metric))]
    click.echo(json.dumps(report, indent=2) if as_json else score_text(report))
    if not all(check["ok"] for check in report["thresholds"]):
        sys.exit(1)


def _truth(fleet_url, token, events_file, max_size: int, limit: int = 10_000_000) -> tuple[list, list | None]:
    """The fleet's events, and its endpoints' URLs when the fleet was asked (None from a file); ``limit``:
    the most of each asked for (the default: every event of 100 pods' logs, whole)."""
    from fastmock.score import ScoreError, event_problem, events_from_text

    if events_file is not None:
        try:
            return events_from_text(events_file.name, _read_text(events_file, max_size, "'--events'")), None
        except ScoreError as exc:
            raise click.BadParameter(str(exc), param_hint="'--events'") from None
    client = FleetClient(fleet_url, token, timeout_s=60)
    try:
        events = client.events(since=0, limit=limit)
        endpoints = client.endpoint_urls(limit=limit, state="all")
    except (FleetError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="'--fleet'") from None
    problems = [problem for problem in map(event_problem, events) if problem]
    if problems:
        raise click.BadParameter(f"{fleet_url}/events: {problems[0]}", param_hint="'--fleet'")
    return events, endpoints


def _receive_webhooks(listen: str, duration: float | None, received) -> None:
    """Alertmanager's webhook notifications on ``listen``, into ``received`` (a score.WebhookAlerts), until
    ``duration`` has passed or Ctrl-C."""
    import http.server
    import threading

    try:
        host, port = _host_port(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--listen'") from None

    lock = threading.Lock()  # the server answers each notification in its own thread

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = self.headers.get("Content-Length", "0")
            if not length.isdigit() or int(length) > MAX_DOCUMENT_BYTES:
                self.send_error(413 if length.isdigit() else 400)
                return
            body = self.rfile.read(int(length))
            with lock:
                self.send_response(200 if received.receive(body) else 400)
            self.end_headers()

        def log_message(self, *args) -> None:  # quiet: a line per notification is noise
            pass

    try:
        server = http.server.ThreadingHTTPServer((host, port), Receiver)
    except OSError as exc:
        raise click.BadParameter(f"cannot listen on {listen}: {exc.strerror}", param_hint="'--listen'") from None
    click.echo(f"fastmock: receiving Alertmanager webhooks on http://{listen}/"
               + (f" for {duration:g}s" if duration else " until Ctrl-C"), err=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        time.sleep(duration) if duration else threading.Event().wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()


IMAGE_SCENARIO = "/etc/fastmock/scenario.yaml"  # what the Docker image runs when no file is given


@cli.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False), required=False)
@option("--task", envvar="TASK", default=None,
        help="Run this task (env TASK); default: the file's default_task, or its only task.")
@option("--all", "all_tasks", is_flag=True, help="Run every task at once.")
@option("--duration", type=Duration(minimum=0.001), envvar="DURATION_SECONDS", default=None,
        help="Each task's whole length: replaces 'for', cuts stages that run past it "
             "(env DURATION_SECONDS; bare number: seconds).")
@option("--base-url", envvar="BASE_URL", default=None, help="Override base_url (env BASE_URL).")
@option("--api-token", envvar="API_TOKEN", default=None,
        help="Send 'Authorization: Bearer TOKEN' (env API_TOKEN).")
@option("--connect-timeout", type=Duration(minimum=0.001), envvar="CONNECT_TIMEOUT", default=None,
        help="Override timeouts.connect (env CONNECT_TIMEOUT; bare number: seconds).")
@option("--read-timeout", type=Duration(minimum=0.001), envvar="READ_TIMEOUT", default=None,
        help="Override timeouts.read (env READ_TIMEOUT; bare number: seconds).")
@option("--log-level", envvar="LOG_LEVEL", default="info", show_default=True,
        type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
        help="info: a JSON line per request; debug: with headers and bodies; warning: failures only "
             "(env LOG_LEVEL).")
@option("--metrics-port", type=click.IntRange(1, 65535), default=None,
        help="Serve Prometheus metrics on PORT while running.")
@METRICS_HOST
@option("--shard", type=Shard(), default="0/1", show_default=True,
        help="Take shard I of N of the rates and iterations (N alone: I from JOB_COMPLETION_INDEX).")
@option("--threshold", "thresholds", type=THRESHOLD, multiple=True,
        help=f"Exit 1 unless this holds (repeatable; beside the file's thresholds), e.g. {THRESHOLD_EXAMPLE}.")
@option("--cacert", type=click.Path(exists=True, dir_okay=False), default=None,
        help="https: trust the CA in this PEM file (e.g. fastmock's) instead of the system's.")
@option("--insecure", "-k", is_flag=True, help="https: verify no certificate.")
@option("--summary-json", type=OutputPath(allow_dash=True), default=None,
        help="Write the summary (per step, latency histograms, thresholds) here as JSON, for 'fastmock report'; "
             "'-': as stdout's last line.")
def run(scenario, task, all_tasks, duration, base_url, api_token, connect_timeout, read_timeout, log_level,
        metrics_port, metrics_host, shard, thresholds, cacert, insecure, summary_json):
    """Run a scenario file's task: JSON lines per request on stdout; exit 1 if a check failed (or, when
    there are thresholds, if one fails). Without SCENARIO, the Docker image's /etc/fastmock/scenario.yaml."""
    if scenario is None:
        if not os.path.exists(IMAGE_SCENARIO):
            raise click.UsageError(f"give a SCENARIO file (there is no {IMAGE_SCENARIO})")
        scenario = IMAGE_SCENARIO
    if task is not None and all_tasks:
        raise click.BadParameter("--all runs every task: give no --task (or TASK) with it", param_hint="'--all'")
    _check_cacert(cacert, insecure)
    try:
        loaded = load_scenario(scenario)
    except ScenarioError as exc:
        raise click.BadParameter(str(exc), param_hint="'SCENARIO'") from None
    settings = RunSettings(task=task, all_tasks=all_tasks, duration_s=duration, base_url=base_url,
                           api_token=api_token, connect_timeout_s=connect_timeout, read_timeout_s=read_timeout,
                           log_level=log_level, shard=shard[0], shards=shard[1], metrics_port=metrics_port,
                           metrics_host=metrics_host,
                           thresholds=thresholds, cacert=cacert, insecure=insecure)
    try:
        chosen_tasks(loaded, settings)
    except ScenarioError as exc:
        raise click.BadParameter(str(exc), param_hint="'--task'") from None
    summary = run_scenario(loaded, settings)
    for line in run_summary_lines(summary):
        click.echo(f"fastmock: {line}", err=True)
    _write_summary(summary_json, summary)
    sys.exit(0 if run_passed(summary) else 1)


# --- ctl and shell: clients of a fleet's management API ---------------------------------------------

cli.add_command(ctl)


# --- tls: the local CA and certificates with trouble on demand -------------------------------------------

CA_DIR_OPTION = option("--ca-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                       help="Where the local CA lives  [default: $XDG_STATE_HOME/fastmock/tls]")


@cli.group()
def tls():
    """fastmock's local CA, and certificates in every state a monitor should catch."""


@tls.command("ca")
@CA_DIR_OPTION
def tls_ca(ca_dir):
    """Print the local CA certificate (made on first use, then kept), to trust once."""
    from fastmock.tls import CertificateAuthority, TlsError

    try:
        click.echo(CertificateAuthority(ca_dir).pem.decode(), nl=False)
    except TlsError as exc:
        raise click.ClickException(str(exc)) from None


@tls.command("trust-help")
@CA_DIR_OPTION
def tls_trust_help(ca_dir):
    """How to make curl, Python, Node and Go trust the local CA."""
    from fastmock.tls import TRUST_HELP, default_ca_dir

    click.echo(TRUST_HELP.format(path=(ca_dir or default_ca_dir()) / "ca.pem"), nl=False)


@tls.command("issue")
@click.argument("state")
@option("--out-dir", type=click.Path(file_okay=False, exists=True, writable=True, path_type=Path), required=True,
        help="Write cert.pem (the chain a server sends) and key.pem here (and intermediate.pem for "
             "incomplete-chain).")
@option("--host", "hosts", multiple=True, help="A name or address the certificate is for (repeatable)  "
                                          "[default: localhost, 127.0.0.1, ::1]")
@option("--key-type", type=click.Choice(["p256", "p384", "rsa2048", "rsa4096"]), default="p256", show_default=True)
@CA_DIR_OPTION
def tls_issue(state, out_dir, hosts, key_type, ca_dir):
    """Issue a certificate in STATE for another server (nginx, your own): valid, expired, not-yet-valid,
    expiring(DAYS), wrong-host, self-signed, untrusted-root or incomplete-chain."""
    from fastmock.tls import DEFAULT_HOSTS, CertificateAuthority, TlsError, parse_state

    try:
        parse_state(state)
    except TlsError as exc:
        raise click.BadParameter(str(exc), param_hint="'STATE'") from None
    try:
        issued = CertificateAuthority(ca_dir, key_type, hosts or DEFAULT_HOSTS).issue(state)
    except TlsError as exc:
        raise click.ClickException(str(exc)) from None
    _write_or_fail(out_dir / "cert.pem", lambda file: file.write(issued.chain_pem.decode()))
    _write_or_fail(out_dir / "key.pem", lambda file: file.write(issued.key_pem.decode()))
    os.chmod(out_dir / "key.pem", 0o600)
    if issued.missing_pem:
        _write_or_fail(out_dir / "intermediate.pem", lambda file: file.write(issued.missing_pem.decode()))
    click.echo(f"{issued.state} certificate in {out_dir}/cert.pem (key: key.pem), valid until "
               f"{issued.not_after:%Y-%m-%d %H:%M} UTC")


@cli.command()
@option("--url", default=DEFAULT_URL, show_default=True, help="The fleet's management API.")
@option("--token", default=None, help="Bearer token, if the fleet was started with --token.")
def shell(url, token):
    """An interactive shell for a local fleet: start, and every ctl command (stats, kill, revive, ...)."""
    sys.exit(run_shell(url, token))


@cli.command("rewrite-config")
@click.argument("source", metavar="IN", type=click.File("rb"))
@click.argument("target", metavar="OUT", type=OutputPath(allow_dash=True))
@option("--endpoints-url", default=f"{DEFAULT_URL}/endpoints?limit=1000000", show_default=True,
        callback=lambda ctx, param, url: _http_url(url, param, ctx),
        help="Where to read endpoint URLs (a fleet's /endpoints; http or https).")
@option("--endpoints-file", type=click.File("rb"), default=None,
        help="Read endpoint URLs from this file instead (one per line, # comments, or a JSON list).")
@option("--max-size", type=Size(minimum=1), default="64M", show_default=True,
        help="The largest IN (and endpoints file or answer) read.")
@option("--field", "fields", multiple=True, default=("url", "host"), show_default=True,
        help="A key whose values are replaced (repeatable); 'host' gets HOST:PORT, others the URL.")
@option("--host-format", type=click.Choice(HOST_FORMATS), default="hostport", show_default=True,
        help="What 'host' fields get: HOST:PORT, or the whole URL (the old tool's output).")
@option("--cycle", is_flag=True, help="Reuse the endpoints when the document has more fields.")
@option("--dry-run", is_flag=True, help="Print a unified diff instead of writing OUT.")
def rewrite_config(source, target, endpoints_url, endpoints_file, max_size, fields, host_format, cycle, dry_run):
    """Point every url/host field of a YAML or JSON document at fleet endpoints.

    IN and OUT may be '-' (stdin, stdout). Comments, order, quoting and layout are kept; OUT is written
    whole (through a temporary file) or not at all.
    """
    text = _read_text(source, max_size, "'IN'")
    try:
        endpoints = parse_endpoints(_read_text(endpoints_file, max_size, "'--endpoints-file'")) if endpoints_file \
            else fetch_endpoints(endpoints_url, max_bytes=max_size)
        result, replaced = rewrite(text, endpoints, fields, cycle, host_format)
    except ConfigError as exc:
        raise click.BadParameter(f"{source.name}: {exc}", param_hint="'IN'") from None
    except EndpointsError as exc:
        raise click.ClickException(str(exc)) from None
    if replaced == 0:
        click.echo(f"warning: no {'/'.join(fields)} fields in {source.name}", err=True)
    if dry_run:
        click.echo("".join(difflib.unified_diff(text.splitlines(keepends=True), result.splitlines(keepends=True),
                                                source.name, target)), nl=False)
    elif target == "-":
        click.echo(result, nl=False)
    else:
        _write_or_fail(target, lambda file: file.write(result))
    if target != "-" or dry_run:
        click.echo(f"{replaced} fields replaced" + (" (dry run)" if dry_run else f" in {target}"), err=True)


def _read_text(file, max_size: int, param_hint: str) -> str:
    """An opened binary file's text: UTF-8 and at most ``max_size`` bytes (--max-size), else a usage error."""
    try:
        return decode_text(file.read(max_size + 1), max_size)
    except DocumentError as exc:
        raise click.BadParameter(exc.at(file.name), param_hint=param_hint) from None


def _http_url(url: str, param, ctx) -> str:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise click.BadParameter(f"{url!r} is not an http or https URL", ctx, param)
    return url


def main() -> None:
    cli()
