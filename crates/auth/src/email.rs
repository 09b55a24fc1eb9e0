//! What an email address must look like here, as a check ([`check_email`]) and as the
//! regular expression the OpenAPI document states ([`EMAIL_PATTERN`]), and the key an
//! account is found by.

use crate::accounts::AccountError;

/// The longest email accepted (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;

/// The key an email is unique and found by: trimmed and lower-cased.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks the shape of an email: one `@` between a non-empty local part and a domain
/// with a dot, at most [`MAX_EMAIL_LEN`] characters, and none of: whitespace (around it
/// too: it is refused, not trimmed, as the document's pattern says), control
/// characters (NUL cannot even be stored by PostgreSQL), bidirectional formatting
/// characters (which make an address display as another), or the characters of markup and
/// of RFC 5322's specials (`<>()[]\,;:"`), which an address outside quotes cannot hold.
/// Whether it receives mail is for a verification email to say.
///
/// # Errors
///
/// [`AccountError::InvalidEmail`], with the address escaped so that it shows what was
/// sent.
pub fn check_email(email: &str) -> Result<(), AccountError> {
    let valid = email.chars().count() <= MAX_EMAIL_LEN
        && !email.chars().any(forbidden_in_email)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.split('.').count() >= 2
                && domain.split('.').all(|label| !label.is_empty())
        });
    if valid { Ok(()) } else { Err(AccountError::InvalidEmail(email.escape_debug().to_string())) }
}

/// What [`forbidden_in_email`] refuses, as the inside of a regular-expression class:
/// controls and whitespace (Rust's sets, listed, since regular-expression engines
/// disagree on `\s`), bidirectional formatting, and the characters of markup and quoting.
macro_rules! forbidden {
    () => {
        "\\u0000-\\u0020\\u007F-\\u00A0\\u1680\\u2000-\\u200A\\u200E\\u200F\\u2028-\\u202F\\u205F\\u2066-\\u2069\\u3000\\u061C<>()\\[\\]\\\\,;:\""
    };
}

/// [`check_email`] as a regular expression, for the OpenAPI document: an address with no
/// character [`forbidden_in_email`] refuses, a non-empty local part and at least two
/// non-empty domain labels.
pub const EMAIL_PATTERN: &str =
    concat!("^[^@", forbidden!(), "]+@[^@.", forbidden!(), "]+(\\.[^@.", forbidden!(), "]+)+$");

/// Characters no email address here may hold.
pub(crate) fn forbidden_in_email(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || matches!(c, '<' | '>' | '(' | ')' | '[' | ']' | '\\' | ',' | ';' | ':' | '"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_email_pattern_says_what_check_email_does() {
        let pattern = regex::Regex::new(EMAIL_PATTERN).unwrap();
        let samples = [
            "ada@example.com",
            "a@b.c",
            "Ada.Lovelace+tag@sub.example.org",
            "émile@exämple.fr",
            "a&b'c{d}@example.com",
            "x@y",
            "@example.com",
            "a@",
            "a@b..c",
            "a@.b",
            "a@b.",
            "a@@b.c",
            "a@b@c.d",
            " ada@example.com",
            "ada@example.com ",
            "a b@c.d",
            "a\u{0}b@c.d",
            "a\u{85}@c.d",
            "a\u{a0}@c.d",
            "a\u{200b}@c.d",
            "a\u{200e}@c.d",
            "a\u{202e}@c.d",
            "a\u{feff}@c.d",
            "<a>@c.d",
            "a(b)@c.d",
            "a\\b@c.d",
            "a,b@c.d",
            "a;b@c.d",
            "a:b@c.d",
            "\"a\"@c.d",
            "a@[1.2.3.4]",
            "a@c.d\u{3000}",
        ];
        for sample in samples {
            assert_eq!(
                pattern.is_match(sample),
                check_email(sample).is_ok(),
                "{}",
                sample.escape_debug()
            );
        }
    }

    #[test]
    fn email_shapes() {
        for good in ["a@b.co", "first.last+tag@example.co.uk"] {
            assert!(check_email(good).is_ok(), "{good}");
        }
        // Surrounding whitespace is refused rather than trimmed: the document's pattern
        // says what the server takes, exactly.
        for bad in
            ["", "plain", "@example.com", "a@", "a@b", "a@b.", "a b@c.de", "a@b@c.de", " a@b.co"]
        {
            assert!(check_email(bad).is_err(), "{bad}");
        }
        // Regression (issue "Hardening"): NUL, controls, bidirectional overrides and
        // markup were accepted.
        for bad in [
            "a\0b@example.com",
            "a\u{7}@example.com",
            "evil\u{202E}moc.elpmaxe@example.com",
            "a\u{2066}b@example.com",
            "<script>@example.com",
            "a\"b@example.com",
            "a@exa(mple).com",
        ] {
            assert!(check_email(bad).is_err(), "{bad:?}");
        }
        let Err(AccountError::InvalidEmail(shown)) = check_email("a\u{202E}\0@x.com") else {
            panic!("refused")
        };
        assert_eq!(shown, "a\\u{202e}\\0@x.com");
        assert!(check_email(&format!("{}@example.com", "a".repeat(250))).is_err());
    }
}
