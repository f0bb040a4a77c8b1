//! `call` tasks: HTTP, gRPC, OpenAPI, AsyncAPI, A2A, MCP and custom functions.

use super::task::subscription_iterator;
use super::workflow::{Section, endpoint, external_resource, has_scheme};
use super::{At, Cx, Obj, auth};
use crate::yaml::Kind;
use program::{
    A2aCall, AsyncApiCall, AsyncApiConsume, AsyncApiMessage, AsyncApiServer, AsyncApiSubscription,
    Call, CallTarget, FunctionCall, GrpcCall, GrpcService, HttpCall, HttpOutput, McpCall,
    McpClient, McpTransport, OpenApiCall,
};

const PROTOCOLS: [&str; 6] = ["http", "grpc", "openapi", "asyncapi", "a2a", "mcp"];

pub(super) fn call(cx: &mut Cx, obj: &mut Obj) -> Option<Call> {
    let call_at = obj.field("call").expect("kind detected");
    let Some(name) = cx.string(&call_at) else {
        obj.field("with");
        return None;
    };
    match name.as_str() {
        "http" => obj.req(cx, "with", http).map(Call::Http),
        "grpc" => obj.req(cx, "with", grpc).map(Call::Grpc),
        "openapi" => obj.req(cx, "with", openapi).map(Call::OpenApi),
        "asyncapi" => obj
            .req(cx, "with", asyncapi)
            .map(|c| Call::AsyncApi(Box::new(c))),
        "a2a" => obj.req(cx, "with", a2a).map(Call::A2a),
        "mcp" => obj.req(cx, "with", mcp).map(Call::Mcp),
        _ => {
            let target = function_target(cx, &call_at, &name);
            let with = obj.opt(cx, "with", |cx, at| mapping_template(cx, at));
            Some(Call::Function(FunctionCall {
                name,
                target: target?,
                with: with?,
            }))
        }
    }
}

/// What `call: name` refers to when it is not a built-in protocol.
fn function_target(cx: &mut Cx, at: &At, name: &str) -> Option<CallTarget> {
    if has_scheme(name) {
        return Some(CallTarget::Uri(name.to_string()));
    }
    if let Some((function_version, catalog)) = name.rsplit_once('@') {
        let Some((function, version)) = function_version
            .split_once(':')
            .filter(|(f, v)| !f.is_empty() && !v.is_empty())
        else {
            cx.error_help(
                at.node.range.clone(),
                &at.ptr,
                format!("`call: {name}` is not a catalog reference"),
                "write a cataloged function as `{function}:{version}@{catalog}`, such as `log:1.0.0@global`",
            );
            return None;
        };
        if catalog != "default" && !cx.names_in(Section::Catalogs).iter().any(|c| c == catalog) {
            let help = match expr::closest(
                catalog,
                cx.names_in(Section::Catalogs).iter().map(String::as_str),
            ) {
                Some(c) => format!("did you mean `{c}`?"),
                None => {
                    "declare it under `use:` → `catalogs:`, or use the runtime's `default` catalog"
                        .into()
                }
            };
            cx.error_help(
                at.node.range.clone(),
                &at.ptr,
                format!("catalog `{catalog}` is not defined in `use.catalogs`"),
                help,
            );
            return None;
        }
        return Some(CallTarget::Catalog {
            function: function.to_string(),
            version: version.to_string(),
            catalog: catalog.to_string(),
        });
    }
    if cx.names_in(Section::Functions).iter().any(|f| f == name) {
        return Some(CallTarget::Use(name.to_string()));
    }
    let candidates = PROTOCOLS
        .iter()
        .copied()
        .chain(cx.names_in(Section::Functions).iter().map(String::as_str));
    let help = match expr::closest(name, candidates) {
        Some(c) => format!("did you mean `{c}`?"),
        None => "call one of `http`, `grpc`, `openapi`, `asyncapi`, `a2a`, `mcp`, a function declared in \
                 `use.functions`, `{function}:{version}@{catalog}`, or a function's URI"
            .into(),
    };
    cx.error_help(
        at.node.range.clone(),
        &at.ptr,
        format!("`call: {name}` is neither a built-in protocol nor a function in `use.functions`"),
        help,
    );
    None
}

fn mapping_template(cx: &mut Cx, at: &At) -> Option<expr::Template> {
    if !matches!(at.node.kind, Kind::Map(_)) {
        cx.expected(at, "a mapping");
        return None;
    }
    cx.template(at)
}

