//! `call: http`: the request built from the task, and the response read back
//! as the task's output or as a `communication` error.

use base64::Engine as _;
use expr::{Problem, Template, Vars, types};
use program::{AuthPolicy, AuthRef, GoogleAuth, HttpCall, HttpOutput, OAuth2, Secretable, Uri};
use serde_json::{Value, json};

use crate::interp::{eval, plain_string, text};
use crate::run::Run;
use crate::{GoogleToken, HttpError, HttpRequest, HttpResponse, Interrupt};
use store::Ticket;

type Res<T> = Result<T, Interrupt>;

/// Most bytes of a failed response's body quoted in the error.
const DETAIL_BYTES: usize = 2048;

pub(crate) async fn call(
    run: &Run,
    after: Ticket,
    call: &HttpCall,
    key: &str,
    at: &str,
    input: &Value,
    vars: &Vars<'_>,
) -> Res<Value> {
    let mut url = endpoint_url(&call.endpoint.uri, input, vars, at)?;
    if let Some(query) = &call.query
        && let Value::Object(params) = eval(query, input, vars, at)?
    {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in params {
            if !value.is_null() {
                pairs.append_pair(&name, &plain_string(&value));
            }
        }
    }
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(h) = &call.headers
        && let Value::Object(map) = eval(h, input, vars, at)?
    {
        headers.extend(
            map.into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), plain_string(&v))),
        );
    }
    let digest = match &call.endpoint.authentication {
        Some(auth) => authorization(run, after, auth, &url, input, vars, at)
            .await?
            .apply(&mut headers),
        None => None,
    };
    let body = match &call.body {
        None => None,
        Some(template) => Some(match eval(template, input, vars, at)? {
            Value::String(s) => {
                default_header(&mut headers, "content-type", "text/plain; charset=utf-8");
                s.into_bytes()
            }
            other => {
                default_header(&mut headers, "content-type", "application/json");
                serde_json::to_vec(&other).unwrap_or_default()
            }
        }),
    };
    let request = task_request(run, key, &call.method, &url, headers, body, call.redirect);
    send_as(
        run,
        after,
        request,
        digest.as_ref(),
        call.output,
        call.redirect,
        at,
    )
    .await
}

/// The request of a task's call. It carries an `Idempotency-Key`, stable across re-runs
/// of the same attempt: the key holds the task path and attempt marks.
pub(crate) fn task_request(
    run: &Run,
    key: &str,
    method: &str,
    url: &url::Url,
    mut headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    follow_redirects: bool,
) -> HttpRequest {
    headers.push(("idempotency-key".into(), format!("{}:{key}", run.id)));
    HttpRequest {
        method: method.to_ascii_uppercase(),
        url: url.clone(),
        headers,
        body,
        follow_redirects,
        timeout: None,
        project: run.project.clone(),
    }
}

/// Sends a built request and reads the response as the task's output, or as the
/// `communication` error of a failed call.
async fn send(
    run: &Run,
    after: Ticket,
    request: HttpRequest,
    output: HttpOutput,
    redirect: bool,
    at: &str,
) -> Res<Value> {
    send_as(run, after, request, None, output, redirect, at).await
}

/// Like [`send`], with a digest policy's user and password: a 401 that carries a
/// `Digest` challenge is answered by sending the request again with credentials.
async fn send_as(
    run: &Run,
    after: Ticket,
    mut request: HttpRequest,
    digest: Option<&(String, String)>,
    output: HttpOutput,
    redirect: bool,
    at: &str,
) -> Res<Value> {
    run.barrier(after).await?;
    let mut response = exchange(run, &request, at).await?;
    if let Some((user, password)) = digest
        && response.status == 401
        && let Some(challenge) = super::digest::Challenge::find(
            response
                .headers
                .iter()
                .filter(|(k, _)| k == "www-authenticate")
                .map(|(_, v)| v.as_str()),
        )
    {
        let mut uri = request.url.path().to_string();
        if let Some(query) = request.url.query() {
            uri = format!("{uri}?{query}");
        }
        let cnonce = uuid::Uuid::new_v4().simple().to_string();
        let answer = challenge
            .answer(user, password, &request.method, &uri, &cnonce)
            .ok_or_else(|| unsupported_auth(at, "digest with this server's algorithm"))?;
        request.headers.retain(|(k, _)| k != "authorization");
        request.headers.push(("authorization".into(), answer));
        response = exchange(run, &request, at).await?;
    }
    read_response(run, &request, response, output, redirect, at)
}

