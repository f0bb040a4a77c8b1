//! `call: grpc` for real: the service's proto compiled by protox (from a file under the
//! runtime's files root, from an HTTP URL, or asked of the server by gRPC reflection),
//! the arguments turned into the request message by prost-reflect, and the call made
//! by tonic with a codec that carries dynamic messages. Compiled protos and channels
//! are kept, so a workflow that calls one service many times compiles and connects
//! once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine::{GrpcError, GrpcRequest};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::egress::Resolver;

/// How long what a server's reflection said is trusted before it is asked again.
const REFLECTION_TTL: Duration = Duration::from_secs(300);

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest proto file read.
const MAX_PROTO_BYTES: u64 = 4 << 20;

/// Where protos come from and the state kept between calls.
pub(crate) struct Grpc {
    /// `HOST:PORT` patterns (`*` for any) reached over TLS besides port 443.
    tls: Vec<String>,
    /// Compiled protos, by where they came from and (for files) their modification time
    /// and length, or (fetched) a hash of their text.
    pools: Mutex<HashMap<String, (DescriptorPool, Instant)>>,
    /// Open channels, by address, TLS and egress policy.
    channels: Mutex<HashMap<ChannelKey, Channel>>,
}

/// `HOST:PORT`, whether over TLS, and the project whose egress policy it passes (`None`:
/// the server's).
type ChannelKey = (String, bool, Option<String>);

/// A proto's text fetched over HTTP, for [`Grpc::call`] to compile.
pub(crate) type Fetched = Result<String, GrpcError>;

impl Grpc {
    pub(crate) fn new(tls: Vec<String>) -> Grpc {
        Grpc {
            tls,
            pools: Mutex::default(),
            channels: Mutex::default(),
        }
    }

    fn uses_tls(&self, host: &str, port: u16) -> bool {
        let address = format!("{host}:{port}");
        port == 443 || self.tls.iter().any(|t| t == "*" || *t == address)
    }

