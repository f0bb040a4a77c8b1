//! Connectors (`call: googleapis.…`) as data: the REST method each one is, on which
//! service, with which arguments in its path, which one is its body, and the rest
//! sent as query parameters. A call lowers onto an HTTP call to the service's base URL
//! (its emulator's when the usual variable names one, or
//! `SKEIN_GOOGLEAPIS_{SERVICE}_ENDPOINT`), with an access token of the server's Google
//! identity unless it goes to an emulator.

/// A Google service and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Storage,
    PubSub,
    SecretManager,
}

impl Service {
    /// The base URL calls go to, and whether it is an emulator (which takes no token).
    pub(crate) fn base(self) -> (String, bool) {
        let (name, emulator, public) = match self {
            Service::Storage => (
                "STORAGE",
                "STORAGE_EMULATOR_HOST",
                "https://storage.googleapis.com",
            ),
            Service::PubSub => (
                "PUBSUB",
                "PUBSUB_EMULATOR_HOST",
                "https://pubsub.googleapis.com",
            ),
            Service::SecretManager => ("SECRETMANAGER", "", "https://secretmanager.googleapis.com"),
        };
        if let Ok(url) = std::env::var(format!("SKEIN_GOOGLEAPIS_{name}_ENDPOINT")) {
            return (url.trim_end_matches('/').to_string(), true);
        }
        if !emulator.is_empty()
            && let Ok(host) = std::env::var(emulator)
        {
            let url = if host.contains("://") {
                host
            } else {
                format!("http://{host}")
            };
            return (url.trim_end_matches('/').to_string(), true);
        }
        (public.to_string(), false)
    }
}

/// One connector.
#[derive(Debug)]
pub(crate) struct Connector {
    pub(crate) name: &'static str,
    pub(crate) service: Service,
    pub(crate) method: &'static str,
    /// The path after the base URL, with `{arg}` placeholders (URL-encoded when filled;
    /// `{+arg}` filled as it is, for resource names with slashes).
    pub(crate) path: &'static str,
    /// The argument sent as the request body, if any.
    pub(crate) body: Option<&'static str>,
    /// Arguments every call must give.
    pub(crate) required: &'static [&'static str],
    /// Query parameters every call sends.
    pub(crate) fixed_query: &'static [(&'static str, &'static str)],
    /// What the result is made of.
    pub(crate) result: Reply,
}

/// What a connector's result is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reply {
    /// The response body.
    Body,
    /// Secret Manager's payload, decoded from base64 into text.
    SecretText,
}

const fn c(
    name: &'static str,
    service: Service,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    required: &'static [&'static str],
) -> Connector {
    Connector {
        name,
        service,
        method,
        path,
        body,
        required,
        fixed_query: &[],
        result: Reply::Body,
    }
}

/// The connectors skein runs.
pub(crate) const CONNECTORS: &[Connector] = &[
    c(
        "googleapis.storage.v1.objects.get",
        Service::Storage,
        "GET",
        "/storage/v1/b/{bucket}/o/{object}",
        None,
        &["bucket", "object"],
    ),
    c(
        "googleapis.storage.v1.objects.list",
        Service::Storage,
        "GET",
        "/storage/v1/b/{bucket}/o",
        None,
        &["bucket"],
    ),
    c(
        "googleapis.storage.v1.objects.delete",
        Service::Storage,
        "DELETE",
        "/storage/v1/b/{bucket}/o/{object}",
        None,
        &["bucket", "object"],
    ),
    Connector {
        fixed_query: &[("uploadType", "media")],
        ..c(
            "googleapis.storage.v1.objects.insert",
            Service::Storage,
            "POST",
            "/upload/storage/v1/b/{bucket}/o",
            Some("body"),
            &["bucket", "name"],
        )
    },
    c(
        "googleapis.pubsub.v1.projects.topics.publish",
        Service::PubSub,
        "POST",
        "/v1/{+topic}:publish",
        Some("body"),
        &["topic", "body"],
    ),
    c(
        "googleapis.secretmanager.v1.projects.secrets.versions.access",
        Service::SecretManager,
        "GET",
        "/v1/{+name}:access",
        None,
        &["name"],
    ),
    Connector {
        result: Reply::SecretText,
        ..c(
            "googleapis.secretmanager.v1.projects.secrets.versions.accessString",
            Service::SecretManager,
            "GET",
            "/v1/projects/{project_id}/secrets/{secret_id}/versions/{version}:access",
            None,
            &["project_id", "secret_id"],
        )
    },
];

/// The connector called `name`, if skein runs it.
pub(crate) fn connector(name: &str) -> Option<&'static Connector> {
    CONNECTORS.iter().find(|c| c.name == name)
}

impl Connector {
    /// The arguments that fill the path.
    pub(crate) fn path_args(&self) -> Vec<&'static str> {
        self.path
            .split('{')
            .skip(1)
            .filter_map(|p| {
                p.split_once('}')
                    .map(|(name, _)| name.trim_start_matches('+'))
            })
            .collect()
    }
}
