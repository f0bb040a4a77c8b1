//! OpenID Connect ID tokens as credentials: a caller presents a JWT from an issuer the
//! server trusts (Google, a Kubernetes cluster, a CI system, any OIDC provider), the
//! server checks it against the issuer's published keys, and rules over its claims give
//! the caller a project and a role.
//!
//! Keys come from the issuer's discovery document (`/.well-known/openid-configuration`,
//! then its `jwks_uri`) and are kept; a token signed by a key not among them makes the
//! server fetch them again, at most once per `refresh` (a minute by default), so that a
//! rotation is picked up at once and a flood of made-up key ids costs one fetch a minute.
//! Only RS256 and ES256 are accepted: `none` and the HMAC algorithms (whose "key" would
//! be the public one) are refused before anything else is looked at.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::Jwk};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::ApiError;
use crate::auth::{Caller, Role};

/// Clock skew allowed on `exp`, `nbf` and `iat`.
const SKEW: Duration = Duration::from_secs(60);
/// Keys are fetched again after this long even when every token's key is known, so that
/// a key the issuer withdrew stops being accepted.
const MAX_KEY_AGE: Duration = Duration::from_secs(3600);

/// One trusted issuer.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The issuer URL, as tokens carry it in `iss` (`https://accounts.google.com`).
    pub issuer: String,
    /// The audiences a token must name one of (`aud`): for Google ID tokens, the URL or
    /// client id they were asked for.
    pub audiences: Vec<String>,
}

/// One rule: tokens whose claim matches the glob act in the project with the role.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The claim's name (`email`, `sub`, `groups`, …); a dotted path reaches into objects
    /// when no claim has the whole name.
    pub claim: String,
    /// `*` any run of characters, `?` one character, anything else itself.
    pub pattern: String,
    pub project: String,
    pub role: Role,
    /// Only for tokens of this issuer; any issuer when `None`.
    pub issuer: Option<String>,
}

impl Rule {
    /// Reads `CLAIM=GLOB:PROJECT:ROLE` (`email=*@example.com:render:run`). The glob may
    /// hold colons: the project and role are the last two fields.
    pub fn parse(text: &str) -> Result<Rule, String> {
        let shape = || format!("`{text}` is not CLAIM=GLOB:PROJECT:ROLE");
        let mut tail = text.trim().rsplitn(3, ':');
        let (Some(role), Some(project), Some(head)) = (tail.next(), tail.next(), tail.next())
        else {
            return Err(shape());
        };
        let (claim, pattern) = head.split_once('=').ok_or_else(shape)?;
        Rule::new(claim, pattern, project, role, None)
    }

    pub fn new(
        claim: &str,
        pattern: &str,
        project: &str,
        role: &str,
        issuer: Option<String>,
    ) -> Result<Rule, String> {
        if claim.is_empty() {
            return Err("a rule's claim is empty".into());
        }
        if project.is_empty() {
            return Err(format!("the rule for claim `{claim}` has no project"));
        }
        Ok(Rule {
            claim: claim.to_string(),
            pattern: pattern.to_string(),
            project: project.to_string(),
            role: Role::parse(role)?,
            issuer: issuer.map(|i| normalize(&i)),
        })
    }

    /// Whether the token's `claims` from `issuer` match.
    fn matches(&self, issuer: &str, claims: &Value) -> bool {
        if self.issuer.as_deref().is_some_and(|i| i != issuer) {
            return false;
        }
        // An address the issuer has not verified proves nothing about its owner.
        if self.claim == "email" && claims.get("email_verified") == Some(&Value::Bool(false)) {
            return false;
        }
        let value = claims
            .get(&self.claim)
            .or_else(|| (self.claim.split('.')).try_fold(claims, |value, key| value.get(key)));
        let matches = |v: &Value| match v {
            Value::String(s) => glob(&self.pattern, s),
            Value::Bool(_) | Value::Number(_) => glob(&self.pattern, &v.to_string()),
            _ => false,
        };
        match value {
            Some(Value::Array(items)) => items.iter().any(matches),
            Some(v) => matches(v),
            None => false,
        }
    }
}

