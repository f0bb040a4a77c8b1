//! skein's gRPC API (`proto/skein/v1/runner.proto`): the same commands, auth and project
//! scoping as REST, with the standard health service and server reflection beside it
//! so that grpcurl-style tools work without the proto files.
//!
//! Handlers share their logic with the REST ones ([`crate::start_execution`],
//! [`Service::cancel`], the event [`crate::stream::Streaming`]); this module only turns
//! protobuf messages into those calls and [`ApiError`]s into gRPC statuses.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use futures::Stream;
use serde_json::{Value, json};
use tonic::{Request, Response, Status};

use crate::auth::{Caller, Role};
use crate::stream::Source;
use crate::{ApiError, Service, wire};

/// The generated messages, servers and clients of package `skein.v1`.
pub mod pb {
    tonic::include_proto!("skein.v1");
}

/// The encoded descriptors of skein's proto files (with their imports), for reflection.
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skein_v1.bin"));

/// A certificate chain and its private key, both PEM.
#[derive(Clone)]
pub struct Tls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Serves the gRPC API over `listener` until `shutdown` completes: TLS with `tls`,
/// plaintext without (the caller decides whether plaintext is acceptable).
pub async fn serve(
    service: Arc<Service>,
    listener: tokio::net::TcpListener,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<pb::runner_server::RunnerServer<Runner>>()
        .await;
    // Only the services served here (the callback service is in the same file, and
    // is served by the callback receiver, not by skein).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(DESCRIPTORS)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("skein.v1.Runner")
            .with_service_name("google.cloud.workflows.executions.v1.Executions")
            .with_service_name("google.cloud.workflows.v1.Workflows")
            .with_service_name("google.longrunning.Operations")
            .with_service_name("grpc.health.v1.Health")
    };
    let reflection_alpha = reflection()
        .build_v1alpha()
        .expect("skein's own descriptors are valid");
    let reflection = reflection()
        .build_v1()
        .expect("skein's own descriptors are valid");
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        let identity = tonic::transport::Identity::from_pem(tls.cert_pem, tls.key_pem);
        builder =
            builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let max = service.options().max_body_bytes;
    let runner = pb::runner_server::RunnerServer::new(Runner {
        service: service.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(usize::MAX);
    let executions = crate::google_grpc::ExecutionsServer::new(crate::google_grpc::Executions {
        service: service.clone(),
    })
    .max_decoding_message_size(max);
    let workflows = crate::google_grpc::WorkflowsServer::new(crate::google_grpc::Workflows {
        service: service.clone(),
    })
    .max_decoding_message_size(max);
    let operations = crate::google_grpc::OperationsServer::new(crate::google_grpc::Operations {
        service: service.clone(),
    });
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(runner)
        .add_service(executions)
        .add_service(workflows)
        .add_service(operations)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The `skein.v1.Runner` service.
pub struct Runner {
    service: Arc<Service>,
}

impl Runner {
    /// The caller of `request`, if its role includes `role`. The metadata is read at
    /// once, so that the request (whose stream need not be `Sync`) is not held.
    fn caller<T>(
        &self,
        request: &Request<T>,
        role: Role,
    ) -> impl Future<Output = Result<Caller, Status>> + Send + '_ {
        crate::google_grpc::caller_of(&self.service, request, role)
    }

    /// The execution as a message, with its task counters.
    async fn view(&self, id: &str) -> Result<pb::Execution, Status> {
        let execution = self
            .service
            .store()
            .execution(id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found(id))?;
        let progress = crate::progress(&self.service, id).await?;
        Ok(execution_message(execution, Some(progress.tasks)))
    }

    async fn steer(
        &self,
        request: Request<pb::ExecutionRef>,
        steering: store::Request,
    ) -> Result<Response<pb::Execution>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let id = request.into_inner().execution_id;
        let execution = crate::steer(&self.service, &caller, &id, steering).await?;
        Ok(Response::new(execution_message(execution, None)))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send>>;

#[tonic::async_trait]
impl pb::runner_server::Runner for Runner {
    async fn execute_async(
        &self,
        request: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let request = request.into_inner();
        let start = wire::StartRequest {
            workflow: request.workflow_yaml,
            workflow_ref: (!request.workflow_ref.is_empty()).then_some(request.workflow_ref),
            input: request.input.map(to_json),
            id: (!request.execution_id.is_empty()).then_some(request.execution_id),
            labels: request.labels.into_iter().collect::<BTreeMap<_, _>>(),
        };
        let (id, created) = crate::start_execution(&self.service, &caller, start).await?;
        Ok(Response::new(pb::ExecuteResponse {
            execution: Some(self.view(&id).await?),
            created,
        }))
    }

    async fn get(
        &self,
        request: Request<pb::ExecutionRef>,
    ) -> Result<Response<pb::Execution>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        let id = request.into_inner().execution_id;
        crate::owned(&self.service, &caller, &id).await?;
        Ok(Response::new(self.view(&id).await?))
    }

    async fn cancel(
        &self,
        request: Request<pb::ExecutionRef>,
    ) -> Result<Response<pb::Execution>, Status> {
        self.steer(request, store::Request::Cancel).await
    }

    async fn pause(
        &self,
        request: Request<pb::ExecutionRef>,
    ) -> Result<Response<pb::Execution>, Status> {
        self.steer(request, store::Request::Pause).await
    }

    async fn resume(
        &self,
        request: Request<pb::ExecutionRef>,
    ) -> Result<Response<pb::Execution>, Status> {
        self.steer(request, store::Request::Resume).await
    }

    async fn signal(
        &self,
        request: Request<pb::SignalRequest>,
    ) -> Result<Response<pb::SignalResponse>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let r = request.into_inner();
        let payload = r.payload.map(to_json).unwrap_or(Value::Null);
        let position =
            crate::messages::signal(&self.service, &caller, &r.execution_id, &r.name, payload)
                .await?;
        Ok(Response::new(pb::SignalResponse { position }))
    }

    async fn query(
        &self,
        request: Request<pb::QueryRequest>,
    ) -> Result<Response<pb::QueryResponse>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let r = request.into_inner();
        let asked = crate::messages::Asked {
            authorization: authorization.as_deref(),
            forwarded: false,
        };
        let result =
            crate::messages::query(&self.service, &caller, &r.execution_id, &r.name, asked).await?;
        Ok(Response::new(pb::QueryResponse {
            result: Some(to_value(result)),
        }))
    }

    async fn update(
        &self,
        request: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let r = request.into_inner();
        let wait = match r.wait_ms {
            0 => crate::messages::DEFAULT_UPDATE_WAIT,
            ms => std::time::Duration::from_millis(ms.into()),
        };
        if wait > crate::MAX_WAIT {
            return Err(ApiError::bad_request(format!(
                "wait_ms {} is longer than the limit of {} s",
                r.wait_ms,
                crate::MAX_WAIT.as_secs()
            ))
            .into());
        }
        let update_id = if r.update_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            r.update_id
        };
        let payload = r.payload.map(to_json).unwrap_or(Value::Null);
        let outcome = crate::messages::update(
            &self.service,
            &caller,
            &r.execution_id,
            &r.name,
            &update_id,
            payload,
            wait,
        )
        .await?;
        Ok(Response::new(match outcome {
            crate::messages::Update::Answered(record) => pb::UpdateResponse {
                update_id,
                handled: true,
                accepted: record["accepted"] == Value::Bool(true),
                result: Some(to_value(record["reply"].clone())),
            },
            crate::messages::Update::Pending => pb::UpdateResponse {
                update_id,
                handled: false,
                accepted: false,
                result: None,
            },
        }))
    }

    async fn create_schedule(
        &self,
        request: Request<pb::CreateScheduleRequest>,
    ) -> Result<Response<pb::CreateScheduleResponse>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let spec = schedule_spec(request.into_inner().spec.unwrap_or_default())?;
        let (view, created) = crate::schedules::create(&self.service, &caller, spec).await?;
        Ok(Response::new(pb::CreateScheduleResponse {
            schedule: Some(schedule_message(view)),
            created,
        }))
    }

    async fn get_schedule(
        &self,
        request: Request<pb::ScheduleRef>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        let id = request.into_inner().id;
        let view = crate::schedules::get(&self.service, &caller, &id).await?;
        Ok(Response::new(schedule_message(view)))
    }

    async fn list_schedules(
        &self,
        request: Request<pb::ListSchedulesRequest>,
    ) -> Result<Response<pb::ListSchedulesResponse>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        let views = crate::schedules::list(&self.service, &caller).await?;
        Ok(Response::new(pb::ListSchedulesResponse {
            schedules: views.into_iter().map(schedule_message).collect(),
        }))
    }

    async fn pause_schedule(
        &self,
        request: Request<pb::ScheduleRef>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let id = request.into_inner().id;
        let view = crate::schedules::set_paused(&self.service, &caller, &id, true).await?;
        Ok(Response::new(schedule_message(view)))
    }

    async fn resume_schedule(
        &self,
        request: Request<pb::ScheduleRef>,
    ) -> Result<Response<pb::Schedule>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let id = request.into_inner().id;
        let view = crate::schedules::set_paused(&self.service, &caller, &id, false).await?;
        Ok(Response::new(schedule_message(view)))
    }

    async fn delete_schedule(
        &self,
        request: Request<pb::ScheduleRef>,
    ) -> Result<Response<pb::DeleteScheduleResponse>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let id = request.into_inner().id;
        crate::schedules::delete(&self.service, &caller, &id).await?;
        Ok(Response::new(pb::DeleteScheduleResponse {}))
    }

    type WatchStream = EventStream;

    async fn watch(
        &self,
        request: Request<pb::WatchRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        let request = request.into_inner();
        let type_ = (!request.r#type.is_empty()).then_some(request.r#type);
        let source = if request.execution_id.is_empty() {
            Source::Log(store::LogQuery {
                project: Some(caller.project.clone()),
                type_: type_.clone(),
                limit: crate::stream::PAGE,
                ..Default::default()
            })
        } else {
            crate::owned(&self.service, &caller, &request.execution_id).await?;
            Source::Execution(request.execution_id)
        };
        let streaming = crate::stream::open(
            self.service.clone(),
            &caller.project,
            source,
            true,
            request.after,
        )?;
        let stream = futures::stream::unfold(streaming, move |mut streaming| {
            let type_ = type_.clone();
            async move {
                loop {
                    let (cursor, execution, event) = streaming.next().await?;
                    if type_.as_ref().is_some_and(|t| *t != event.type_) {
                        continue;
                    }
                    let message = pb::Event {
                        cursor,
                        id: format!("{execution}/{}", event.seq),
                        execution_id: execution,
                        sequence: event.seq,
                        r#type: event.type_,
                        time_ms: event.time,
                        data: Some(to_value(event.data.value())),
                    };
                    return Some((Ok(message), streaming));
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn deploy_workflow(
        &self,
        request: Request<pb::DeployWorkflowRequest>,
    ) -> Result<Response<pb::DeployWorkflowResponse>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let request = request.into_inner();
        let (deployed, created) = crate::workflows::deploy_text(
            &self.service,
            &caller,
            &request.name,
            &request.definition,
        )
        .await?;
        Ok(Response::new(pb::DeployWorkflowResponse {
            workflow: Some(workflow(wire::Workflow::of(deployed, true))),
            created,
        }))
    }

    async fn get_workflow(
        &self,
        request: Request<pb::WorkflowRef>,
    ) -> Result<Response<pb::Workflow>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        let request = request.into_inner();
        let revision = (request.revision != 0).then_some(request.revision);
        let found =
            crate::workflows::revision(&self.service, &caller, &request.name, revision).await?;
        Ok(Response::new(workflow(found)))
    }

    async fn list_workflows(
        &self,
        request: Request<pb::ListWorkflowsRequest>,
    ) -> Result<Response<pb::ListWorkflowsResponse>, Status> {
        let caller = self.caller(&request, Role::Read).await?;
        let workflows = crate::workflows::latest_of_each(&self.service, &caller).await?;
        Ok(Response::new(pb::ListWorkflowsResponse {
            workflows: workflows.into_iter().map(workflow).collect(),
        }))
    }

    async fn delete_workflow(
        &self,
        request: Request<pb::WorkflowRef>,
    ) -> Result<Response<pb::DeleteWorkflowResponse>, Status> {
        let caller = self.caller(&request, Role::Run).await?;
        let name = request.into_inner().name;
        crate::workflows::undeploy(&self.service, &caller, &name).await?;
        Ok(Response::new(pb::DeleteWorkflowResponse {}))
    }
}

/// A named workflow's revision on the wire.
fn workflow(w: wire::Workflow) -> pb::Workflow {
    pb::Workflow {
        name: w.name,
        revision: w.revision,
        syntax: w.syntax,
        created_at: w.created_at,
        definition: w.workflow.unwrap_or_default(),
        revisions: w.revisions,
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = match e.status {
            StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => tonic::Code::InvalidArgument,
            StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
            StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
            StatusCode::NOT_FOUND => tonic::Code::NotFound,
            StatusCode::CONFLICT if e.ended => tonic::Code::FailedPrecondition,
            StatusCode::CONFLICT => tonic::Code::AlreadyExists,
            StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
            StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
            _ => tonic::Code::Internal,
        };
        let mut message = e.body.message;
        for d in &e.body.diagnostics {
            message.push_str(&format!(
                "\n{}:{}: {} ({})",
                d.line, d.column, d.message, d.path
            ));
        }
        Status::new(code, message)
    }
}

/// An execution as a message; `tasks` when known.
pub(crate) fn execution_message(
    e: store::Execution,
    tasks: Option<wire::TaskCounts>,
) -> pb::Execution {
    pb::Execution {
        workflow: qualified_name(&e.namespace, &e.name, &e.version),
        status: e.status.as_str().to_string(),
        input: Some(to_value(e.input)),
        output: e.output.map(to_value),
        error: e.error.map(to_value),
        labels: e.labels.into_iter().collect(),
        created_at_ms: e.created_at,
        updated_at_ms: e.updated_at,
        tasks: tasks.map(|t| pb::TaskCounts {
            started: t.started,
            completed: t.completed,
            faulted: t.faulted,
            cancelled: t.cancelled,
            running: t.running,
            retries: t.retries,
        }),
        id: e.id,
    }
}

/// `namespace/name:version`, how reports and messages name a workflow.
pub(crate) fn qualified_name(namespace: &str, name: &str, version: &str) -> String {
    format!("{namespace}/{name}:{version}")
}

/// A JSON value as a protobuf `Value`.
pub fn to_value(json: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match json {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(prost_types::Struct {
            fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

/// A protobuf `Value` as JSON. Whole numbers come back as integers, so that `3` stays
/// `3` and not `3.0`.
pub fn to_json(value: prost_types::Value) -> Value {
    use prost_types::value::Kind;
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::NumberValue(n)) => {
            if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
                Value::from(n as i64)
            } else {
                serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
            }
        }
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::ListValue(list)) => Value::Array(list.values.into_iter().map(to_json).collect()),
        Some(Kind::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, to_json(v)))
                .collect::<serde_json::Map<_, _>>(),
        ),
    }
}

/// A schedule's spec from its message: empty strings are unset.
fn schedule_spec(m: pb::ScheduleSpec) -> Result<crate::schedules::Spec, Status> {
    let text = |s: String| (!s.is_empty()).then_some(s);
    let mut spec = json!({
        "id": m.id,
        "labels": m.labels,
        "paused": m.paused,
    });
    for (name, value) in [
        ("workflowRef", text(m.workflow_ref)),
        ("workflow", text(m.workflow_yaml)),
        ("every", text(m.every)),
        ("cron", text(m.cron)),
        ("timezone", text(m.timezone)),
        ("after", text(m.after)),
        ("catchup", text(m.catchup)),
        ("overlap", text(m.overlap)),
    ] {
        if let Some(value) = value {
            spec[name] = Value::String(value);
        }
    }
    if let Some(input) = m.input {
        spec["input"] = to_json(input);
    }
    if let Some(on) = m.on {
        spec["on"] = to_json(on);
    }
    if m.catchup_limit > 0 {
        spec["catchupLimit"] = json!(m.catchup_limit);
    }
    serde_json::from_value(spec)
        .map_err(|e| ApiError::bad_request(format!("the schedule is not valid: {e}")).into())
}

fn schedule_message(view: crate::schedules::View) -> pb::Schedule {
    let spec = view.spec;
    pb::Schedule {
        spec: Some(pb::ScheduleSpec {
            id: spec.id,
            workflow_ref: spec.workflow_ref.unwrap_or_default(),
            workflow_yaml: spec.workflow.unwrap_or_default(),
            input: spec.input.map(to_value),
            labels: spec.labels.into_iter().collect(),
            every: spec.every.unwrap_or_default(),
            cron: spec.cron.unwrap_or_default(),
            timezone: spec.timezone.unwrap_or_default(),
            after: spec.after.unwrap_or_default(),
            catchup: spec.catchup.as_str().into(),
            catchup_limit: spec.catchup_limit.unwrap_or_default(),
            overlap: spec.overlap.as_str().into(),
            paused: spec.paused,
            on: spec.on.map(to_value),
        }),
        started: view.started,
        skipped: view.skipped,
        last_execution: view.last_execution.unwrap_or_default(),
        upcoming: view.upcoming,
        last_error: view.last_error.unwrap_or_default(),
        created_at: view.created_at,
        source: spec.source.unwrap_or_default(),
    }
}
