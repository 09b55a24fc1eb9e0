//! How the text format writes fields: `name=value`, space-separated, the message first.
//!
//! `tracing-subscriber`'s default field formatter styles every name and value through
//! `format_args!`, which was most of what a request span cost (a span formats its fields
//! once, when it is created). This one writes plain strings straight to the output and
//! only goes through `fmt` for values that are not strings. Control characters are always
//! escaped, so a value cannot forge a line or a terminal escape sequence.

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::Writer;

/// The field formatter of the text log format.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields;

impl<'a> MakeVisitor<Writer<'a>> for Fields {
    type Visitor = Visitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Visitor<'a> {
        let ansi = writer.has_ansi_escapes();
        Visitor {
            out: Staged { writer, buffer: [0; STAGE], len: 0 },
            ansi,
            empty: true,
            result: Ok(()),
        }
    }
}

/// Bytes gathered before they are written out: a span's fields are written into a new,
/// empty `String`, which one write sizes once instead of growing it piece by piece.
const STAGE: usize = 192;

/// Writes one set of fields; see [`Fields`].
#[derive(Debug)]
pub struct Visitor<'a> {
    out: Staged<'a>,
    ansi: bool,
    empty: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    /// Writes the separator and `name=`, or nothing but the separator for the message.
    fn start(&mut self, field: &Field) -> fmt::Result {
        if self.empty {
            self.empty = false;
        } else {
            self.out.write_str(" ")?;
        }
        let name = field.name();
        if name == "message" {
            return Ok(());
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        if self.ansi {
            self.out.write_str("\x1b[3m")?;
            self.out.write_str(name)?;
            self.out.write_str("\x1b[0m\x1b[2m=\x1b[0m")
        } else {
            self.out.write_str(name)?;
            self.out.write_str("=")
        }
    }

    fn write_str_value(&mut self, field: &Field, value: &str) -> fmt::Result {
        self.start(field)?;
        let class = value.bytes().fold(0, |class, byte| class | CLASS[usize::from(byte)]);
        let message = field.name() == "message";
        if !message && (class & QUOTE != 0 || value.is_empty()) {
            return write!(self.out, "{value:?}");
        }
        if class & ESCAPE != 0 {
            return Escaped(&mut self.out).write_str(value);
        }
        self.out.write_str(value)
    }

    fn write_debug_value(&mut self, field: &Field, value: &dyn fmt::Debug) -> fmt::Result {
        self.start(field)?;
        write!(Escaped(&mut self.out), "{value:?}")
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_ok() && !is_log_metadata(field) {
            self.result = self.write_str_value(field, value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() && !is_log_metadata(field) {
            self.result = self.write_debug_value(field, value);
        }
    }
}

impl VisitOutput<fmt::Result> for Visitor<'_> {
    fn finish(mut self) -> fmt::Result {
        self.result?;
        self.out.flush()
    }
}

impl VisitFmt for Visitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.out
    }
}

/// The visitor's output: a small buffer in front of the writer.
struct Staged<'a> {
    writer: Writer<'a>,
    buffer: [u8; STAGE],
    len: usize,
}

impl Staged<'_> {
    fn flush(&mut self) -> fmt::Result {
        let staged = std::str::from_utf8(&self.buffer[..self.len]).map_err(|_| fmt::Error)?;
        self.len = 0;
        self.writer.write_str(staged)
    }
}

impl fmt::Write for Staged<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        if self.len + text.len() > STAGE {
            self.flush()?;
            if text.len() > STAGE {
                return self.writer.write_str(text);
            }
        }
        self.buffer[self.len..self.len + text.len()].copy_from_slice(text.as_bytes());
        self.len += text.len();
        Ok(())
    }
}

impl fmt::Debug for Staged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged").field("len", &self.len).finish_non_exhaustive()
    }
}

/// Fields the `log` bridge adds, which the line format already shows.
fn is_log_metadata(field: &Field) -> bool {
    field.name().starts_with("log.")
}

/// A byte that makes a field value need quotes: space, `"` or `=`.
const QUOTE: u8 = 1;
/// A byte that may start a control character: C0 but tab, DEL, and 0xC2, the first byte of
/// C1 characters (U+0080 to U+009F) in UTF-8.
const ESCAPE: u8 = 2;

/// The class of every byte, so a value is checked in one pass.
static CLASS: [u8; 256] = {
    let mut class = [0; 256];
    let mut byte = 0;
    while byte < 0x20 {
        class[byte] = ESCAPE;
        byte += 1;
    }
    class[b'\t' as usize] = 0;
    class[0x7f] = ESCAPE;
    class[0xc2] = ESCAPE;
    class[b' ' as usize] = QUOTE;
    class[b'"' as usize] = QUOTE;
    class[b'=' as usize] = QUOTE;
    class
};

/// Passes text through, escaping control characters (C0 but tab, DEL and C1).
struct Escaped<'w, 'a>(&'w mut Staged<'a>);

impl fmt::Write for Escaped<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let is_control = |ch: char| ch.is_control() && ch != '\t';
        if text.bytes().all(|byte| CLASS[usize::from(byte)] & ESCAPE == 0) {
            return self.0.write_str(text);
        }
        for ch in text.chars() {
            if is_control(ch) {
                write!(self.0, "{}", ch.escape_default())?;
            } else {
                self.0.write_char(ch)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Formats the fields of one event the way the text log does (without colours).
    fn formatted(emit: impl FnOnce()) -> String {
        let captured = super::super::Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(Fields)
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        captured.text().trim_end().to_owned()
    }

    #[test]
    fn writes_message_then_fields() {
        let line = formatted(|| tracing::info!(count = 3, name = "hello", "applied"));
        assert_eq!(line, "applied count=3 name=hello");
    }

    #[test]
    fn quotes_strings_that_would_be_ambiguous() {
        let line = formatted(|| tracing::info!(path = "/a b", empty = "", eq = "a=b", "m"));
        assert_eq!(line, r#"m path="/a b" empty="" eq="a=b""#);
    }

    #[test]
    fn escapes_control_characters_everywhere() {
        let line = formatted(|| tracing::info!(value = "x\x1b[31my", "line\nbreak"));
        assert_eq!(line, r"line\nbreak value=x\u{1b}[31my");
        let debug = formatted(|| tracing::info!(value = ?"\x07", "m"));
        assert_eq!(debug, r#"m value="\u{7}""#);
    }

    #[test]
    fn spans_carry_their_fields_into_lines() {
        let line = formatted(|| {
            let span = tracing::info_span!("request", id = "abc", plugin = "hello");
            let _entered = span.enter();
            tracing::info!("inside");
        });
        assert_eq!(line, "request{id=abc plugin=hello}: inside");
    }
}
