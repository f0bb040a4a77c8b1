//! `call` tasks: the built-in protocols and custom functions.

use expr::{Expr, Template};

use super::{AuthRef, Duration, Endpoint, ExternalResource, SubscriptionIterator};

#[derive(Clone, Debug)]
pub enum Call {
    Http(HttpCall),
    Grpc(GrpcCall),
    OpenApi(OpenApiCall),
    AsyncApi(Box<AsyncApiCall>),
    A2a(A2aCall),
    Mcp(McpCall),
    Function(FunctionCall),
}

impl Call {
    /// What the DSL calls it: `http`, `grpc`, `openapi`, `asyncapi`, `a2a`, `mcp`, or
    /// `function` for a catalog's or `use.functions`' function.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Call::Http(_) => "http",
            Call::Grpc(_) => "grpc",
            Call::OpenApi(_) => "openapi",
            Call::AsyncApi(_) => "asyncapi",
            Call::A2a(_) => "a2a",
            Call::Mcp(_) => "mcp",
            Call::Function(_) => "function",
        }
    }
}

#[derive(Clone, Debug)]
pub struct HttpCall {
    /// As written, such as `get` or `POST`.
    pub method: String,
    pub endpoint: Endpoint,
    /// A mapping of header names to values, or one expression yielding it.
    pub headers: Option<Template>,
    pub body: Option<Template>,
    /// A mapping of query parameters, or one expression yielding it.
    pub query: Option<Template>,
    pub output: HttpOutput,
    /// Whether 3xx responses are success rather than errors.
    pub redirect: bool,
}

/// What an HTTP (or OpenAPI) call outputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HttpOutput {
    /// The response body, deserialized when it is JSON.
    #[default]
    Content,
    /// Request, status, headers and content.
    Response,
    /// The body, base64-encoded.
    Raw,
}

#[derive(Clone, Debug)]
pub struct GrpcCall {
    pub proto: ExternalResource,
    pub service: GrpcService,
    pub method: String,
    pub arguments: Option<Template>,
}

#[derive(Clone, Debug)]
pub struct GrpcService {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    pub authentication: Option<AuthRef>,
}

#[derive(Clone, Debug)]
pub struct OpenApiCall {
    pub document: ExternalResource,
    pub operation_id: String,
    pub parameters: Option<Template>,
    pub authentication: Option<AuthRef>,
    pub output: HttpOutput,
    pub redirect: bool,
}

#[derive(Clone, Debug)]
pub struct AsyncApiCall {
    pub document: ExternalResource,
    /// AsyncAPI 2.6 documents name a channel …
    pub channel: Option<String>,
    /// … AsyncAPI 3.0 documents an operation.
    pub operation: Option<String>,
    pub server: Option<AsyncApiServer>,
    pub protocol: Option<String>,
    pub message: Option<AsyncApiMessage>,
    pub subscription: Option<AsyncApiSubscription>,
    pub authentication: Option<AuthRef>,
}

#[derive(Clone, Debug)]
pub struct AsyncApiServer {
    pub name: String,
    pub variables: Option<Template>,
}

#[derive(Clone, Debug)]
pub struct AsyncApiMessage {
    pub payload: Option<Template>,
    pub headers: Option<Template>,
}

#[derive(Clone, Debug)]
pub struct AsyncApiSubscription {
    pub filter: Option<Expr>,
    pub consume: AsyncApiConsume,
    pub foreach: Option<SubscriptionIterator>,
}

/// When a subscription stops: after an amount, while or until a condition holds; optionally a time limit.
#[derive(Clone, Debug)]
pub struct AsyncApiConsume {
    pub amount: Option<u64>,
    pub while_: Option<Expr>,
    pub until: Option<Expr>,
    pub for_: Option<Duration>,
}

#[derive(Clone, Debug)]
pub struct A2aCall {
    pub method: String,
    pub agent_card: Option<ExternalResource>,
    pub server: Option<Endpoint>,
    pub parameters: Option<Template>,
}

#[derive(Clone, Debug)]
pub struct McpCall {
    pub protocol_version: String,
    pub method: String,
    pub parameters: Option<Template>,
    pub timeout: Option<Duration>,
    pub transport: McpTransport,
    pub options: Option<Template>,
    pub client: Option<McpClient>,
}

#[derive(Clone, Debug)]
pub enum McpTransport {
    Http {
        endpoint: Endpoint,
        headers: Option<Template>,
    },
    Stdio {
        command: Template,
        arguments: Vec<Template>,
        environment: Option<Template>,
    },
}

#[derive(Clone, Debug)]
pub struct McpClient {
    pub name: String,
    pub version: String,
}

/// A call to a function that is not a built-in protocol.
#[derive(Clone, Debug)]
pub struct FunctionCall {
    /// As written after `call:`.
    pub name: String,
    pub target: CallTarget,
    pub with: Option<Template>,
}

#[derive(Clone, Debug)]
pub enum CallTarget {
    /// A function in `use.functions`.
    Use(String),
    /// `{function}:{version}@{catalog}`.
    Catalog {
        function: String,
        version: String,
        catalog: String,
    },
    /// A function definition at a URI.
    Uri(String),
}
