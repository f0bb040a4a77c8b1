//! Performs the engine's effects for real: HTTP requests (reqwest, rustls; plain HTTP
//! on hyper directly, see `plain`), processes on workers (`workers`: remote ones, or
//! one embedded in this process; the worker crate is the one place `run` tasks'
//! processes are spawned), gRPC calls (`grpc`), MCP calls (`mcp`, which starts stdio
//! servers itself), and the catalog of workflows for `run.workflow`.
//!
//! **API boundary:** knows HTTP, nothing about workflows.

mod container;
pub mod egress;
pub mod google;
pub mod grpc;
mod mcp;
mod messaging;
mod plain;
pub mod trace;
mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use engine::{
    Channel, Effects, GrpcError, GrpcRequest, HttpError, HttpRequest, HttpResponse, McpError,
    McpRequest, MessagingError, Outbound, ProcessControl, ProcessOutput, ProcessSpec, Subscription,
};
use tokio_util::task::AbortOnDropHandle;

/// Largest response body read; a larger one fails the call.
pub const MAX_RESPONSE_BYTES: usize = 64 << 20;

pub use workers::Workers;

use egress::{Egress, EgressPolicy, Refusal, Resolver};
use plain::Plain;

pub struct Runtime {
    /// Where processes run; `None`: nowhere, and a `run` task fails saying so.
    workers: Option<Arc<Workers>>,
    /// Where `run.workflow` finds workflows: `{catalog}/{namespace}/{name}/{version}.yaml`.
    catalog: Option<std::path::PathBuf>,
    /// The clients of calls no egress policy restricts.
    open: Clients,
    /// Where calls may go, if anything restricts them.
    egress: Option<Arc<Egress>>,
    /// The clients of each restricting policy, made when first used: by project, and
    /// `None` for the server's.
    guarded: Mutex<HashMap<Option<String>, Arc<Guarded>>>,
    /// Tokens of the server's Google identity, made when first asked for.
    google: std::sync::OnceLock<google::GoogleTokens>,
    /// `call: grpc`: compiled protos and open channels.
    grpc: grpc::Grpc,
    /// The directory `file:` resources are read under; `None`: none are.
    files: Option<std::path::PathBuf>,
    /// The container engine's program for `run.container`; `None`: podman or docker,
    /// whichever the worker's `PATH` has.
    container_engine: Option<String>,
    /// Definitions fetched over HTTP (cataloged functions), by URL and credentials,
    /// with when they were fetched.
    definitions: Mutex<HashMap<DefinitionKey, (std::time::Instant, String)>>,
}

/// A fetched definition's URL and the `Authorization` it was fetched with.
type DefinitionKey = (String, Option<String>);

/// How long a fetched definition is used before it is fetched again.
const DEFINITION_TTL: Duration = Duration::from_secs(300);

/// The largest definition read.
const MAX_DEFINITION_BYTES: u64 = 4 << 20;

/// The HTTP clients of one egress policy.
struct Clients {
    /// Follows redirects, for calls with `redirect: true`.
    following: reqwest::Client,
    /// Returns 3xx responses as they are.
    direct: reqwest::Client,
    /// Sends what it serves ([`Plain::serves`]) instead of `direct`; `None` with a proxy
    /// for plain HTTP in the environment.
    plain: Option<Plain>,
}

struct Guarded {
    policy: Arc<EgressPolicy>,
    clients: Clients,
    /// The policy's resolver, for connections made outside the HTTP clients (gRPC).
    resolver: Resolver,
}

/// How skein introduces itself to the services it calls.
const USER_AGENT: &str = concat!("skein/", env!("CARGO_PKG_VERSION"));

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Redirects followed before a call fails, as reqwest's default policy.
const MAX_REDIRECTS: usize = 10;

fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .pool_max_idle_per_host(256)
        .user_agent(USER_AGENT)
}

impl Clients {
    fn open() -> Clients {
        Clients {
            following: client_builder()
                .build()
                .expect("an HTTP client with default TLS settings"),
            direct: client_builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client with default TLS settings"),
            plain: Plain::from_env(CONNECT_TIMEOUT),
        }
    }

