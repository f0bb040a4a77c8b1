//! Plain `http://` requests that follow no redirects, sent on hyper's pooled client
//! directly rather than through reqwest.
//!
//! reqwest is built on the same client; on top of it, it parses each request's URL two
//! more times (for its redirect policy and for the response it returns): about a third
//! of its work per request, measured with callgrind on `skein bench`'s fan-out. TLS,
//! redirects and a proxy from the environment stay with reqwest.

use std::time::Duration;

use bytes::Bytes;
use engine::{HttpError, HttpRequest, HttpResponse};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::{Client, connect::HttpConnector};

use crate::egress::Resolver;
use crate::{MAX_RESPONSE_BYTES, error_chain, header_pairs};

/// The environment variables through which reqwest would send a plain `http://` request
/// to a proxy; with any of them set, every request goes through reqwest.
const PROXY_VARIABLES: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];

#[derive(Clone)]
pub(crate) struct Plain {
    client: Sender,
}

/// The pooled client, resolving names through the system or through an egress
/// policy's resolver.
#[derive(Clone)]
enum Sender {
    System(Client<HttpConnector, Full<Bytes>>),
    Guarded(Client<HttpConnector<Resolver>, Full<Bytes>>),
}

impl Plain {
    /// The client, unless the environment names a proxy for plain HTTP.
    pub(crate) fn from_env(connect_timeout: Duration) -> Option<Plain> {
        (!proxied(|name| std::env::var_os(name))).then(|| Plain::new(connect_timeout))
    }

    fn new(connect_timeout: Duration) -> Plain {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Plain {
            client: Sender::System(client),
        }
    }

    /// Like [`Plain::from_env`], resolving names through `resolver` (which applies an
    /// egress policy).
    pub(crate) fn guarded(connect_timeout: Duration, resolver: Resolver) -> Option<Plain> {
        if proxied(|name| std::env::var_os(name)) {
            return None;
        }
        let mut connector = HttpConnector::new_with_resolver(resolver);
        connector.set_connect_timeout(Some(connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_max_idle_per_host(256)
            .build(connector);
        Some(Plain {
            client: Sender::Guarded(client),
        })
    }

    /// Whether this client sends `request`: plain HTTP, redirects returned as they are,
    /// and a URL without credentials or fragment (reqwest turns the one into an
    /// `Authorization` header and drops the other).
    pub(crate) fn serves(request: &HttpRequest) -> bool {
        let url = &request.url;
        url.scheme() == "http"
            && !request.follow_redirects
            && url.username().is_empty()
            && url.password().is_none()
            && url.fragment().is_none()
    }

    /// Sends `request` and reads the whole response, within the request's timeout.
    pub(crate) async fn perform(self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        match request.timeout {
            Some(limit) => tokio::time::timeout(limit, self.exchange(request))
                .await
                .unwrap_or(Err(HttpError::Timeout)),
            None => self.exchange(request).await,
        }
    }

    async fn exchange(self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let method = hyper::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| HttpError::Other(format!("`{}` is not an HTTP method", request.method)))?;
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(request.url.as_str());
        // What reqwest sends unless told otherwise.
        if !request.headers.iter().any(|(k, _)| k == "user-agent") {
            builder = builder.header("user-agent", crate::USER_AGENT);
        }
        if !request.headers.iter().any(|(k, _)| k == "accept") {
            builder = builder.header("accept", "*/*");
        }
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let body = Full::new(Bytes::from(request.body.unwrap_or_default()));
        let outgoing = builder
            .body(body)
            .map_err(|e| HttpError::Other(format!("the request cannot be sent: {e}")))?;
        let response = match &self.client {
            Sender::System(client) => client.request(outgoing).await,
            Sender::Guarded(client) => client.request(outgoing).await,
        }
        .map_err(|e| failure(&e))?;
        let status = response.status().as_u16();
        let headers = header_pairs(response.headers());
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    HttpError::Other(format!(
                        "the response body is larger than {} MiB",
                        MAX_RESPONSE_BYTES >> 20
                    ))
                } else {
                    HttpError::Other(error_chain(&*e))
                }
            })?
            .to_bytes()
            .to_vec();
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }
}