/// Whether `text` matches `pattern` (`*`, `?`), iteratively with one backtrack point.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < t.len() {
        if i < p.len() && (p[i] == '?' || p[i] == t[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// An issuer URL as compared: without a trailing slash.
fn normalize(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// The OIDC configuration: issuers and rules.
#[derive(Clone, Debug, Default)]
pub struct OidcConfig {
    pub issuers: Vec<IssuerConfig>,
    pub rules: Vec<Rule>,
    /// The shortest time between two fetches of an issuer's keys (a minute by default).
    pub refresh: Option<Duration>,
}

impl OidcConfig {
    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// Refuses a configuration that cannot work: an issuer that is neither HTTPS nor on
    /// loopback, one without audiences, rules without issuers or issuers without rules.
    pub fn check(&self) -> Result<(), String> {
        for issuer in &self.issuers {
            let url = url::Url::parse(&issuer.issuer)
                .map_err(|e| format!("the OIDC issuer `{}` is not a URL: {e}", issuer.issuer))?;
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
                return Err(format!(
                    "the OIDC issuer `{}` must be an https URL (http only on loopback)",
                    issuer.issuer
                ));
            }
            if issuer.audiences.is_empty() {
                return Err(format!(
                    "the OIDC issuer `{}` has no audience: name the audiences its tokens \
                     must be for (--oidc-audience, SKEIN_OIDC_AUDIENCE)",
                    issuer.issuer
                ));
            }
        }
        match (self.issuers.is_empty(), self.rules.is_empty()) {
            (false, true) => Err(
                "OIDC issuers are configured but no rule gives their tokens \
                 a project and role (--oidc-rule CLAIM=GLOB:PROJECT:ROLE)"
                    .into(),
            ),
            (true, false) => Err("OIDC rules are configured but no issuer \
                 (--oidc-issuer URL, SKEIN_OIDC_ISSUER)"
                .into()),
            _ => Ok(()),
        }
    }
}

/// An issuer's keys, as last fetched.
#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, Jwk>,
    /// Keys without a `kid`, tried in turn.
    anonymous: Vec<Jwk>,
    fetched: Option<Instant>,
}

/// Verifies ID tokens: the configuration with each issuer's keys.
pub struct Oidc {
    config: OidcConfig,
    client: reqwest::Client,
    keys: Vec<Mutex<Keys>>,
    /// How many times keys were fetched, for `/metrics` and tests.
    fetches: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Oidc")
            .field("config", &self.config)
            .finish()
    }
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message.into())
}

impl Oidc {
    pub fn new(mut config: OidcConfig) -> Oidc {
        for issuer in &mut config.issuers {
            issuer.issuer = normalize(&issuer.issuer);
        }
        let keys = config.issuers.iter().map(|_| Mutex::default()).collect();
        Oidc {
            config,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("a plain HTTP client builds"),
            keys,
            fetches: Default::default(),
        }
    }

    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// How many times keys were fetched since the server started.
    pub fn key_fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `token` has a JWT's shape (three base64url parts), so is one for this.
    pub fn looks_like_jwt(token: &str) -> bool {
        let parts: Vec<&str> = token.split('.').collect();
        parts.len() == 3 && parts[..2].iter().all(|p| !p.is_empty())
    }