/// A mapping of names to string values, or one `${ }` expression that yields it (HTTP headers and query).
fn string_map_or_expr(cx: &mut Cx, at: &At) -> Option<expr::Template> {
    match &at.node.kind {
        Kind::Str(_) => cx.strict_expr(at).map(expr::Template::Expr),
        Kind::Map(_) => {
            let entries = cx.entries(at)?;
            let mut members = Vec::with_capacity(entries.len());
            let mut ok = true;
            for (name, value) in entries {
                if !matches!(value.node.kind, Kind::Str(_)) {
                    cx.error_help(
                        value.node.range.clone(),
                        &value.ptr,
                        format!(
                            "{} must be a string, found {}",
                            value.label(),
                            value.node.describe()
                        ),
                        "quote the value, such as '10'",
                    );
                    ok = false;
                    continue;
                }
                match cx.text(&value) {
                    Some(t) => members.push((name, t)),
                    None => ok = false,
                }
            }
            ok.then(|| expr::Template::object(members))
        }
        _ => {
            cx.expected(at, "a mapping of strings or a `${ }` expression");
            None
        }
    }
}

fn http_output(cx: &mut Cx, at: &At) -> Option<HttpOutput> {
    Some(
        match cx.one_of(at, &["content", "response", "raw"])?.as_str() {
            "response" => HttpOutput::Response,
            "raw" => HttpOutput::Raw,
            _ => HttpOutput::Content,
        },
    )
}

fn http(cx: &mut Cx, at: &At) -> Option<HttpCall> {
    let mut obj = Obj::new(cx, at)?;
    let method = obj.req(cx, "method", Cx::string);
    let endpoint = obj.req(cx, "endpoint", endpoint);
    let headers = obj.opt(cx, "headers", string_map_or_expr);
    let body = obj.opt(cx, "body", Cx::template);
    let query = obj.opt(cx, "query", string_map_or_expr);
    let output = obj.opt(cx, "output", http_output);
    let redirect = obj.opt(cx, "redirect", Cx::boolean);
    obj.finish(cx);
    Some(HttpCall {
        method: method?,
        endpoint: endpoint?,
        headers: headers?,
        body: body?,
        query: query?,
        output: output?.unwrap_or_default(),
        redirect: redirect?.unwrap_or(false),
    })
}

fn grpc(cx: &mut Cx, at: &At) -> Option<GrpcCall> {
    let mut obj = Obj::new(cx, at)?;
    let proto = obj.req(cx, "proto", external_resource);
    let service = obj.req(cx, "service", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let name = obj.req(cx, "name", Cx::string);
        let host = obj.req(cx, "host", host);
        let port = obj.opt(cx, "port", Cx::uint::<u16>);
        let authentication = obj.opt(cx, "authentication", auth::reference);
        obj.finish(cx);
        Some(GrpcService {
            name: name?,
            host: host?,
            port: port?,
            authentication: authentication?,
        })
    });
    let method = obj.req(cx, "method", Cx::string);
    let arguments = obj.opt(cx, "arguments", mapping_template);
    obj.finish(cx);
    Some(GrpcCall {
        proto: proto?,
        service: service?,
        method: method?,
        arguments: arguments?,
    })
}

/// A host name, as the schema allows it for gRPC services.
fn host(cx: &mut Cx, at: &At) -> Option<String> {
    let s = cx.string(at)?;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric();
    if ok {
        return Some(s);
    }
    cx.error(
        at.node.range.clone(),
        &at.ptr,
        format!("`{s}` is not a host name"),
    );
    None
}

fn openapi(cx: &mut Cx, at: &At) -> Option<OpenApiCall> {
    let mut obj = Obj::new(cx, at)?;
    let document = obj.req(cx, "document", external_resource);
    let operation_id = obj.req(cx, "operationId", Cx::string);
    let parameters = obj.opt(cx, "parameters", mapping_template);
    let authentication = obj.opt(cx, "authentication", auth::reference);
    let output = obj.opt(cx, "output", http_output);
    let redirect = obj.opt(cx, "redirect", Cx::boolean);
    obj.finish(cx);
    Some(OpenApiCall {
        document: document?,
        operation_id: operation_id?,
        parameters: parameters?,
        authentication: authentication?,
        output: output?.unwrap_or_default(),
        redirect: redirect?.unwrap_or(false),
    })
}

