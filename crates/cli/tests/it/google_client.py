"""Google's own Python client library (google-cloud-workflows), pointed at a skein
server: its workflows client over REST, its executions client over gRPC (the
transports it ships for each). Deploys a Cloud Workflows document, starts it, polls it
to SUCCEEDED and reads its result; sees FAILED with the error payload for a failing
one; lists, gets, updates and deletes workflows.
Usage: google_client.py REST_HOST:PORT GRPC_HOST:PORT. Prints "ok" at the end."""

import json
import sys
import time

import grpc

from google.api_core import exceptions
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import workflows_v1
from google.cloud.workflows import executions_v1

endpoint = sys.argv[1]
options = ClientOptions(api_endpoint=f"http://{endpoint}")
anonymous = AnonymousCredentials()
workflows = workflows_v1.WorkflowsClient(
    credentials=anonymous, client_options=options, transport="rest"
)
# Google's gRPC transport, on a plaintext channel to skein's gRPC port.
executions = executions_v1.ExecutionsClient(
    transport=executions_v1.services.executions.transports.ExecutionsGrpcTransport(
        channel=grpc.insecure_channel(sys.argv[2])
    )
)
parent = "projects/demo/locations/us-central1"

TRIPLE = """main:
  params: [args]
  steps:
    - give:
        return: ${args.n * 3}
"""
FAILS = """main:
  steps:
    - fail:
        raise:
          code: 55
          message: bad plan
"""


def deploy(workflow_id, source):
    operation = workflows.create_workflow(
        parent=parent,
        workflow=workflows_v1.Workflow(source_contents=source),
        workflow_id=workflow_id,
    )
    return operation.result(timeout=30)


def run(workflow, argument):
    execution = executions.create_execution(
        parent=f"{parent}/workflows/{workflow}",
        execution=executions_v1.Execution(argument=json.dumps(argument)),
    )
    deadline = time.time() + 30
    while execution.state == executions_v1.Execution.State.ACTIVE:
        assert time.time() < deadline, "the execution did not end"
        time.sleep(0.05)
        execution = executions.get_execution(name=execution.name)
    return execution


triple = deploy("triple", TRIPLE)
assert triple.name == f"{parent}/workflows/triple", triple.name
assert triple.state == workflows_v1.Workflow.State.ACTIVE, triple.state
assert triple.source_contents == TRIPLE

done = run("triple", {"n": 7})
assert done.state == executions_v1.Execution.State.SUCCEEDED, done
assert json.loads(done.result) == 21, done.result
assert done.name.startswith(f"{parent}/workflows/triple/executions/"), done.name

deploy("fails", FAILS)
failed = run("fails", {})
assert failed.state == executions_v1.Execution.State.FAILED, failed
payload = json.loads(failed.error.payload)
assert payload == {"code": 55, "message": "bad plan"}, payload

names = sorted(w.name.rsplit("/", 1)[1] for w in workflows.list_workflows(parent=parent))
assert names == ["fails", "triple"], names
listed = list(executions.list_executions(parent=f"{parent}/workflows/triple"))
assert [e.name for e in listed] == [done.name], listed

# A new revision through update; the next execution runs it.
updated = workflows.update_workflow(
    workflow=workflows_v1.Workflow(
        name=f"{parent}/workflows/triple", source_contents=TRIPLE.replace("3", "4")
    )
).result(timeout=30)
assert updated.revision_id != triple.revision_id, (updated.revision_id, triple.revision_id)
assert json.loads(run("triple", {"n": 7}).result) == 28

# Pages of one: the client's pager follows the page tokens to the end, newest first;
# a filter by state and the FULL view.
paged = [
    e.name
    for e in executions.list_executions(
        request=executions_v1.ListExecutionsRequest(
            parent=f"{parent}/workflows/triple", page_size=1
        )
    )
]
assert len(paged) == 2 and paged[1] == done.name, paged
full = list(
    executions.list_executions(
        request=executions_v1.ListExecutionsRequest(
            parent=f"{parent}/workflows/triple",
            filter='state="SUCCEEDED"',
            view=executions_v1.ExecutionView.FULL,
        )
    )
)
assert sorted(json.loads(e.result) for e in full) == [21, 28], full

# The workflows client over gRPC too (Google's service as skein serves it): a create
# answered as an operation whose response decodes into a Workflow.
workflows_grpc = workflows_v1.WorkflowsClient(
    transport=workflows_v1.services.workflows.transports.WorkflowsGrpcTransport(
        channel=grpc.insecure_channel(sys.argv[2])
    )
)
made = workflows_grpc.create_workflow(
    parent=parent,
    workflow=workflows_v1.Workflow(source_contents=TRIPLE),
    workflow_id="over-grpc",
).result(timeout=30)
assert made.name == f"{parent}/workflows/over-grpc", made.name
assert workflows_grpc.get_workflow(name=made.name).source_contents == TRIPLE
assert json.loads(run("over-grpc", {"n": 2}).result) == 6

workflows.delete_workflow(name=f"{parent}/workflows/fails").result(timeout=30)
try:
    workflows.get_workflow(name=f"{parent}/workflows/fails")
    raise AssertionError("a deleted workflow was found")
except exceptions.NotFound:
    pass

print("ok")
