//! The request a log line belongs to, without a span per request.
//!
//! Every line written while a request is handled names its request id (and the plugin
//! whose route it is). A `tracing` span per request does that too, but creating, entering
//! and closing one costs more than a tenth of a small request's CPU time, and the log lines
//! are all that reads it unless another subscriber is plugged in. So by default the
//! middleware only marks the thread with a [`Label`] while it polls the request, and the
//! line formatter ([`WithRequest`]) appends `request_id` and `plugin` to each line written
//! under that mark. `log.request_span = true` switches to a real span (named `request`,
//! fields `id` and `plugin`) for subscribers that want spans, such as OpenTelemetry
//! exporters.
//!
//! The label only decorates log lines. What handlers need of their request travels in the
//! request's `RequestContext`; a line written on a task a handler spawned carries no label
//! (instrument that task with a span to name it).

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderValue;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::registry::LookupSpan;

/// Whether requests get a `tracing` span instead of a [`Label`] (`log.request_span`).
static REQUEST_SPANS: AtomicBool = AtomicBool::new(false);

/// Whether the middleware should open a span per request.
pub fn request_spans() -> bool {
    REQUEST_SPANS.load(Ordering::Relaxed)
}

pub(super) fn set_request_spans(enabled: bool) {
    REQUEST_SPANS.store(enabled, Ordering::Relaxed);
}

/// What a log line says of its request.
#[derive(Debug, Clone)]
pub struct Label {
    id: HeaderValue,
    plugin: Option<&'static str>,
}

impl Label {
    /// A label for request `id` on a route of `plugin`, if any.
    pub fn new(id: HeaderValue, plugin: Option<&'static str>) -> Self {
        Self { id, plugin }
    }

    fn id(&self) -> &str {
        self.id.to_str().unwrap_or("")
    }

    /// Runs `f` with this label on the thread's log lines.
    pub fn scope<R>(self, f: impl FnOnce() -> R) -> R {
        Self::scoped(Some(self), f).0
    }

    /// Runs `f` with `label` on the thread's log lines and gives the label back, to be
    /// used again for the next poll without a clone.
    pub fn scoped<R>(label: Option<Label>, f: impl FnOnce() -> R) -> (R, Option<Label>) {
        /// What to put back if `f` unwinds; `None` once put back.
        struct Restore(Option<Option<Label>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                if let Some(previous) = self.0.take() {
                    CURRENT.set(previous);
                }
            }
        }
        let mut restore = Restore(Some(CURRENT.replace(label)));
        let result = f();
        let label = CURRENT.replace(restore.0.take().flatten());
        (result, label)
    }
}

thread_local! {
    static CURRENT: Cell<Option<Label>> = const { Cell::new(None) };
    /// Where a labelled line is formatted before the label is added to it.
    static LINE: Cell<String> = const { Cell::new(String::new()) };
}

/// The label of the request being handled on this thread, if any.
fn current() -> Option<Label> {
    let label = CURRENT.take();
    CURRENT.set(label.clone());
    label
}

/// An event formatter adding the current [`Label`], if any, to each line `inner` formats:
/// ` request_id=… plugin=…` at the end of a text line, `"request_id"` and `"plugin"` as the
/// last keys of a JSON object.
#[derive(Debug)]
pub struct WithRequest<F> {
    inner: F,
    json: bool,
}

impl<F> WithRequest<F> {
    pub fn text(inner: F) -> Self {
        Self { inner, json: false }
    }

    pub fn json(inner: F) -> Self {
        Self { inner, json: true }
    }
}

impl<S, N, F> FormatEvent<S, N> for WithRequest<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(label) = current() else {
            return self.inner.format_event(ctx, writer, event);
        };
        // Taken out of (and put back in) the thread's buffer, so it is reused and never
        // borrowed across the formatting.
        let mut line = LINE.take();
        line.clear();
        let formatted = self.inner.format_event(ctx, Writer::new(&mut line), event);
        let result = formatted.and_then(|()| self.write_labelled(&mut writer, &line, &label));
        LINE.set(line);
        result
    }
}