    /// A channel to `host:port`, through `resolver` when an egress policy applies
    /// (`policy` names it, for the cache).
    fn channel(
        &self,
        host: &str,
        port: u16,
        resolver: Option<(&Resolver, Option<String>)>,
    ) -> Result<Channel, GrpcError> {
        let tls = self.uses_tls(host, port);
        let address = format!("{host}:{port}");
        let key = (
            address.clone(),
            tls,
            resolver.as_ref().and_then(|(_, p)| p.clone()),
        );
        let mut channels = self.channels.lock().expect("channel table");
        if let Some(channel) = channels.get(&key) {
            return Ok(channel.clone());
        }
        let scheme = if tls { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|e| GrpcError::Connect(format!("`{address}` is not an address: {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(crate::USER_AGENT)
            .map_err(|e| GrpcError::Connect(e.to_string()))?;
        if tls {
            endpoint = endpoint
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(|e| GrpcError::Connect(format!("TLS to {address}: {e}")))?;
        }
        let channel = match resolver {
            Some((resolver, _)) => {
                let mut connector =
                    hyper_util::client::legacy::connect::HttpConnector::new_with_resolver(
                        resolver.clone(),
                    );
                connector.enforce_http(false);
                connector.set_nodelay(true);
                endpoint.connect_with_connector_lazy(connector)
            }
            None => endpoint.connect_lazy(),
        };
        channels.insert(key, channel.clone());
        Ok(channel)
    }

    /// Makes the call. `files` is the directory `file:` protos are read under (none:
    /// none are); `fetch` gets the text of an `http(s):` proto (through the runtime's
    /// HTTP clients and their egress policy).
    pub(crate) async fn call<F>(
        &self,
        request: GrpcRequest,
        files: Option<&Path>,
        resolver: Option<(&Resolver, Option<String>)>,
        fetch: F,
    ) -> Result<serde_json::Value, GrpcError>
    where
        F: AsyncFnOnce(url::Url) -> Fetched,
    {
        let channel = self.channel(&request.host, request.port, resolver)?;
        let pool = self.pool(&request, files, channel.clone(), fetch).await?;
        let method = find_method(&pool, &request.service, &request.method)?;
        let message =
            DynamicMessage::deserialize(method.input(), &request.message).map_err(|e| {
                GrpcError::Definition(format!(
                    "the arguments do not fit `{}`: {e}",
                    method.input().full_name()
                ))
            })?;
        let mut call = tonic::Request::new(message);
        for (name, value) in &request.metadata {
            let (Ok(name), Ok(value)) = (
                name.parse::<tonic::metadata::MetadataKey<_>>(),
                value.parse::<tonic::metadata::MetadataValue<_>>(),
            ) else {
                return Err(GrpcError::Definition(format!(
                    "`{name}` cannot be sent as gRPC metadata"
                )));
            };
            call.metadata_mut().insert(name, value);
        }
        if let Some(timeout) = request.timeout {
            call.set_timeout(timeout);
        }
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let path = path
            .parse::<tonic::codegen::http::uri::PathAndQuery>()
            .map_err(|e| GrpcError::Definition(format!("`{path}`: {e}")))?;
        let mut client = tonic::client::Grpc::new(channel);
        client.ready().await.map_err(|e| {
            GrpcError::Connect(format!("{}:{}: {}", request.host, request.port, chain(&e)))
        })?;
        let codec = Dynamic(method.output());
        let began = std::time::Instant::now();
        let response = client.unary(call, path, codec).await.map_err(|status| {
            // When tonic's own timer fires before the server's DEADLINE_EXCEEDED
            // arrives, it reports CANCELLED: that is the deadline too.
            let expired = request.timeout.is_some_and(|t| began.elapsed() >= t);
            match status.code() {
                tonic::Code::Cancelled if expired => GrpcError::Status {
                    code: tonic::Code::DeadlineExceeded as i32,
                    message: status.message().to_string(),
                },
                code => GrpcError::Status {
                    code: code as i32,
                    message: status.message().to_string(),
                },
            }
        })?;
        json(&response.into_inner())
    }

    /// The descriptors of the request's proto: compiled, kept, or asked for.
    async fn pool<F>(
        &self,
        request: &GrpcRequest,
        files: Option<&Path>,
        channel: Channel,
        fetch: F,
    ) -> Result<DescriptorPool, GrpcError>
    where
        F: AsyncFnOnce(url::Url) -> Fetched,
    {
        let url = &request.proto;
        match url.scheme() {
            "file" => {
                let path = crate::local_file(files, url).map_err(GrpcError::Definition)?;
                let meta = tokio::fs::metadata(&path).await.map_err(|e| {
                    GrpcError::Definition(format!("cannot read {}: {e}", path.display()))
                })?;
                if meta.len() > MAX_PROTO_BYTES {
                    return Err(GrpcError::Definition(format!(
                        "{} is larger than {} MiB",
                        path.display(),
                        MAX_PROTO_BYTES >> 20
                    )));
                }
                let stamp = meta.modified().ok().map(|m| format!("{m:?}"));
                let key = format!("{}|{stamp:?}|{}", path.display(), meta.len());
                if let Some(pool) = self.kept(&key, None) {
                    return Ok(pool);
                }
                let root = files.map(Path::to_path_buf).unwrap_or_default();
                let pool = tokio::task::spawn_blocking(move || compile_file(&root, &path))
                    .await
                    .map_err(|e| GrpcError::Definition(e.to_string()))??;
                Ok(self.keep(key, pool))
            }
            "http" | "https" => {
                let text = fetch(url.clone()).await?;
                let key = format!("{url}|{}", fnv(text.as_bytes()));
                if let Some(pool) = self.kept(&key, None) {
                    return Ok(pool);
                }
                let name = url
                    .path_segments()
                    .and_then(|mut s| s.next_back())
                    .filter(|n| !n.is_empty())
                    .unwrap_or("service.proto")
                    .to_string();
                let pool = compile_text(&name, text)?;
                Ok(self.keep(key, pool))
            }
            "grpc" => {
                let key = format!("{url}|{}", request.service);
                if let Some(pool) = self.kept(&key, Some(REFLECTION_TTL)) {
                    return Ok(pool);
                }
                let pool = reflect(channel, &request.service).await?;
                Ok(self.keep(key, pool))
            }
            other => Err(GrpcError::Definition(format!(
                "a proto is read from a `file:`, `http:` or `https:` URL, or from a server's \
                 reflection at `grpc://HOST:PORT`; not from `{other}:`"
            ))),
        }
    }

    fn kept(&self, key: &str, ttl: Option<Duration>) -> Option<DescriptorPool> {
        let pools = self.pools.lock().expect("proto table");
        let (pool, at) = pools.get(key)?;
        match ttl {
            Some(ttl) if at.elapsed() > ttl => None,
            _ => Some(pool.clone()),
        }
    }

    fn keep(&self, key: String, pool: DescriptorPool) -> DescriptorPool {
        let mut pools = self.pools.lock().expect("proto table");
        // Old versions of a file stay under their own keys; a table that grows past
        // what any workflow set needs is started afresh.
        if pools.len() >= 1024 {
            pools.clear();
        }
        pools.insert(key, (pool.clone(), Instant::now()));
        pool
    }
}

/// A small, stable hash of a fetched proto's text, for the cache.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Compiles the proto at `path`, its imports found beside it and under `root`.
pub fn compile_file(root: &Path, path: &Path) -> Result<DescriptorPool, GrpcError> {
    let dir = path.parent().unwrap_or(root).to_path_buf();
    let mut includes = vec![dir.clone()];
    if root != dir && !root.as_os_str().is_empty() {
        includes.push(root.to_path_buf());
    }
    let mut compiler = protox::Compiler::new(includes)
        .map_err(|e| GrpcError::Definition(format!("{}: {e}", path.display())))?;
    compiler
        .include_imports(true)
        .open_file(path)
        .map_err(|e| GrpcError::Definition(format!("{}: {e}", path.display())))?;
    Ok(compiler.descriptor_pool())
}

/// Compiles one proto file given as text (fetched: its imports can only be Google's
/// well-known types).
fn compile_text(name: &str, text: String) -> Result<DescriptorPool, GrpcError> {
    struct One {
        name: String,
        text: String,
    }
    impl protox::file::FileResolver for One {
        fn open_file(&self, name: &str) -> Result<protox::file::File, protox::Error> {
            if name == self.name {
                protox::file::File::from_source(name, &self.text)
            } else {
                Err(protox::Error::file_not_found(name))
            }
        }
    }
    let mut resolver = protox::file::ChainFileResolver::new();
    resolver.add(One {
        name: name.to_string(),
        text,
    });
    resolver.add(protox::file::GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler
        .include_imports(true)
        .open_file(name)
        .map_err(|e| GrpcError::Definition(format!("{name}: {e}")))?;
    Ok(compiler.descriptor_pool())
}

/// The method `service`/`method` of `pool`; `service` fully qualified, or its last
/// part when only one service has that name.
pub fn find_method(
    pool: &DescriptorPool,
    service: &str,
    method: &str,
) -> Result<MethodDescriptor, GrpcError> {
    let found = pool.get_service_by_name(service).or_else(|| {
        let mut matching = pool
            .services()
            .filter(|s| s.name() == service || s.full_name().ends_with(&format!(".{service}")));
        let first = matching.next()?;
        matching.next().is_none().then_some(first)
    });
    let Some(found) = found else {
        let known: Vec<String> = pool.services().map(|s| s.full_name().to_string()).collect();
        return Err(GrpcError::Definition(format!(
            "the proto has no service `{service}` (it has {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let Some(m) = found.methods().find(|m| m.name() == method) else {
        let known: Vec<String> = found.methods().map(|m| m.name().to_string()).collect();
        return Err(GrpcError::Definition(format!(
            "service `{}` has no method `{method}` (it has {})",
            found.full_name(),
            known.join(", ")
        )));
    };
    if m.is_client_streaming() || m.is_server_streaming() {
        return Err(GrpcError::Definition(format!(
            "`{}/{method}` streams; skein makes unary calls only",
            found.full_name()
        )));
    }
    Ok(m)
}

/// A response message as JSON, by the proto3 JSON mapping, with every field present
/// (defaults too), so that expressions find the fields they name.
/// Whole numbers come back as integers: `google.protobuf.Value` carries every number as
/// a double, and `42.0` where a workflow sent `42` would surprise it.
fn json(message: &DynamicMessage) -> Result<serde_json::Value, GrpcError> {
    let options = prost_reflect::SerializeOptions::new().skip_default_fields(false);
    let mut value = message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| GrpcError::Definition(format!("the response cannot be read as JSON: {e}")))?;
    whole_numbers(&mut value);
    Ok(value)
}

fn whole_numbers(value: &mut serde_json::Value) {
    /// Beyond 2^53 a double no longer holds every integer.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match value {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                *n = serde_json::Number::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(whole_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(whole_numbers),
        _ => {}
    }
}

/// The descriptors of `service` and its dependencies, from the server's reflection
/// service: v1, or v1alpha for servers that have only that (Python's grpcio).
async fn reflect(channel: Channel, service: &str) -> Result<DescriptorPool, GrpcError> {
    let files = match reflect_v1(channel.clone(), service).await {
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            reflect_v1alpha(channel, service).await
        }
        other => other,
    }
    .map_err(|s| reflection_error(service, &s))??;
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_protos(files)
        .map_err(|e| GrpcError::Definition(format!("the reflected files do not fit: {e}")))?;
    Ok(pool)
}

/// The files reflection gives, asking for each dependency that did not come along; a
/// status is the server's refusal to reflect at all.
type Reflected = Result<Result<Vec<prost_types::FileDescriptorProto>, GrpcError>, tonic::Status>;

/// One version of the reflection protocol (the two differ in their package only).
macro_rules! reflect_version {
    ($name:ident, $pb:path) => {
        async fn $name(channel: Channel, service: &str) -> Reflected {
            use $pb as pb;
            use pb::server_reflection_client::ServerReflectionClient;
            use pb::server_reflection_request::MessageRequest;
            use pb::server_reflection_response::MessageResponse;

            let mut client = ServerReflectionClient::new(channel);
            let mut symbol = service.to_string();
            if !service.contains('.') {
                // A short name: the server's list of services says which it is.
                let request = pb::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(MessageRequest::ListServices(String::new())),
                };
                let answer = client
                    .server_reflection_info(futures::stream::iter([request]))
                    .await?
                    .into_inner()
                    .message()
                    .await?;
                if let Some(MessageResponse::ListServicesResponse(list)) =
                    answer.and_then(|a| a.message_response)
                {
                    let suffix = format!(".{service}");
                    let mut matching = list.service.iter().filter(|s| s.name.ends_with(&suffix));
                    if let (Some(only), None) = (matching.next(), matching.next()) {
                        symbol = only.name.clone();
                    }
                }
            }
            let mut files: HashMap<String, prost_types::FileDescriptorProto> = HashMap::new();
            let mut wanted = vec![MessageRequest::FileContainingSymbol(symbol)];
            while let Some(next) = wanted.pop() {
                let request = pb::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(next),
                };
                let answer = client
                    .server_reflection_info(futures::stream::iter([request]))
                    .await?
                    .into_inner()
                    .message()
                    .await?;
                let found = match answer.and_then(|a| a.message_response) {
                    Some(MessageResponse::FileDescriptorResponse(found)) => found,
                    Some(MessageResponse::ErrorResponse(e)) => {
                        return Ok(Err(GrpcError::Definition(format!(
                            "the server's reflection does not know `{service}`: {}",
                            e.error_message
                        ))));
                    }
                    _ => {
                        return Ok(Err(GrpcError::Definition(format!(
                            "the server's reflection said nothing of use about `{service}`"
                        ))));
                    }
                };
                for bytes in found.file_descriptor_proto {
                    match prost_types::FileDescriptorProto::decode(bytes.as_slice()) {
                        Ok(file) => {
                            files.insert(file.name().to_string(), file);
                        }
                        Err(e) => {
                            return Ok(Err(GrpcError::Definition(format!(
                                "reflection sent a file that does not decode: {e}"
                            ))));
                        }
                    }
                }
                for file in files.values() {
                    for dependency in &file.dependency {
                        let asked = wanted.iter().any(
                            |w| matches!(w, MessageRequest::FileByFilename(f) if f == dependency),
                        );
                        if !files.contains_key(dependency) && !asked {
                            wanted.push(MessageRequest::FileByFilename(dependency.clone()));
                        }
                    }
                }
            }
            Ok(Ok(files.into_values().collect()))
        }
    };
}

reflect_version!(reflect_v1, tonic_reflection::pb::v1);
reflect_version!(reflect_v1alpha, tonic_reflection::pb::v1alpha);

fn reflection_error(service: &str, status: &tonic::Status) -> GrpcError {
    GrpcError::Definition(format!(
        "asked the server's reflection about `{service}`: {:?} {}",
        status.code(),
        status.message()
    ))
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    crate::error_chain(e)
}

/// A codec for messages known only by their descriptors.
struct Dynamic(MessageDescriptor);

struct DynamicEncoder;

struct DynamicDecoder(MessageDescriptor);

impl Codec for Dynamic {
    type Encode = DynamicMessage;
    type Decode = DynamicMessage;
    type Encoder = DynamicEncoder;
    type Decoder = DynamicDecoder;

    fn encoder(&mut self) -> DynamicEncoder {
        DynamicEncoder
    }

    fn decoder(&mut self) -> DynamicDecoder {
        DynamicDecoder(self.0.clone())
    }
}

impl Encoder for DynamicEncoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn encode(&mut self, item: DynamicMessage, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|e| tonic::Status::internal(format!("encoding the request: {e}")))
    }
}

impl Decoder for DynamicDecoder {
    type Item = DynamicMessage;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<DynamicMessage>, Self::Error> {
        DynamicMessage::decode(self.0.clone(), src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("decoding the response: {e}")))
    }
}
