//! Authentication policies, inline or by reference, with secret-based variants.

use super::workflow::Section;
use super::{At, Cx, Obj};
use crate::yaml::Kind;
use program::{
    AuthPolicy, AuthRef, BasicAuth, ClientAuthentication, ExtensionUse, GoogleAuth, OAuth2,
    OAuth2Client, OAuth2Endpoints, OAuth2Token, Secretable,
};

/// The DSL's schemes, then skein's `google` (docs/extensions.md).
const SCHEMES: [&str; 6] = ["basic", "bearer", "digest", "oauth2", "oidc", "google"];

/// `authentication:` on an endpoint or call: `{ use: name }` or an inline policy.
pub(super) fn reference(cx: &mut Cx, at: &At) -> Option<AuthRef> {
    if let Kind::Map(entries) = &at.node.kind
        && entries.iter().any(|(k, _)| k.as_str() == Some("use"))
    {
        let mut obj = Obj::new(cx, at)?;
        let name = obj.req(cx, "use", |cx, at| {
            cx.reference(at, "authentication", Section::Authentications)
        });
        obj.finish(cx);
        return name.map(AuthRef::Use);
    }
    policy(cx, at).map(|p| AuthRef::Inline(Box::new(p)))
}

/// A policy: exactly one of `basic`, `bearer`, `digest`, `oauth2`, `oidc`.
pub(super) fn policy(cx: &mut Cx, at: &At) -> Option<AuthPolicy> {
    let mut obj = Obj::new(cx, at)?;
    let present = obj.present(&SCHEMES);
    let policy = match present.as_slice() {
        ["basic"] => obj
            .req(cx, "basic", |cx, at| secretable(cx, at, basic))
            .map(AuthPolicy::Basic),
        ["bearer"] => obj
            .req(cx, "bearer", |cx, at| secretable(cx, at, bearer))
            .map(AuthPolicy::Bearer),
        ["digest"] => obj
            .req(cx, "digest", |cx, at| secretable(cx, at, basic))
            .map(AuthPolicy::Digest),
        ["oauth2"] => obj
            .req(cx, "oauth2", |cx, at| {
                secretable(cx, at, |cx, at| oauth2(cx, at, true))
            })
            .map(AuthPolicy::OAuth2),
        ["oidc"] => obj
            .req(cx, "oidc", |cx, at| {
                secretable(cx, at, |cx, at| oauth2(cx, at, false))
            })
            .map(AuthPolicy::Oidc),
        ["google"] => obj.req(cx, "google", google).map(AuthPolicy::Google),
        [_] => unreachable!("the present keys come from the list above"),
        [] => {
            for k in SCHEMES {
                obj.field(k);
            }
            if obj.has("certificate") {
                let c = obj.field("certificate").expect("present");
                cx.error(
                    c.anchor(),
                    &c.ptr,
                    "certificate authentication is not defined by the DSL 1.0.x schema",
                );
            } else {
                cx.error(at.anchor(), &at.ptr, "an authentication policy needs one of `basic`, `bearer`, `digest`, `oauth2`, `oidc`");
            }
            None
        }
        [_, second, ..] => {
            let s = obj.field(second).expect("present");
            cx.error(
                s.anchor(),
                &s.ptr,
                "an authentication policy has exactly one scheme; keep one",
            );
            for k in &present {
                obj.field(k);
            }
            None
        }
    };
    obj.finish(cx);
    policy
}

/// Settings written inline, or `{ use: secret }` naming a secret from `use.secrets`.
fn secretable<T>(
    cx: &mut Cx,
    at: &At,
    inline: impl FnOnce(&mut Cx, &At) -> Option<T>,
) -> Option<Secretable<T>> {
    if let Kind::Map(entries) = &at.node.kind
        && entries.iter().any(|(k, _)| k.as_str() == Some("use"))
    {
        let mut obj = Obj::new(cx, at)?;
        let secret = obj.req(cx, "use", |cx, at| {
            cx.reference(at, "secret", Section::Secrets)
        });
        obj.finish(cx);
        return secret.map(Secretable::Secret);
    }
    inline(cx, at).map(Secretable::Inline)
}

/// `google: {type: oidc, audience?}` or `google: {type: oauth2, scopes?}`: a token of the
/// server's own Google identity (metadata server or service-account key), as Cloud
/// Workflows' `auth: {type: OIDC|OAuth2}` gives it. A skein extension.
fn google(cx: &mut Cx, at: &At) -> Option<GoogleAuth> {
    cx.extensions.push(ExtensionUse {
        name: "authentication.google",
        path: at.ptr.as_str().to_string(),
        range: at.anchor(),
    });
    let mut obj = Obj::new(cx, at)?;
    let kind = obj.req(cx, "type", |cx, at| cx.one_of(at, &["oidc", "oauth2"]));
    let auth = match kind?.as_str() {
        "oidc" => {
            let audience = obj.opt(cx, "audience", Cx::text);
            GoogleAuth::Oidc {
                audience: audience?,
            }
        }
        _ => {
            let scopes = obj.opt(cx, "scopes", Cx::string_list);
            GoogleAuth::OAuth2 {
                scopes: scopes?.unwrap_or_default(),
            }
        }
    };
    obj.finish(cx);
    Some(auth)
}

