//! Logs and traces for every command: what level of logs (`--log-level`, `SKEIN_LOG`, in
//! the `RUST_LOG` filter syntax), in which format (text, or JSON with the fields Cloud
//! Logging reads: `severity`, `message`, `time`, the trace and span), and, when the
//! standard `OTEL_*` variables ask for it, OpenTelemetry traces sent over OTLP/HTTP.
//!
//! Traces are off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (or `OTEL_TRACES_EXPORTER=otlp`), and
//! `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none` turn them off again. With them
//! on, the W3C `traceparent` propagator is installed, so that HTTP calls and worker
//! requests carry the trace (`runtime::trace`).

use std::fmt;

use opentelemetry::trace::TracerProvider as _;
use serde_json::{Map, Value, json};
use tracing::{Event, Subscriber, field::Field};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The target of the spans the engine and the worker open for traces.
const SPANS: &str = "otel";

/// How log lines look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One readable line per event.
    #[default]
    Text,
    /// One JSON object per line, with Cloud Logging's field names.
    Json,
}

/// Keeps the trace exporter alive; dropping it sends what is left.
pub(crate) struct Telemetry {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("skein: traces: the last spans could not be sent: {e}");
        }
    }
}

/// The filter: the flag, else `SKEIN_LOG`, else `LOG_LEVEL` (seed 003's name), else
/// `RUST_LOG`, else `info`.
fn filter(level: Option<&str>) -> Result<EnvFilter, String> {
    let (text, from) = match level {
        Some(level) => (level.to_string(), "--log-level"),
        None => ["SKEIN_LOG", "LOG_LEVEL", "RUST_LOG"]
            .into_iter()
            .find_map(|name| {
                let value = std::env::var(name).ok()?;
                (!value.trim().is_empty()).then_some((value, name))
            })
            .unwrap_or_else(|| ("info".to_string(), "the default")),
    };
    // Dependencies speak at `warn` unless the filter names them.
    let text = text.trim().to_ascii_lowercase();
    let directives = if text.contains('=') || text.contains(',') {
        text.clone()
    } else {
        format!(
            "warn,skein={text},api={text},engine={text},runtime={text},bridge={text},worker={text},store={text}"
        )
    };
    EnvFilter::try_new(&directives).map_err(|e| {
        format!("{from}: `{text}` is not a log filter (such as `debug` or `info,api=debug`): {e}")
    })
}

/// Whether the `OTEL_*` variables ask for traces.
fn traces_wanted() -> bool {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return false;
    }
    match var("OTEL_TRACES_EXPORTER").as_deref() {
        Some("none") => false,
        Some("otlp") => true,
        Some(_) => false,
        None => {
            var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        }
    }
}

/// Installs logging (and tracing when asked for) for the process.
pub(crate) fn init(level: Option<&str>, format: LogFormat) -> Result<Telemetry, String> {
    let filter = filter(level)?;
    let provider = if traces_wanted() {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(|e| format!("OTEL_EXPORTER_OTLP_*: {e}"))?;
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
            resource = resource.with_service_name("skein");
        }
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        Some(provider)
    } else {
        None
    };
    // Each layer filters for itself. The spans of executions, tasks and calls have the
    // target `otel`, which only the trace exporter takes: without traces they are never
    // created, and they do not crowd the log lines.
    // Not an `Option` layer: `None` would count as interested in everything, and every
    // span would be created for nothing.
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    if let Some(provider) = &provider {
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("skein"))
            .with_filter(Targets::new().with_target(SPANS, tracing::Level::TRACE));
        layers.push(otel.boxed());
    }
    let writer = std::io::stderr;
    let lines = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_target(false)
            .with_ansi(false)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .event_format(CloudLogging::from_env())
            .with_filter(filter)
            .boxed(),
    };
    layers.push(lines);
    let installed = tracing_subscriber::registry().with(layers).try_init();
    installed.map_err(|e| format!("cannot install logging: {e}"))?;
    Ok(Telemetry { provider })
}

/// The JSON line format: Cloud Logging's structured fields.
struct CloudLogging {
    /// The Google Cloud project, to write trace names as Cloud Trace wants them.
    project: Option<String>,
}

impl CloudLogging {
    fn from_env() -> CloudLogging {
        CloudLogging {
            project: ["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "GCLOUD_PROJECT"]
                .into_iter()
                .find_map(|v| std::env::var(v).ok().filter(|p| !p.is_empty())),
        }
    }
}

/// The fields of an event or span, as JSON.
#[derive(Default)]
struct Fields(Map<String, Value>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), json!(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().into(), json!(format!("{value:?}")));
    }
}

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut line = Map::new();
        let severity = match *event.metadata().level() {
            tracing::Level::ERROR => "ERROR",
            tracing::Level::WARN => "WARNING",
            tracing::Level::INFO => "INFO",
            _ => "DEBUG",
        };
        line.insert("severity".into(), json!(severity));
        line.insert(
            "message".into(),
            fields.0.remove("message").unwrap_or(json!("")),
        );
        line.insert("time".into(), json!(jiff::Timestamp::now().to_string()));
        line.insert("target".into(), json!(event.metadata().target()));
        // The spans the event is in, outermost first, with their fields.
        if let Some(scope) = ctx.event_scope() {
            let mut spans = Vec::new();
            for span in scope.from_root() {
                let mut entry = json!({"name": span.name()});
                let extensions = span.extensions();
                if let Some(f) = extensions.get::<tracing_subscriber::fmt::FormattedFields<N>>()
                    && !f.is_empty()
                {
                    entry["fields"] = json!(f.as_str());
                }
                spans.push(entry);
            }
            if !spans.is_empty() {
                line.insert("spans".into(), Value::Array(spans));
            }
        }
        let context = tracing::Span::current().context();
        let span = context.span();
        let trace = span.span_context();
        if trace.is_valid() {
            let id = trace.trace_id().to_string();
            line.insert(
                "logging.googleapis.com/trace".into(),
                json!(match &self.project {
                    Some(project) => format!("projects/{project}/traces/{id}"),
                    None => id,
                }),
            );
            line.insert(
                "logging.googleapis.com/spanId".into(),
                json!(trace.span_id().to_string()),
            );
            line.insert(
                "logging.googleapis.com/trace_sampled".into(),
                json!(trace.is_sampled()),
            );
        }
        for (k, v) in fields.0 {
            line.entry(k).or_insert(v);
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_level_applies_to_skein_and_a_filter_passes_through() {
        assert!(
            filter(Some("debug"))
                .unwrap()
                .to_string()
                .contains("api=debug")
        );
        let custom = filter(Some("info,api=trace")).unwrap().to_string();
        assert!(custom.contains("api=trace"), "{custom}");
        let err = filter(Some("info,api=loud")).unwrap_err();
        assert!(err.contains("--log-level"), "{err}");
    }
}
