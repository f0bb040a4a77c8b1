//! Where a workflow's calls may go. An [`EgressPolicy`] is checked against a call's
//! host before it leaves (a host pattern, an address literal, the port), and against
//! every address its name resolves to, by the HTTP clients' own resolver: so a name
//! that resolves to a denied address is refused, and so is a redirect to one or a
//! reconnect after the name changed. A refusal is [`engine::HttpError::Refused`],
//! naming the rule.
//!
//! Rules are CIDR blocks (`169.254.0.0/16`, `fd00:ec2::254/128`, a bare address) and
//! host patterns (`metadata.google.internal`, `*.internal`: any name ending in
//! `.internal`). Deny rules win; with allow rules, a call must match one of them (by
//! its host pattern, or every address it resolves to by a block).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;

/// One rule: a block of addresses or a host pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    Net(IpNet),
    /// A host name, lower case; a leading `*.` matches any name under it.
    Host(String),
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(text: &str) -> Result<Rule, String> {
        let text = text.trim();
        if let Ok(net) = text.parse::<IpNet>() {
            return Ok(Rule::Net(net));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Rule::Net(IpNet::from(ip)));
        }
        let name = text.strip_prefix("*.").unwrap_or(text);
        let valid = !name.is_empty()
            && name.split('.').all(|label| {
                !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            });
        if !valid {
            return Err(format!(
                "`{text}` is neither an address block (such as 10.0.0.0/8) nor a host \
                 pattern (such as api.example.com or *.example.com)"
            ));
        }
        Ok(Rule::Host(text.to_ascii_lowercase()))
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rule::Net(net) => net.fmt(f),
            Rule::Host(host) => host.fmt(f),
        }
    }
}

impl Rule {
    fn matches_host(&self, host: &str) -> bool {
        match self {
            Rule::Host(pattern) => match pattern.strip_prefix("*.") {
                Some(parent) => host
                    .strip_suffix(parent)
                    .is_some_and(|rest| rest.ends_with('.')),
                None => host == pattern,
            },
            Rule::Net(_) => false,
        }
    }

    fn matches_ip(&self, ip: IpAddr) -> bool {
        match self {
            Rule::Net(net) => net.contains(&canonical(ip)),
            Rule::Host(_) => false,
        }
    }
}

/// An IPv4 address written as IPv6 (`::ffff:169.254.169.254`) as the IPv4 one, so a
/// rule for the one catches the other.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Where calls may go.
#[derive(Clone, Debug, Default)]
pub struct EgressPolicy {
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    /// Deny loopback addresses (127.0.0.0/8, ::1, `localhost`).
    pub deny_loopback: bool,
    /// Addresses of this process's own servers: a call to one of these ports on a
    /// loopback or unspecified address (or on the address itself) is refused.
    pub own: Vec<SocketAddr>,
}

/// The rules denied by default where several projects share a server: link-local
/// addresses (the cloud metadata servers live there) and the metadata servers' names.
pub const PROTECTED: [&str; 5] = [
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "metadata.google.internal",
    "metadata",
];

impl EgressPolicy {
    /// The policy of a server several projects share: [`PROTECTED`] denied, and the
    /// server's own addresses `own`.
    pub fn protected(own: Vec<SocketAddr>) -> EgressPolicy {
        EgressPolicy {
            deny: PROTECTED
                .iter()
                .map(|r| r.parse().expect("the protected rules parse"))
                .collect(),
            own,
            ..EgressPolicy::default()
        }
    }

    /// Whether this policy lets everything through, so no check is needed at all.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty() && !self.deny_loopback && self.own.is_empty()
    }

    /// Checks a host (a name or an address literal) and port before anything resolves.
    /// A name that an allow rule names is let through here and at resolution.
    pub(crate) fn check_host(&self, host: &str, port: Option<u16>) -> Result<(), String> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let host = host.trim_end_matches('.');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.check_ip(host, ip, port, false);
        }
        if let Some(rule) = self.deny.iter().find(|r| r.matches_host(host)) {
            return Err(format!("the egress policy denies `{host}` (rule `{rule}`)"));
        }
        if self.deny_loopback && host == "localhost" {
            return Err(format!(
                "the egress policy denies loopback addresses (`{host}`)"
            ));
        }
        if let Some(port) = port
            && host == "localhost"
            && self.own.iter().any(|own| own.port() == port)
        {
            return Err(format!(
                "the egress policy denies this server's own port {port}"
            ));
        }
        Ok(())
    }

    /// Checks one address `host` resolved to (or is); `named` when an allow rule
    /// already let the name through.
    pub(crate) fn check_ip(
        &self,
        host: &str,
        ip: IpAddr,
        port: Option<u16>,
        named: bool,
    ) -> Result<(), String> {
        let ip = canonical(ip);
        if let Some(rule) = self.deny.iter().find(|r| r.matches_ip(ip)) {
            return Err(format!(
                "the egress policy denies {ip} (`{host}`; rule `{rule}`)"
            ));
        }
        if self.deny_loopback && ip.is_loopback() {
            return Err(format!(
                "the egress policy denies loopback addresses ({ip}, `{host}`)"
            ));
        }
        if let Some(port) = port {
            let own = self.own.iter().any(|own| {
                own.port() == port && (ip.is_loopback() || ip.is_unspecified() || ip == own.ip())
            });
            if own {
                return Err(format!(
                    "the egress policy denies this server's own address {ip}:{port}"
                ));
            }
        }
        if !self.allow.is_empty() && !named && !self.allow.iter().any(|r| r.matches_ip(ip)) {
            return Err(format!(
                "the egress policy allows only {}; {ip} (`{host}`) is none of them",
                list(&self.allow)
            ));
        }
        Ok(())
    }

    /// Whether an allow rule names `host` (so its addresses need no allow block).
    pub(crate) fn allows_name(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.allow
            .iter()
            .any(|r| r.matches_host(host.trim_end_matches('.')))
    }
}