    /// The caller the ID token `token` stands for: 401 when it is not a valid token of
    /// a trusted issuer for one of its audiences, 403 when no rule matches it.
    pub async fn caller(&self, token: &str) -> Result<Caller, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            unauthorized(format!(
                "the bearer token is not a JWT this server accepts ({e}); \
                 ID tokens must be signed with RS256 or ES256"
            ))
        })?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(unauthorized(format!(
                "the ID token is signed with {:?}; this server accepts RS256 and ES256 only",
                header.alg
            )));
        }
        // Which issuer's keys to check it with: the one it names, trusted only once the
        // signature is.
        let claimed: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|e| unauthorized(format!("the ID token's claims cannot be read: {e}")))?;
        let iss = claimed.get("iss").and_then(Value::as_str).unwrap_or("");
        let Some(index) = (self.config.issuers.iter()).position(|i| i.issuer == normalize(iss))
        else {
            return Err(unauthorized(format!(
                "the ID token's issuer `{iss}` is not one this server trusts"
            )));
        };
        let issuer = &self.config.issuers[index];
        let candidates = self.keys_for(index, header.kid.as_deref()).await?;

        let mut validation = Validation::new(header.alg);
        validation.leeway = SKEW.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.issuer, &format!("{}/", issuer.issuer)]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = None;
        for jwk in &candidates {
            let key = match DecodingKey::from_jwk(jwk) {
                Ok(key) => key,
                Err(e) => {
                    last = Some(unauthorized(format!(
                        "the issuer's key for this token is unusable: {e}"
                    )));
                    continue;
                }
            };
            match jsonwebtoken::decode::<Value>(token, &key, &validation) {
                Ok(data) => return self.apply_rules(&issuer.issuer, &data.claims),
                Err(e) => last = Some(refusal(e, issuer)),
            }
        }
        Err(last.unwrap_or_else(|| unauthorized("the issuer publishes no key for this token")))
    }

    /// The first rule matching the claims gives the caller.
    fn apply_rules(&self, issuer: &str, claims: &Value) -> Result<Caller, ApiError> {
        let rule = (self.config.rules.iter())
            .find(|r| r.matches(issuer, claims))
            .ok_or_else(|| {
                let who = ["email", "sub"]
                    .iter()
                    .find_map(|c| claims.get(*c).and_then(Value::as_str))
                    .unwrap_or("?");
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden",
                    format!(
                        "the ID token of `{who}` from {issuer} is valid, but no OIDC rule \
                         gives it a project"
                    ),
                )
            })?;
        Ok(Caller {
            project: rule.project.clone(),
            role: rule.role,
        })
    }

    /// The keys of issuer `index` a token with `kid` may be signed with, fetching them
    /// when they are missing (at most once per `refresh`) or old.
    async fn keys_for(&self, index: usize, kid: Option<&str>) -> Result<Vec<Jwk>, ApiError> {
        let refresh = self.config.refresh.unwrap_or(Duration::from_secs(60));
        let mut keys = self.keys[index].lock().await;
        let find = |keys: &Keys| -> Vec<Jwk> {
            match kid {
                Some(kid) => keys.by_kid.get(kid).cloned().into_iter().collect(),
                None => keys.anonymous.clone(),
            }
        };
        let age = keys.fetched.map(|t| t.elapsed());
        let missing = find(&keys).is_empty();
        let due = match age {
            None => true,
            Some(age) => age > MAX_KEY_AGE || (missing && age >= refresh),
        };
        if due {
            let issuer = &self.config.issuers[index].issuer;
            self.fetches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match self.fetch(issuer).await {
                Ok(fresh) => *keys = fresh,
                Err(e) if keys.fetched.is_some() => {
                    tracing::warn!("OIDC: keeping the keys of {issuer}: {e}");
                    keys.fetched = Some(Instant::now());
                }
                Err(e) => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        format!("the keys of the OIDC issuer {issuer} cannot be fetched: {e}"),
                    ));
                }
            }
        }
        let found = find(&keys);
        if found.is_empty() {
            return Err(unauthorized(format!(
                "the ID token's key{} is not among the issuer's published keys",
                kid.map(|k| format!(" `{k}`")).unwrap_or_default()
            )));
        }
        Ok(found)
    }

    /// Discovery, then the key set.
    async fn fetch(&self, issuer: &str) -> Result<Keys, String> {
        let discovery_url = format!("{issuer}/.well-known/openid-configuration");
        let discovery: Value = self.get_json(&discovery_url).await?;
        let advertised = discovery
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or("");
        if normalize(advertised) != issuer {
            return Err(format!(
                "{discovery_url} names the issuer `{advertised}`, not `{issuer}`"
            ));
        }
        let jwks_uri = (discovery.get("jwks_uri").and_then(Value::as_str))
            .ok_or_else(|| format!("{discovery_url} has no `jwks_uri`"))?;
        let set: Value = self.get_json(jwks_uri).await?;
        let entries = (set.get("keys").and_then(Value::as_array))
            .ok_or_else(|| format!("{jwks_uri} has no `keys` list"))?;
        let mut keys = Keys {
            fetched: Some(Instant::now()),
            ..Keys::default()
        };
        // A key of a kind this server does not read is passed over, not fatal.
        for entry in entries {
            let Ok(jwk) = serde_json::from_value::<Jwk>(entry.clone()) else {
                continue;
            };
            match jwk.common.key_id.clone() {
                Some(kid) => {
                    keys.by_kid.insert(kid, jwk);
                }
                None => keys.anonymous.push(jwk),
            }
        }
        Ok(keys)
    }

    async fn get_json(&self, url: &str) -> Result<Value, String> {
        let response = (self.client.get(url).send().await)
            .and_then(|r| r.error_for_status())
            .map_err(|e| format!("GET {url}: {e}"))?;
        let body = (response.bytes().await).map_err(|e| format!("GET {url}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("{url} is not JSON: {e}"))
    }
}

/// What a failed check tells the caller.
fn refusal(error: jsonwebtoken::errors::Error, issuer: &IssuerConfig) -> ApiError {
    use jsonwebtoken::errors::ErrorKind;
    unauthorized(match error.kind() {
        ErrorKind::ExpiredSignature => "the ID token has expired".to_string(),
        ErrorKind::ImmatureSignature => "the ID token is not valid yet (`nbf`)".to_string(),
        ErrorKind::InvalidAudience => format!(
            "the ID token is for another audience; this server accepts {}",
            issuer.audiences.join(", ")
        ),
        ErrorKind::InvalidIssuer => "the ID token's issuer does not match".to_string(),
        ErrorKind::InvalidSignature => "the ID token's signature does not verify".to_string(),
        ErrorKind::MissingRequiredClaim(claim) => {
            format!("the ID token has no `{claim}` claim")
        }
        _ => format!("the ID token is not valid: {error}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_match_as_shells_do() {
        assert!(glob("*@example.com", "ada@example.com"));
        assert!(!glob("*@example.com", "ada@example.com.evil.org"));
        assert!(glob("ci-?", "ci-7"));
        assert!(!glob("ci-?", "ci-17"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxbyy"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
    }

    #[test]
    fn a_rule_reads_with_colons_in_its_glob() {
        let rule = Rule::parse("sub=system:serviceaccount:ci:*:render:run").unwrap();
        assert_eq!(rule.claim, "sub");
        assert_eq!(rule.pattern, "system:serviceaccount:ci:*");
        assert_eq!(rule.project, "render");
        assert_eq!(rule.role, Role::Run);
        assert!(Rule::parse("email:render:run").is_err());
        assert!(Rule::parse("email=*:render:boss").is_err());
        assert!(Rule::parse("email=*::run").is_err());
    }

    #[test]
    fn rules_look_into_lists_and_paths_and_ignore_unverified_addresses() {
        let groups = Rule::parse("groups=admins:ops:admin").unwrap();
        let iss = "https://issuer.test";
        assert!(groups.matches(iss, &json!({"groups": ["devs", "admins"]})));
        assert!(!groups.matches(iss, &json!({"groups": ["devs"]})));
        let nested = Rule::parse("google.compute_engine.project_id=p-*:x:read").unwrap();
        assert!(nested.matches(
            iss,
            &json!({"google": {"compute_engine": {"project_id": "p-1"}}})
        ));
        let email = Rule::parse("email=*@example.com:render:run").unwrap();
        assert!(email.matches(
            iss,
            &json!({"email": "a@example.com", "email_verified": true})
        ));
        assert!(!email.matches(
            iss,
            &json!({"email": "a@example.com", "email_verified": false})
        ));
        let scoped =
            Rule::new("sub", "*", "p", "read", Some("https://other.test/".into())).unwrap();
        assert!(!scoped.matches(iss, &json!({"sub": "x"})));
        assert!(scoped.matches("https://other.test", &json!({"sub": "x"})));
    }

    #[test]
    fn issuers_must_be_https_but_on_loopback() {
        let config = |url: &str| OidcConfig {
            issuers: vec![IssuerConfig {
                issuer: url.into(),
                audiences: vec!["skein".into()],
            }],
            rules: vec![Rule::parse("sub=*:p:read").unwrap()],
            refresh: None,
        };
        assert!(config("https://accounts.google.com").check().is_ok());
        assert!(config("http://127.0.0.1:8080").check().is_ok());
        assert!(config("http://localhost:8080").check().is_ok());
        let err = config("http://issuer.example.com").check().unwrap_err();
        assert!(err.contains("must be an https URL"), "{err}");
        let mut no_audience = config("https://accounts.google.com");
        no_audience.issuers[0].audiences.clear();
        assert!(no_audience.check().unwrap_err().contains("no audience"));
    }
}