/// One request and its response, or the `communication` error of a failed call.
pub(crate) async fn exchange(run: &Run, request: &HttpRequest, at: &str) -> Res<HttpResponse> {
    let response = tokio::select! {
        r = run.effects.http(request.clone()) => r,
        _ = run.cancel.cancelled() => return Err(Interrupt::Cancelled),
    };
    response.map_err(|e| Interrupt::Fault(unreachable_problem(request, &e, at)))
}

/// A response as the task's output, or the error its status means.
fn read_response(
    run: &Run,
    request: &HttpRequest,
    response: HttpResponse,
    output: HttpOutput,
    redirect: bool,
    at: &str,
) -> Res<Value> {
    // A service that meters its work (the SDK's do) says so in a header, with every
    // reply, failed ones too.
    if let Some(usage) = reported_usage(&response) {
        let key = request
            .headers
            .iter()
            .find(|(k, _)| k == "idempotency-key")
            .map_or("", |(_, v)| v.as_str());
        run.record_usage(at, key, json!(response.status), usage);
    }
    let ok = (200..300).contains(&response.status)
        || (redirect && (300..400).contains(&response.status));
    if !ok {
        return Err(Interrupt::Fault(status_problem(request, &response, at)));
    }
    Ok(match output {
        HttpOutput::Content => content(&response),
        HttpOutput::Raw => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(&response.body))
        }
        HttpOutput::Response => json!({
            "request": {
                "method": request.method,
                "uri": request.url.as_str(),
                "headers": headers_json(&request.headers),
            },
            "statusCode": response.status,
            "headers": headers_json(&response.headers),
            "content": content(&response),
        }),
    })
}

/// The `skein-usage` header of a reply: `cpu-seconds=0.41; memory-gib-seconds=0.002`.
fn reported_usage(response: &crate::HttpResponse) -> Option<crate::Usage> {
    let (_, value) = response.headers.iter().find(|(k, _)| k == USAGE_HEADER)?;
    let mut usage = crate::Usage::default();
    for pair in value.split(';') {
        let Some((name, number)) = pair.split_once('=') else {
            continue;
        };
        let Ok(number) = number.trim().parse::<f64>() else {
            continue;
        };
        if !number.is_finite() || number < 0.0 {
            continue;
        }
        match name.trim() {
            "cpu-seconds" => usage.cpu_seconds = number,
            "memory-gib-seconds" => usage.memory_gib_seconds = number,
            _ => {}
        }
    }
    Some(usage)
}

/// The reply header in which a service reports what a request used.
pub const USAGE_HEADER: &str = "skein-usage";

fn default_header(headers: &mut Vec<(String, String)>, name: &str, value: &str) {
    if !headers.iter().any(|(k, _)| k == name) {
        headers.push((name.into(), value.into()));
    }
}