    /// Clients that resolve names through `resolver` and check every redirect.
    fn guarded(resolver: Resolver) -> Clients {
        let policy = resolver.policy.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
            }
            match egress::check_url(&policy, attempt.url()) {
                Ok(()) => attempt.follow(),
                Err(refusal) => attempt.error(Refusal(refusal)),
            }
        });
        let resolve = Arc::new(resolver.clone());
        Clients {
            following: client_builder()
                .dns_resolver(resolve.clone())
                .redirect(redirects)
                .build()
                .expect("an HTTP client with default TLS settings"),
            direct: client_builder()
                .dns_resolver(resolve)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client with default TLS settings"),
            plain: Plain::guarded(CONNECT_TIMEOUT, resolver),
        }
    }
}

impl Runtime {
    pub fn new() -> Runtime {
        // The process-wide TLS provider; a second install is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Runtime {
            workers: None,
            catalog: None,
            open: Clients::open(),
            egress: None,
            guarded: Mutex::default(),
            google: std::sync::OnceLock::new(),
            grpc: grpc::Grpc::new(Vec::new()),
            files: None,
            container_engine: None,
            definitions: Mutex::default(),
        }
    }

    /// Checks every call against `egress` (the server's policy, or its project's).
    pub fn with_egress(mut self, egress: Egress) -> Runtime {
        self.egress = Some(Arc::new(egress));
        self
    }

    /// The client for `request` (its egress policy's, following redirects or not) and
    /// the plain-HTTP client beside it, once the policy allowed its URL.
    fn clients_for(
        &self,
        request: &HttpRequest,
    ) -> Result<(reqwest::Client, Option<Plain>), HttpError> {
        let guarded = self.guarded(&request.project);
        let clients = match &guarded {
            Some(guarded) => {
                egress::check_url(&guarded.policy, &request.url).map_err(HttpError::Refused)?;
                &guarded.clients
            }
            None => &self.open,
        };
        let client = if request.follow_redirects {
            &clients.following
        } else {
            &clients.direct
        };
        Ok((client.clone(), clients.plain.clone()))
    }

    /// Refuses a broker the egress policy of the channel's project denies (by its name
    /// and port; the brokers' clients resolve names themselves).
    fn check_channel(&self, channel: &Channel) -> Result<(), MessagingError> {
        match self.guarded(&channel.project) {
            Some(guarded) => {
                egress::check_url(&guarded.policy, &channel.server).map_err(MessagingError::Refused)
            }
            None => Ok(()),
        }
    }

    /// The policy and clients for a call of `project`; `None` if nothing restricts it.
    fn guarded(&self, project: &str) -> Option<Arc<Guarded>> {
        let egress = self.egress.as_ref()?;
        let policy = egress.policy(project);
        if policy.is_open() && egress.resolve.is_empty() {
            return None;
        }
        let key = egress
            .projects
            .contains_key(project)
            .then(|| project.to_string());
        let mut guarded = self
            .guarded
            .lock()
            .expect("the client table is never poisoned");
        let entry = guarded.entry(key).or_insert_with(|| {
            let policy = Arc::new(policy.clone());
            let resolver = Resolver {
                policy: policy.clone(),
                fixed: Arc::new(egress.resolve.clone()),
            };
            Arc::new(Guarded {
                clients: Clients::guarded(resolver.clone()),
                policy,
                resolver,
            })
        });
        Some(entry.clone())
    }
}

impl Runtime {
    /// Looks up `run.workflow` targets in `dir`, as `{namespace}/{name}/{version}.yaml` (or `.json`).
    pub fn with_catalog(mut self, dir: std::path::PathBuf) -> Runtime {
        self.catalog = Some(dir);
        self
    }

    /// Reads `file:` resources (gRPC protos) under `dir` only; without it, none.
    pub fn with_files(mut self, dir: std::path::PathBuf) -> Runtime {
        self.files = Some(dir);
        self
    }

    /// Makes gRPC calls to these `HOST:PORT`s (`*`: to any) over TLS, as it does to
    /// port 443.
    pub fn with_grpc_tls(mut self, tls: Vec<String>) -> Runtime {
        self.grpc = grpc::Grpc::new(tls);
        self
    }

    /// Runs `run.container` tasks with this program (`podman`, `docker`, a path)
    /// instead of whichever of podman or docker the worker's `PATH` has.
    pub fn with_container_engine(mut self, program: Option<String>) -> Runtime {
        self.container_engine = program;
        self
    }

