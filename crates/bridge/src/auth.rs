//! Credentials for skein and the consumer: a static bearer token, or an ID token for an
//! audience from the Google metadata server (on Cloud Run), taken and cached by the
//! same code as Cloud Workflows' `auth: {type: OIDC}` (`runtime::google`).

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
    /// ID tokens from the metadata server (`GCE_METADATA_HOST`, or
    /// `metadata.google.internal`).
    Metadata(GoogleTokens),
}

impl Credentials {
    /// ID tokens from the metadata server at `host` (`host:port`).
    pub fn metadata(host: &str) -> Credentials {
        Credentials::Metadata(GoogleTokens::metadata(host))
    }

    /// The bearer token for a request to `audience`, if any.
    pub async fn token(&self, audience: &str) -> Result<Option<String>, Error> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Static(token) => Ok(Some(token.clone())),
            Credentials::Metadata(tokens) => {
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
