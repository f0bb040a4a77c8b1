//! Where a server's workflows may call, as options (`--egress-deny`, …) and as a
//! project's `egress:` in the configuration file. With tokens configured (several
//! projects on one server) link-local and metadata addresses and the server's own
//! ports are denied unless `--egress-open` says otherwise; without tokens everything
//! is allowed, as it is on a laptop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result, bail};
use runtime::egress::{Egress, EgressPolicy, Rule};

#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "Where workflows may call")]
pub(crate) struct EgressArgs {
    /// Allow calls only to these: address blocks (10.0.0.0/8, 2001:db8::/32, an
    /// address) and host patterns (api.example.com, *.example.com). Repeat, or separate
    /// with commas. Checked after DNS resolution, on every redirect too.
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    egress_allow: Vec<String>,

    /// Deny calls to these (as for --egress-allow); a deny wins over an allow.
    #[arg(long, value_name = "RULE", value_delimiter = ',')]
    egress_deny: Vec<String>,

    /// Deny calls to loopback addresses (127.0.0.0/8, ::1, localhost).
    #[arg(long)]
    egress_deny_loopback: bool,

    /// With tokens configured, do not deny link-local and metadata addresses
    /// (169.254.0.0/16, fe80::/10, fd00:ec2::254, metadata.google.internal) and this
    /// server's own ports, as is done by default.
    #[arg(long)]
    egress_open: bool,

    /// Resolve NAME to IP for workflow calls, before DNS (like curl's --resolve):
    /// `NAME=IP`. Repeat for several names or addresses.
    #[arg(long, value_name = "NAME=IP")]
    resolve: Vec<String>,
}

/// A project's `egress:` in the configuration file.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct EgressOverrides {
    /// In place of the server's allow rules.
    allow: Option<Vec<String>>,
    /// Added to the server's deny rules.
    #[serde(default)]
    deny: Vec<String>,
    deny_loopback: Option<bool>,
}

fn rules(texts: &[String], what: &str) -> Result<Vec<Rule>> {
    texts
        .iter()
        .map(|t| {
            t.parse::<Rule>()
                .map_err(|e| anyhow::anyhow!("{what}: {e}"))
        })
        .collect()
}

impl EgressArgs {
    /// The server's policy: `protected` (several projects) starts from the denied
    /// defaults and the server's own addresses `own`.
    pub(crate) fn egress(
        &self,
        protected: bool,
        own: Vec<SocketAddr>,
        projects: &[(String, &EgressOverrides)],
    ) -> Result<Egress> {
        let mut default = if protected && !self.egress_open {
            EgressPolicy::protected(own)
        } else {
            EgressPolicy::default()
        };
        default.allow = rules(&self.egress_allow, "--egress-allow")?;
        default
            .deny
            .extend(rules(&self.egress_deny, "--egress-deny")?);
        default.deny_loopback = self.egress_deny_loopback;
        let mut resolve: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for entry in &self.resolve {
            let Some((name, ip)) = entry.split_once('=') else {
                bail!("--resolve {entry}: expected NAME=IP");
            };
            let ip: IpAddr = ip
                .trim_matches(['[', ']'])
                .parse()
                .with_context(|| format!("--resolve {entry}: `{ip}` is not an IP address"))?;
            resolve
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(ip);
        }
        let mut policies = HashMap::new();
        for (project, overrides) in projects {
            let what = format!("projects[{project}].egress");
            let mut policy = default.clone();
            if let Some(allow) = &overrides.allow {
                policy.allow = rules(allow, &what)?;
            }
            policy.deny.extend(rules(&overrides.deny, &what)?);
            policy.deny_loopback = overrides.deny_loopback.unwrap_or(policy.deny_loopback);
            policies.insert(project.clone(), policy);
        }
        Ok(Egress {
            default,
            projects: policies,
            resolve,
        })
    }
}
