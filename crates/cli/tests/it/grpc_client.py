"""A gRPC client of skein written with Python's grpcio, not with skein's own code.

Used by the `grpc` integration test: it generates stubs from the repository's proto
files, then drives a running `skein server` through reflection, health, and the
skein.v1.Runner service (start, watch, pause, resume, cancel). It exits non-zero on the
first thing that is not as expected and prints a JSON summary on success.

usage: grpc_client.py ADDRESS TOKEN PROTO_DIR WORK_DIR
"""

import json
import os
import subprocess
import sys
import threading
import time

address, token, proto_dir, work_dir = sys.argv[1:5]

subprocess.run(
    [
        sys.executable, "-m", "grpc_tools.protoc",
        f"-I{proto_dir}",
        f"--python_out={work_dir}",
        f"--grpc_python_out={work_dir}",
        "skein/v1/runner.proto",
    ],
    check=True,
)
sys.path.insert(0, work_dir)

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)
from skein.v1 import runner_pb2, runner_pb2_grpc  # noqa: E402


def check(condition, message):
    if not condition:
        print(f"FAILED: {message}", file=sys.stderr)
        sys.exit(1)


channel = grpc.insecure_channel(address)
auth = [("authorization", f"Bearer {token}")]
summary = {}

# Reflection lists the services without any proto file.
services = sorted(ProtoReflectionDescriptorDatabase(channel).get_services())
check("skein.v1.Runner" in services, f"reflection lists {services}")
check("grpc.health.v1.Health" in services, f"reflection lists {services}")
summary["services"] = services

health = health_pb2_grpc.HealthStub(channel)
status = health.Check(health_pb2.HealthCheckRequest(service="skein.v1.Runner")).status
check(status == health_pb2.HealthCheckResponse.SERVING, f"health says {status}")

runner = runner_pb2_grpc.RunnerStub(channel)

# Without the token: refused.
try:
    runner.Get(runner_pb2.ExecutionRef(execution_id="x"))
    check(False, "a call without a token was accepted")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.UNAUTHENTICATED, f"no token: {e.code()}")

# An invalid workflow: INVALID_ARGUMENT, with the line of the problem.
try:
    runner.ExecuteAsync(
        runner_pb2.ExecuteRequest(workflow_yaml="document: {dsl: '1.0.3'}\ndo: 7\n"),
        metadata=auth,
    )
    check(False, "an invalid workflow was accepted")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"invalid: {e.code()}")
    summary["invalid"] = e.details()

workflow = """document: {dsl: '1.0.3', namespace: test, name: held, version: '1.0.0'}
do:
  - first:
      set: {n: '${ .n + 1 }'}
  - hold:
      wait: {seconds: 60}
  - last:
      set: {done: true}
"""
value = struct_pb2.Value()
value.struct_value.update({"n": 41})
request = runner_pb2.ExecuteRequest(
    execution_id="py-1", workflow_yaml=workflow, input=value, labels={"client": "grpcio"}
)
started = runner.ExecuteAsync(request, metadata=auth)
check(started.created, "the first start did not create")
check(started.execution.id == "py-1", f"id {started.execution.id}")
again = runner.ExecuteAsync(request, metadata=auth)
check(not again.created, "a repeated start created again")
try:
    other = struct_pb2.Value()
    other.struct_value.update({"n": 1})
    runner.ExecuteAsync(
        runner_pb2.ExecuteRequest(execution_id="py-1", workflow_yaml=workflow, input=other),
        metadata=auth,
    )
    check(False, "the same id with another input was accepted")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.ALREADY_EXISTS, f"conflict: {e.code()}")

events = []
watch_done = threading.Event()


def watch():
    for event in runner.Watch(runner_pb2.WatchRequest(execution_id="py-1"), metadata=auth):
        events.append((event.cursor, event.sequence, event.type))
    watch_done.set()


threading.Thread(target=watch, daemon=True).start()


def wait_for(kind, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if any(t.endswith(kind) for _, _, t in events):
            return
        time.sleep(0.02)
    check(False, f"no {kind} event; saw {events}")


wait_for("task.started.v1")
paused = runner.Pause(runner_pb2.ExecutionRef(execution_id="py-1"), metadata=auth)
check(paused.status == "suspended", f"after pause: {paused.status}")
wait_for("workflow.suspended.v1")
got = runner.Get(runner_pb2.ExecutionRef(execution_id="py-1"), metadata=auth)
check(got.status == "suspended", f"get after pause: {got.status}")
check(got.labels["client"] == "grpcio", f"labels {dict(got.labels)}")
resumed = runner.Resume(runner_pb2.ExecutionRef(execution_id="py-1"), metadata=auth)
check(resumed.status != "suspended", f"after resume: {resumed.status}")
wait_for("workflow.resumed.v1")
cancelled = runner.Cancel(runner_pb2.ExecutionRef(execution_id="py-1"), metadata=auth)
check(cancelled.status == "cancelled", f"after cancel: {cancelled.status}")
check(watch_done.wait(20), "the watch did not end after the execution ended")
# A second cancel is answered as the first; a pause is refused: the execution's state
# forbids it (FAILED_PRECONDITION), not a taken id (ALREADY_EXISTS).
again = runner.Cancel(runner_pb2.ExecutionRef(execution_id="py-1"), metadata=auth)
check(again.status == "cancelled", f"after a second cancel: {again.status}")
try:
    runner.Pause(runner_pb2.ExecutionRef(execution_id="py-1"), metadata=auth)
    check(False, "an ended execution was paused")
except grpc.RpcError as e:
    check(e.code() == grpc.StatusCode.FAILED_PRECONDITION, f"pause after the end: {e.code()}")
types = [t for _, _, t in events]
check(types[-1].endswith("workflow.cancelled.v1"), f"last event {types[-1]}")
sequences = [s for _, s, _ in events]
check(sequences == list(range(1, len(events) + 1)), f"sequences {sequences}")

# The first task's output went through the input: n = 41 + 1.
got = runner.Get(runner_pb2.ExecutionRef(execution_id="py-1"), metadata=auth)
check(got.tasks.completed >= 1, f"tasks {got.tasks}")

# A watch resumed from the second event's cursor gets the third event on.
resumed_watch = list(
    runner.Watch(runner_pb2.WatchRequest(execution_id="py-1", after=events[1][0]), metadata=auth)
)
check(
    [e.sequence for e in resumed_watch] == sequences[2:],
    f"resumed watch {[e.sequence for e in resumed_watch]}",
)

summary["events"] = types
print(json.dumps(summary))