fn headers_json(headers: &[(String, String)]) -> Value {
    Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// The body, deserialized when it is JSON, as text when it is text, else base64.
fn content(response: &HttpResponse) -> Value {
    if response.body.is_empty() {
        return Value::Null;
    }
    let content_type = response
        .headers
        .iter()
        .find(|(k, _)| k == "content-type")
        .map(|(_, v)| v.to_ascii_lowercase())
        .unwrap_or_default();
    if content_type.contains("json")
        && let Ok(v) = serde_json::from_slice(&response.body)
    {
        return v;
    }
    match std::str::from_utf8(&response.body) {
        Ok(text)
            if content_type.is_empty()
                || content_type.starts_with("text/")
                || content_type.contains("json")
                || content_type.contains("xml") =>
        {
            Value::String(text.to_string())
        }
        _ => Value::String(base64::engine::general_purpose::STANDARD.encode(&response.body)),
    }
}

fn status_problem(request: &HttpRequest, response: &HttpResponse, at: &str) -> Problem {
    let body = String::from_utf8_lossy(&response.body[..response.body.len().min(DETAIL_BYTES)])
        .into_owned();
    let carried_body = if response.body.len() <= DATA_BYTES {
        content(response)
    } else {
        Value::String(body.clone())
    };
    Problem {
        type_: types::COMMUNICATION.into(),
        status: response.status,
        title: Some(format!(
            "HTTP {} from {} {}",
            response.status, request.method, request.url
        )),
        detail: (!body.trim().is_empty()).then_some(body),
        instance: Some(at.to_string()),
        // The response, for whoever catches the error (Cloud Workflows' `HttpError`);
        // a large body only as far as the detail goes.
        data: Some(Box::new(json!({
            "status": response.status,
            "headers": headers_json(&response.headers),
            "body": carried_body,
        }))),
    }
}

/// The largest response body a failed call's error carries whole.
const DATA_BYTES: usize = 64 * 1024;

fn unreachable_problem(request: &HttpRequest, error: &HttpError, at: &str) -> Problem {
    let status = match error {
        HttpError::Connect(_) => 503,
        HttpError::Timeout => 504,
        HttpError::Other(_) => 502,
        // Not a failure of the network: no retry of communication errors repeats it.
        HttpError::Refused(rule) => {
            return Problem {
                type_: types::AUTHORIZATION.into(),
                status: 403,
                title: Some(format!("{} {} refused", request.method, request.url)),
                detail: Some(rule.clone()),
                instance: Some(at.to_string()),
                data: None,
            };
        }
    };
    Problem {
        type_: types::COMMUNICATION.into(),
        status,
        title: Some(format!("{} {} failed", request.method, request.url)),
        detail: Some(error.to_string()),
        instance: Some(at.to_string()),
        data: None,
    }
}

/// What a policy puts on a request: an `Authorization` header, or (digest) the user
/// and password that answer the server's challenge.
pub(crate) enum Credentials {
    Header(String),
    Digest(String, String),
}

impl Credentials {
    /// Adds the header to `headers`, or returns the digest user and password.
    pub(crate) fn apply(self, headers: &mut Vec<(String, String)>) -> Option<(String, String)> {
        match self {
            Credentials::Header(value) => {
                headers.retain(|(k, _)| k != "authorization");
                headers.push(("authorization".into(), value));
                None
            }
            Credentials::Digest(user, password) => Some((user, password)),
        }
    }

    /// The `Authorization` header value, for a protocol with no digest challenge to
    /// answer (`to` names it, such as "gRPC calls"): digest is a configuration error.
    pub(crate) fn header(self, at: &str, to: &str) -> Res<String> {
        match self {
            Credentials::Header(value) => Ok(value),
            Credentials::Digest(..) => Err(configuration(
                at,
                "Unsupported authentication",
                format!(
                    "digest authentication answers an HTTP server's challenge, which {to} \
                     have none of (use basic, bearer, OAuth2 or OpenID Connect)"
                ),
            )),
        }
    }
}

/// The credentials of a policy. OAuth2 and OpenID Connect fetch (or reuse) a token
/// first: an effect, so it waits for the causal history `after` like any call.
pub(crate) async fn authorization(
    run: &Run,
    after: Ticket,
    auth: &AuthRef,
    url: &url::Url,
    input: &Value,
    vars: &Vars<'_>,
    at: &str,
) -> Res<Credentials> {
    let policy = match auth {
        AuthRef::Inline(policy) => policy.as_ref(),
        AuthRef::Use(name) => &run.wf.use_.authentications[name],
    };
    match policy {
        AuthPolicy::Digest(Secretable::Inline(basic)) => Ok(Credentials::Digest(
            text(&basic.username, input, vars, at)?,
            text(&basic.password, input, vars, at)?,
        )),
        AuthPolicy::Digest(Secretable::Secret(name)) => {
            let secret = secret(run, name, at)?;
            let field = |f: &str| secret_field(&secret, name, f, at);
            Ok(Credentials::Digest(field("username")?, field("password")?))
        }
        _ => header(run, after, policy, url, input, vars, at)
            .await
            .map(Credentials::Header),
    }
}

/// The `Authorization` header of a policy other than digest.
async fn header(
    run: &Run,
    after: Ticket,
    policy: &AuthPolicy,
    url: &url::Url,
    input: &Value,
    vars: &Vars<'_>,
    at: &str,
) -> Res<String> {
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    match policy {
        AuthPolicy::Basic(Secretable::Inline(basic)) => {
            let user = text(&basic.username, input, vars, at)?;
            let password = text(&basic.password, input, vars, at)?;
            Ok(format!("Basic {}", b64(format!("{user}:{password}"))))
        }
        AuthPolicy::Basic(Secretable::Secret(name)) => {
            let secret = secret(run, name, at)?;
            let field = |f: &str| secret_field(&secret, name, f, at);
            Ok(format!(
                "Basic {}",
                b64(format!("{}:{}", field("username")?, field("password")?))
            ))
        }
        AuthPolicy::Bearer(Secretable::Inline(token)) => {
            Ok(format!("Bearer {}", text(token, input, vars, at)?))
        }
        AuthPolicy::Bearer(Secretable::Secret(name)) => {
            let secret = secret(run, name, at)?;
            let token = match &secret {
                Value::String(s) => s.clone(),
                _ => secret_field(&secret, name, "token", at)?,
            };
            Ok(format!("Bearer {token}"))
        }
        AuthPolicy::Digest(_) => unreachable!("digest answers a challenge: see `authorization`"),
        AuthPolicy::Google(google) => {
            let token = match google {
                GoogleAuth::Oidc { audience } => GoogleToken::Id {
                    audience: match audience {
                        Some(a) => text(a, input, vars, at)?,
                        // The URL the call goes to, without its query.
                        None => {
                            let mut bare = url.clone();
                            bare.set_query(None);
                            bare.set_fragment(None);
                            bare.to_string()
                        }
                    },
                },
                GoogleAuth::OAuth2 { scopes } => GoogleToken::Access {
                    scopes: scopes.clone(),
                },
            };
            let token = run.effects.google_token(token).await.map_err(|reason| {
                Interrupt::Fault(Problem {
                    type_: types::AUTHENTICATION.into(),
                    status: 401,
                    title: Some("No Google token".into()),
                    detail: Some(reason),
                    instance: Some(at.to_string()),
                    data: None,
                })
            })?;
            Ok(format!("Bearer {token}"))
        }
        AuthPolicy::OAuth2(Secretable::Inline(oauth)) => Ok(format!(
            "Bearer {}",
            token(run, after, oauth, false, input, vars, at).await?
        )),
        AuthPolicy::Oidc(Secretable::Inline(oauth)) => Ok(format!(
            "Bearer {}",
            token(run, after, oauth, true, input, vars, at).await?
        )),
        AuthPolicy::OAuth2(Secretable::Secret(name))
        | AuthPolicy::Oidc(Secretable::Secret(name)) => {
            let oauth = oauth2_from_secret(&secret(run, name, at)?, name, at)?;
            let discover = matches!(policy, AuthPolicy::Oidc(_));
            Ok(format!(
                "Bearer {}",
                token(run, after, &oauth, discover, input, vars, at).await?
            ))
        }
    }
}

/// An access token by the client-credentials (or password) grant, from the cache while
/// it is valid. For OpenID Connect the token endpoint comes from the authority's
/// discovery document.
async fn token(
    run: &Run,
    after: Ticket,
    oauth: &program::OAuth2,
    discover: bool,
    input: &Value,
    vars: &Vars<'_>,
    at: &str,
) -> Res<String> {
    use program::ClientAuthentication;
    if !matches!(oauth.grant.as_str(), "client_credentials" | "password") {
        return Err(unsupported_auth(
            at,
            &format!("the OAuth2 `{}` grant", oauth.grant),
        ));
    }
    let authority = text(&oauth.authority, input, vars, at)?;
    let token_url = if discover {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            authority.trim_end_matches('/')
        );
        let request = HttpRequest {
            method: "GET".into(),
            url: parse_url(&discovery, at)?,
            headers: vec![("accept".into(), "application/json".into())],
            body: None,
            follow_redirects: true,
            timeout: None,
            project: run.project.clone(),
        };
        let document = send(run, after, request, HttpOutput::Content, true, at)
            .await
            .map_err(as_authentication)?;
        document["token_endpoint"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| {
                auth_failure(
                    at,
                    format!("the OpenID configuration at {discovery} has no `token_endpoint`"),
                )
            })?
    } else if oauth.endpoints.token.contains("://") {
        oauth.endpoints.token.clone()
    } else {
        format!(
            "{}/{}",
            authority.trim_end_matches('/'),
            oauth.endpoints.token.trim_start_matches('/')
        )
    };

    let client = oauth.client.as_ref();
    let opt = |t: Option<&expr::Template>| t.map(|t| text(t, input, vars, at)).transpose();
    let client_id = opt(client.and_then(|c| c.id.as_ref()))?;
    let client_secret = opt(client.and_then(|c| c.secret.as_ref()))?;
    let cache_key = format!(
        "{token_url}|{}|{}",
        client_id.as_deref().unwrap_or(""),
        oauth.scopes.join(" ")
    );
    if let Some(token) = run.cached_token(&cache_key) {
        return Ok(token);
    }

    let mut form: Vec<(&str, String)> = vec![("grant_type", oauth.grant.clone())];
    if !oauth.scopes.is_empty() {
        form.push(("scope", oauth.scopes.join(" ")));
    }
    if !oauth.audiences.is_empty() {
        form.push(("audience", oauth.audiences.join(" ")));
    }
    if oauth.grant == "password" {
        form.push((
            "username",
            opt(oauth.username.as_ref())?.unwrap_or_default(),
        ));
        form.push((
            "password",
            opt(oauth.password.as_ref())?.unwrap_or_default(),
        ));
    }
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    let basic = client.is_some_and(|c| c.authentication == ClientAuthentication::ClientSecretBasic);
    if basic {
        let credentials = format!(
            "{}:{}",
            client_id.clone().unwrap_or_default(),
            client_secret.clone().unwrap_or_default()
        );
        headers.push((
            "authorization".into(),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            ),
        ));
    } else {
        if let Some(id) = &client_id {
            form.push(("client_id", id.clone()));
        }
        if let Some(secret) = &client_secret {
            form.push(("client_secret", secret.clone()));
        }
    }
    let body = if oauth.request_encoding == "application/json" {
        headers.push(("content-type".into(), "application/json".into()));
        serde_json::to_vec(
            &form
                .iter()
                .map(|(k, v)| (k.to_string(), Value::String(v.clone())))
                .collect::<serde_json::Map<_, _>>(),
        )
        .unwrap_or_default()
    } else {
        headers.push((
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        ));
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish()
            .into_bytes()
    };
    let request = HttpRequest {
        method: "POST".into(),
        url: parse_url(&token_url, at)?,
        headers,
        body: Some(body),
        follow_redirects: false,
        timeout: None,
        project: run.project.clone(),
    };
    let response = send(run, after, request, HttpOutput::Content, false, at)
        .await
        .map_err(as_authentication)?;
    let token = response["access_token"]
        .as_str()
        .ok_or_else(|| {
            auth_failure(
                at,
                format!("the token response of {token_url} has no `access_token`"),
            )
        })?
        .to_string();
    let lifetime = response["expires_in"].as_i64().unwrap_or(300);
    run.cache_token(
        cache_key,
        token.clone(),
        run.now() + (lifetime - 30).max(0) * 1000,
    );
    Ok(token)
}

