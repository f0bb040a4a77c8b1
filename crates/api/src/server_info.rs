//! `GET /v1/server`: what the dashboard's server page shows beside `/metrics`: which
//! store, which replicas hold executions and named leases, and the workers with what
//! their own `/metrics` say about their load.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{Caller, Role};
use crate::error::ApiResult;
use crate::{Service, wire};

/// How long the server waits for a worker's `/metrics`.
const WORKER_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub version: String,
    /// This server's name among the replicas (`local` on its own).
    pub node: String,
    /// The most executions this server runs at once, on a shared database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<usize>,
    /// The lease length on a shared database, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_seconds: Option<f64>,
    /// The processes holding executions under lease.
    pub replicas: Vec<Replica>,
    /// Named leases: which process runs the schedules, the progress reports, ….
    pub leases: Vec<NamedLease>,
    /// The workers `run` tasks are sent to.
    pub workers: Vec<Worker>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    pub node: String,
    pub executions: u64,
    /// When the first of its leases runs out (RFC 3339).
    pub lease_until: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NamedLease {
    pub name: String,
    pub holder: String,
    pub lease_until: String,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Worker {
    pub url: String,
    /// The worker's `/metrics` text, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
    /// Why it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/server` (admin role).
#[utoipa::path(get, path = "/v1/server", tag = "server", responses((status = 200, description = "The store's replicas and leases, and the workers' load", body = ServerInfo), (status = 401, description = "No or unknown token", body = wire::Error), (status = 403, description = "Not an admin token", body = wire::Error)))]
pub(crate) async fn get(
    State(service): State<Arc<Service>>,
    caller: Caller,
) -> ApiResult<Json<ServerInfo>> {
    caller.require(Role::Admin)?;
    let holders = service.store().holders().await?;
    let cluster = service.options().cluster.as_ref();
    let workers = match &service.options().workers {
        Some(workers) => workers
            .metrics(WORKER_WAIT)
            .await
            .into_iter()
            .map(|(url, answer)| match answer {
                Ok(text) => Worker {
                    url,
                    metrics: Some(text),
                    error: None,
                },
                Err(e) => Worker {
                    url,
                    metrics: None,
                    error: Some(e),
                },
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        node: cluster.map_or_else(|| "local".to_string(), |c| c.node.clone()),
        capacity: cluster.map(|c| c.capacity),
        lease_seconds: cluster.map(|c| c.lease.as_secs_f64()),
        replicas: (holders.owners.into_iter())
            .map(|(node, executions, until)| Replica {
                node,
                executions,
                lease_until: wire::rfc3339(until),
            })
            .collect(),
        leases: (holders.named.into_iter())
            .map(|(name, holder, until)| NamedLease {
                name,
                holder,
                lease_until: wire::rfc3339(until),
            })
            .collect(),
        workers,
    }))
}

/// Who the caller is: what a client asks before it shows a login page.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Whoami {
    /// Whether the request's token (or its absence, on a server without tokens) was
    /// accepted.
    pub authenticated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// `read`, `run` or `admin`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Why the token was not accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GET /v1/whoami`: 200 either way, so that a client can find out whether it needs a
/// token without a failed request (which browsers log as an error).
#[utoipa::path(get, path = "/v1/whoami", tag = "server", responses((status = 200, description = "Whether the request is authenticated, and as whom", body = Whoami)))]
pub(crate) async fn whoami(caller: Result<Caller, crate::ApiError>) -> Json<Whoami> {
    Json(match caller {
        Ok(caller) => Whoami {
            authenticated: true,
            project: Some(caller.project),
            role: Some(caller.role.as_str().to_string()),
            reason: None,
        },
        Err(refused) => Whoami {
            authenticated: false,
            project: None,
            role: None,
            reason: Some(refused.body.message),
        },
    })
}
