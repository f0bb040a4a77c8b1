//! `call: mcp` for real, through the Model Context Protocol's Rust SDK (rmcp): each
//! request gets a session of its own (a started stdio server, or a Streamable HTTP
//! session), initialized with the task's protocol version and client, then the one
//! request, then the session closed (a stdio server is stopped). A stdio server that
//! exits mid-call is a transport error quoting the end of its stderr.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use engine::{McpError, McpRequest, McpServer};
use rmcp::ServiceExt as _;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, GetPromptRequestParams,
    Implementation, PaginatedRequestParams, ReadResourceRequestParams,
};
use rmcp::service::{RoleClient, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use serde_json::Value;
use tokio::io::AsyncReadExt as _;

/// The variables of this process a stdio server is given (as workers give processes).
const INHERITED_ENV: [&str; 6] = ["PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER"];

/// The end of a stdio server's stderr kept for errors.
const STDERR_TAIL: usize = 4096;

/// Makes `request`; `http` is the client HTTP servers are reached with (the egress
/// policy's, when one applies).
pub(crate) async fn call(request: McpRequest, http: reqwest::Client) -> Result<Value, McpError> {
    let exchange = exchange(&request, http);
    match request.timeout {
        Some(limit) => tokio::time::timeout(limit, exchange)
            .await
            .map_err(|_| McpError::Timeout)?,
        None => exchange.await,
    }
}

async fn exchange(request: &McpRequest, http: reqwest::Client) -> Result<Value, McpError> {
    let protocol_version = serde_json::from_value(Value::String(request.protocol_version.clone()))
        .map_err(|e| {
            McpError::Invalid(format!(
                "`{}` is not an MCP protocol version: {e}",
                request.protocol_version
            ))
        })?;
    let mut config = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new(request.client.0.clone(), request.client.1.clone()),
    );
    config.protocol_version = protocol_version;
    match &request.server {
        McpServer::Stdio {
            command,
            arguments,
            environment,
        } => {
            // As a `run` task's process: a few variables of this process, then the
            // task's; the server's own environment (its secrets) stays out of reach.
            let mut process = tokio::process::Command::new(command);
            process
                .args(arguments)
                .env_clear()
                .envs(
                    INHERITED_ENV
                        .iter()
                        .filter_map(|k| Some((*k, std::env::var_os(k)?))),
                )
                .envs(environment.iter().map(|(k, v)| (k, v)))
                .kill_on_drop(true);
            let (transport, stderr) = TokioChildProcess::builder(process)
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| McpError::Transport(format!("cannot start `{command}`: {e}")))?;
            let tail = Arc::new(Mutex::new(Vec::new()));
            if let Some(mut stderr) = stderr {
                let tail = tail.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let mut tail = tail.lock().expect("stderr tail");
                        tail.extend_from_slice(&buf[..n]);
                        let excess = tail.len().saturating_sub(STDERR_TAIL);
                        tail.drain(..excess);
                    }
                });
            }
            let gone = |what: String| {
                // Give the reader a moment to take what the server wrote as it went.
                let tail = tail.clone();
                async move {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    let tail = tail.lock().expect("stderr tail");
                    let text = String::from_utf8_lossy(&tail);
                    let text = text.trim();
                    if text.is_empty() {
                        McpError::Transport(format!("`{command}` {what}"))
                    } else {
                        McpError::Transport(format!("`{command}` {what}; its stderr ends: {text}"))
                    }
                }
            };
            let service = match config.serve(transport).await {
                Ok(service) => service,
                Err(e) => return Err(gone(format!("did not initialize: {e}")).await),
            };
            let result = send(&service, request).await;
            let _ = service.cancel().await;
            match result {
                Err(Failure::Closed) => Err(gone("exited during the call".into()).await),
                other => other.map_err(Failure::into_error),
            }
        }
        McpServer::Http { url, headers } => {
            let mut custom = HashMap::new();
            for (name, value) in headers {
                let (Ok(name), Ok(value)) = (
                    reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                    reqwest::header::HeaderValue::from_str(value),
                ) else {
                    return Err(McpError::Invalid(format!(
                        "`{name}` cannot be sent as an HTTP header"
                    )));
                };
                custom.insert(name, value);
            }
            let transport = StreamableHttpClientTransport::with_client(
                http,
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom),
            );
            let service = config
                .serve(transport)
                .await
                .map_err(|e| McpError::Transport(format!("{url} did not initialize: {e}")))?;
            let result = send(&service, request).await;
            let _ = service.cancel().await;
            result.map_err(|f| match f {
                Failure::Closed => McpError::Transport(format!("{url} closed the session")),
                other => other.into_error(),
            })
        }
    }
}

/// Why a request on an open session failed.
enum Failure {
    /// The transport closed: a stdio server exited, an HTTP session ended.
    Closed,
    Error(McpError),
}

impl Failure {
    fn into_error(self) -> McpError {
        match self {
            Failure::Closed => McpError::Transport("the server went away".into()),
            Failure::Error(e) => e,
        }
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Failure {
        match e {
            ServiceError::McpError(e) => Failure::Error(McpError::Rpc {
                code: e.code.0,
                message: e.message.to_string(),
                data: e.data,
            }),
            ServiceError::TransportClosed => Failure::Closed,
            ServiceError::Timeout { .. } => Failure::Error(McpError::Timeout),
            other => Failure::Error(McpError::Transport(other.to_string())),
        }
    }
}

/// The parameters of `method`, read into the SDK's type for it.
fn params<T: serde::de::DeserializeOwned>(request: &McpRequest) -> Result<T, Failure> {
    let value = request
        .params
        .clone()
        .unwrap_or(Value::Object(Default::default()));
    serde_json::from_value(value).map_err(|e| {
        Failure::Error(McpError::Invalid(format!(
            "the parameters of `{}` do not fit: {e}",
            request.method
        )))
    })
}

fn result<T: serde::Serialize>(value: T) -> Result<Value, Failure> {
    serde_json::to_value(value).map_err(|e| {
        Failure::Error(McpError::Transport(format!(
            "the result cannot be read: {e}"
        )))
    })
}

async fn send(
    service: &RunningService<RoleClient, ClientConfig>,
    request: &McpRequest,
) -> Result<Value, Failure> {
    let page = || -> Result<Option<PaginatedRequestParams>, Failure> {
        match &request.params {
            None => Ok(None),
            Some(_) => params(request).map(Some),
        }
    };
    match request.method.as_str() {
        "tools/list" => result(service.list_tools(page()?).await?),
        "tools/call" => result(
            service
                .call_tool(params::<CallToolRequestParams>(request)?)
                .await?,
        ),
        "prompts/list" => result(service.list_prompts(page()?).await?),
        "prompts/get" => result(
            service
                .get_prompt(params::<GetPromptRequestParams>(request)?)
                .await?,
        ),
        "resources/list" => result(service.list_resources(page()?).await?),
        "resources/read" => result(
            service
                .read_resource(params::<ReadResourceRequestParams>(request)?)
                .await?,
        ),
        "resources/templates/list" => result(service.list_resource_templates(page()?).await?),
        other => Err(Failure::Error(McpError::Invalid(format!(
            "`{other}` is not an MCP method skein calls"
        )))),
    }
}