fn asyncapi(cx: &mut Cx, at: &At) -> Option<AsyncApiCall> {
    const ASYNCAPI_PROTOCOLS: [&str; 19] = [
        "amqp",
        "amqp1",
        "anypointmq",
        "googlepubsub",
        "http",
        "ibmmq",
        "jms",
        "kafka",
        "mercure",
        "mqtt",
        "mqtt5",
        "nats",
        "pulsar",
        "redis",
        "sns",
        "solace",
        "sqs",
        "stomp",
        "ws",
    ];
    let mut obj = Obj::new(cx, at)?;
    let document = obj.req(cx, "document", external_resource);
    let channel = obj.opt(cx, "channel", Cx::string);
    let operation = obj.opt(cx, "operation", Cx::string);
    let server = obj.opt(cx, "server", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let name = obj.req(cx, "name", Cx::string);
        let variables = obj.opt(cx, "variables", mapping_template);
        obj.finish(cx);
        Some(AsyncApiServer {
            name: name?,
            variables: variables?,
        })
    });
    let protocol = obj.opt(cx, "protocol", |cx, at| cx.one_of(at, &ASYNCAPI_PROTOCOLS));
    let message = obj.opt(cx, "message", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let payload = obj.opt(cx, "payload", mapping_template);
        let headers = obj.opt(cx, "headers", mapping_template);
        obj.finish(cx);
        Some(AsyncApiMessage {
            payload: payload?,
            headers: headers?,
        })
    });
    let subscription = obj.opt(cx, "subscription", subscription);
    let authentication = obj.opt(cx, "authentication", auth::reference);
    let anchor = obj.at().anchor();
    let ptr = obj.at().ptr.clone();
    obj.finish(cx);

    let (channel, operation, message, subscription) =
        (channel?, operation?, message?, subscription?);
    let mut ok = true;
    if channel.is_some() == operation.is_some() {
        cx.error(anchor.clone(), &ptr, "an AsyncAPI call needs exactly one of `operation` (AsyncAPI 3) or `channel` (AsyncAPI 2.6)");
        ok = false;
    }
    if message.is_some() == subscription.is_some() {
        cx.error(
            anchor,
            &ptr,
            "an AsyncAPI call needs exactly one of `message` (publish) or `subscription` (consume)",
        );
        ok = false;
    }
    ok.then_some(())?;
    Some(AsyncApiCall {
        document: document?,
        channel,
        operation,
        server: server?,
        protocol: protocol?,
        message,
        subscription,
        authentication: authentication?,
    })
}

fn subscription(cx: &mut Cx, at: &At) -> Option<AsyncApiSubscription> {
    let mut obj = Obj::new(cx, at)?;
    let filter = obj.opt(cx, "filter", Cx::strict_expr);
    let consume = obj.req(cx, "consume", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let amount = obj.opt(cx, "amount", Cx::uint::<u64>);
        let while_ = obj.opt(cx, "while", Cx::strict_expr);
        let until = obj.opt(cx, "until", Cx::strict_expr);
        let for_ = obj.opt(cx, "for", Cx::duration);
        let anchor = obj.at().anchor();
        let ptr = obj.at().ptr.clone();
        obj.finish(cx);
        let consume = AsyncApiConsume {
            amount: amount?,
            while_: while_?,
            until: until?,
            for_: for_?,
        };
        let stops = [
            consume.amount.is_some(),
            consume.while_.is_some(),
            consume.until.is_some(),
        ];
        if stops.iter().filter(|s| **s).count() != 1 {
            cx.error(
                anchor,
                &ptr,
                "`consume` needs exactly one of `amount`, `while` or `until`",
            );
            return None;
        }
        Some(consume)
    });
    let foreach = obj.opt(cx, "foreach", subscription_iterator);
    obj.finish(cx);
    Some(AsyncApiSubscription {
        filter: filter?,
        consume: consume?,
        foreach: foreach?,
    })
}

