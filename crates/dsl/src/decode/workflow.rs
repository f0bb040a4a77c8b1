//! The top of a document: `document`, `use`, data flow, and the components that
//! tasks refer to by name (errors, retries, timeouts, endpoints).

use std::sync::Arc;

use expr::Mode;
use indexmap::IndexMap;

use super::task::{task, task_list};
use super::{At, Cx, Obj, auth};
use crate::yaml::Kind;
use program::ExtensionUse;
use program::{
    Backoff, Catalog, Document, Endpoint, ErrorDef, ErrorRef, Evaluate, Export, Extension,
    ExternalResource, Input, Jitter, Output, Program, RetryLimit, RetryPolicy, RetryRef, Schedule,
    Schema, SchemaSource, Timeout, TimeoutRef, Uri, Use,
};

/// The DSL versions skein reads.
const DSL_VERSIONS: std::ops::RangeInclusive<(u64, u64, u64)> = (1, 0, 0)..=(1, 0, 3);

pub(crate) fn workflow(cx: &mut Cx, at: &At) -> Option<Program> {
    if matches!(at.node.kind, Kind::Null) {
        cx.error_help(
            at.node.range.clone(),
            &at.ptr,
            "the document is empty",
            "a workflow needs at least `document` and `do`",
        );
        return None;
    }
    let mut obj = Obj::new(cx, at)?;

    // `evaluate` changes how every other string is read, and `use` declares the
    // names that the rest refers to, so both come first.
    let evaluate = obj.opt(cx, "evaluate", evaluate);
    if let Some(Some(e)) = &evaluate {
        cx.mode = e.mode;
    }
    if let Some(u) = obj.field("use") {
        collect_use_names(cx, &u);
    }

    // Zigflow keeps YAML anchors under top-level keys such as `.anchors`; the aliases
    // are expanded by now, so the holders themselves mean nothing.
    // Recognised by its `document`, or forced (`--dialect zigflow`).
    let zigflow = cx.zigflow || is_zigflow(at);
    if zigflow {
        obj.ignore(|k| k.starts_with('.'));
        // Zigflow's `$data`, which every expression of the document may read.
        cx.locals.push("data".into());
        cx.zigflow = true;
    }
    let document = obj.req(cx, "document", document);
    if zigflow {
        cx.task_queue = document.as_ref().map(|d| d.namespace.clone());
    }
    let use_ = obj.opt(cx, "use", use_);
    let input = obj.opt(cx, "input", input);
    let timeout = obj.opt(cx, "timeout", timeout_ref);
    if zigflow {
        // Zigflow's activities take the workflow's timeout as their start-to-close one.
        let after = match &timeout {
            Some(Some(TimeoutRef::Inline(Timeout {
                after: program::Duration::Fixed(d),
            }))) => Some(*d),
            _ => None,
        };
        let written = cx.activity_written.take();
        cx.activity = Some(super::activity::document_options(after, written));
    }
    let mut do_ = obj.req(cx, "do", task_list);
    if zigflow && let (Some(doc), Some(list)) = (&document, &mut do_) {
        let siblings = super::siblings::workflows(list);
        let all = std::mem::take(list);
        if super::siblings::only_workflows(&all) {
            // Several workflows in one document: it runs the one `workflowType` names.
            *list = super::siblings::entry(cx, at.node, all, &siblings, &doc.name);
            cx.extensions.push(ExtensionUse {
                name: "zigflow.workflows",
                path: "/do".into(),
                range: obj.field("do").map(|d| d.anchor()).unwrap_or(0..0),
            });
        } else {
            *list = super::siblings::own(cx, at.node, all, &siblings);
        }
    }
    let output = obj.opt(cx, "output", output);
    let schedule = obj.opt(cx, "schedule", schedule);
    obj.finish(cx);

    let continue_after = zigflow.then(|| continue_after(&document)).flatten();
    Some(Program {
        document: document?,
        input: input?,
        use_: use_?.unwrap_or_default(),
        do_: do_?,
        timeout: timeout?,
        output: output?,
        schedule: schedule?,
        evaluate: evaluate?.unwrap_or_default(),
        definition: at.node.to_json(),
        extensions: cx.extensions.clone(),
        task_limit: None,
        accumulates_data: zigflow,
        continue_after,
        search_attributes: std::mem::take(&mut cx.search_attributes),
    })
}

