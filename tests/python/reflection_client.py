"""An outside user's client: python grpcio, no generated code, everything learnt from the
daemon through gRPC reflection. Usage: reflection_client.py SOCKET"""
import sys

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message_factory import GetMessageClass
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

socket = sys.argv[1]
# grpcio's default channel, as a user would open it: grpcio >= 1.57 sends the socket path as
# the HTTP/2 :authority, which berthd's socket accepts.
channel = grpc.insecure_channel(f"unix:{socket}")
database = ProtoReflectionDescriptorDatabase(channel)
services = database.get_services()
print("services:", " ".join(sorted(services)))

pool = descriptor_pool.DescriptorPool(database)
service = pool.FindServiceByName("berth.v1.ContainerService")


def call(service_descriptor, method_name, **fields):
    method = service_descriptor.FindMethodByName(method_name)
    request_class = GetMessageClass(method.input_type)
    response_class = GetMessageClass(method.output_type)
    stub = channel.unary_unary(
        f"/{service_descriptor.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    return stub(request_class(**fields), timeout=10)


listed = call(service, "ListContainers")
print("containers:", " ".join(c.id for c in listed.containers))

health = pool.FindServiceByName("grpc.health.v1.Health")
reply = call(health, "Check", service="berth.v1.ContainerService")
print("health:", reply.DESCRIPTOR.fields_by_name["status"].enum_type.values_by_number[reply.status].name)

try:
    call(service, "GetContainer", id="a/b")
    sys.exit("an invalid id was accepted")
except grpc.RpcError as error:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    print("invalid id:", error.details())
