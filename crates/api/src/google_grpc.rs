//! Google's `google.cloud.workflows.executions.v1.Executions` gRPC service, served by
//! skein beside its own: Google's Python client library speaks only gRPC for
//! executions. Its handlers are the REST API's (`google`), with messages for JSON.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::Service;
use crate::auth::{Caller, Role};
use crate::google::{self, ExecutionView};

/// The generated messages and server of Google's Executions service.
pub mod pb {
    tonic::include_proto!("google.cloud.workflows.executions.v1");
}

/// The `google.cloud.workflows.executions.v1.Executions` service.
pub struct Executions {
    pub(crate) service: Arc<Service>,
}

impl Executions {
    fn caller<T>(&self, request: &Request<T>, role: Role) -> Result<Caller, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let caller = Caller::from_authorization(&self.service, header)?;
        caller.require(role)?;
        Ok(caller)
    }
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
        state: view.state,
        argument: view.argument,
        result: view.result.unwrap_or_default(),
        error: view.error.map(|(payload, context)| pb::execution::Error {
            payload,
            context,
            stack_trace: None,
        }),
        workflow_revision_id: view.revision,
        ..Default::default()
    }
}

#[tonic::async_trait]
impl pb::executions_server::Executions for Executions {
    async fn list_executions(
        &self,
        request: Request<pb::ListExecutionsRequest>,
    ) -> Result<Response<pb::ListExecutionsResponse>, Status> {
        let caller = self.caller(&request, Role::Read)?;
        let views = google::list(&self.service, &caller, &request.get_ref().parent).await?;
        Ok(Response::new(pb::ListExecutionsResponse {
            executions: views.into_iter().map(message).collect(),
            next_page_token: String::new(),
        }))
    }

    async fn create_execution(
        &self,
        request: Request<pb::CreateExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let caller = self.caller(&request, Role::Run)?;
        let request = request.into_inner();
        let argument = request.execution.map(|e| e.argument).unwrap_or_default();
        let view = google::start(&self.service, &caller, &request.parent, &argument).await?;
        Ok(Response::new(message(view)))
    }

    async fn get_execution(
        &self,
        request: Request<pb::GetExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let caller = self.caller(&request, Role::Read)?;
        let view = google::get(&self.service, &caller, &request.get_ref().name).await?;
        Ok(Response::new(message(view)))
    }

    async fn cancel_execution(
        &self,
        request: Request<pb::CancelExecutionRequest>,
    ) -> Result<Response<pb::Execution>, Status> {
        let caller = self.caller(&request, Role::Run)?;
        let view = google::cancel(&self.service, &caller, &request.get_ref().name).await?;
        Ok(Response::new(message(view)))
    }
}
