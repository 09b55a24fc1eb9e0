//! [`Status`] and [`Cache::status`]: whether the cache can do its work, for readiness
//! probes.
//!
//! A cache whose Redis is away still answers (reads miss, writes fail), so the status
//! reports it degraded rather than down, and says what is wrong.

use serde::Serialize;

use super::Cache;
use crate::BackendKind;

/// Whether the cache can do its work, for readiness probes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Status {
    pub backend: BackendKind,
    /// False while Redis is unreachable or the invalidation channel is down.
    pub healthy: bool,
    /// `ok`, or what is wrong.
    pub detail: String,
}

impl Cache {
    /// Whether the backend is reachable (a Redis `PING`, bounded by the configured
    /// timeout) and, for `tiered`, whether invalidations are being received.
    pub async fn status(&self) -> Status {
        let backend = self.inner.kind;
        let Some(remote) = &self.inner.remote else {
            return Status { backend, healthy: true, detail: "ok".to_owned() };
        };
        let ping = tokio::time::timeout(remote.timeout(), remote.ping()).await;
        let problem = match ping {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error.to_string()),
            Err(_) => Some("Redis did not answer in time".to_owned()),
        };
        let deaf = self.inner.coherence.as_ref().is_some_and(|c| !c.listening());
        match (problem, deaf) {
            (None, false) => Status { backend, healthy: true, detail: "ok".to_owned() },
            (None, true) => Status {
                backend,
                healthy: false,
                detail: "degraded: not subscribed to invalidations yet; serving from Redis"
                    .to_owned(),
            },
            (Some(problem), _) => {
                Status { backend, healthy: false, detail: format!("degraded: {problem}") }
            }
        }
    }
}
