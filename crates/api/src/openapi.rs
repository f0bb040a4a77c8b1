//! `GET /v1/openapi.json`: the API's OpenAPI document, generated from the handlers'
//! annotations and the `wire` types, so it cannot drift from the code.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::wire;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "skein",
        description = "Start, watch and steer durable workflow executions (CNCF Serverless Workflow)."
    ),
    paths(
        crate::start,
        crate::list,
        crate::get_one,
        crate::cancel,
        crate::pause,
        crate::resume,
        crate::deliver,
        crate::messages::post_signal,
        crate::messages::get_query,
        crate::messages::post_update,
        crate::messages::get_update,
        crate::schedules::post,
        crate::schedules::get_all,
        crate::schedules::get_one,
        crate::schedules::delete_one,
        crate::schedules::pause,
        crate::schedules::resume,
        crate::schedules::post_events,
        crate::workflows::deploy,
        crate::workflows::list,
        crate::workflows::get_one,
        crate::workflows::delete,
        crate::stream::execution_events,
        crate::stream::all_events,
        crate::healthz,
        crate::metrics::metrics,
        crate::graph::execution_graph,
        crate::graph::validate,
        crate::server_info::get,
        crate::server_info::whoami,
    ),
    components(schemas(
        wire::StartRequest,
        crate::graph::Graph,
        crate::graph::Node,
        crate::graph::Branch,
        crate::graph::Case,
        crate::graph::Message,
        crate::graph::ValidateRequest,
        crate::graph::Validated,
        crate::server_info::ServerInfo,
        crate::server_info::Replica,
        crate::server_info::NamedLease,
        crate::server_info::Worker,
        crate::server_info::Whoami,
        wire::DeployRequest,
        wire::Workflow,
        wire::WorkflowList,
        wire::Execution,
        wire::WorkflowRef,
        wire::ExecutionList,
        wire::Progress,
        wire::TaskCounts,
        wire::Delivered,
        wire::QueryAnswer,
        wire::UpdateAnswer,
        crate::schedules::Spec,
        crate::schedules::View,
        crate::schedules::ScheduleList,
        crate::schedules::Posted,
        wire::Error,
        wire::Diagnostic,
    )),
    modifiers(&Bearer),
    security(("bearer" = []))
)]
struct ApiDoc;

/// Declares the bearer-token scheme.
struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document as JSON.
pub(crate) async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
