"""The gRPC side of ``fastmock hp``: EchoService (``proto/echo.proto``), grpc.health.v1 and server reflection.

It is served by grpcio's synchronous server, whose own threads run beside the worker's uvloop loop: HTTP
stays on the loop untouched, and gRPC needs no loop integration. Only a worker imports this module (never a
parent before it forks: grpcio's threads do not survive a fork).
"""

import base64
import time
from concurrent import futures

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

__all__ = ["SERVICE", "GrpcEcho", "echo_file_descriptor"]

SERVICE = "echo.EchoService"


def echo_file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    """``proto/echo.proto`` as a descriptor, so no generated code ships (a test checks the two agree)."""
    field = descriptor_pb2.FieldDescriptorProto
    string, int64, int32, message = field.TYPE_STRING, field.TYPE_INT64, field.TYPE_INT32, field.TYPE_MESSAGE

    def add_message(container, name, *fields):
        added = container.add(name=name)
        for number, (field_name, kind, *type_name) in enumerate(fields, 1):
            added.field.add(name=field_name, number=number, type=kind, label=field.LABEL_OPTIONAL,
                            json_name=_camel(field_name), type_name=type_name[0] if type_name else None)
        return added

    proto = descriptor_pb2.FileDescriptorProto(name="echo.proto", package="echo", syntax="proto3")
    proto.options.go_package = "fastmock/echo;echo"
    add_message(proto.message_type, "EchoRequest",
                ("message", string), ("timestamp", int64), ("response_code", int32))
    response = add_message(
        proto.message_type, "EchoResponse",
        ("message", string), ("request_timestamp", int64), ("response_timestamp", int64),
        ("server_hostname", string), ("metadata", message, ".echo.EchoResponse.MetadataEntry"),
        ("method", string), ("response_code", int32))
    response.field[4].label = field.LABEL_REPEATED
    entry = add_message(response.nested_type, "MetadataEntry", ("key", string), ("value", string))
    entry.options.map_entry = True
    service = proto.service.add(name="EchoService")
    service.method.add(name="Echo", input_type=".echo.EchoRequest", output_type=".echo.EchoResponse")
    service.method.add(name="StreamEcho", input_type=".echo.EchoRequest", output_type=".echo.EchoResponse",
                       client_streaming=True, server_streaming=True)
    return proto


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _message_classes():
    pool = descriptor_pool.Default()  # the pool server reflection answers from
    try:
        pool.FindFileByName("echo.proto")
    except KeyError:
        pool.Add(echo_file_descriptor())
    return (message_factory.GetMessageClass(pool.FindMessageTypeByName("echo.EchoRequest")),
            message_factory.GetMessageClass(pool.FindMessageTypeByName("echo.EchoResponse")))


EchoRequest, EchoResponse = _message_classes()
STATUS_BY_CODE = {status.value[0]: status for status in grpc.StatusCode}


class GrpcEcho:
    """EchoService, health and reflection on ``host:port``; ``drain`` marks it NOT_SERVING and stops it."""

    def __init__(self, host: str, port: int, *, threads: int, reuse_port: bool, hostname: str,
                 tls: tuple[bytes, bytes] | None = None) -> None:
        """``tls``: (key, certificate chain) as PEM: the port speaks TLS."""
        self.hostname = hostname
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc"),
                                  options=[("grpc.so_reuseport", int(reuse_port))])
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {
            "Echo": grpc.unary_unary_rpc_method_handler(
                self.echo, EchoRequest.FromString, EchoResponse.SerializeToString),
            "StreamEcho": grpc.stream_stream_rpc_method_handler(
                self.stream_echo, EchoRequest.FromString, EchoResponse.SerializeToString),
        })])
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server)
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if tls is None:
                self.port = self.server.add_insecure_port(address)
            else:
                self.port = self.server.add_secure_port(address, grpc.ssl_server_credentials([tls]))
        except RuntimeError as exc:  # grpcio raises for an address it cannot bind
            raise OSError(f"cannot listen on {address}: {exc}") from None
        if self.port == 0:  # older grpcio reports a failed bind as port 0
            raise OSError(f"cannot listen on {address}")
        self.server.start()
        for service in ("", SERVICE):
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def drain(self, grace_s: float):
        """NOT_SERVING for every service, refuse new calls, let calls in flight end within ``grace_s``.

        Returns a threading.Event set once the server has stopped.
        """
        self.health.enter_graceful_shutdown()
        return self.server.stop(grace_s)

    def echo(self, request, context):
        return self._answer(request, context, f"/{SERVICE}/Echo")

    def stream_echo(self, requests, context):
        method = f"/{SERVICE}/StreamEcho"
        for request in requests:
            yield self._answer(request, context, method)

    def _answer(self, request, context, method: str):
        code = request.response_code
        if code:
            status = STATUS_BY_CODE.get(code)
            if status is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"response_code must be a gRPC status code 0-16, not {code}")
            context.abort(status, f"requested error: {status.name}")
        metadata: dict[str, str] = {}
        for key, value in context.invocation_metadata():
            text = base64.b64encode(value).decode() if key.endswith("-bin") else value
            metadata[key] = f"{metadata[key]}, {text}" if key in metadata else text
        return EchoResponse(message=request.message, request_timestamp=request.timestamp,
                            response_timestamp=time.time_ns(), server_hostname=self.hostname,
                            metadata=metadata, method=method, response_code=code)
