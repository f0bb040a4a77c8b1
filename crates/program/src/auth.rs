//! Authentication policies: basic, bearer, digest, OAuth2 and OpenID Connect.

use expr::Template;

/// A policy given inline or by the name of one in `use.authentications`.
#[derive(Clone, Debug)]
pub enum AuthRef {
    Use(String),
    Inline(Box<AuthPolicy>),
}

#[derive(Clone, Debug)]
pub enum AuthPolicy {
    Basic(Secretable<BasicAuth>),
    Bearer(Secretable<Template>),
    Digest(Secretable<BasicAuth>),
    OAuth2(Secretable<OAuth2>),
    Oidc(Secretable<OAuth2>),
    /// A token of the server's own Google identity (the metadata server, or the
    /// service-account key in `GOOGLE_APPLICATION_CREDENTIALS`): Cloud Workflows'
    /// `auth: {type: OIDC|OAuth2}`. The DSL has no syntax for it.
    Google(GoogleAuth),
}

/// What Google token a call carries.
#[derive(Clone, Debug)]
pub enum GoogleAuth {
    /// An ID token for this audience (the call's URL without its query when none).
    Oidc { audience: Option<Template> },
    /// An access token with these scopes (cloud-platform when none).
    OAuth2 { scopes: Vec<String> },
}

/// Settings written inline, or taken from a secret named in `use.secrets`.
#[derive(Clone, Debug)]
pub enum Secretable<T> {
    Secret(String),
    Inline(T),
}

/// Username and password, each a string or an expression.
#[derive(Clone, Debug)]
pub struct BasicAuth {
    pub username: Template,
    pub password: Template,
}

/// OAuth2 or OpenID Connect settings (they share their shape).
#[derive(Clone, Debug)]
pub struct OAuth2 {
    pub authority: Template,
    /// `authorization_code`, `client_credentials`, `password`, `refresh_token` or
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    pub grant: String,
    pub endpoints: OAuth2Endpoints,
    pub client: Option<OAuth2Client>,
    /// `application/x-www-form-urlencoded` (default) or `application/json`.
    pub request_encoding: String,
    pub issuers: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub username: Option<Template>,
    pub password: Option<Template>,
    pub subject: Option<OAuth2Token>,
    pub actor: Option<OAuth2Token>,
}

/// Paths relative to the authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OAuth2Endpoints {
    pub token: String,
    pub revocation: String,
    pub introspection: String,
}

impl Default for OAuth2Endpoints {
    fn default() -> Self {
        OAuth2Endpoints {
            token: "/oauth2/token".into(),
            revocation: "/oauth2/revoke".into(),
            introspection: "/oauth2/introspect".into(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct OAuth2Client {
    pub id: Option<Template>,
    pub secret: Option<Template>,
    pub assertion: Option<Template>,
    pub authentication: ClientAuthentication,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuthentication {
    ClientSecretBasic,
    #[default]
    ClientSecretPost,
    ClientSecretJwt,
    PrivateKeyJwt,
    None,
}

#[derive(Clone, Debug)]
pub struct OAuth2Token {
    pub token: Template,
    pub type_: String,
}
