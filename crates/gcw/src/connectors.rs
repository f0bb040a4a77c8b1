//! Connectors (`call: googleapis.…`) as data: the REST method each one is, on which
//! service, with which arguments in its path, what it sends as its body (the rest go as
//! query parameters), and how it waits for long-running work it starts. A call lowers
//! onto an HTTP call to the service's base URL (its emulator's when the usual variable
//! names one, or `SKEIN_GOOGLEAPIS_{SERVICE}_ENDPOINT`; Workflow Executions go to the
//! server running the workflow), with an access token of the server's Google identity
//! unless it goes to an emulator, a stand-in or skein itself.

/// A Google service and where it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Storage,
    PubSub,
    SecretManager,
    /// Workflow Executions: this skein server's own API (Google's Executions API, which
    /// `skein server` serves), so a child runs here.
    WorkflowExecutions,
    CloudRun,
    CloudTasks,
    Firestore,
    BigQuery,
}

/// Where a service's calls go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Base {
    /// This URL.
    Url(String),
    /// The server running the execution (`$runtime.metadata.server`).
    Server,
}

impl Service {
    /// Where calls go, and whether that takes no Google token (an emulator, a test's
    /// stand-in, or this server).
    pub(crate) fn base(self) -> (Base, bool) {
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
            Service::WorkflowExecutions => ("WORKFLOWEXECUTIONS", "", ""),
            Service::CloudRun => ("RUN", "", "https://run.googleapis.com"),
            Service::CloudTasks => ("CLOUDTASKS", "", "https://cloudtasks.googleapis.com"),
            Service::Firestore => (
                "FIRESTORE",
                "FIRESTORE_EMULATOR_HOST",
                "https://firestore.googleapis.com",
            ),
            Service::BigQuery => ("BIGQUERY", "", "https://bigquery.googleapis.com"),
        };
        if let Ok(url) = std::env::var(format!("SKEIN_GOOGLEAPIS_{name}_ENDPOINT")) {
            return (Base::Url(url.trim_end_matches('/').to_string()), true);
        }
        if !emulator.is_empty()
            && let Ok(host) = std::env::var(emulator)
        {
            let url = if host.contains("://") {
                host
            } else {
                format!("http://{host}")
            };
            return (Base::Url(url.trim_end_matches('/').to_string()), true);
        }
        if public.is_empty() {
            return (Base::Server, true);
        }
        (Base::Url(public.to_string()), false)
    }
}

/// How a connector that starts long-running work waits for it to end, polling as
/// `connector_params.polling_policy` says, unless `skip_polling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Poll {
    /// A `google.longrunning.Operation`: polled at `{base}/{version}/{name}` until
    /// `done`; the result is its `response`, its `error` raises `OperationError`.
    Operation { version: &'static str },
    /// A workflow execution: polled at `{base}/v1/{name}` until its state is final;
    /// the result is its `result` decoded, a failure raises `OperationError`.
    Execution,
    /// A BigQuery job: polled at its `selfLink` path until `status.state` is `DONE`;
    /// an `errorResult` raises `OperationError`.
    BigQueryJob,
}

/// What a connector sends as its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Body {
    None,
    /// The argument of this name.
    Arg(&'static str),
    /// `{"argument": …}`, the `argument` argument encoded as JSON text (`executions.run`).
    ExecutionArgument,
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
    /// What it sends as the request body.
    pub(crate) body: Body,
    /// Arguments every call must give.
    pub(crate) required: &'static [&'static str],
    /// Query parameters every call sends.
    pub(crate) fixed_query: &'static [(&'static str, &'static str)],
    /// What the result is made of.
    pub(crate) result: Reply,
    /// How it waits for the work it starts, if it starts any.
    pub(crate) poll: Option<Poll>,
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
        body: match body {
            Some(arg) => Body::Arg(arg),
            None => Body::None,
        },
        required,
        fixed_query: &[],
        result: Reply::Body,
        poll: None,
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
    c(
        "googleapis.workflowexecutions.v1.projects.locations.workflows.executions.create",
        Service::WorkflowExecutions,
        "POST",
        "/v1/{+parent}/executions",
        Some("body"),
        &["parent"],
    ),
    c(
        "googleapis.workflowexecutions.v1.projects.locations.workflows.executions.get",
        Service::WorkflowExecutions,
        "GET",
        "/v1/{+name}",
        None,
        &["name"],
    ),
    c(
        "googleapis.workflowexecutions.v1.projects.locations.workflows.executions.cancel",
        Service::WorkflowExecutions,
        "POST",
        "/v1/{+name}:cancel",
        None,
        &["name"],
    ),
    Connector {
        body: Body::ExecutionArgument,
        poll: Some(Poll::Execution),
        ..c(
            "googleapis.workflowexecutions.v1.projects.locations.workflows.executions.run",
            Service::WorkflowExecutions,
            "POST",
            "/v1/projects/{project_id}/locations/{location}/workflows/{workflow_id}/executions",
            None,
            &["workflow_id"],
        )
    },
    Connector {
        poll: Some(Poll::Operation { version: "v2" }),
        ..c(
            "googleapis.run.v2.projects.locations.jobs.run",
            Service::CloudRun,
            "POST",
            "/v2/{+name}:run",
            Some("body"),
            &["name"],
        )
    },
    c(
        "googleapis.cloudtasks.v2.projects.locations.queues.tasks.create",
        Service::CloudTasks,
        "POST",
        "/v2/{+parent}/tasks",
        Some("body"),
        &["parent", "body"],
    ),
    c(
        "googleapis.firestore.v1.projects.databases.documents.get",
        Service::Firestore,
        "GET",
        "/v1/{+name}",
        None,
        &["name"],
    ),
    c(
        "googleapis.firestore.v1.projects.databases.documents.patch",
        Service::Firestore,
        "PATCH",
        "/v1/{+name}",
        Some("body"),
        &["name", "body"],
    ),
    c(
        "googleapis.firestore.v1.projects.databases.documents.delete",
        Service::Firestore,
        "DELETE",
        "/v1/{+name}",
        None,
        &["name"],
    ),
    Connector {
        poll: Some(Poll::BigQueryJob),
        ..c(
            "googleapis.bigquery.v2.jobs.insert",
            Service::BigQuery,
            "POST",
            "/bigquery/v2/projects/{projectId}/jobs",
            Some("body"),
            &["projectId", "body"],
        )
    },
    c(
        "googleapis.bigquery.v2.jobs.query",
        Service::BigQuery,
        "POST",
        "/bigquery/v2/projects/{projectId}/queries",
        Some("body"),
        &["projectId", "body"],
    ),
    c(
        "googleapis.bigquery.v2.jobs.getQueryResults",
        Service::BigQuery,
        "GET",
        "/bigquery/v2/projects/{projectId}/queries/{jobId}",
        None,
        &["projectId", "jobId"],
    ),
    c(
        "googleapis.bigquery.v2.jobs.get",
        Service::BigQuery,
        "GET",
        "/bigquery/v2/projects/{projectId}/jobs/{jobId}",
        None,
        &["projectId", "jobId"],
    ),
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