/// A failed token request is an authentication error (401), whatever the transport said.
fn as_authentication(interrupt: Interrupt) -> Interrupt {
    match interrupt {
        Interrupt::Fault(p) => Interrupt::Fault(Problem {
            type_: types::AUTHENTICATION.into(),
            status: 401,
            title: Some("Authentication failed".into()),
            detail: Some(format!(
                "the token request failed: {}",
                p.title.unwrap_or_default()
            )),
            instance: p.instance,
            data: None,
        }),
        other => other,
    }
}

fn auth_failure(at: &str, detail: String) -> Interrupt {
    crate::fault(
        types::AUTHENTICATION,
        401,
        "Authentication failed",
        detail,
        at,
    )
}

fn secret(run: &Run, name: &str, at: &str) -> Res<Value> {
    let undeclared = !run.wf.use_.secrets.iter().any(|s| s == name);
    match run.secrets.get(name) {
        Some(v) if !v.is_null() => Ok(v.clone()),
        _ => Err(Interrupt::Fault(Problem {
            type_: types::AUTHORIZATION.into(),
            status: 403,
            title: Some("Missing secret".into()),
            detail: Some(if undeclared {
                format!(
                    "the secret `{name}` is not declared in the workflow's `use.secrets`, \
                     so this execution cannot read it"
                )
            } else {
                format!("the secret `{name}` was not provided to this execution")
            }),
            instance: Some(at.to_string()),
            data: None,
        })),
    }
}

