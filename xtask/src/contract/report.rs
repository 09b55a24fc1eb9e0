//! The few lines `cargo xtask contract` prints for each run, read from schemathesis' JSON
//! report: how many test cases, which checks failed on which operations, and the warnings.
//! Each failure itself, with the request that reproduces it and the server's answer, is in
//! schemathesis' own output above the summary.

use anyhow::{Context, Result};
use serde_json::Value;

/// The summary lines of the JSON report `text`.
///
/// # Errors
///
/// When `text` is not JSON.
pub(super) fn summarize(text: &str) -> Result<Vec<String>> {
    let report: Value = serde_json::from_str(text).context("the JSON report cannot be read")?;
    let count = |pointer: &str| report.pointer(pointer).and_then(Value::as_u64).unwrap_or(0);
    let errors = report.get("errors").and_then(Value::as_array).map_or(0, Vec::len);
    let mut lines = vec![format!(
        "{} test cases on {} operations, {} unique failures, {errors} errors",
        count("/test_cases/generated"),
        count("/operations/tested"),
        count("/test_cases/unique_failures"),
    )];
    for failure in report.get("failures").and_then(Value::as_array).into_iter().flatten() {
        let text = |key: &str| failure.get(key).and_then(Value::as_str).unwrap_or("?");
        lines.push(format!(
            "{} {} ({}): {}",
            text("code"),
            text("title"),
            failure.get("count").and_then(Value::as_u64).unwrap_or(0),
            names(failure.get("operations"))
        ));
    }
    let warnings = report.get("warnings").and_then(Value::as_object).into_iter().flatten();
    for (name, operations) in warnings {
        if operations.as_array().is_some_and(|operations| !operations.is_empty()) {
            lines.push(format!("warning {name}: {}", names(Some(operations))));
        }
    }
    Ok(lines)
}

/// The strings of a JSON array, comma-separated.
fn names(list: Option<&Value>) -> String {
    let names: Vec<&str> =
        list.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_becomes_counts_failures_by_check_and_warnings() {
        let report = r#"{
            "operations": {"total": 21, "tested": 21},
            "test_cases": {"generated": 454, "unique_failures": 3},
            "failures": [
                {"code": "ST103", "title": "Undocumented status code", "count": 2,
                 "operations": ["GET /auth/sessions", "POST /auth/login"]},
                {"code": "ST201", "title": "Schema-violating request accepted", "count": 1,
                 "operations": ["GET /plugins/hello/guestbook"]}
            ],
            "errors": [],
            "warnings": {"missing_auth": ["DELETE /auth/me"], "rate_limited": []}
        }"#;
        assert_eq!(
            summarize(report).unwrap(),
            [
                "454 test cases on 21 operations, 3 unique failures, 0 errors",
                "ST103 Undocumented status code (2): GET /auth/sessions, POST /auth/login",
                "ST201 Schema-violating request accepted (1): GET /plugins/hello/guestbook",
                "warning missing_auth: DELETE /auth/me",
            ]
        );
        assert!(summarize("not json").is_err());
    }
}
