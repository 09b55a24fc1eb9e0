//! Single flight: concurrent misses of one key run its loader once.
//!
//! The first caller to miss becomes the leader and runs the work; the others wait on a
//! watch channel for its outcome, success or error, which is shared with all of them. If
//! the leader is cancelled (its future dropped), the waiters notice the closed channel and
//! one of them takes over, so a caller that gives up never strands the rest.

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::LoadError;

type Outcome = Result<Arc<dyn Any + Send + Sync>, LoadError>;
type Slot = watch::Receiver<Option<Outcome>>;

/// The loads in progress, by key.
#[derive(Default)]
pub(crate) struct Flights {
    running: Mutex<HashMap<String, Slot>>,
}

enum Role {
    Leader(watch::Sender<Option<Outcome>>),
    Follower(Slot),
}

/// Removes the leader's entry however the leader ends.
struct Landing<'a> {
    flights: &'a Flights,
    key: &'a str,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        self.flights.running.lock().unwrap_or_else(PoisonError::into_inner).remove(self.key);
    }
}

impl Flights {
    /// Runs `work` for `key` unless a run for `key` is in progress, in which case it waits
    /// for that run's outcome instead.
    pub(crate) async fn run<T, F, Fut>(&self, key: &str, work: F) -> Result<T, LoadError>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, LoadError>>,
    {
        let sender = loop {
            let role = {
                let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
                match running.get(key) {
                    Some(slot) => Role::Follower(slot.clone()),
                    None => {
                        let (sender, slot) = watch::channel(None);
                        running.insert(key.to_owned(), slot);
                        Role::Leader(sender)
                    }
                }
            };
            match role {
                Role::Leader(sender) => break sender,
                Role::Follower(slot) => {
                    if let Some(outcome) = follow(slot).await {
                        return outcome;
                    }
                }
            }
        };
        let _landing = Landing { flights: self, key };
        let result = work().await;
        let shared = result.clone().map(|value| Arc::new(value) as Arc<_>);
        sender.send_replace(Some(shared));
        result
    }
}

/// The outcome of the run `slot` belongs to, or `None` when the caller must run again: the
/// leader was cancelled, or it loaded another type under the same key.
async fn follow<T: Clone + 'static>(mut slot: Slot) -> Option<Result<T, LoadError>> {
    let outcome = slot.wait_for(Option::is_some).await.ok()?;
    match outcome.as_ref()? {
        Ok(value) => value.downcast_ref::<T>().cloned().map(Ok),
        Err(error) => Some(Err(error.clone())),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_cancelled_leader_hands_over() {
        let flights = Arc::new(Flights::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let leader = {
            let (flights, runs) = (flights.clone(), runs.clone());
            tokio::spawn(async move {
                flights
                    .run("k", || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        std::future::pending::<Result<u32, LoadError>>().await
                    })
                    .await
            })
        };
        while runs.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let follower = {
            let (flights, runs) = (flights.clone(), runs.clone());
            tokio::spawn(async move {
                flights
                    .run("k", || async {
                        runs.fetch_add(1, Ordering::SeqCst);
                        Ok(7u32)
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        leader.abort();
        assert_eq!(follower.await.unwrap().unwrap(), 7);
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert!(flights.running.lock().unwrap().is_empty());
    }
}
