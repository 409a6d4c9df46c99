"""Server reflection under both names: ``grpc.reflection.v1`` and ``grpc.reflection.v1alpha``.

grpcio-reflection serves only v1alpha, and tools that ask for v1 first (grpcurl, ``buf
curl``, Postman, grpc-java and grpc-go's reflection clients) get "service not found"
instead of falling back. The two protocols are the same messages under another package
name, so the bytes of a v1 call are read and written with the v1alpha classes and answered
by the same servicer. (Once grpcio-reflection ships v1 itself, this module gives way to it.)
"""

from __future__ import annotations

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection as v1alpha
from grpc_reflection.v1alpha import reflection_pb2

V1_SERVICE_NAME = "grpc.reflection.v1.ServerReflection"
"""The full name of reflection v1, as clients ask for it."""

_V1_METHOD = "ServerReflectionInfo"
_V1_FILE = "grpc/reflection/v1/reflection.proto"


def _declare_v1() -> None:
    """Adds the v1 file to the default pool, so reflection can describe itself as v1 too.

    Built from the v1alpha file: same messages and service, v1's package and options.
    """
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(_V1_FILE)
        return
    except KeyError:
        pass
    file = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(file)
    file.name = _V1_FILE
    file.package = "grpc.reflection.v1"
    file.options.Clear()
    file.options.java_package = "io.grpc.reflection.v1"
    file.options.java_multiple_files = True
    file.options.go_package = "google.golang.org/grpc/reflection/grpc_reflection_v1"
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    for message in file.message_type:
        for field in message.field:
            if field.type_name:
                field.type_name = field.type_name.replace(old, new)
    for service in file.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.Add(file)


def enable(service_names: list[str], server: grpc.aio.Server) -> None:
    """Serves reflection v1 and v1alpha on ``server``, listing ``service_names`` and both.

    >>> server = grpc.aio.server()
    >>> enable(["conveyor.api.tasks.v1.TaskService"], server)
    """
    _declare_v1()
    names = [*service_names, V1_SERVICE_NAME, v1alpha.SERVICE_NAME]
    servicer = v1alpha.aio.ReflectionServicer(names)
    v1alpha.enable_server_reflection(names, server)
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE_NAME, {_V1_METHOD: handler}),)
    )
