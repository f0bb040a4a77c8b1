//! Who is calling: bearer tokens, each bound to one project and one role. The server
//! keeps only the tokens' SHA-256 hashes. OpenID Connect ID tokens from trusted issuers
//! are the other kind of bearer token (`crate::oidc`). Without any token or issuer
//! configured there is one project (`default`) and every caller may do everything; the
//! server then listens on loopback only.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;

use crate::{ApiError, Service};

/// What a token may do, each role including the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// See executions and their events.
    Read,
    /// Also start, cancel, pause and resume them, and deliver events.
    Run,
    /// Also read the server's metrics.
    Admin,
}

impl Role {
    /// `read`, `run` or `admin`.
    pub fn parse(text: &str) -> Result<Role, String> {
        match text {
            "read" => Ok(Role::Read),
            "run" => Ok(Role::Run),
            "admin" => Ok(Role::Admin),
            other => Err(format!("`{other}` is not a role: use read, run or admin")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Run => "run",
            Role::Admin => "admin",
        }
    }
}

/// One configured token.
#[derive(Clone, Debug)]
pub struct Token {
    pub sha256: [u8; 32],
    pub project: String,
    pub role: Role,
}

impl Token {
    /// Reads `PROJECT:ROLE:SHA256HEX`, the form of `SKEIN_TOKENS` entries.
    pub fn parse(entry: &str) -> Result<Token, String> {
        let mut parts = entry.trim().splitn(3, ':');
        let (Some(project), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "`{entry}` is not PROJECT:ROLE:SHA256 (the token's SHA-256 in hex)"
            ));
        };
        Token::new(project, role, hash)
    }

    pub fn new(project: &str, role: &str, sha256_hex: &str) -> Result<Token, String> {
        if project.is_empty() {
            return Err("a token's project is empty".into());
        }
        let role = Role::parse(role)?;
        let hex = sha256_hex.trim();
        let mut sha256 = [0u8; 32];
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "the hash of a token of project `{project}` is not 64 hex digits (a SHA-256)"
            ));
        }
        for (i, byte) in sha256.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Token {
            sha256,
            project: project.to_string(),
            role,
        })
    }
}

/// The SHA-256 of `token`, as configured.
pub fn hash(token: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The caller of a request: its project and role.
#[derive(Clone, Debug)]
pub struct Caller {
    pub project: String,
    pub role: Role,
}

impl Caller {
    /// Refuses a caller whose role does not include `role`.
    pub(crate) fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "this token's role is {}; this needs {}",
                    self.role.as_str(),
                    role.as_str()
                ),
            ))
        }
    }
}

impl FromRequestParts<Arc<Service>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        service: &Arc<Service>,
    ) -> Result<Caller, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Caller::from_authorization(service, header).await
    }
}

impl Caller {
    /// The caller presenting `authorization` (the header's value, `Bearer <token>`),
    /// over REST or gRPC.
    pub(crate) async fn from_authorization(
        service: &Service,
        authorization: Option<&str>,
    ) -> Result<Caller, ApiError> {
        let tokens = &service.options().tokens;
        let oidc = service.options().oidc.as_deref();
        if tokens.is_empty() && oidc.is_none() {
            return Ok(Caller {
                project: store::DEFAULT_PROJECT.to_string(),
                role: Role::Admin,
            });
        }
        let unauthorized = |message: &str| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                message.to_string(),
            )
        };
        let presented = authorization
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("this server needs `Authorization: Bearer <token>`"))?;
        let presented = presented.trim();
        let sha256 = hash(presented);
        if let Some(t) = tokens.iter().find(|t| t.sha256 == sha256) {
            return Ok(Caller {
                project: t.project.clone(),
                role: t.role,
            });
        }
        match oidc {
            Some(oidc) if crate::oidc::Oidc::looks_like_jwt(presented) => {
                oidc.caller(presented).await
            }
            _ => Err(unauthorized("the token is not one this server knows")),
        }
    }
}
