//! Where a value named by a JSON pointer (`/groups/3/members/1`) starts in a JSON text.
//!
//! serde_json reports the line of a syntax or shape error, but once a file has been read
//! into types the text positions are gone, and keeping a position beside every value
//! would cost on every import for the sake of the rare refused one. So the position of
//! an inconsistency is found afterwards, by walking the text along the pointer: a small
//! scanner that skips what is not on the path and never builds a value. It runs only on
//! a text that serde_json has already accepted, so it does not validate; on anything
//! unexpected it gives up and the error goes without a position.

use super::Position;

/// Where the value at `pointer` (RFC 6901) starts in `text`, or `None` when there is none.
pub(super) fn locate(text: &str, pointer: &str) -> Option<Position> {
    let mut scanner = Scanner { bytes: text.as_bytes(), at: 0 };
    scanner.whitespace();
    if !pointer.is_empty() {
        for segment in pointer.strip_prefix('/')?.split('/') {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            match scanner.peek()? {
                b'{' => scanner.member(&segment)?,
                b'[' => scanner.element(segment.parse().ok()?)?,
                _ => return None,
            }
        }
    }
    Some(position(text, scanner.at))
}

/// The line and column of byte `at` of `text`.
fn position(text: &str, at: usize) -> Position {
    let before = &text[..at];
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    Position {
        line: before.matches('\n').count() + 1,
        column: before[line_start..].chars().count() + 1,
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Expects `byte` (after whitespace) and steps over it.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.whitespace();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// Steps over the string starting here: its text, quotes included.
    fn string(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        if self.peek()? != b'"' {
            return None;
        }
        self.at += 1;
        loop {
            match self.peek()? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self.bytes.get(start..self.at);
                }
                _ => self.at += 1,
            }
        }
    }

    /// Steps over the value starting here.
    fn skip_value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => {
                let mut depth = 0_usize;
                loop {
                    match self.peek()? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.at += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.at += 1;
                }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.at += 1;
                }
                Some(())
            }
        }
    }

    /// In the object starting here, moves to the value of `key` (its last occurrence
    /// would be what a reader keeps, but serde refuses repeated keys first).
    fn member(&mut self, key: &str) -> Option<()> {
        self.expect(b'{')?;
        loop {
            self.whitespace();
            let raw = self.string()?;
            self.expect(b':')?;
            self.whitespace();
            if decode(raw)? == key {
                return Some(());
            }
            self.skip_value()?;
            self.expect(b',')?;
        }
    }

    /// In the array starting here, moves to element `index`.
    fn element(&mut self, index: usize) -> Option<()> {
        self.expect(b'[')?;
        for _ in 0..index {
            self.whitespace();
            self.skip_value()?;
            self.expect(b',')?;
        }
        self.whitespace();
        (self.peek()? != b']').then_some(())
    }
}

/// The text of a JSON string, quotes included in `raw`.
fn decode(raw: &[u8]) -> Option<String> {
    let raw = std::str::from_utf8(raw).ok()?;
    if raw.contains('\\') {
        serde_json::from_str(raw).ok()
    } else {
        raw.get(1..raw.len() - 1).map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{
    "users": [
        {"id": "a/b", "username": "Zoé [x] {y}", "metadata": {"k": [1, {"z": "]"}]}},
        {"id": 7, "username": "Ren\"é", "tags": []}
    ],
    "groups": [],
    "r\u00f4les": {"~a": "owner"},
    "n": -1.5e3
}"#;

    fn check(pointer: &str, expected: Option<(usize, usize)>) {
        let found = locate(TEXT, pointer).map(|p| (p.line, p.column));
        assert_eq!(found, expected, "{pointer}");
    }

    #[test]
    fn finds_values_along_the_pointer() {
        check("", Some((1, 1)));
        check("/users", Some((2, 14)));
        check("/users/0", Some((3, 9)));
        check("/users/0/id", Some((3, 16)));
        check("/users/0/metadata/k/1/z", Some((3, 78)));
        check("/users/1", Some((4, 9)));
        check("/users/1/username", Some((4, 31)));
        check("/users/1/tags", Some((4, 49)));
        check("/groups", Some((6, 15)));
        check("/n", Some((8, 10)));
    }

    #[test]
    fn decodes_escaped_keys_and_pointer_escapes() {
        check("/rôles/~0a", Some((7, 26)));
    }

    #[test]
    fn counts_columns_in_characters() {
        check("/users/0/metadata", Some((3, 62)));
    }

    #[test]
    fn a_missing_value_has_no_position() {
        check("/users/2", None);
        check("/users/0/nothing", None);
        check("/groups/0", None);
        check("/users/x", None);
        check("/n/0", None);
        check("users", None);
    }
}
