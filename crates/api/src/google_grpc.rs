//! Google's `google.cloud.workflows.executions.v1.Executions` gRPC service, served by
//! skein beside its own: Google's Python client library speaks only gRPC for
//! executions. Its handlers are the REST API's (`google`), with messages for JSON.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::Service;
use crate::auth::{Caller, Role};
use crate::google::{self, ExecutionView};

/// The generated messages and servers of Google's services, in modules that mirror
/// their packages (the generated code refers across them by relative paths).
pub mod protos {
    pub mod google {
        pub mod cloud {
            pub mod workflows {
                pub mod v1 {
                    tonic::include_proto!("google.cloud.workflows.v1");
                }
                pub mod executions {
                    pub mod v1 {
                        tonic::include_proto!("google.cloud.workflows.executions.v1");
                    }
                }
            }
        }
        pub mod longrunning {
            tonic::include_proto!("google.longrunning");
        }
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
    }
}

pub use pb::executions_server::ExecutionsServer;
use protos::google::cloud::workflows::executions::v1 as pb;

/// The `google.cloud.workflows.executions.v1.Executions` service.
pub struct Executions {
    pub(crate) service: Arc<Service>,
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

fn message(view: ExecutionView) -> pb::Execution {
    let duration = view.ended.map(|ended| {
        let ms = ended - view.started;
        prost_types::Duration {
            seconds: ms.div_euclid(1000),
            nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
        }
    });
    pb::Execution {
        name: view.name,
        start_time: Some(timestamp(view.started)),
        end_time: view.ended.map(timestamp),
        duration,
        state: view.state.0,
        argument: view.argument,
        result: view.result.unwrap_or_default(),
        error: view.error.map(|(payload, context)| pb::execution::Error {
            payload,
            context,
            stack_trace: None,
        }),
        workflow_revision_id: view.revision,
        labels: view.labels.into_iter().collect(),
        ..Default::default()
    }
}

/// The name `ListParams.view` takes for the enum's value.
fn view_name(view: i32) -> &'static str {
    match pb::ExecutionView::try_from(view) {
        Ok(pb::ExecutionView::Full) => "FULL",
        _ => "BASIC",
    }
}

#[tonic::async_trait]
impl pb::executions_server::Executions for Executions {
    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let caller = caller_of(&self.service, &request, Role::Read).await?;
        let request = request.into_inner();
        let params = google::ListParams {
            page_size: request.page_size,
            page_token: request.page_token,
            view: view_name(request.view).into(),
            filter: request.filter,
            order_by: request.order_by,
        };
        let (views, next) = google::list(&self.service, &caller, &request.parent, &params).await?;
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: views.into_iter().map(message).collect(),
            next_page_token: next,
        }))
    }

    async fn create_execution(
        &self,
        request: Request<pb::CreateExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let caller = caller_of(&self.service, &request, Role::Run).await?;
        let request = request.into_inner();
        let (argument, labels) = request
            .execution
            .map(|e| (e.argument, e.labels.into_iter().collect()))
            .unwrap_or_default();
        let view =
            google::start(&self.service, &caller, &request.parent, &argument, labels).await?;
        Ok(Response::new(message(view)))
    }

    async fn get_execution(
        &self,
        request: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let caller = caller_of(&self.service, &request, Role::Read).await?;
        let basic = request.get_ref().view == pb::ExecutionView::Basic as i32;
        let view = google::get(&self.service, &caller, &request.get_ref().name).await?;
        Ok(Response::new(message(view.viewed(basic))))
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let caller = caller_of(&self.service, &request, Role::Run).await?;
        let view = google::cancel(&self.service, &caller, &request.get_ref().name).await?;
        Ok(Response::new(message(view)))
    }
}

pub use longrunning::operations_server::OperationsServer;
use protos::google::cloud::workflows::v1 as wf;
use protos::google::longrunning;
pub use wf::workflows_server::WorkflowsServer;

/// The `google.cloud.workflows.v1.Workflows` service.
pub struct Workflows {
    pub(crate) service: Arc<Service>,
}

/// The `google.longrunning.Operations` service, for the operations `Workflows` makes.
pub struct Operations {
    pub(crate) service: Arc<Service>,
}

/// The caller of a request, by its `authorization` metadata, if its role includes
/// `role`. The metadata is read at once, so that the request is not held.
pub(crate) fn caller_of<'a, T>(
    service: &'a Service,
    request: &Request<T>,
    role: Role,
) -> impl Future<Output = Result<Caller, Status>> + Send + 'a {
    let header = (request.metadata().get("authorization"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    async move {
        let caller = Caller::from_authorization(service, header.as_deref()).await?;
        caller.require(role)?;
        Ok(caller)
    }
}

fn workflow_message(view: google::WorkflowView) -> wf::Workflow {
    wf::Workflow {
        name: view.name,
        state: wf::workflow::State::Active as i32,
        revision_id: view.revision_id,
        create_time: Some(timestamp(view.created)),
        update_time: Some(timestamp(view.revised)),
        revision_create_time: Some(timestamp(view.revised)),
        source_code: Some(wf::workflow::SourceCode::SourceContents(view.source)),
        ..Default::default()
    }
}

fn any(type_name: &str, message: &impl prost::Message) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/{type_name}"),
        value: message.encode_to_vec(),
    }
}

