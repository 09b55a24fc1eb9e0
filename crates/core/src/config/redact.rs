//! Hiding secrets in the effective configuration that `xcore config show` prints.
//!
//! A value is hidden for what its key means, not for a word it contains: `smtp_password`
//! and `api_key` are secrets, `allow_credentials` (a switch) and `private_key_file` (a
//! path) are not. Sections need not declare anything, so a plugin's secrets are hidden
//! as soon as their keys are named the usual way.

/// Final words of a key that names a secret: `secret`, `smtp_password`, `bot_token`,
/// `client_credentials`.
const SECRET_NOUNS: [&str; 7] =
    ["secret", "password", "passwd", "passphrase", "token", "credential", "credentials"];

/// Last two words of a key that names a secret key: `private_key`, `api_key`.
const SECRET_KEYS: [&str; 5] = ["private", "api", "secret", "signing", "access"];

/// First words of a key that names a setting about a secret rather than the secret.
const SETTING_VERBS: [&str; 6] = ["allow", "enable", "disable", "require", "use", "rotate"];

/// Whether the value of `key` is a secret, judged by what the key means rather than by
/// what it contains: its last word must be a secret noun (`secret`, `password`, `token`,
/// …, or `key` after `private`, `api`, …) and its first word not a verb (`allow`,
/// `require`, …). So `smtp_password` and `api_key` are secrets;
/// `allow_credentials`, `token_ttl_secs`, `private_key_file` (a path) and the rate-limit
/// `key` (`ip`, `user`) are not.
fn names_a_secret(key: &str) -> bool {
    let key = key.to_lowercase();
    // `allow_credentials`, `require_token`: a setting about the thing, not the thing.
    if key.split(['_', '-']).next().is_some_and(|word| SETTING_VERBS.contains(&word)) {
        return false;
    }
    let mut words = key.rsplit(['_', '-']);
    match words.next() {
        Some("key" | "keys") => words.next().is_some_and(|word| SECRET_KEYS.contains(&word)),
        Some(last) => SECRET_NOUNS.contains(&last),
        None => false,
    }
}

/// `value` with secrets replaced by `"***"`, for printing: the value of any key that names
/// a secret (`secret`, `smtp_password`, `api_key`, …; see `names_a_secret`) unless it is
/// a switch or a table of settings (`allow_credentials = true`, `[auth.password]`), and the
/// password of any URL. Nulls are dropped, since TOML has none.
pub fn redacted(mut value: serde_json::Value) -> serde_json::Value {
    redact(&mut value);
    value
}

fn redact(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, value| !value.is_null());
            for (key, value) in map.iter_mut() {
                // A boolean says whether, never what; a table (`[auth.password]`) holds
                // settings whose own keys are judged.
                let setting = value.is_boolean() || value.is_object();
                if names_a_secret(key) && !setting {
                    *value = serde_json::Value::String("***".to_owned());
                } else {
                    redact(value);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact),
        serde_json::Value::String(text) if text.contains("://") => *text = redact_url(text),
        _ => {}
    }
}

/// `url` with its password, if any, replaced by `***`: the one after the user name and
/// those given as query parameters (`?password=…`, as PostgreSQL accepts).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    // The user information is in the authority, before the path, query or fragment: an
    // `@` after it is data.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{}", redact_query(tail))
}

/// `tail` (path, query and fragment of a URL) with the values of secret query parameters
/// replaced by `***`.
fn redact_query(tail: &str) -> String {
    let Some((path, query)) = tail.split_once('?') else { return tail.to_owned() };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if names_a_secret(name) || name.ends_with("password") => {
                format!("{name}=***")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let fragment = fragment.map(|fragment| format!("#{fragment}")).unwrap_or_default();
    format!("{path}?{}{fragment}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_url_passwords_are_redacted() {
        let value = serde_json::json!({
            "url": "postgres://app:hunter2@db:5432/app",
            "secret": "hunter2",
            "password": {"min_length": 8},
            "nested": [{"api_key": "k", "host": "smtp", "unset": null}],
        });
        assert_eq!(
            redacted(value),
            serde_json::json!({
                "url": "postgres://app:***@db:5432/app",
                "secret": "***",
                "password": {"min_length": 8},
                "nested": [{"api_key": "***", "host": "smtp"}],
            })
        );
    }

    /// Issue "Hardening", point 11: a key is a secret by what it means, not because it
    /// contains a word.
    #[test]
    fn secrets_are_recognised_by_what_the_key_means() {
        let check = |key: &str, value: serde_json::Value, secret: bool| {
            let shown = redacted(serde_json::json!({ key: value.clone() }));
            let expected = if secret { serde_json::json!("***") } else { value };
            assert_eq!(shown[key], expected, "{key}");
        };
        check("secret", "s3cr3t".into(), true);
        check("smtp_password", "s3cr3t".into(), true);
        check("bot-token", "s3cr3t".into(), true);
        check("client_credentials", "s3cr3t".into(), true);
        check("private_key", "-----BEGIN".into(), true);
        check("API_KEY", "s3cr3t".into(), true);
        check("pin_secret", 1234.into(), true);
        check("allow_credentials", true.into(), false);
        check("allow_credentials", "yes".into(), false);
        check("require_token", "always".into(), false);
        check("token_ttl_secs", 900.into(), false);
        check("refresh_ttl_secs", 900.into(), false);
        check("private_key_file", "ed25519.pem".into(), false);
        check("key", "ip".into(), false);
        check("secret_rotation", "daily".into(), false);
    }

    #[test]
    fn url_passwords_are_redacted_wherever_the_url_carries_them() {
        let check = |url: &str, expected: &str| assert_eq!(redact_url(url), expected, "{url}");
        check("postgres://app:hunter2@db:5432/app", "postgres://app:***@db:5432/app");
        check("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0");
        check("postgres://app@db/app", "postgres://app@db/app");
        check(
            "postgres://db/app?user=app&password=hunter2",
            "postgres://db/app?user=app&password=***",
        );
        check("postgres://db/app?sslpassword=hunter2#x", "postgres://db/app?sslpassword=***#x");
        check("https://example.com/a@b?q=1", "https://example.com/a@b?q=1");
        check("sqlite://data/xcore.db", "sqlite://data/xcore.db");
    }
}
