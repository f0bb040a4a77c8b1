# A gRPC service for skein's `call: grpc` tests, written with Python's grpcio (not
# skein's own stack). Usage: grpc_service.py PORT DIR, where DIR holds greeter.proto;
# the stubs are generated there with grpc_tools. It serves reflection too, prints
# "ready" once listening and runs until killed.
#
# With DIR/app/greet.proto (the spec's example), GreeterApi.Greeter.SayHello answers too.
#
# Greeter.Greet answers with what it saw (the authorization and idempotency-key
# metadata, the time left before the call's deadline); Greeter.Flaky fails with the
# asked status code as many times per key as asked, then answers with the count of
# attempts; Greeter.Slow sleeps for the asked milliseconds.

import sys
import threading
import time
from concurrent import futures

port, work = sys.argv[1], sys.argv[2]
sys.path.insert(0, work)

from grpc_tools import protoc  # noqa: E402

if protoc.main(["protoc", f"-I{work}", f"--python_out={work}", f"--grpc_python_out={work}", f"{work}/greeter.proto"]) != 0:
    sys.exit("protoc failed")

import grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection  # noqa: E402

import greeter_pb2  # noqa: E402
import greeter_pb2_grpc  # noqa: E402

attempts = {}
lock = threading.Lock()


class Greeter(greeter_pb2_grpc.GreeterServicer):
    def Greet(self, request, context):
        metadata = dict(context.invocation_metadata())
        remaining = context.time_remaining()
        return greeter_pb2.GreetReply(
            message=f"Hello, {request.name}" + "!" * request.excitement,
            authorization=metadata.get("authorization", ""),
            idempotency_key=metadata.get("idempotency-key", ""),
            deadline_ms=-1 if remaining is None or remaining > 1e9 else int(remaining * 1000),
            tags=list(request.tags),
            nested=greeter_pb2.Nested(level=request.excitement),
        )

    def Flaky(self, request, context):
        with lock:
            attempts[request.key] = attempts.get(request.key, 0) + 1
            seen = attempts[request.key]
        if seen <= request.failures:
            context.abort(grpc.StatusCode[request.code], f"attempt {seen} of {request.key} fails")
        return greeter_pb2.FlakyReply(attempts=seen)

    def Slow(self, request, context):
        time.sleep(request.ms / 1000)
        return greeter_pb2.FlakyReply(attempts=1)


server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
greeter_pb2_grpc.add_GreeterServicer_to_server(Greeter(), server)
services = [greeter_pb2.DESCRIPTOR.services_by_name["Greeter"].full_name]

import os  # noqa: E402

if os.path.exists(f"{work}/app/greet.proto"):
    if protoc.main(["protoc", f"-I{work}/app", f"--python_out={work}", f"--grpc_python_out={work}", f"{work}/app/greet.proto"]) != 0:
        sys.exit("protoc failed on app/greet.proto")
    import greet_pb2  # noqa: E402
    import greet_pb2_grpc  # noqa: E402

    class Hello(greet_pb2_grpc.GreeterServicer):
        def SayHello(self, request, context):
            return greet_pb2.HelloReply(message=f"Hello, {request.name}")

    greet_pb2_grpc.add_GreeterServicer_to_server(Hello(), server)
    services.append(greet_pb2.DESCRIPTOR.services_by_name["Greeter"].full_name)

reflection.enable_server_reflection((*services, reflection.SERVICE_NAME), server)
server.add_insecure_port(f"127.0.0.1:{port}")
server.start()
print("ready", flush=True)
server.wait_for_termination()
