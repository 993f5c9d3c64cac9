"""gRPC on ``fastmock hp``: grpcio stubs generated from the shipped .proto, health, reflection, shutdown."""

import importlib
import importlib.resources
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_tools import protoc

from helpers import free_port, start_server

PROTO = importlib.resources.files("fastmock") / "proto" / "echo.proto"
ENV_WITHOUT_GRPC_PORT = {key: value for key, value in os.environ.items() if key != "FASTMOCK_HP_GRPC_PORT"}


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    """echo_pb2 and echo_pb2_grpc, generated from the .proto the package ships, as a user would."""
    out = tmp_path_factory.mktemp("stubs")
    status = protoc.main(["protoc", f"-I{PROTO.parent}", f"--python_out={out}", f"--grpc_python_out={out}",
                          f"--descriptor_set_out={out / 'echo.pb'}", str(PROTO)])
    assert status == 0
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module("echo_pb2"), importlib.import_module("echo_pb2_grpc"), out / "echo.pb"
    finally:
        sys.path.remove(str(out))


@pytest.fixture(scope="module")
def hp():
    port = free_port()
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--grpc-port", str(port)) as server:
        server.grpc_port = port
        yield server
        server.stop()


@pytest.fixture
def channel(hp):
    with grpc.insecure_channel(f"127.0.0.1:{hp.grpc_port}") as channel:
        yield channel


def test_echo_returns_the_request_with_the_servers_view_of_the_call(stubs, channel):
    echo_pb2, echo_pb2_grpc, _ = stubs
    before = time.time_ns()
    reply = echo_pb2_grpc.EchoServiceStub(channel).Echo(
        echo_pb2.EchoRequest(message="héllo", timestamp=1234567), metadata=[("x-team", "qa"), ("x-team", "ops"),
                                                                          ("trace-bin", b"\x00\x01")])
    assert reply.message == "héllo"
    assert reply.request_timestamp == 1234567
    assert before <= reply.response_timestamp <= time.time_ns()
    assert reply.server_hostname == socket.gethostname()
    assert reply.metadata["x-team"] == "qa, ops"
    assert reply.metadata["trace-bin"] == "AAE="  # binary metadata as base64
    assert reply.metadata["user-agent"].startswith("grpc-python/")
    assert reply.method == "/echo.EchoService/Echo"
    assert reply.response_code == 0


@pytest.mark.parametrize("code", [grpc.StatusCode.CANCELLED, grpc.StatusCode.INVALID_ARGUMENT,
                                  grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED,
                                  grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE,
                                  grpc.StatusCode.UNAUTHENTICATED])
def test_a_response_code_fails_the_call_with_that_status(stubs, channel, code):
    echo_pb2, echo_pb2_grpc, _ = stubs
    with pytest.raises(grpc.RpcError) as failed:
        echo_pb2_grpc.EchoServiceStub(channel).Echo(echo_pb2.EchoRequest(message="x", response_code=code.value[0]))
    assert failed.value.code() is code
    assert failed.value.details() == f"requested error: {code.name}"


def test_a_response_code_that_is_no_status_is_an_invalid_argument(stubs, channel):
    echo_pb2, echo_pb2_grpc, _ = stubs
    with pytest.raises(grpc.RpcError) as failed:
        echo_pb2_grpc.EchoServiceStub(channel).Echo(echo_pb2.EchoRequest(response_code=99))
    assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not 99" in failed.value.details()


def test_stream_echo_answers_each_message_in_order(stubs, channel):
    echo_pb2, echo_pb2_grpc, _ = stubs
    requests = (echo_pb2.EchoRequest(message=f"m{i}", timestamp=i) for i in range(200))
    replies = list(echo_pb2_grpc.EchoServiceStub(channel).StreamEcho(requests))
    assert [(r.message, r.request_timestamp) for r in replies] == [(f"m{i}", i) for i in range(200)]
    assert {r.method for r in replies} == {"/echo.EchoService/StreamEcho"}


def test_stream_echo_fails_at_the_message_with_a_response_code(stubs, channel):
    echo_pb2, echo_pb2_grpc, _ = stubs
    requests = [echo_pb2.EchoRequest(message="a"), echo_pb2.EchoRequest(message="b"),
                echo_pb2.EchoRequest(message="c", response_code=grpc.StatusCode.ABORTED.value[0]),
                echo_pb2.EchoRequest(message="never answered")]
    replies = []
    with pytest.raises(grpc.RpcError) as failed:
        for reply in echo_pb2_grpc.EchoServiceStub(channel).StreamEcho(iter(requests)):
            replies.append(reply.message)
    assert replies == ["a", "b"]
    assert (failed.value.code(), failed.value.details()) == (grpc.StatusCode.ABORTED, "requested error: ABORTED")