/// OAuth2 or OpenID Connect settings held in a secret, in the shape the DSL writes
/// inline (`authority`, `grant`, `client`, `endpoints`, `request.encoding`, `scopes`,
/// `audiences`, `issuers`, `username`, `password`). Its values are taken literally: a
/// secret is data, never an expression.
fn oauth2_from_secret(secret: &Value, name: &str, at: &str) -> Res<OAuth2> {
    use program::{ClientAuthentication, OAuth2Client, OAuth2Endpoints};
    let literal = |v: &Value| Template::Const(Value::String(plain_string(v)));
    let at_path = |path: &[&str]| path.iter().try_fold(secret, |v, key| v.get(key));
    let list = |key: &str| match secret.get(key) {
        Some(Value::Array(items)) => items.iter().map(plain_string).collect(),
        Some(one) => vec![plain_string(one)],
        None => Vec::new(),
    };
    let defaults = OAuth2Endpoints::default();
    let endpoint =
        |key: &str, default: String| at_path(&["endpoints", key]).map_or(default, plain_string);
    let client = match secret.get("client") {
        None => None,
        Some(client) => Some(OAuth2Client {
            id: client.get("id").map(literal),
            secret: client.get("secret").map(literal),
            assertion: client.get("assertion").map(literal),
            authentication: match client.get("authentication").and_then(Value::as_str) {
                None | Some("client_secret_post") => ClientAuthentication::ClientSecretPost,
                Some("client_secret_basic") => ClientAuthentication::ClientSecretBasic,
                Some("client_secret_jwt") => ClientAuthentication::ClientSecretJwt,
                Some("private_key_jwt") => ClientAuthentication::PrivateKeyJwt,
                Some("none") => ClientAuthentication::None,
                Some(other) => {
                    return Err(incomplete_secret(
                        name,
                        format!(
                            "`client.authentication` is `{other}`, not one of client_secret_basic, \
                             client_secret_post, client_secret_jwt, private_key_jwt or none"
                        ),
                        at,
                    ));
                }
            },
        }),
    };
    Ok(OAuth2 {
        authority: literal(&Value::String(secret_field(secret, name, "authority", at)?)),
        grant: secret_field(secret, name, "grant", at)?,
        endpoints: OAuth2Endpoints {
            token: endpoint("token", defaults.token),
            revocation: endpoint("revocation", defaults.revocation),
            introspection: endpoint("introspection", defaults.introspection),
        },
        client,
        request_encoding: at_path(&["request", "encoding"]).map_or_else(
            || "application/x-www-form-urlencoded".to_string(),
            plain_string,
        ),
        issuers: list("issuers"),
        scopes: list("scopes"),
        audiences: list("audiences"),
        username: secret.get("username").map(literal),
        password: secret.get("password").map(literal),
        subject: None,
        actor: None,
    })
}