    /// Runs processes (`run: shell`, `run: script`) on `workers`, which may be one
    /// embedded in this process; without them, a `run` task fails.
    pub fn with_workers(mut self, workers: Arc<Workers>) -> Runtime {
        self.workers = Some(workers);
        self
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::new()
    }
}

fn http_error(e: &reqwest::Error) -> HttpError {
    let message = error_chain(e);
    if let Some(refusal) = egress::refusal(e) {
        HttpError::Refused(refusal)
    } else if e.is_timeout() {
        HttpError::Timeout
    } else if e.is_connect() {
        HttpError::Connect(message)
    } else {
        HttpError::Other(message)
    }
}

/// An error with its sources, as one message.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message = format!("{message}: {s}");
        source = s.source();
    }
    message
}

/// A response's headers as the engine reads them.
fn header_pairs(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The request `request` on `client`, ready to send.
fn build(
    client: &reqwest::Client,
    request: HttpRequest,
) -> Result<reqwest::RequestBuilder, HttpError> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes())
        .map_err(|_| HttpError::Other(format!("`{}` is not an HTTP method", request.method)))?;
    let mut builder = client.request(method, request.url);
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    if let Some(body) = request.body {
        builder = builder.body(body);
    }
    if let Some(timeout) = request.timeout {
        builder = builder.timeout(timeout);
    }
    Ok(builder)
}

