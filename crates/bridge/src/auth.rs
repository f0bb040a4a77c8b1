//! Credentials for skein and the consumer: a static bearer token, or an ID token for an
//! audience from a Google service-account key or the metadata server (on Cloud Run),
//! taken and cached by the same code as Cloud Workflows' `auth: {type: OIDC}` and the
//! DSL's `authentication: {google: …}` (`runtime::google`).

use engine::GoogleToken;
use runtime::google::GoogleTokens;

#[derive(Debug, thiserror::Error)]
#[error("cannot get an ID token for `{audience}`: {why}")]
pub struct Error {
    audience: String,
    why: String,
}

/// Where a request's `Authorization` comes from.
pub enum Credentials {
    None,
    Static(String),
    /// Google ID tokens: from a service-account key or the metadata server.
    Google(GoogleTokens),
}

impl Credentials {
    /// ID tokens from the metadata server at `host` (`host:port`).
    pub fn metadata(host: &str) -> Credentials {
        Credentials::Google(GoogleTokens::metadata(host))
    }

    /// ID tokens from the service-account key `GOOGLE_APPLICATION_CREDENTIALS` names.
    pub fn service_account_key() -> Credentials {
        Credentials::Google(GoogleTokens::from_env())
    }

    /// The bearer token for a request to `audience`, if any.
    pub async fn token(&self, audience: &str) -> Result<Option<String>, Error> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Static(token) => Ok(Some(token.clone())),
            Credentials::Google(tokens) => {
                let request = GoogleToken::Id {
                    audience: audience.to_string(),
                };
                tokens.token(request).await.map(Some).map_err(|why| Error {
                    audience: audience.to_string(),
                    why,
                })
            }
        }
    }
}