fn basic(cx: &mut Cx, at: &At) -> Option<BasicAuth> {
    let mut obj = Obj::new(cx, at)?;
    let username = obj.req(cx, "username", Cx::text);
    let password = obj.req(cx, "password", Cx::text);
    obj.finish(cx);
    Some(BasicAuth {
        username: username?,
        password: password?,
    })
}

fn bearer(cx: &mut Cx, at: &At) -> Option<expr::Template> {
    let mut obj = Obj::new(cx, at)?;
    let token = obj.req(cx, "token", Cx::text);
    obj.finish(cx);
    token
}

fn oauth2(cx: &mut Cx, at: &At, with_endpoints: bool) -> Option<OAuth2> {
    let mut obj = Obj::new(cx, at)?;
    let authority = obj.req(cx, "authority", Cx::text);
    let grant = obj.req(cx, "grant", |cx, at| {
        cx.one_of(
            at,
            &[
                "authorization_code",
                "client_credentials",
                "password",
                "refresh_token",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ],
        )
    });
    let endpoints = if with_endpoints {
        obj.opt(cx, "endpoints", |cx, at| {
            let mut obj = Obj::new(cx, at)?;
            let token = obj.opt(cx, "token", Cx::string);
            let revocation = obj.opt(cx, "revocation", Cx::string);
            let introspection = obj.opt(cx, "introspection", Cx::string);
            obj.finish(cx);
            let defaults = OAuth2Endpoints::default();
            Some(OAuth2Endpoints {
                token: token?.unwrap_or(defaults.token),
                revocation: revocation?.unwrap_or(defaults.revocation),
                introspection: introspection?.unwrap_or(defaults.introspection),
            })
        })
    } else {
        Some(None)
    };
    let client = obj.opt(cx, "client", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let id = obj.opt(cx, "id", Cx::text);
        let secret = obj.opt(cx, "secret", Cx::text);
        let assertion = obj.opt(cx, "assertion", Cx::text);
        let authentication = obj.opt(cx, "authentication", |cx, at| {
            Some(
                match cx
                    .one_of(
                        at,
                        &[
                            "client_secret_basic",
                            "client_secret_post",
                            "client_secret_jwt",
                            "private_key_jwt",
                            "none",
                        ],
                    )?
                    .as_str()
                {
                    "client_secret_basic" => ClientAuthentication::ClientSecretBasic,
                    "client_secret_jwt" => ClientAuthentication::ClientSecretJwt,
                    "private_key_jwt" => ClientAuthentication::PrivateKeyJwt,
                    "none" => ClientAuthentication::None,
                    _ => ClientAuthentication::ClientSecretPost,
                },
            )
        });
        obj.finish(cx);
        Some(OAuth2Client {
            id: id?,
            secret: secret?,
            assertion: assertion?,
            authentication: authentication?.unwrap_or_default(),
        })
    });
    let request_encoding = obj.opt(cx, "request", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let encoding = obj.opt(cx, "encoding", |cx, at| {
            cx.one_of(
                at,
                &["application/x-www-form-urlencoded", "application/json"],
            )
        });
        obj.finish(cx);
        encoding
    });
    let issuers = obj.opt(cx, "issuers", Cx::string_list);
    let scopes = obj.opt(cx, "scopes", Cx::string_list);
    let audiences = obj.opt(cx, "audiences", Cx::string_list);
    let username = obj.opt(cx, "username", Cx::text);
    let password = obj.opt(cx, "password", Cx::text);
    let subject = obj.opt(cx, "subject", token);
    let actor = obj.opt(cx, "actor", token);
    obj.finish(cx);
    Some(OAuth2 {
        authority: authority?,
        grant: grant?,
        endpoints: endpoints?.unwrap_or_default(),
        client: client?,
        request_encoding: request_encoding?
            .flatten()
            .unwrap_or_else(|| "application/x-www-form-urlencoded".into()),
        issuers: issuers?.unwrap_or_default(),
        scopes: scopes?.unwrap_or_default(),
        audiences: audiences?.unwrap_or_default(),
        username: username?,
        password: password?,
        subject: subject?,
        actor: actor?,
    })
}

fn token(cx: &mut Cx, at: &At) -> Option<OAuth2Token> {
    let mut obj = Obj::new(cx, at)?;
    let token = obj.req(cx, "token", Cx::text);
    let type_ = obj.req(cx, "type", Cx::string);
    obj.finish(cx);
    Some(OAuth2Token {
        token: token?,
        type_: type_?,
    })
}