/// How many journal steps a Zigflow workflow keeps before it continues as new: its
/// `metadata.canMaxHistoryLength`, or [`CONTINUE_AFTER`].
fn continue_after(document: &Option<Document>) -> Option<u64> {
    let written = document
        .as_ref()
        .and_then(|d| d.metadata.get("canMaxHistoryLength"))
        .and_then(serde_json::Value::as_u64)
        .filter(|n| *n > 0);
    Some(written.unwrap_or(CONTINUE_AFTER))
}

/// The steps a Zigflow workflow's journal holds before it continues as new, where the
/// document does not say: skein's own bound (Zigflow relies on Temporal's suggestion).
const CONTINUE_AFTER: u64 = 10_000;

fn evaluate(cx: &mut Cx, at: &At) -> Option<Evaluate> {
    let mut obj = Obj::new(cx, at)?;
    let language = obj.opt(cx, "language", |cx, at| cx.one_of(at, &["jq"]));
    let mode = obj.opt(cx, "mode", |cx, at| cx.one_of(at, &["strict", "loose"]));
    obj.finish(cx);
    language?;
    let mode = match mode?.as_deref() {
        Some("loose") => Mode::Loose,
        _ => Mode::Strict,
    };
    Some(Evaluate { mode })
}

fn collect_use_names(cx: &mut Cx, at: &At) {
    let Kind::Map(sections) = &at.node.kind else {
        return;
    };
    for (key, value) in sections {
        let names: Vec<String> = match &value.kind {
            Kind::Map(entries) => entries
                .iter()
                .filter_map(|(k, _)| k.as_str().map(str::to_string))
                .collect(),
            Kind::Seq(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => continue,
        };
        let slot = match key.as_str() {
            Some("authentications") => &mut cx.names.authentications,
            Some("catalogs") => &mut cx.names.catalogs,
            Some("errors") => &mut cx.names.errors,
            Some("functions") => &mut cx.names.functions,
            Some("retries") => &mut cx.names.retries,
            Some("secrets") => &mut cx.names.secrets,
            Some("timeouts") => &mut cx.names.timeouts,
            _ => continue,
        };
        *slot = names;
    }
}

/// Whether the document is written in Zigflow's dialect: its `document` names a
/// Temporal `taskQueue` or `workflowType` instead of `namespace` and `name`.
pub(crate) fn is_zigflow(root: &At) -> bool {
    let Kind::Map(entries) = &root.node.kind else {
        return false;
    };
    entries.iter().any(|(k, v)| {
        k.as_str() == Some("document")
            && matches!(&v.kind, Kind::Map(doc) if doc.iter().any(|(k, _)| {
                matches!(k.as_str(), Some("taskQueue" | "workflowType"))
            }))
    })
}

fn document(cx: &mut Cx, at: &At) -> Option<Document> {
    let mut obj = Obj::new(cx, at)?;
    let dsl = obj.req(cx, "dsl", dsl_version);
    let zigflow = obj.has("taskQueue") || obj.has("workflowType");
    let (namespace, name) = if zigflow {
        // Zigflow's dialect: the Temporal task queue is the namespace, the workflow
        // type the name.
        for (dsl_key, zigflow_key) in [("namespace", "taskQueue"), ("name", "workflowType")] {
            if let Some(at) = obj.field(dsl_key) {
                cx.error(
                    at.anchor(),
                    &at.ptr,
                    format!(
                        "`{dsl_key}` and `{zigflow_key}` name the same thing: a Zigflow document gives `{zigflow_key}`"
                    ),
                );
            }
        }
        if let Some(at) = obj.field("taskQueue") {
            cx.extensions.push(ExtensionUse {
                name: "zigflow.document",
                path: at.ptr.as_str().to_string(),
                range: at.anchor(),
            });
        }
        (
            obj.req(cx, "taskQueue", task_queue),
            obj.req(cx, "workflowType", workflow_type),
        )
    } else {
        (
            obj.req(cx, "namespace", dns_label),
            obj.req(cx, "name", dns_label),
        )
    };
    let version = obj.req(cx, "version", semver);
    let title = obj.opt(cx, "title", Cx::string);
    let summary = obj.opt(cx, "summary", Cx::string);
    let tags = obj.opt(cx, "tags", Cx::json_map);
    if let Some(at) = obj.field("metadata") {
        cx.activity_written = zigflow_metadata(cx, &at);
    }
    let metadata = obj.opt(cx, "metadata", Cx::json_map);
    obj.finish(cx);
    Some(Document {
        dsl: dsl?,
        namespace: namespace?,
        name: name?,
        version: version?,
        title: title?,
        summary: summary?,
        tags: tags?.unwrap_or_default(),
        metadata: metadata?.unwrap_or_default(),
    })
}

fn semver(cx: &mut Cx, at: &At) -> Option<semver::Version> {
    let s = cx.string(at)?;
    match semver::Version::parse(&s) {
        Ok(v) => Some(v),
        Err(e) => {
            cx.error_help(
                at.node.range.clone(),
                &at.ptr,
                format!("{} `{s}` is not a semantic version: {e}", at.label()),
                "write it like `1.0.0` (and quote it in YAML: '1.0.0')",
            );
            None
        }
    }
}

fn dsl_version(cx: &mut Cx, at: &At) -> Option<semver::Version> {
    let v = semver(cx, at)?;
    if v.pre.is_empty() && DSL_VERSIONS.contains(&(v.major, v.minor, v.patch)) {
        return Some(v);
    }
    cx.error(
        at.node.range.clone(),
        &at.ptr,
        format!("DSL version {v} is not supported; skein reads Serverless Workflow 1.0.0 to 1.0.3"),
    );
    None
}

/// Zigflow's `metadata` keys that mean something to Temporal and that skein does not
/// apply, and why: reported as warnings, never dropped in silence.
const ZIGFLOW_METADATA: &[(&str, &str)] = &[(
    "heartbeat",
    "skein's workers report their liveness on their own; an activity heartbeat is not applied",
)];

/// Reads what a Zigflow document's or task's `metadata` means: its activity options
/// (returned), its search attributes (kept in `Cx`), and a warning for each key that
/// means something to Temporal and that skein does not apply.
pub(crate) fn zigflow_metadata(cx: &mut Cx, at: &At) -> Option<super::activity::ActivityOptions> {
    if !cx.zigflow {
        return None;
    }
    let Kind::Map(entries) = &at.node.kind else {
        return None;
    };
    let mut activity = None;
    for (key, value) in entries {
        let Some(name) = key.as_str() else { continue };
        let value_at = At {
            node: value,
            key: Some(key),
            ptr: at.ptr.key(name),
        };
        if name == "activityOptions" {
            activity = super::activity::options(cx, &value_at);
        } else if name == "searchAttributes" {
            // Labels of the execution, set when the task (or the workflow) starts.
            if let Some(template) = cx.template(&value_at) {
                let owner = at.ptr.as_str().strip_suffix("/metadata").unwrap_or("");
                let owner = if owner.is_empty() || owner == "/document" {
                    "/".to_string()
                } else {
                    owner.to_string()
                };
                cx.search_attributes.insert(owner, template);
            }
        } else if let Some((_, why)) = ZIGFLOW_METADATA.iter().find(|(k, _)| *k == name) {
            cx.warning(
                key.range.clone(),
                &at.ptr.key(name),
                format!("`metadata.{name}` is Zigflow's and is accepted, but not applied"),
                *why,
            );
        }
    }
    activity
}

/// A Zigflow `taskQueue`: a DNS label, as Zigflow requires.
fn task_queue(cx: &mut Cx, at: &At) -> Option<String> {
    let s = cx.string(at)?;
    if is_dns_label(&s) {
        return Some(s);
    }
    cx.error_help(
        at.node.range.clone(),
        &at.ptr,
        format!("the task queue `{s}` is not a DNS label, which Zigflow requires"),
        "use 1 to 63 letters, digits and inner hyphens, such as `orders`",
    );
    None
}

/// A Zigflow `workflowType`: a Temporal workflow type, here 1 to 63 letters, digits,
/// `-`, `_` and `.`.
fn workflow_type(cx: &mut Cx, at: &At) -> Option<String> {
    let s = cx.string(at)?;
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        return Some(s);
    }
    cx.error_help(
        at.node.range.clone(),
        &at.ptr,
        format!("the workflow type `{s}` is not a name skein can give a workflow"),
        "use 1 to 63 letters, digits, `-`, `_` and `.`",
    );
    None
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A namespace or workflow name: an RFC 1123 label, as the schema requires.
fn dns_label(cx: &mut Cx, at: &At) -> Option<String> {
    let s = cx.string(at)?;
    if is_dns_label(&s) {
        return Some(s);
    }
    cx.error_help(
        at.node.range.clone(),
        &at.ptr,
        format!("{} `{s}` is not a valid name", at.label()),
        "use 1 to 63 letters, digits and inner hyphens, such as `order-pet`",
    );
    None
}

fn use_(cx: &mut Cx, at: &At) -> Option<Use> {
    let mut obj = Obj::new(cx, at)?;
    let authentications = obj.opt(cx, "authentications", |cx, at| named(cx, at, auth::policy));
    let errors = obj.opt(cx, "errors", |cx, at| named(cx, at, error_def));
    let extensions = obj.opt(cx, "extensions", extensions);
    let functions = obj.opt(cx, "functions", |cx, at| {
        let entries = cx.entries(at)?;
        let decoded: Vec<Option<(String, program::Task)>> = entries
            .into_iter()
            .map(|(name, at)| {
                // A function is a single task: `then` has no sibling to name.
                cx.gotos.push(Vec::new());
                let t = task(cx, &at, &name);
                cx.check_gotos(&[]);
                t.map(|t| (name, t))
            })
            .collect();
        decoded.into_iter().collect()
    });
    let retries = obj.opt(cx, "retries", |cx, at| named(cx, at, retry_policy));
    let secrets = obj.opt(cx, "secrets", Cx::string_list);
    let timeouts = obj.opt(cx, "timeouts", |cx, at| named(cx, at, timeout));
    let catalogs = obj.opt(cx, "catalogs", |cx, at| named(cx, at, catalog));
    obj.finish(cx);
    Some(Use {
        authentications: authentications?.unwrap_or_default(),
        errors: errors?.unwrap_or_default(),
        extensions: extensions?.unwrap_or_default(),
        functions: functions?.unwrap_or_default(),
        retries: retries?.unwrap_or_default(),
        secrets: secrets?.unwrap_or_default(),
        timeouts: timeouts?.unwrap_or_default(),
        catalogs: catalogs?.unwrap_or_default(),
    })
}

/// A mapping of names to definitions decoded by `f`.
fn named<T>(
    cx: &mut Cx,
    at: &At,
    f: impl Fn(&mut Cx, &At) -> Option<T>,
) -> Option<IndexMap<String, T>> {
    let entries = cx.entries(at)?;
    let decoded: Vec<Option<(String, T)>> = entries
        .into_iter()
        .map(|(name, at)| f(cx, &at).map(|t| (name, t)))
        .collect();
    decoded.into_iter().collect()
}

fn extensions(cx: &mut Cx, at: &At) -> Option<Vec<(String, Extension)>> {
    let Some(items) = at.items() else {
        cx.expected(at, "a list of named extensions");
        return None;
    };
    let items: Vec<At> = items.collect();
    let mut out = Vec::new();
    let mut ok = true;
    for item in items {
        match single_entry(cx, &item, "extension") {
            Some((name, value)) => match extension(cx, &value) {
                Some(e) => out.push((name, e)),
                None => ok = false,
            },
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// An item of a named list (`- name: definition`), which must have exactly one entry.
pub(super) fn single_entry<'n>(cx: &mut Cx, item: &At<'n>, what: &str) -> Option<(String, At<'n>)> {
    let Kind::Map(entries) = &item.node.kind else {
        cx.error(
            item.node.range.clone(),
            &item.ptr,
            format!(
                "each {what} must be a mapping of one name to its definition, found {}",
                item.node.describe()
            ),
        );
        return None;
    };
    match entries.as_slice() {
        [(key, value)] => {
            let name = key.as_str().unwrap_or_default().to_string();
            Some((
                name.clone(),
                At {
                    node: value,
                    key: Some(key),
                    ptr: item.ptr.key(&name),
                },
            ))
        }
        [] => {
            cx.error(
                item.node.range.clone(),
                &item.ptr,
                format!("empty {what} entry"),
            );
            None
        }
        [_, (second, _), ..] => {
            let names: Vec<String> = entries
                .iter()
                .map(|(k, _)| format!("`{}`", k.as_str().unwrap_or_default()))
                .collect();
            cx.error_help(
                second.range.clone(),
                &item.ptr,
                format!(
                    "a {what} entry must have exactly one name, found {}",
                    names.join(", ")
                ),
                format!(
                    "indent the definition under the {what} name, two spaces deeper than the name"
                ),
            );
            None
        }
    }
}

fn extension(cx: &mut Cx, at: &At) -> Option<Extension> {
    let mut obj = Obj::new(cx, at)?;
    let extend = obj.req(cx, "extend", |cx, at| {
        cx.one_of(
            at,
            &[
                "call",
                "composite",
                "emit",
                "for",
                "listen",
                "raise",
                "run",
                "set",
                "switch",
                "try",
                "wait",
                "all",
            ],
        )
    });
    let when = obj.opt(cx, "when", Cx::expr);
    let before = obj.opt(cx, "before", task_list);
    let after = obj.opt(cx, "after", task_list);
    obj.finish(cx);
    Some(Extension {
        extend: extend?,
        when: when?,
        before: before?,
        after: after?,
    })
}

pub(super) fn input(cx: &mut Cx, at: &At) -> Option<Input> {
    let mut obj = Obj::new(cx, at)?;
    let schema = obj.opt(cx, "schema", schema);
    let from = obj.opt(cx, "from", Cx::transform);
    obj.finish(cx);
    Some(Input {
        schema: schema?,
        from: from?,
    })
}

pub(super) fn output(cx: &mut Cx, at: &At) -> Option<Output> {
    let mut obj = Obj::new(cx, at)?;
    let schema = obj.opt(cx, "schema", schema);
    let as_ = obj.opt(cx, "as", Cx::transform);
    obj.finish(cx);
    Some(Output {
        schema: schema?,
        as_: as_?,
    })
}

pub(super) fn export(cx: &mut Cx, at: &At) -> Option<Export> {
    let mut obj = Obj::new(cx, at)?;
    let schema = obj.opt(cx, "schema", schema);
    let as_ = obj.opt(cx, "as", Cx::transform);
    obj.finish(cx);
    Some(Export {
        schema: schema?,
        as_: as_?,
    })
}

fn schema(cx: &mut Cx, at: &At) -> Option<Schema> {
    let mut obj = Obj::new(cx, at)?;
    let format = obj.opt(cx, "format", |cx, at| {
        let f = cx.string(at)?;
        if f == "json" || f.starts_with("json:") {
            Some(f)
        } else {
            cx.error(
                at.node.range.clone(),
                &at.ptr,
                format!(
                    "schema format `{f}` is not supported; skein validates `json` (JSON Schema)"
                ),
            );
            None
        }
    });
    let document = obj.opt(cx, "document", |cx, at| match at.node.kind {
        Kind::Map(_) | Kind::Bool(_) => {
            let document = cx.json(at);
            // Compiled here, once: a broken schema is a load error, not a runtime one.
            match jsonschema::validator_for(&document) {
                Ok(validator) => Some((document, Arc::new(validator))),
                Err(e) => {
                    cx.error(
                        at.node.range.clone(),
                        &at.ptr,
                        format!("this is not a valid JSON Schema: {e}"),
                    );
                    None
                }
            }
        }
        _ => {
            cx.expected(at, "a JSON Schema (a mapping)");
            None
        }
    });
    let resource = obj.opt(cx, "resource", external_resource);
    let anchor = obj.at().anchor();
    let ptr = obj.at().ptr.clone();
    obj.finish(cx);
    let (source, compiled) = match (document?, resource?) {
        (Some((d, validator)), None) => (SchemaSource::Inline(d), Some(validator)),
        (None, Some(r)) => (SchemaSource::Resource(r), None),
        (None, None) => {
            cx.error(
                anchor,
                &ptr,
                "a schema needs `document` (inline) or `resource` (external)",
            );
            return None;
        }
        (Some(_), Some(_)) => {
            cx.error(
                anchor,
                &ptr,
                "a schema has either `document` or `resource`, not both",
            );
            return None;
        }
    };
    Some(Schema {
        format: format?.unwrap_or_else(|| "json".into()),
        source,
        compiled,
    })
}

fn schedule(cx: &mut Cx, at: &At) -> Option<Schedule> {
    let mut obj = Obj::new(cx, at)?;
    let every = obj.opt(cx, "every", Cx::duration);
    let cron = obj.opt(cx, "cron", cron);
    let after = obj.opt(cx, "after", Cx::duration);
    let on = obj.opt(cx, "on", super::task::consumption_strategy);
    obj.finish(cx);
    Some(Schedule {
        every: every?,
        cron: cron?,
        after: after?,
        on: on?,
    })
}

/// A cron expression: five fields (minute to weekday), or six with seconds first.
fn cron(cx: &mut Cx, at: &At) -> Option<String> {
    let s = cx.string(at)?;
    let fields = s.split_whitespace().count();
    if (5..=6).contains(&fields) {
        return Some(s);
    }
    cx.error_help(
        at.node.range.clone(),
        &at.ptr,
        format!("`{s}` is not a cron expression: it has {fields} fields"),
        "write five fields, minute hour day month weekday, such as `0 0 * * *`",
    );
    None
}

fn timeout(cx: &mut Cx, at: &At) -> Option<Timeout> {
    let mut obj = Obj::new(cx, at)?;
    let after = obj.req(cx, "after", Cx::duration);
    obj.finish(cx);
    Some(Timeout { after: after? })
}

/// A timeout given inline, or by the name of one in `use.timeouts`.
pub(super) fn timeout_ref(cx: &mut Cx, at: &At) -> Option<TimeoutRef> {
    match &at.node.kind {
        Kind::Str(_) => cx
            .reference(at, "timeout", Section::Timeouts)
            .map(TimeoutRef::Use),
        _ => timeout(cx, at).map(TimeoutRef::Inline),
    }
}

pub(super) fn error_def(cx: &mut Cx, at: &At) -> Option<ErrorDef> {
    let mut obj = Obj::new(cx, at)?;
    let type_ = obj.req(cx, "type", |cx, at| {
        let s = cx.string(at)?;
        if expr::strict_expression(&s).is_none() && !has_scheme(&s) {
            cx.error_help(
                at.node.range.clone(),
                &at.ptr,
                format!("error `type` `{s}` is not a URI"),
                "use a URI such as https://serverlessworkflow.io/spec/1.0.0/errors/runtime",
            );
            return None;
        }
        cx.text(at)
    });
    let status = obj.req(cx, "status", Cx::uint::<u16>);
    let instance = obj.opt(cx, "instance", |cx, at| {
        let s = cx.string(at)?;
        if expr::strict_expression(&s).is_none() && !(s.is_empty() || s.starts_with('/')) {
            cx.error(
                at.node.range.clone(),
                &at.ptr,
                format!("error `instance` `{s}` is not a JSON pointer such as `/do/0/task`"),
            );
            return None;
        }
        cx.text(at)
    });
    let title = obj.opt(cx, "title", Cx::text);
    let detail = obj.opt(cx, "detail", Cx::text);
    obj.finish(cx);
    Some(ErrorDef {
        type_: type_?,
        status: status?,
        instance: instance?,
        title: title?,
        detail: detail?,
        data: None,
    })
}

/// An error given inline, or by the name of one in `use.errors`.
pub(super) fn error_ref(cx: &mut Cx, at: &At) -> Option<ErrorRef> {
    match &at.node.kind {
        Kind::Str(_) => cx
            .reference(at, "error", Section::Errors)
            .map(ErrorRef::Use),
        _ => error_def(cx, at).map(|e| ErrorRef::Inline(Box::new(e))),
    }
}

pub(super) fn retry_policy(cx: &mut Cx, at: &At) -> Option<RetryPolicy> {
    let mut obj = Obj::new(cx, at)?;
    let when = obj.opt(cx, "when", Cx::expr);
    let except_when = obj.opt(cx, "exceptWhen", Cx::expr);
    let delay = obj.opt(cx, "delay", Cx::duration);
    let backoff = obj.opt(cx, "backoff", backoff);
    let limit = obj.opt(cx, "limit", retry_limit);
    let jitter = obj.opt(cx, "jitter", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let from = obj.req(cx, "from", Cx::duration);
        let to = obj.req(cx, "to", Cx::duration);
        obj.finish(cx);
        Some(Jitter {
            from: from?,
            to: to?,
        })
    });
    obj.finish(cx);
    Some(RetryPolicy {
        when: when?,
        except_when: except_when?,
        delay: delay?,
        backoff: backoff?.unwrap_or_default(),
        multiplier: None,
        max_delay: None,
        limit: limit?.unwrap_or_default(),
        jitter: jitter?,
    })
}

fn backoff(cx: &mut Cx, at: &At) -> Option<Backoff> {
    let mut obj = Obj::new(cx, at)?;
    let kinds = [
        ("constant", Backoff::Constant),
        ("exponential", Backoff::Exponential),
        ("linear", Backoff::Linear),
    ];
    let mut found = Vec::new();
    for key in obj.present(&["constant", "exponential", "linear"]) {
        let kind = kinds.iter().find(|(k, _)| *k == key).expect("listed").1;
        if let Some(value) = obj.field(key) {
            if !matches!(value.node.kind, Kind::Map(_) | Kind::Null) {
                cx.expected(&value, "a mapping (`{}`)");
            }
            found.push((kind, value));
        }
    }
    for key in ["constant", "exponential", "linear"] {
        obj.field(key); // candidates for "did you mean"
    }
    let anchor = obj.at().anchor();
    let ptr = obj.at().ptr.clone();
    obj.finish(cx);
    match found.as_slice() {
        [(kind, _)] => Some(*kind),
        [] => {
            cx.error(
                anchor,
                &ptr,
                "`backoff` needs one of `constant`, `exponential`, `linear`",
            );
            None
        }
        [_, (_, second), ..] => {
            cx.error(
                second.anchor(),
                &second.ptr,
                "`backoff` has more than one strategy; keep one",
            );
            None
        }
    }
}

fn retry_limit(cx: &mut Cx, at: &At) -> Option<RetryLimit> {
    let mut obj = Obj::new(cx, at)?;
    let attempt = obj.opt(cx, "attempt", |cx, at| {
        let mut obj = Obj::new(cx, at)?;
        let count = obj.opt(cx, "count", Cx::uint::<u32>);
        let duration = obj.opt(cx, "duration", Cx::duration);
        obj.finish(cx);
        Some((count?, duration?))
    });
    let duration = obj.opt(cx, "duration", Cx::duration);
    obj.finish(cx);
    let (attempt_count, attempt_duration) = attempt?.unwrap_or((None, None));
    Some(RetryLimit {
        attempt_count,
        attempt_duration,
        duration: duration?,
    })
}

/// A retry policy given inline, or by the name of one in `use.retries`.
pub(super) fn retry_ref(cx: &mut Cx, at: &At) -> Option<RetryRef> {
    match &at.node.kind {
        Kind::Str(_) => cx
            .reference(at, "retry policy", Section::Retries)
            .map(RetryRef::Use),
        _ => retry_policy(cx, at).map(RetryRef::Inline),
    }
}

fn catalog(cx: &mut Cx, at: &At) -> Option<Catalog> {
    let mut obj = Obj::new(cx, at)?;
    let endpoint = obj.req(cx, "endpoint", endpoint);
    obj.finish(cx);
    Some(Catalog {
        endpoint: endpoint?,
    })
}

pub(super) fn external_resource(cx: &mut Cx, at: &At) -> Option<ExternalResource> {
    let mut obj = Obj::new(cx, at)?;
    let name = obj.opt(cx, "name", Cx::string);
    let endpoint = obj.req(cx, "endpoint", endpoint);
    obj.finish(cx);
    Some(ExternalResource {
        name: name?,
        endpoint: endpoint?,
    })
}

/// A URI (with `{placeholders}`), a `${ }` expression, or `{ uri, authentication }`.
pub(super) fn endpoint(cx: &mut Cx, at: &At) -> Option<Endpoint> {
    match &at.node.kind {
        Kind::Str(_) => uri(cx, at).map(|uri| Endpoint {
            uri,
            authentication: None,
        }),
        Kind::Map(_) => {
            let mut obj = Obj::new(cx, at)?;
            let uri = obj.req(cx, "uri", uri);
            let authentication = obj.opt(cx, "authentication", auth::reference);
            obj.finish(cx);
            Some(Endpoint {
                uri: uri?,
                authentication: authentication?,
            })
        }
        _ => {
            cx.expected(at, "a URI or a mapping with `uri`");
            None
        }
    }
}

fn uri(cx: &mut Cx, at: &At) -> Option<Uri> {
    let s = cx.string(at)?;
    if expr::strict_expression(&s).is_some() {
        return cx.strict_expr(at).map(Uri::Expr);
    }
    if !has_scheme(&s) {
        cx.error_help(
            at.node.range.clone(),
            &at.ptr,
            format!("{} `{s}` is not an absolute URI", at.label()),
            "write it with a scheme, such as https://example.com/pets/{petId}, or as a `${ }` expression",
        );
        return None;
    }
    match expr::UriTemplate::parse(&s) {
        Ok(t) => Some(Uri::Template(t)),
        Err(e) => {
            let start = at.node.range.start
                + usize::from(cx.src[at.node.range.clone()].starts_with(['"', '\'']))
                + e.range.start;
            cx.error(start..start + e.range.len().max(1), &at.ptr, e.message);
            None
        }
    }
}

/// True if `s` starts with a URI scheme followed by `://`, as the schema's URI templates require.
pub(super) fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// A `use` section that names can refer to.
#[derive(Clone, Copy)]
pub(super) enum Section {
    Authentications,
    Catalogs,
    Errors,
    Functions,
    Retries,
    Secrets,
    Timeouts,
}

impl Section {
    fn key(self) -> &'static str {
        match self {
            Section::Authentications => "authentications",
            Section::Catalogs => "catalogs",
            Section::Errors => "errors",
            Section::Functions => "functions",
            Section::Retries => "retries",
            Section::Secrets => "secrets",
            Section::Timeouts => "timeouts",
        }
    }
}

impl Cx<'_> {
    pub(super) fn names_in(&self, section: Section) -> &[String] {
        match section {
            Section::Authentications => &self.names.authentications,
            Section::Catalogs => &self.names.catalogs,
            Section::Errors => &self.names.errors,
            Section::Functions => &self.names.functions,
            Section::Retries => &self.names.retries,
            Section::Secrets => &self.names.secrets,
            Section::Timeouts => &self.names.timeouts,
        }
    }

    /// A name that must be declared in a `use` section.
    pub(super) fn reference(&mut self, at: &At, what: &str, section: Section) -> Option<String> {
        let name = self.string(at)?;
        if self.names_in(section).contains(&name) {
            return Some(name);
        }
        let message = format!("{what} `{name}` is not defined in `use.{}`", section.key());
        let help = match expr::closest(&name, self.names_in(section).iter().map(String::as_str)) {
            Some(c) => format!("did you mean `{c}`?"),
            None if self.names_in(section).is_empty() => {
                format!("declare it under `use:` → `{}:`", section.key())
            }
            None => format!(
                "the defined names are {}",
                self.names_in(section)
                    .iter()
                    .map(|n| format!("`{n}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.error_help(at.node.range.clone(), &at.ptr, message, help);
        None
    }
}