fn a2a(cx: &mut Cx, at: &At) -> Option<A2aCall> {
    const METHODS: [&str; 11] = [
        "message/send",
        "message/stream",
        "tasks/get",
        "tasks/list",
        "tasks/cancel",
        "tasks/resubscribe",
        "tasks/pushNotificationConfig/set",
        "tasks/pushNotificationConfig/get",
        "tasks/pushNotificationConfig/list",
        "tasks/pushNotificationConfig/delete",
        "agent/getAuthenticatedExtendedCard",
    ];
    let mut obj = Obj::new(cx, at)?;
    let method = obj.req(cx, "method", |cx, at| cx.one_of(at, &METHODS));
    let agent_card = obj.opt(cx, "agentCard", external_resource);
    let server = obj.opt(cx, "server", endpoint);
    let parameters = obj.opt(cx, "parameters", parameters);
    let anchor = obj.at().anchor();
    let ptr = obj.at().ptr.clone();
    obj.finish(cx);
    let (agent_card, server) = (agent_card?, server?);
    if agent_card.is_none() && server.is_none() {
        cx.error(anchor, &ptr, "an A2A call needs `agentCard` or `server`");
        return None;
    }
    Some(A2aCall {
        method: method?,
        agent_card,
        server,
        parameters: parameters?,
    })
}

/// Call parameters: a mapping (with expressions inside) or one expression.
fn parameters(cx: &mut Cx, at: &At) -> Option<expr::Template> {
    match &at.node.kind {
        Kind::Str(_) => cx.text(at),
        Kind::Map(entries) if entries.is_empty() => {
            cx.error(
                at.node.range.clone(),
                &at.ptr,
                "`parameters` needs at least one property",
            );
            None
        }
        Kind::Map(_) => cx.template(at),
        _ => {
            cx.expected(at, "a mapping or an expression");
            None
        }
    }
}

fn mcp(cx: &mut Cx, at: &At) -> Option<McpCall> {
    const METHODS: [&str; 7] = [
        "tools/list",
        "tools/call",
        "prompts/list",
        "prompts/get",
        "resources/list",
        "resources/read",
        "resources/templates/list",
    ];
    let mut obj = Obj::new(cx, at)?;
    let protocol_version = obj.opt(cx, "protocolVersion", Cx::string);
    let method = obj.req(cx, "method", |cx, at| cx.one_of(at, &METHODS));
    let parameters = obj.opt(cx, "parameters", |cx, at| match &at.node.kind {
        Kind::Map(_) => cx.template(at),
        _ => parameters(cx, at),
    });
    let timeout = obj.opt(cx, "timeout", Cx::duration);
    let transport = obj.req(cx, "transport", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let http = obj.opt(cx, "http", |cx, at| {
            let mut obj = Obj::new(cx, at)?;
            let endpoint = obj.req(cx, "endpoint", endpoint);
            let headers = obj.opt(cx, "headers", string_map_or_expr);
            obj.finish(cx);
            Some(McpTransport::Http {
                endpoint: endpoint?,
                headers: headers?,
            })
        });
        let stdio = obj.opt(cx, "stdio", |cx, at| {
            let mut obj = Obj::new(cx, at)?;
            let command = obj.req(cx, "command", Cx::text);
            let arguments = obj.opt(cx, "arguments", |cx, at| {
                let items: Vec<At> = match at.items() {
                    Some(items) => items.collect(),
                    None => {
                        cx.expected(at, "a list of strings");
                        return None;
                    }
                };
                let out: Vec<Option<expr::Template>> = items.iter().map(|i| cx.text(i)).collect();
                out.into_iter().collect::<Option<Vec<_>>>()
            });
            let environment = obj.opt(cx, "environment", string_map_or_expr);
            obj.finish(cx);
            Some(McpTransport::Stdio {
                command: command?,
                arguments: arguments?.unwrap_or_default(),
                environment: environment?,
            })
        });
        let options = obj.opt(cx, "options", string_map_or_expr);
        let anchor = obj.at().anchor();
        let ptr = obj.at().ptr.clone();
        obj.finish(cx);
        let transport = match (http?, stdio?) {
            (Some(t), None) | (None, Some(t)) => t,
            _ => {
                cx.error(
                    anchor,
                    &ptr,
                    "`transport` needs exactly one of `http` or `stdio`",
                );
                return None;
            }
        };
        Some((transport, options?))
    });
    let client = obj.opt(cx, "client", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let name = obj.req(cx, "name", Cx::string);
        let version = obj.req(cx, "version", Cx::string);
        obj.finish(cx);
        Some(McpClient {
            name: name?,
            version: version?,
        })
    });
    obj.finish(cx);
    let (transport, options) = transport?;
    Some(McpCall {
        protocol_version: protocol_version?.unwrap_or_else(|| "2025-06-18".into()),
        method: method?,
        parameters: parameters?,
        timeout: timeout?,
        transport,
        options,
        client: client?,
    })
}
