//! Tokens of the server's own Google identity, for calls that carry Cloud Workflows'
//! `auth: {type: OIDC|OAuth2}` and for `skein bridge`'s calls: from the service-account key that
//! `GOOGLE_APPLICATION_CREDENTIALS` names (a JWT signed with its key, exchanged at its
//! token URI), else from the metadata server (`GCE_METADATA_HOST`, else
//! `metadata.google.internal`), as Google's own libraries find them. Each token is
//! kept until five minutes before it expires.
//!
//! These requests are the sanctioned way to use the server's identity: they go through
//! a client of their own, which the egress policy (that denies the metadata server to
//! workflows) does not govern.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use engine::GoogleToken;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// Where tokens come from.
enum Source {
    /// A service account's key: its e-mail, private key and token URI.
    Key {
        email: String,
        key: Box<ring::signature::RsaKeyPair>,
        token_uri: String,
    },
    /// The metadata server at this base URL.
    Metadata(String),
}

/// The token source, with its cache.
pub struct GoogleTokens {
    client: reqwest::Client,
    source: Result<Source, String>,
    /// Tokens by request, with the second they expire at.
    cache: Mutex<HashMap<GoogleToken, (String, u64)>>,
}

/// A token is taken again this long before it expires.
const MARGIN: u64 = 300;
/// Scopes of an access token asked for without any.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl GoogleTokens {
    /// The source the environment names.
    pub fn from_env() -> GoogleTokens {
        let source = match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
            Some(path) => key_source(std::path::Path::new(&path)),
            None => {
                let host = std::env::var("GCE_METADATA_HOST")
                    .unwrap_or_else(|_| "metadata.google.internal".into());
                Ok(Source::Metadata(format!("http://{host}")))
            }
        };
        GoogleTokens::of(source)
    }

    /// Tokens from the metadata server at `host` (`host:port`).
    pub fn metadata(host: &str) -> GoogleTokens {
        GoogleTokens::of(Ok(Source::Metadata(format!("http://{host}"))))
    }

    fn of(source: Result<Source, String>) -> GoogleTokens {
        GoogleTokens {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a plain HTTP client builds"),
            source,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// A token for `request`, from the cache or newly taken.
    pub async fn token(&self, request: GoogleToken) -> Result<String, String> {
        let mut cache = self.cache.lock().await;
        if let Some((token, expires)) = cache.get(&request)
            && *expires > now() + MARGIN
        {
            return Ok(token.clone());
        }
        let (token, expires) = match &self.source {
            Ok(Source::Metadata(base)) => self.of_metadata(base, &request).await?,
            Ok(Source::Key {
                email,
                key,
                token_uri,
            }) => self.of_key(email, key, token_uri, &request).await?,
            Err(e) => return Err(e.clone()),
        };
        cache.insert(request, (token.clone(), expires));
        Ok(token)
    }

    async fn of_metadata(
        &self,
        base: &str,
        request: &GoogleToken,
    ) -> Result<(String, u64), String> {
        let account = format!("{base}/computeMetadata/v1/instance/service-accounts/default");
        let get = |url: String, query: Vec<(&str, String)>| {
            self.client
                .get(url)
                .query(&query)
                .header("Metadata-Flavor", "Google")
                .send()
        };
        let fail = |e: reqwest::Error| format!("the metadata server at {base} did not answer: {e}");
        match request {
            GoogleToken::Id { audience } => {
                let response = get(
                    format!("{account}/identity"),
                    vec![("audience", audience.clone()), ("format", "full".into())],
                )
                .await
                .map_err(fail)?;
                let token = checked(response, "the metadata server").await?;
                let expires = jwt_expiry(&token).unwrap_or(now() + 3600);
                Ok((token, expires))
            }
            GoogleToken::Access { scopes } => {
                let response = get(
                    format!("{account}/token"),
                    vec![("scopes", scopes_or_default(scopes).join(","))],
                )
                .await
                .map_err(fail)?;
                access_token(&checked(response, "the metadata server").await?)
            }
        }
    }

    async fn of_key(
        &self,
        email: &str,
        key: &ring::signature::RsaKeyPair,
        token_uri: &str,
        request: &GoogleToken,
    ) -> Result<(String, u64), String> {
        let issued = now();
        let mut claims = json!({
            "iss": email, "aud": token_uri, "iat": issued, "exp": issued + 3600,
        });
        match request {
            GoogleToken::Id { audience } => claims["target_audience"] = json!(audience),
            GoogleToken::Access { scopes } => {
                claims["scope"] = json!(scopes_or_default(scopes).join(" "))
            }
        }
        let assertion = sign(key, &claims)?;
        let response = self
            .client
            .post(token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(|e| format!("the token endpoint {token_uri} did not answer: {e}"))?;
        let body = checked(response, "the token endpoint").await?;
        match request {
            GoogleToken::Id { .. } => {
                let value: Value = serde_json::from_str(&body)
                    .map_err(|e| format!("the token endpoint's answer is not JSON: {e}"))?;
                let token = value["id_token"]
                    .as_str()
                    .ok_or("the token endpoint's answer has no `id_token`")?
                    .to_string();
                let expires = jwt_expiry(&token).unwrap_or(issued + 3600);
                Ok((token, expires))
            }
            GoogleToken::Access { .. } => access_token(&body),
        }
    }
}

fn scopes_or_default(scopes: &[String]) -> Vec<String> {
    if scopes.is_empty() {
        vec![CLOUD_PLATFORM.to_string()]
    } else {
        scopes.to_vec()
    }
}

/// The body of a successful answer, or what went wrong.
async fn checked(response: reqwest::Response, who: &str) -> Result<String, String> {
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|e| format!("{who}'s answer could not be read: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!(
            "{who} answered {status}: {}",
            body.chars().take(300).collect::<String>()
        ))
    }
}

