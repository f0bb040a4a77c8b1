// Google's own Node client library (@google-cloud/workflows, the package seed 001's SDK
// uses; it holds the executions client), pointed at a skein server, over gRPC and over
// its REST fallback: start a Cloud Workflows document deployed through Google's REST
// API, poll it to SUCCEEDED and read its result; see FAILED with the error payload for
// a failing one.
// Usage: node google_client.js REST_PORT GRPC_PORT. Prints "ok" at the end.
'use strict';

// Never look for a GCE metadata server: nothing here is on Google's network.
process.env.METADATA_SERVER_DETECTION = 'none';

const assert = require('assert');
const {ExecutionsClient} = require('@google-cloud/workflows');
const {grpc} = require('google-gax');

const [restPort, grpcPort] = process.argv.slice(2).map(Number);
const parent = 'projects/demo/locations/us-central1';
const TRIPLE = 'main:\n  params: [args]\n  steps:\n    - give:\n        return: ${args.n * 3}\n';
const FAILS = 'main:\n  steps:\n    - fail:\n        raise:\n          code: 55\n          message: bad plan\n';

// No credentials: skein without tokens takes anonymous callers. The REST fallback sends
// its requests through the auth client's `fetch`.
const noAuth = {
  getRequestHeaders: async () => new Headers(),
  getClient: async () => noAuth,
  fetch: (url, init) =>
    fetch(url, {headers: init.headers, body: init.body, method: init.method, signal: init.signal}),
};

function client(mode) {
  const options = mode === 'grpc'
    ? {apiEndpoint: '127.0.0.1', port: grpcPort, sslCreds: grpc.credentials.createInsecure()}
    : {apiEndpoint: '127.0.0.1', port: restPort, protocol: 'http', fallback: true, auth: noAuth};
  return new ExecutionsClient(options);
}

// Deploys through Google's Workflows REST API, as `gcloud workflows deploy` would.
async function deploy(id, source) {
  const response = await fetch(
    `http://127.0.0.1:${restPort}/v1/${parent}/workflows?workflowId=${id}`,
    {method: 'POST', headers: {'content-type': 'application/json'},
     body: JSON.stringify({sourceContents: source})});
  const operation = await response.json();
  assert.ok(operation.done, JSON.stringify(operation));
  return operation.response;
}

async function round(mode) {
  const executions = client(mode);
  const workflow = await deploy(`triple-${mode}`, TRIPLE);
  assert.strictEqual(workflow.name, `${parent}/workflows/triple-${mode}`);

  async function run(name, argument) {
    let [execution] = await executions.createExecution({
      parent: `${parent}/workflows/${name}`,
      execution: {argument: JSON.stringify(argument)},
    });
    const deadline = Date.now() + 30000;
    while (execution.state === 'ACTIVE' || execution.state === 1) {
      assert.ok(Date.now() < deadline, 'the execution did not end');
      await new Promise(r => setTimeout(r, 50));
      [execution] = await executions.getExecution({name: execution.name});
    }
    return execution;
  }

  const done = await run(`triple-${mode}`, {n: 7});
  assert.ok(done.state === 'SUCCEEDED' || done.state === 2, JSON.stringify(done));
  assert.strictEqual(JSON.parse(done.result), 21);

  await deploy(`fails-${mode}`, FAILS);
  const failed = await run(`fails-${mode}`, {});
  assert.ok(failed.state === 'FAILED' || failed.state === 3, JSON.stringify(failed));
  assert.deepStrictEqual(JSON.parse(failed.error.payload), {code: 55, message: 'bad plan'});

  const [list] = await executions.listExecutions({parent: workflow.name});
  assert.deepStrictEqual(list.map(e => e.name), [done.name]);
  await executions.close();
}

(async () => {
  await round('grpc');
  await round('rest');
  console.log('ok');
})().catch(e => {
  console.error(e);
  process.exit(1);
});
