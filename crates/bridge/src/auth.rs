//! Credentials for skein and the consumer: a static bearer token, or an ID token for an
//! audience from the Google metadata server (on Cloud Run), cached until shortly before
//! it expires.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::sync::Mutex;

/// How long before its expiry an ID token is replaced.
const REFRESH_BEFORE: Duration = Duration::from_secs(300);

/// How long a token without a readable expiry is kept.
const UNKNOWN_LIFETIME: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
#[error("cannot get an ID token for `{audience}` from the metadata server {host}: {why}")]
pub struct Error {
    audience: String,
    host: String,
    why: String,
}

/// Where a request's `Authorization` comes from.
pub enum Credentials {
    None,
    Static(String),
    /// ID tokens from the metadata server at this host (`GCE_METADATA_HOST`, or
    /// `metadata.google.internal`).
    Metadata {
        host: String,
        http: reqwest::Client,
        cache: Mutex<HashMap<String, (String, Instant)>>,
    },
}

impl Credentials {
    pub fn metadata(host: String, http: reqwest::Client) -> Credentials {
        Credentials::Metadata {
            host,
            http,
            cache: Mutex::default(),
        }
    }

    /// The bearer token for a request to `audience`, if any.
    pub async fn token(&self, audience: &str) -> Result<Option<String>, Error> {
        let (host, http, cache) = match self {
            Credentials::None => return Ok(None),
            Credentials::Static(token) => return Ok(Some(token.clone())),
            Credentials::Metadata { host, http, cache } => (host, http, cache),
        };
        let mut cache = cache.lock().await;
        if let Some((token, until)) = cache.get(audience)
            && Instant::now() < *until
        {
            return Ok(Some(token.clone()));
        }
        let fail = |why: String| Error {
            audience: audience.to_string(),
            host: host.clone(),
            why,
        };
        let mut url = url::Url::parse(&format!(
            "http://{host}/computeMetadata/v1/instance/service-accounts/default/identity"
        ))
        .map_err(|e| fail(format!("not a host: {e}")))?;
        url.query_pairs_mut()
            .append_pair("audience", audience)
            .append_pair("format", "full");
        let response = http
            .get(url)
            .header("Metadata-Flavor", "Google")
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {}", body.trim())));
        }
        let token = body.trim().to_string();
        let lifetime = expires_in(&token).unwrap_or(UNKNOWN_LIFETIME);
        // Refreshed a little before expiry; short-lived tokens at half their life.
        let keep = lifetime
            .checked_sub(REFRESH_BEFORE)
            .filter(|k| !k.is_zero())
            .unwrap_or(lifetime / 2);
        cache.insert(audience.to_string(), (token.clone(), Instant::now() + keep));
        Ok(Some(token))
    }
}

/// How long until a JWT's `exp`, read from its payload (not verified: the token is
/// only passed on).
fn expires_in(jwt: &str) -> Option<Duration> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims["exp"].as_i64()?;
    let now = jiff::Timestamp::now().as_second();
    Some(Duration::from_secs(exp.checked_sub(now)?.max(0) as u64))
}