/// A response's whole body, up to [`MAX_RESPONSE_BYTES`].
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| http_error(&e))? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(HttpError::Other(format!(
                "the response body is larger than {} MiB",
                MAX_RESPONSE_BYTES >> 20
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Sends `request` with `client` and reads the whole response.
async fn perform(client: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let response = build(&client, request)?
        .send()
        .await
        .map_err(|e| http_error(&e))?;
    let status = response.status().as_u16();
    let headers = header_pairs(response.headers());
    Ok(HttpResponse {
        status,
        headers,
        body: read_body(response).await?,
    })
}

/// Like [`perform`], but a `text/event-stream` response is handed to `sink` event by
/// event as it arrives, and comes back with an empty body.
async fn perform_events(
    client: reqwest::Client,
    request: HttpRequest,
    sink: engine::EventSink,
) -> Result<HttpResponse, HttpError> {
    use eventsource_stream::Eventsource as _;
    use futures::StreamExt as _;

    let response = build(&client, request)?
        .send()
        .await
        .map_err(|e| http_error(&e))?;
    let status = response.status().as_u16();
    let headers = header_pairs(response.headers());
    let streamed = headers
        .iter()
        .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream"));
    if !streamed || !(200..300).contains(&status) {
        return Ok(HttpResponse {
            status,
            headers,
            body: read_body(response).await?,
        });
    }
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| HttpError::Other(format!("the event stream broke: {e}")))?;
        sink(&event.data);
    }
    Ok(HttpResponse {
        status,
        headers,
        body: Vec::new(),
    })
}

#[async_trait]
impl Effects for Runtime {
    async fn google_token(&self, token: engine::GoogleToken) -> Result<String, String> {
        self.google
            .get_or_init(google::GoogleTokens::from_env)
            .token(token)
            .await
    }

    /// The request runs on a task of its own, so that building it and reading the
    /// response share the runtime's threads instead of the one that drives the
    /// execution; dropping the returned future aborts it.
    async fn http(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        // Taken here, in the call's span, before the request moves to a task of its own.
        request.headers.extend(trace::headers());
        let (client, plain) = self.clients_for(&request)?;
        let task = match plain {
            Some(plain) if Plain::serves(&request) => {
                AbortOnDropHandle::new(tokio::spawn(plain.perform(request)))
            }
            _ => AbortOnDropHandle::new(tokio::spawn(perform(client, request))),
        };
        task.await
            .map_err(|e| HttpError::Other(format!("the request task failed: {e}")))?
    }

    async fn http_events(
        &self,
        mut request: HttpRequest,
        sink: engine::EventSink,
    ) -> Result<HttpResponse, HttpError> {
        request.headers.extend(trace::headers());
        let (client, _) = self.clients_for(&request)?;
        AbortOnDropHandle::new(tokio::spawn(perform_events(client, request, sink)))
            .await
            .map_err(|e| HttpError::Other(format!("the request task failed: {e}")))?
    }

    async fn publish(&self, channel: Channel, message: Outbound) -> Result<(), MessagingError> {
        self.check_channel(&channel)?;
        AbortOnDropHandle::new(tokio::spawn(messaging::publish(channel, message)))
            .await
            .map_err(|e| MessagingError::Broker(format!("the publishing task failed: {e}")))?
    }

    async fn subscribe(&self, channel: Channel) -> Result<Box<dyn Subscription>, MessagingError> {
        self.check_channel(&channel)?;
        let http = match self.guarded(&channel.project) {
            Some(guarded) => guarded.clients.following.clone(),
            None => self.open.following.clone(),
        };
        messaging::subscribe(channel, http).await
    }

    async fn definition(&self, request: HttpRequest) -> Result<String, HttpError> {
        let url = request.url.clone();
        let local = match url.scheme() {
            "file" => Some(local_file(self.files.as_deref(), &url).map_err(HttpError::Other)?),
            "skein-catalog" => {
                let Some(catalog) = &self.catalog else {
                    return Err(HttpError::Other(
                        "this server has no default catalog (see --catalog)".into(),
                    ));
                };
                let path = url.path();
                let safe = path
                    .split('/')
                    .all(|s| !s.is_empty() && s != "." && s != ".." && !s.contains('\\'));
                if !safe {
                    return Err(HttpError::Other(format!("`{path}` is not a catalog path")));
                }
                Some(catalog.join(path))
            }
            _ => None,
        };
        if let Some(path) = local {
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| HttpError::Other(format!("cannot read {}: {e}", path.display())))?;
            if meta.len() > MAX_DEFINITION_BYTES {
                return Err(HttpError::Other(format!(
                    "{} is larger than {} MiB",
                    path.display(),
                    MAX_DEFINITION_BYTES >> 20
                )));
            }
            return tokio::fs::read_to_string(&path)
                .await
                .map_err(|e| HttpError::Other(format!("cannot read {}: {e}", path.display())));
        }
        let credentials = request
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .map(|(_, v)| v.clone());
        let key = (url.to_string(), credentials);
        if let Some((at, text)) = self.definitions.lock().expect("definitions").get(&key)
            && at.elapsed() < DEFINITION_TTL
        {
            return Ok(text.clone());
        }
        let response = self.http(request).await?;
        if !(200..300).contains(&response.status) {
            return Err(HttpError::Other(format!(
                "HTTP {} from GET {url}",
                response.status
            )));
        }
        let text = String::from_utf8(response.body)
            .map_err(|_| HttpError::Other(format!("{url} is not UTF-8 text")))?;
        let mut definitions = self.definitions.lock().expect("definitions");
        if definitions.len() >= 1024 {
            definitions.clear();
        }
        definitions.insert(key, (std::time::Instant::now(), text.clone()));
        Ok(text)
    }

    async fn grpc(&self, request: GrpcRequest) -> Result<serde_json::Value, GrpcError> {
        let guarded = self.guarded(&request.project);
        if let Some(guarded) = &guarded {
            guarded
                .policy
                .check_host(&request.host, Some(request.port))
                .map_err(GrpcError::Refused)?;
        }
        let resolver = guarded.as_ref().map(|g| {
            let policy = self
                .egress
                .as_ref()
                .filter(|e| e.projects.contains_key(&request.project))
                .map(|_| request.project.clone());
            (&g.resolver, policy)
        });
        let project = request.project.clone();
        let fetch = async |url: url::Url| {
            let response = self
                .http(HttpRequest {
                    method: "GET".into(),
                    url: url.clone(),
                    headers: Vec::new(),
                    body: None,
                    follow_redirects: true,
                    timeout: Some(CONNECT_TIMEOUT * 3),
                    project,
                })
                .await
                .map_err(|e| match e {
                    HttpError::Refused(rule) => GrpcError::Refused(rule),
                    e => GrpcError::Definition(format!("cannot fetch the proto at {url}: {e}")),
                })?;
            if response.status != 200 {
                return Err(GrpcError::Definition(format!(
                    "cannot fetch the proto at {url}: HTTP {}",
                    response.status
                )));
            }
            String::from_utf8(response.body)
                .map_err(|_| GrpcError::Definition(format!("the proto at {url} is not UTF-8")))
        };
        self.grpc
            .call(request, self.files.as_deref(), resolver, fetch)
            .await
    }

    async fn mcp(&self, request: McpRequest) -> Result<serde_json::Value, McpError> {
        let guarded = self.guarded(&request.project);
        let client = match (&guarded, &request.server) {
            (Some(guarded), engine::McpServer::Http { url, .. }) => {
                egress::check_url(&guarded.policy, url).map_err(McpError::Refused)?;
                guarded.clients.following.clone()
            }
            (Some(_), engine::McpServer::Stdio { .. }) | (None, _) => self.open.following.clone(),
        };
        // On a task of its own, as HTTP requests are; dropping this aborts it (and stops
        // a stdio server).
        AbortOnDropHandle::new(tokio::spawn(mcp::call(request, client)))
            .await
            .map_err(|e| McpError::Transport(format!("the MCP task failed: {e}")))?
    }

    async fn process(
        &self,
        spec: ProcessSpec,
        control: ProcessControl,
    ) -> std::io::Result<ProcessOutput> {
        match &self.workers {
            Some(workers) => match &spec.container {
                Some(container) => {
                    let engine = self.container_engine.as_deref();
                    container::run(workers, engine, &spec, container, &control).await
                }
                None => workers.run(&spec, &control).await,
            },
            None => Err(std::io::Error::other(format!(
                "no worker to run `{}` on: this runtime was given none",
                spec.program
            ))),
        }
    }

    async fn load_workflow(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
    ) -> std::io::Result<Option<String>> {
        let Some(catalog) = &self.catalog else {
            return Ok(None);
        };
        // Names come from an untrusted document: one path segment each, no way out of the catalog.
        let safe = |s: &str| !s.is_empty() && !s.contains(['/', '\\']) && s != "." && s != "..";
        if version.is_empty() {
            // Zigflow names a workflow type on a task queue, with no version: the files
            // of the catalog are its project.
            return zigflow_workflow(catalog, namespace, name).await;
        }
        if !(safe(namespace) && safe(name) && safe(version)) {
            return Ok(None);
        }
        for ext in ["yaml", "yml", "json"] {
            let path = catalog
                .join(namespace)
                .join(name)
                .join(format!("{version}.{ext}"));
            match tokio::fs::read_to_string(&path).await {
                Ok(text) => return Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

/// The path a `file:` URL names under `files`, the directory local resources are read
/// under (none: none are).
fn local_file(
    files: Option<&std::path::Path>,
    url: &url::Url,
) -> Result<std::path::PathBuf, String> {
    match files {
        Some(root) => file_path(url, root),
        None => Err(format!(
            "this server reads no local files, so not {url} (see --files)"
        )),
    }
}

/// The path a `file:` URL names under `root`: `file:///abs/path` must lie under it,
/// and a URL with a host (`file://protos/greet.proto`) is a path relative to it; none
/// may lead out of it.
pub fn file_path(url: &url::Url, root: &std::path::Path) -> Result<std::path::PathBuf, String> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let path = match url.host_str().filter(|h| !h.is_empty()) {
        Some(host) => {
            let rest = url.path().trim_start_matches('/');
            let mut path = root.join(decode(host));
            if !rest.is_empty() {
                path.push(decode(rest));
            }
            path
        }
        None => std::path::PathBuf::from(decode(url.path())),
    };
    let inside = path.strip_prefix(root).is_ok_and(|p| {
        p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
    });
    if !inside {
        return Err(format!(
            "{url} is outside the files this server reads ({})",
            root.display()
        ));
    }
    Ok(path)
}

/// Sends requests for chosen hosts to other places, for tests against local
/// stand-ins: `petstore.swagger.io` → `http://127.0.0.1:8080` keeps the path and
/// query and changes only the scheme, host and port.
pub struct HostMap<E> {
    inner: E,
    map: Vec<(String, url::Url)>,
}

impl<E> HostMap<E> {
    /// `map` pairs a host name with the base URL that replaces it.
    pub fn new(inner: E, map: Vec<(String, url::Url)>) -> HostMap<E> {
        HostMap { inner, map }
    }

    fn rewrite(&self, url: url::Url) -> url::Url {
        let Some((_, target)) = self
            .map
            .iter()
            .find(|(host, _)| Some(host.as_str()) == url.host_str())
        else {
            return url;
        };
        // `set_scheme` refuses some changes (such as https to http) on special URLs,
        // so start from the target and keep the rest.
        let mut rewritten = target.clone();
        rewritten.set_path(&format!(
            "{}{}",
            target.path().trim_end_matches('/'),
            url.path()
        ));
        rewritten.set_query(url.query());
        rewritten
    }
}

#[async_trait]
impl<E: Effects> Effects for HostMap<E> {
    async fn google_token(&self, token: engine::GoogleToken) -> Result<String, String> {
        self.inner.google_token(token).await
    }

    async fn http(&self, mut request: HttpRequest) -> Result<HttpResponse, HttpError> {
        request.url = self.rewrite(request.url);
        self.inner.http(request).await
    }

    async fn grpc(&self, mut request: GrpcRequest) -> Result<serde_json::Value, GrpcError> {
        request.proto = self.rewrite(request.proto);
        if let Some((_, target)) = self.map.iter().find(|(host, _)| *host == request.host) {
            request.host = target.host_str().unwrap_or("127.0.0.1").to_string();
            request.port = target.port_or_known_default().unwrap_or(request.port);
        }
        self.inner.grpc(request).await
    }

    async fn http_events(
        &self,
        mut request: HttpRequest,
        sink: engine::EventSink,
    ) -> Result<HttpResponse, HttpError> {
        request.url = self.rewrite(request.url);
        self.inner.http_events(request, sink).await
    }

    async fn definition(&self, mut request: HttpRequest) -> Result<String, HttpError> {
        request.url = self.rewrite(request.url);
        self.inner.definition(request).await
    }

    async fn publish(&self, mut channel: Channel, message: Outbound) -> Result<(), MessagingError> {
        channel.server = self.rewrite(channel.server);
        self.inner.publish(channel, message).await
    }

    async fn subscribe(
        &self,
        mut channel: Channel,
    ) -> Result<Box<dyn Subscription>, MessagingError> {
        channel.server = self.rewrite(channel.server);
        self.inner.subscribe(channel).await
    }

    async fn mcp(&self, mut request: McpRequest) -> Result<serde_json::Value, McpError> {
        if let engine::McpServer::Http { url, .. } = &mut request.server {
            *url = self.rewrite(url.clone());
        }
        self.inner.mcp(request).await
    }

    async fn process(
        &self,
        spec: ProcessSpec,
        control: ProcessControl,
    ) -> std::io::Result<ProcessOutput> {
        self.inner.process(spec, control).await
    }

    async fn load_workflow(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
    ) -> std::io::Result<Option<String>> {
        self.inner.load_workflow(namespace, name, version).await
    }
}

/// The document of Zigflow's project in `catalog` (its YAML and JSON files) whose
/// `document.workflowType` is `name` on task queue `queue`.
async fn zigflow_workflow(
    catalog: &std::path::Path,
    queue: &str,
    name: &str,
) -> std::io::Result<Option<String>> {
    let mut entries = tokio::fs::read_dir(catalog).await?;
    let mut files = Vec::new();
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default();
        if ["yaml", "yml", "json"].contains(&ext) && entry.file_type().await?.is_file() {
            files.push(path);
        }
    }
    files.sort();
    for path in files {
        let text = tokio::fs::read_to_string(&path).await?;
        let Ok(root) = dsl::tree(&text, &dsl::Options::default()) else {
            continue;
        };
        let document = root.to_json();
        let document = &document["document"];
        if document["workflowType"] == name && document["taskQueue"] == queue {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_map_keeps_path_and_query() {
        let map = HostMap::new(
            (),
            vec![(
                "petstore.swagger.io".into(),
                url::Url::parse("http://127.0.0.1:9000").unwrap(),
            )],
        );
        let rewrite = |url: &str| map.rewrite(url::Url::parse(url).unwrap()).to_string();
        assert_eq!(
            rewrite("https://petstore.swagger.io/v2/pet/findByStatus?status=available"),
            "http://127.0.0.1:9000/v2/pet/findByStatus?status=available"
        );
        assert_eq!(
            rewrite("https://other.example/x"),
            "https://other.example/x"
        );
    }
}