/// Whether the environment (read through `var`) names a proxy for plain HTTP.
fn proxied(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> bool {
    PROXY_VARIABLES
        .iter()
        .any(|name| var(name).is_some_and(|v| !v.is_empty()))
}

/// A failed exchange as the engine tells them apart: no connection, or anything else.
fn failure(e: &hyper_util::client::legacy::Error) -> HttpError {
    if let Some(refusal) = crate::egress::refusal(e) {
        HttpError::Refused(refusal)
    } else if e.is_connect() {
        HttpError::Connect(error_chain(e))
    } else {
        HttpError::Other(error_chain(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn request(url: &str) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            url: url::Url::parse(url).unwrap(),
            headers: vec![("idempotency-key".into(), "k1".into())],
            body: None,
            follow_redirects: false,
            timeout: None,
            project: "default".into(),
        }
    }

    fn plain() -> Plain {
        Plain::new(Duration::from_secs(10))
    }

    /// A server on loopback that answers one request with `reply` and hands over the
    /// request's head; with no reply, it reads and never answers.
    async fn server(
        reply: Option<&'static str>,
    ) -> (String, tokio::sync::oneshot::Receiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (head_tx, head) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut received = Vec::new();
            let mut buf = [0u8; 4096];
            while !received.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.unwrap();
                if n == 0 {
                    return;
                }
                received.extend_from_slice(&buf[..n]);
            }
            let _ = head_tx.send(String::from_utf8_lossy(&received).into_owned());
            match reply {
                Some(reply) => socket.write_all(reply.as_bytes()).await.unwrap(),
                None => tokio::time::sleep(Duration::from_secs(60)).await,
            }
        });
        (base, head)
    }

    #[tokio::test]
    async fn sends_what_reqwest_would_and_returns_a_redirect_as_it_is() {
        let (base, head) = server(Some(
            "HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 2\r\n\r\nok",
        ))
        .await;
        let response = plain()
            .perform(request(&format!("{base}/a?b=c")))
            .await
            .unwrap();
        assert_eq!(response.status, 302);
        assert!(
            response
                .headers
                .contains(&("location".into(), "/elsewhere".into()))
        );
        assert_eq!(response.body, b"ok");
        let head = head.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /a?b=c http/1.1\r\n"), "{head}");
        for line in [
            concat!("user-agent: skein/", env!("CARGO_PKG_VERSION")),
            "accept: */*",
            "idempotency-key: k1",
        ] {
            assert!(head.contains(&format!("{line}\r\n")), "{line} in {head}");
        }
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let (base, _head) = server(None).await;
        let mut silent = request(&format!("{base}/"));
        silent.timeout = Some(Duration::from_millis(200));
        let result = plain().perform(silent).await;
        assert!(matches!(result, Err(HttpError::Timeout)), "{result:?}");
    }

    #[tokio::test]
    async fn nobody_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let result = plain().perform(request(&format!("{base}/"))).await;
        assert!(matches!(result, Err(HttpError::Connect(_))), "{result:?}");
    }

    #[test]
    fn a_proxy_in_the_environment_leaves_plain_http_to_reqwest() {
        let env = |set: &'static str, value: &'static str| {
            move |name: &str| (name == set).then(|| value.into())
        };
        assert!(proxied(env("HTTP_PROXY", "http://proxy:3128")));
        assert!(proxied(env("all_proxy", "socks5://proxy")));
        assert!(!proxied(env("HTTP_PROXY", "")));
        assert!(!proxied(env("HTTPS_PROXY", "http://proxy:3128")));
    }

    #[test]
    fn only_plain_http_without_redirects_is_served_here() {
        assert!(Plain::serves(&request("http://h/")));
        assert!(!Plain::serves(&request("https://h/")));
        assert!(!Plain::serves(&request("http://user:secret@h/")));
        assert!(!Plain::serves(&request("http://h/#part")));
        let mut following = request("http://h/");
        following.follow_redirects = true;
        assert!(!Plain::serves(&following));
    }
}