/// `{"access_token", "expires_in"}`.
fn access_token(body: &str) -> Result<(String, u64), String> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| format!("the token answer is not JSON: {e}"))?;
    let token = value["access_token"]
        .as_str()
        .ok_or("the token answer has no `access_token`")?
        .to_string();
    let expires = now() + value["expires_in"].as_u64().unwrap_or(3600);
    Ok((token, expires))
}

/// The `exp` claim of a JWT, read without checking its signature (it is ours to send,
/// not to trust).
fn jwt_expiry(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_u64()
}

/// A JWT of `claims`, signed with RS256.
fn sign(key: &ring::signature::RsaKeyPair, claims: &Value) -> Result<String, String> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let header = json!({"alg": "RS256", "typ": "JWT"});
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let mut signature = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        signing_input.as_bytes(),
        &mut signature,
    )
    .map_err(|_| "the service account's key could not sign".to_string())?;
    Ok(format!("{signing_input}.{}", b64(&signature)))
}

/// A service account's key file: `client_email`, `private_key` (PKCS #8 PEM) and
/// `token_uri`.
fn key_source(path: &std::path::Path) -> Result<Source, String> {
    let what = format!("the service account key {}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| format!("{what}: {e}"))?;
    let value: Value =
        serde_json::from_str(&text).map_err(|e| format!("{what} is not JSON: {e}"))?;
    let field = |name: &str| {
        value[name]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{what} has no `{name}`"))
    };
    let pem = field("private_key")?;
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der.trim())
        .map_err(|e| format!("{what}: the private key is not PEM: {e}"))?;
    let key = ring::signature::RsaKeyPair::from_pkcs8(&der)
        .map_err(|e| format!("{what}: the private key is not an RSA key in PKCS #8: {e}"))?;
    Ok(Source::Key {
        email: field("client_email")?,
        key: Box::new(key),
        token_uri: field("token_uri")
            .unwrap_or_else(|_| "https://oauth2.googleapis.com/token".into()),
    })
}