def test_health_reports_serving_for_the_server_and_the_echo_service(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "echo.EchoService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as failed:
        health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert failed.value.code() is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_services_and_serves_the_shipped_descriptor(stubs, channel):
    *_, descriptor_set = stubs
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    listed, described = reflect.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="echo.EchoService"),
    ]))
    names = {service.name for service in listed.list_services_response.service}
    assert {"echo.EchoService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names
    served = descriptor_pb2.FileDescriptorProto.FromString(
        described.file_descriptor_response.file_descriptor_proto[0])
    shipped = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set.read_bytes()).file[0]
    assert served == shipped  # the service is built from exactly what proto/echo.proto declares


def test_shutdown_turns_health_not_serving_then_stops():
    port = free_port()
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--grpc-port", str(port),
                      "--shutdown-timeout", "3s") as server:
        statuses = []
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))

            def follow():
                try:
                    for update in watch:
                        statuses.append(update.status)
                except grpc.RpcError:
                    pass  # the server ends the stream when it stops

            follower = threading.Thread(target=follow)
            follower.start()
            deadline = time.monotonic() + 5
            while not statuses and time.monotonic() < deadline:
                time.sleep(0.01)
            server.proc.send_signal(signal.SIGTERM)
            follower.join(10)
            assert server.proc.wait(10) == 0
        assert statuses == [health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING]
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as failed:
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            assert failed.value.code() is grpc.StatusCode.UNAVAILABLE


def test_two_workers_share_the_grpc_port(stubs):
    echo_pb2, echo_pb2_grpc, _ = stubs
    port = free_port()
    with start_server("hp", "--port", "0", "--workers", "2", "--mem-interval", "0", "--grpc-port", str(port)) as server:
        assert server.log().count(f"listening on 127.0.0.1 port {port}") == 2
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert echo_pb2_grpc.EchoServiceStub(channel).Echo(echo_pb2.EchoRequest(message="w")).message == "w"
        server.stop()


def run_hp(*args, env=None, timeout=10, python_prelude=""):
    """``fastmock hp ARGS`` until it has served one /health, then SIGTERM; (exit status, stderr)."""
    code = f"{python_prelude}import sys; from fastmock.cli import main; sys.argv[0] = 'fastmock'; main()"
    proc = subprocess.Popen([sys.executable, "-c", code, "hp", "--port", "0", "--mem-interval", "0", *args],
                            stderr=subprocess.PIPE, text=True, env=env)
    stderr = ""
    deadline = time.monotonic() + timeout
    for line in proc.stderr:
        stderr += line
        if "listening on http" in line or time.monotonic() > deadline:
            proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout), stderr


def test_a_busy_grpc_port_named_on_the_command_line_is_an_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        status, stderr = run_hp("--grpc-port", str(port))
    assert status == 1
    assert f"Error: --grpc-port {port}: cannot listen on 127.0.0.1:{port}" in stderr
    assert "listening on http" not in stderr


def test_a_busy_default_grpc_port_is_logged_and_http_goes_on():
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", 50051))
            holder.listen()
        except OSError:
            pass  # someone else holds it: busy all the same
        status, stderr = run_hp(env=ENV_WITHOUT_GRPC_PORT)
    assert status == 0
    assert "gRPC not started: cannot listen on 127.0.0.1:50051" in stderr
    assert "--grpc-port 0 turns it off" in stderr
    assert "listening on http" in stderr


NO_GRPC = "sys.modules['grpc'] = None; "  # as if the grpc extra were not installed


def test_without_the_extra_an_explicit_grpc_port_is_a_usage_error():
    status, stderr = run_hp("--grpc-port", "50052", python_prelude="import sys; " + NO_GRPC)
    assert status == 2
    assert "Invalid value for '--grpc-port'" in stderr
    assert "pip install 'fastmock[grpc]'" in stderr


def test_without_the_extra_the_default_grpc_port_is_logged_and_http_goes_on():
    status, stderr = run_hp(env=ENV_WITHOUT_GRPC_PORT, python_prelude="import sys; " + NO_GRPC)
    assert status == 0
    assert "gRPC not started: the grpc extra is not installed (pip install 'fastmock[grpc]')" in stderr
    assert "listening on http" in stderr


def test_grpc_over_tls_with_the_local_ca(stubs, tmp_path):
    echo_pb2, echo_pb2_grpc, _ = stubs
    port = free_port()
    with start_server("hp", "--port", "0", "--mem-interval", "0", "--grpc-port", str(port), "--grpc-tls", "--tls",
                      "--tls-ca-dir", str(tmp_path)) as server:
        trusted = grpc.ssl_channel_credentials(root_certificates=(tmp_path / "ca.pem").read_bytes())
        with grpc.secure_channel(f"localhost:{port}", trusted) as channel:
            reply = echo_pb2_grpc.EchoServiceStub(channel).Echo(echo_pb2.EchoRequest(message="over tls"), timeout=10)
            assert reply.message == "over tls"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain, pytest.raises(grpc.RpcError):
            echo_pb2_grpc.EchoServiceStub(plain).Echo(echo_pb2.EchoRequest(message="plain"), timeout=5)
        assert "(TLS)" in server.log()


def test_grpc_tls_needs_tls():
    code, stderr = run_hp("--grpc-tls")
    assert code == 2 and "'--grpc-tls': needs --tls" in stderr