fn list(rules: &[Rule]) -> String {
    rules
        .iter()
        .map(|r| format!("`{r}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The egress policy of a server: one for every project, others for some.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    pub default: EgressPolicy,
    pub projects: HashMap<String, EgressPolicy>,
    /// Names resolved to fixed addresses, before DNS (like curl's `--resolve`).
    pub resolve: HashMap<String, Vec<IpAddr>>,
}

impl Egress {
    pub fn policy(&self, project: &str) -> &EgressPolicy {
        self.projects.get(project).unwrap_or(&self.default)
    }
}

/// A refusal, carried through the HTTP clients' errors to tell it from a failure.
#[derive(Debug)]
pub(crate) struct Refusal(pub(crate) String);

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Refusal {}

/// Resolves names (the fixed ones first, then the system's resolver) and refuses
/// any name or address the policy denies.
#[derive(Clone)]
pub(crate) struct Resolver {
    pub(crate) policy: Arc<EgressPolicy>,
    pub(crate) fixed: Arc<HashMap<String, Vec<IpAddr>>>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Resolver {
    pub(crate) async fn lookup(&self, name: String) -> Result<Vec<SocketAddr>, BoxError> {
        self.policy.check_host(&name, None).map_err(Refusal)?;
        let addrs: Vec<SocketAddr> = match self.fixed.get(&name.to_ascii_lowercase()) {
            Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect(),
            None => tokio::net::lookup_host((name.as_str(), 0)).await?.collect(),
        };
        let named = self.policy.allows_name(&name);
        for addr in &addrs {
            self.policy
                .check_ip(&name, addr.ip(), None, named)
                .map_err(Refusal)?;
        }
        Ok(addrs)
    }
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        let name = name.as_str().to_string();
        Box::pin(async move {
            let addrs = resolver.lookup(name).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for Resolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), BoxError>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let resolver = self.clone();
        let name = name.as_str().to_string();
        Box::pin(async move { Ok(resolver.lookup(name).await?.into_iter()) })
    }
}

/// The refusal somewhere in `error`'s chain of sources, if any.
pub(crate) fn refusal(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refusal) = e.downcast_ref::<Refusal>() {
            return Some(refusal.0.clone());
        }
        current = e.source();
    }
    None
}

/// Checks a URL's host and port before a request, and before following a redirect.
pub(crate) fn check_url(policy: &EgressPolicy, url: &url::Url) -> Result<(), String> {
    policy.check_host(
        url.host_str().unwrap_or_default(),
        url.port_or_known_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_match() {
        let policy = EgressPolicy {
            deny: ["169.254.0.0/16", "metadata.google.internal", "*.internal"]
                .iter()
                .map(|r| r.parse().unwrap())
                .collect(),
            ..EgressPolicy::default()
        };
        assert!(
            policy
                .check_host("metadata.google.internal", Some(80))
                .is_err()
        );
        assert!(
            policy
                .check_host("METADATA.google.internal.", Some(80))
                .is_err()
        );
        assert!(policy.check_host("db.internal", Some(80)).is_err());
        assert!(policy.check_host("internal", Some(80)).is_ok());
        assert!(policy.check_host("169.254.169.254", Some(80)).is_err());
        assert!(
            policy
                .check_host("[::ffff:169.254.169.254]", Some(80))
                .is_err()
        );
        assert!(policy.check_host("example.com", Some(80)).is_ok());
        let err = policy.check_ip(
            "sneaky.example",
            "169.254.169.254".parse().unwrap(),
            None,
            false,
        );
        assert!(err.unwrap_err().contains("169.254.0.0/16"));
        assert!("not a rule!".parse::<Rule>().is_err());
    }

    #[test]
    fn allow_rules_admit_by_name_or_by_block() {
        let policy = EgressPolicy {
            allow: ["api.example.com", "10.0.0.0/8"]
                .iter()
                .map(|r| r.parse().unwrap())
                .collect(),
            ..EgressPolicy::default()
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(policy.check_ip("x", ip("10.1.2.3"), None, false).is_ok());
        assert!(
            policy
                .check_ip("x", ip("192.168.1.1"), None, false)
                .is_err()
        );
        assert!(policy.allows_name("api.example.com"));
        assert!(
            policy
                .check_ip("api.example.com", ip("192.168.1.1"), None, true)
                .is_ok()
        );
    }

    #[test]
    fn the_servers_own_ports_are_refused_on_loopback() {
        let policy = EgressPolicy::protected(vec!["0.0.0.0:8080".parse().unwrap()]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(policy.check_host("127.0.0.1", Some(8080)).is_err());
        assert!(policy.check_host("localhost", Some(8080)).is_err());
        assert!(
            policy
                .check_ip("x", ip("127.0.0.1"), Some(8081), false)
                .is_ok()
        );
        assert!(policy.check_host("127.0.0.1", Some(9000)).is_ok());
    }
}