fn operation_message(view: google::OperationView) -> longrunning::Operation {
    let metadata = wf::OperationMetadata {
        target: view.target,
        verb: view.verb.to_string(),
        api_version: "v1".into(),
        ..Default::default()
    };
    let response = match view.workflow {
        Some(w) => any("google.cloud.workflows.v1.Workflow", &workflow_message(w)),
        None => any("google.protobuf.Empty", &()),
    };
    longrunning::Operation {
        name: view.name,
        metadata: Some(any(
            "google.cloud.workflows.v1.OperationMetadata",
            &metadata,
        )),
        done: true,
        result: Some(longrunning::operation::Result::Response(response)),
    }
}

fn source(workflow: Option<wf::Workflow>) -> (String, String) {
    let workflow = workflow.unwrap_or_default();
    let source = match workflow.source_code {
        Some(wf::workflow::SourceCode::SourceContents(s)) => s,
        None => String::new(),
    };
    (workflow.name, source)
}

#[tonic::async_trait]
impl wf::workflows_server::Workflows for Workflows {
    async fn list_workflows(
        &self,
        request: Request<wf::ListWorkflowsRequest>,
    ) -> Result<Response<wf::ListWorkflowsResponse>, Status> {
        let caller = caller_of(&self.service, &request, Role::Read).await?;
        let views =
            google::workflows_of(&self.service, &caller, &request.get_ref().parent, None).await?;
        Ok(Response::new(wf::ListWorkflowsResponse {
            workflows: views.into_iter().map(workflow_message).collect(),
            ..Default::default()
        }))
    }

    async fn get_workflow(
        &self,
        request: Request<wf::GetWorkflowRequest>,
    ) -> Result<Response<wf::Workflow>, Status> {
        let caller = caller_of(&self.service, &request, Role::Read).await?;
        let r = request.get_ref();
        let view = google::workflow(&self.service, &caller, &r.name, &r.revision_id).await?;
        Ok(Response::new(workflow_message(view)))
    }

    async fn create_workflow(
        &self,
        request: Request<wf::CreateWorkflowRequest>,
    ) -> Result<Response<longrunning::Operation>, Status> {
        let caller = caller_of(&self.service, &request, Role::Run).await?;
        let r = request.into_inner();
        let (_, contents) = source(r.workflow);
        let op =
            google::create(&self.service, &caller, &r.parent, &r.workflow_id, &contents).await?;
        Ok(Response::new(operation_message(op)))
    }

    async fn delete_workflow(
        &self,
        request: Request<wf::DeleteWorkflowRequest>,
    ) -> Result<Response<longrunning::Operation>, Status> {
        let caller = caller_of(&self.service, &request, Role::Run).await?;
        let op = google::delete(&self.service, &caller, &request.get_ref().name).await?;
        Ok(Response::new(operation_message(op)))
    }

    async fn update_workflow(
        &self,
        request: Request<wf::UpdateWorkflowRequest>,
    ) -> Result<Response<longrunning::Operation>, Status> {
        let caller = caller_of(&self.service, &request, Role::Run).await?;
        let (name, contents) = source(request.into_inner().workflow);
        let op = google::update(&self.service, &caller, &name, &contents).await?;
        Ok(Response::new(operation_message(op)))
    }

    async fn list_workflow_revisions(
        &self,
        request: Request<wf::ListWorkflowRevisionsRequest>,
    ) -> Result<Response<wf::ListWorkflowRevisionsResponse>, Status> {
        let caller = caller_of(&self.service, &request, Role::Read).await?;
        let name = &request.get_ref().name;
        let (parent, workflow) = name
            .rsplit_once("/workflows/")
            .ok_or_else(|| Status::invalid_argument(format!("`{name}` is not a workflow name")))?;
        let views = google::workflows_of(&self.service, &caller, parent, Some(workflow)).await?;
        Ok(Response::new(wf::ListWorkflowRevisionsResponse {
            workflows: views.into_iter().map(workflow_message).collect(),
            next_page_token: String::new(),
        }))
    }
}

#[tonic::async_trait]
impl longrunning::operations_server::Operations for Operations {
    async fn get_operation(
        &self,
        request: Request<longrunning::GetOperationRequest>,
    ) -> Result<Response<longrunning::Operation>, Status> {
        let caller = caller_of(&self.service, &request, Role::Read).await?;
        let op = google::operation(&self.service, &caller, &request.get_ref().name).await?;
        Ok(Response::new(operation_message(op)))
    }
}
