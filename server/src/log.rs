//! One-line logfmt records on stdout, for `kubectl logs` and the runbooks' greps, written by a
//! `tracing` subscriber: the code logs with `tracing::info!` and friends, and each request runs
//! in a span from tower-http whose fields (method, path) join the records logged inside it.
//!
//! A record: `ts_ms=<unix ms> level=<level> msg="<message>" key="value" ...`, span fields after
//! the event's own. Only `error` and `fatal` records may contain the words error, exception or
//! fatal: verify counts lines matching `error|exception|fatal`, so routine records must not trip
//! it (field names say `reason`, never `error`).
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the logfmt subscriber for the process (INFO and above). Call once, first thing.
pub fn init() {
    // Span fields are kept in logfmt too, so a record inside a request reads as one line.
    let _ = tracing_subscriber::fmt()
        .with_max_level(Level::INFO)
        .fmt_fields(LogfmtFields)
        .event_format(Logfmt)
        .with_writer(std::io::stdout)
        .try_init();
}

/// A record that ends the process: `level=fatal`, which `tracing` has no level for.
pub fn fatal(message: &str) {
    println!("ts_ms={} level=fatal msg={message:?}", now_ms());
}

fn now_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0)
}

struct Logfmt;

impl<S, N> FormatEvent<S, N> for Logfmt
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let mut fields = Pairs::default();
        event.record(&mut fields);
        write!(writer, "ts_ms={} level={level} msg={:?}{}", now_ms(), fields.message, fields.pairs)?;
        // The fields of the spans the event happened in, outermost first.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(formatted) = span.extensions().get::<FormattedFields<N>>() {
                    if !formatted.is_empty() {
                        write!(writer, " {formatted}")?;
                    }
                }
            }
        }
        writeln!(writer)
    }
}

/// Span fields as ` key="value"` pairs (the same quoting as an event's).
struct LogfmtFields;

impl<'writer> FormatFields<'writer> for LogfmtFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut pairs = Pairs::default();
        fields.record(&mut pairs);
        write!(writer, "{}", pairs.pairs.trim_start())
    }
}

/// An event's message and its other fields, each value quoted (`{:?}` of its text).
#[derive(Default)]
struct Pairs {
    message: String,
    pairs: String,
}

impl Visit for Pairs {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Pairs {
    fn record(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            let _ = write!(self.pairs, " {}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What the subscriber writes, captured.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn records_are_one_logfmt_line_with_the_spans_fields() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(Level::INFO)
            .fmt_fields(LogfmtFields)
            .event_format(Logfmt)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", method = "POST", uri = "/admin/reload");
            let _inside = span.enter();
            tracing::warn!(token_presented = false, "refused POST /admin/reload");
            tracing::debug!("not shown at INFO");
        });
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let line = lines[0];
        assert!(line.starts_with("ts_ms="), "{line}");
        assert!(
            line.ends_with(r#" level=warn msg="refused POST /admin/reload" token_presented="false" method="POST" uri="/admin/reload""#),
            "{line}"
        );
    }
}