impl<F> WithRequest<F> {
    fn write_labelled(&self, writer: &mut Writer<'_>, line: &str, label: &Label) -> fmt::Result {
        let end = if self.json { "}\n" } else { "\n" };
        let Some(body) = line.strip_suffix(end) else { return writer.write_str(line) };
        writer.write_str(body)?;
        if self.json {
            // An empty object has no key to follow.
            let separator = if body.ends_with('{') { "" } else { "," };
            write!(writer, "{separator}\"request_id\":")?;
            write_json_string(writer, label.id())?;
            if let Some(plugin) = label.plugin {
                writer.write_str(",\"plugin\":")?;
                write_json_string(writer, plugin)?;
            }
            writer.write_str("}\n")
        } else {
            writer.write_str(" request_id=")?;
            writer.write_str(label.id())?;
            if let Some(plugin) = label.plugin {
                writer.write_str(" plugin=")?;
                writer.write_str(plugin)?;
            }
            writer.write_str("\n")
        }
    }
}

/// `text` as a JSON string. Request ids are printable ASCII, so only `"` and `\` need
/// escaping.
fn write_json_string(writer: &mut Writer<'_>, text: &str) -> fmt::Result {
    writer.write_char('"')?;
    for piece in text.split_inclusive(['"', '\\']) {
        match piece.char_indices().last() {
            Some((index, quote @ ('"' | '\\'))) => {
                writer.write_str(&piece[..index])?;
                writer.write_char('\\')?;
                writer.write_char(quote)?;
            }
            _ => writer.write_str(piece)?,
        }
    }
    writer.write_char('"')
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::fmt::format;

    use super::*;

    fn lines(json: bool, emit: impl FnOnce()) -> String {
        let captured = super::super::Captured::default();
        let writer = captured.clone();
        let builder = tracing_subscriber::fmt().with_writer(move || writer.clone());
        if json {
            let format = format().json().without_time().with_current_span(false);
            let subscriber = builder.json().event_format(WithRequest::json(format)).finish();
            tracing::subscriber::with_default(subscriber, emit);
        } else {
            let format = format().without_time().with_target(false).with_ansi(false);
            let subscriber = builder
                .fmt_fields(super::super::fields::Fields)
                .event_format(WithRequest::text(format))
                .finish();
            tracing::subscriber::with_default(subscriber, emit);
        }
        captured.text()
    }

    fn label(id: &'static str, plugin: Option<&'static str>) -> Label {
        Label::new(HeaderValue::from_static(id), plugin)
    }

    #[test]
    fn text_lines_inside_a_request_name_it() {
        let out = lines(false, || {
            tracing::info!("before");
            label("abc123", Some("hello")).scope(|| tracing::warn!(n = 1, "inside"));
            label("def", None).scope(|| tracing::info!("core"));
            tracing::info!("after");
        });
        assert_eq!(
            out,
            " INFO before\n WARN inside n=1 request_id=abc123 plugin=hello\n \
             INFO core request_id=def\n INFO after\n"
        );
    }

    #[test]
    fn json_lines_inside_a_request_name_it() {
        let out = lines(true, || {
            label(r#"a"b\c"#, Some("hello")).scope(|| tracing::info!(n = 1, "inside"));
            tracing::info!("after");
        });
        let lines: Vec<serde_json::Value> =
            out.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        assert_eq!(lines[0]["request_id"], r#"a"b\c"#, "{out}");
        assert_eq!(lines[0]["plugin"], "hello", "{out}");
        assert_eq!(lines[0]["fields"]["n"], 1, "{out}");
        assert!(lines[1].get("request_id").is_none(), "{out}");
    }

    #[test]
    fn scopes_nest_and_restore() {
        label("outer", None).scope(|| {
            label("inner", None).scope(|| assert_eq!(current().unwrap().id(), "inner"));
            assert_eq!(current().unwrap().id(), "outer");
        });
        assert!(current().is_none());
    }
}