fn incomplete_secret(name: &str, what: String, at: &str) -> Interrupt {
    Interrupt::Fault(Problem {
        type_: types::AUTHORIZATION.into(),
        status: 403,
        title: Some("Incomplete secret".into()),
        detail: Some(format!("the secret `{name}`: {what}")),
        instance: Some(at.to_string()),
        data: None,
    })
}

fn secret_field(secret: &Value, name: &str, field: &str, at: &str) -> Res<String> {
    match secret.get(field) {
        Some(v) => Ok(plain_string(v)),
        None => Err(incomplete_secret(
            name,
            format!("there is no `{field}`"),
            at,
        )),
    }
}

fn unsupported_auth(at: &str, scheme: &str) -> Interrupt {
    crate::fault(
        types::AUTHENTICATION,
        501,
        "Not supported yet",
        format!("skein does not do `{scheme}` authentication yet"),
        at,
    )
}

/// `call: openapi`: loads the document, finds the operation by `operationId`, and
/// builds the request from the parameters (path, query, header, body).
pub(crate) async fn openapi(
    run: &Run,
    after: Ticket,
    call: &program::OpenApiCall,
    key: &str,
    at: &str,
    input: &Value,
    vars: &Vars<'_>,
) -> Res<Value> {
    let (doc_url, document) = fetch_json(run, after, &call.document.endpoint, input, vars, at)
        .await
        .map_err(|e| match e {
            JsonFetch::Failed(interrupt) => interrupt,
            JsonFetch::NotJson(url, e) => configuration(
                at,
                "Unreadable OpenAPI document",
                format!("{url} is not a JSON OpenAPI document: {e}"),
            ),
        })?;
    let Some((path, method, operation, path_item)) = find_operation(&document, &call.operation_id)
    else {
        return Err(configuration(
            at,
            "Unknown OpenAPI operation",
            format!(
                "the document at {doc_url} has no operation with operationId `{}`",
                call.operation_id
            ),
        ));
    };
    let base = base_url(&document, &doc_url);

    let mut arguments = match &call.parameters {
        Some(t) => match eval(t, input, vars, at)? {
            Value::Object(map) => map,
            _ => serde_json::Map::new(),
        },
        None => serde_json::Map::new(),
    };
    let declared = path_item
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .chain(
            operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    let mut url_path = path.to_string();
    let mut query: Vec<(String, String)> = Vec::new();
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut body: Option<Value> = None;
    for parameter in declared {
        let (Some(name), Some(place)) = (parameter["name"].as_str(), parameter["in"].as_str())
        else {
            continue;
        };
        let Some(value) = arguments.remove(name) else {
            continue;
        };
        match place {
            "path" => {
                let encoded: String =
                    url::form_urlencoded::byte_serialize(plain_string(&value).as_bytes()).collect();
                url_path = url_path.replace(&format!("{{{name}}}"), &encoded.replace('+', "%20"));
            }
            "query" => query.push((name.to_string(), plain_string(&value))),
            "header" => headers.push((name.to_ascii_lowercase(), plain_string(&value))),
            "body" => body = Some(value),
            _ => {}
        }
    }
    if body.is_none() && operation.get("requestBody").is_some() && !arguments.is_empty() {
        body = Some(Value::Object(arguments));
    }

    let mut url =
        url::Url::parse(&format!("{}{}", base.trim_end_matches('/'), url_path)).map_err(|e| {
            configuration(
                at,
                "Invalid OpenAPI server",
                format!("`{base}{url_path}` is not a valid URL: {e}"),
            )
        })?;
    if !query.is_empty() {
        url.query_pairs_mut().extend_pairs(query);
    }
    let digest = match &call.authentication {
        Some(auth) => authorization(run, after, auth, &url, input, vars, at)
            .await?
            .apply(&mut headers),
        None => None,
    };
    let body = body.map(|b| {
        default_header(&mut headers, "content-type", "application/json");
        serde_json::to_vec(&b).unwrap_or_default()
    });
    let request = task_request(run, key, method, &url, headers, body, call.redirect);
    send_as(
        run,
        after,
        request,
        digest.as_ref(),
        call.output,
        call.redirect,
        at,
    )
    .await
}

/// Why [`fetch_json`] has no document.
pub(crate) enum JsonFetch {
    /// The request failed, as any call does.
    Failed(Interrupt),
    /// The response is neither JSON nor YAML: where it came from and why.
    NotJson(url::Url, String),
}

/// GETs a JSON (or YAML) document (an OpenAPI or AsyncAPI document, an A2A agent card) from `endpoint`, with
/// its authentication; returns where it came from and what it says.
pub(crate) async fn fetch_json(
    run: &Run,
    after: Ticket,
    endpoint: &program::Endpoint,
    input: &Value,
    vars: &Vars<'_>,
    at: &str,
) -> Result<(url::Url, Value), JsonFetch> {
    let url = endpoint_url(&endpoint.uri, input, vars, at).map_err(JsonFetch::Failed)?;
    let mut headers = vec![("accept".to_string(), "application/json".to_string())];
    let digest = match &endpoint.authentication {
        Some(auth) => authorization(run, after, auth, &url, input, vars, at)
            .await
            .map_err(JsonFetch::Failed)?
            .apply(&mut headers),
        None => None,
    };
    let fetch = HttpRequest::get(url.clone(), headers, &run.project);
    let fetched = send_as(
        run,
        after,
        fetch,
        digest.as_ref(),
        HttpOutput::Content,
        true,
        at,
    );
    match fetched.await.map_err(JsonFetch::Failed)? {
        // YAML, which holds JSON, for a document served as text.
        Value::String(text) => match dsl::tree(&text, &dsl::Options::default()) {
            Ok(tree) => Ok((url, tree.to_json())),
            Err(e) => Err(JsonFetch::NotJson(url, e.message)),
        },
        other => Ok((url, other)),
    }
}

pub(crate) fn endpoint_url(uri: &Uri, input: &Value, vars: &Vars<'_>, at: &str) -> Res<url::Url> {
    let text = match uri {
        Uri::Template(t) => t.expand(input).map_err(|e| e.into_problem(at))?,
        Uri::Expr(e) => plain_string(&e.eval(input, vars).map_err(|e| e.into_problem(at))?),
    };
    parse_url(&text, at)
}

fn parse_url(text: &str, at: &str) -> Res<url::Url> {
    url::Url::parse(text).map_err(|e| {
        configuration(
            at,
            "Invalid endpoint",
            format!("`{text}` is not a valid URL: {e}"),
        )
    })
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The path, method, operation and path item of `operation_id`.
fn find_operation<'d>(
    document: &'d Value,
    operation_id: &str,
) -> Option<(&'d str, &'static str, &'d Value, &'d Value)> {
    let paths = document.get("paths")?.as_object()?;
    for (path, item) in paths {
        for method in METHODS {
            if let Some(operation) = item.get(method)
                && operation.get("operationId").and_then(Value::as_str) == Some(operation_id)
            {
                return Some((path, method, operation, item));
            }
        }
    }
    None
}

/// Where the API lives: OpenAPI 3's first server, or Swagger 2's scheme, host and base path,
/// each falling back to where the document came from.
fn base_url(document: &Value, doc_url: &url::Url) -> String {
    let origin = doc_url.origin().ascii_serialization();
    if document.get("openapi").is_some() {
        let server = document["servers"][0]["url"].as_str().unwrap_or("");
        return match doc_url.join(server) {
            Ok(url) if !server.is_empty() => url.to_string(),
            _ => origin,
        };
    }
    let schemes: Vec<&str> = document["schemes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let scheme = if schemes.is_empty() || schemes.contains(&doc_url.scheme()) {
        doc_url.scheme()
    } else {
        schemes[0]
    };
    let host = document["host"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            let host = doc_url.host_str().unwrap_or_default();
            match doc_url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            }
        });
    format!(
        "{scheme}://{host}{}",
        document["basePath"].as_str().unwrap_or("")
    )
}

pub(crate) fn configuration(at: &str, title: &str, detail: String) -> Interrupt {
    crate::fault(types::CONFIGURATION, 400, title, detail, at)
}
