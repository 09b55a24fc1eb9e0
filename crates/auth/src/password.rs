//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (about 20 ms and 19 MiB with OWASP's parameters), so it
//! runs on the blocking pool, never on a runtime worker, and at most
//! [`PasswordConfig::max_concurrent`] at once: a flood of logins queues for the hashing
//! permits instead of starving every other request of threads and memory. Verifying a
//! login for an account that does not exist runs the same computation against a dummy
//! hash, so response time does not tell which emails are registered. Hashes made with
//! other parameters still verify, and say so ([`Verified::needs_rehash`]) so the caller
//! can store a new hash while it has the password.

use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, Semaphore};

/// The password section of the auth config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// Memory per hash, in KiB (OWASP: 19456, that is 19 MiB).
    pub memory_kib: u32,
    /// Passes over the memory (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
    /// Hashes computed at once; more wait. Each holds `memory_kib` while it runs.
    pub max_concurrent: usize,
    /// Shortest password accepted, in characters.
    pub min_length: usize,
    /// Longest password accepted, in characters: hashing cost grows with the input.
    pub max_length: usize,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            max_concurrent: std::thread::available_parallelism().map_or(2, usize::from),
            min_length: 8,
            max_length: 128,
        }
    }
}

/// What hashing or verifying can fail with (not a wrong password: see [`Verified`]).
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
    #[error("`max_concurrent` must be at least 1")]
    NoConcurrency,
    #[error("hashing failed: {0}")]
    Hash(String),
    #[error("the hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a new password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("a password needs at least {min} characters")]
    TooShort { min: usize },
    #[error("a password may have at most {max} characters")]
    TooLong { max: usize },
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// Whether the password matches.
    pub matches: bool,
    /// Whether the stored hash was made with other parameters than the configured ones:
    /// on a match, hash the password again and store the new hash.
    pub needs_rehash: bool,
}

/// Hashes and verifies passwords; clones share the permits.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    permits: Semaphore,
    min_length: usize,
    max_length: usize,
    /// A hash of a random password with the configured parameters, checked for unknown
    /// accounts; made on first use.
    dummy: OnceCell<String>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords").field("params", &self.inner.params).finish_non_exhaustive()
    }
}

impl Passwords {
    /// A hasher with `config`'s parameters.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Params`] for parameters argon2 refuses (such as less memory than
    /// 8 KiB per lane), [`PasswordError::NoConcurrency`].
    pub fn new(config: &PasswordConfig) -> Result<Self, PasswordError> {
        let params = Params::new(config.memory_kib, config.iterations, config.parallelism, None)
            .map_err(|error| PasswordError::Params(error.to_string()))?;
        if config.max_concurrent == 0 {
            return Err(PasswordError::NoConcurrency);
        }
        let inner = Inner {
            params,
            permits: Semaphore::new(config.max_concurrent),
            min_length: config.min_length,
            max_length: config.max_length,
            dummy: OnceCell::new(),
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Checks a new password against the policy (length in characters).
    ///
    /// # Errors
    ///
    /// The [`PolicyError`] that says what to change.
    pub fn check_policy(&self, password: &str) -> Result<(), PolicyError> {
        let length = password.chars().count();
        if length < self.inner.min_length {
            return Err(PolicyError::TooShort { min: self.inner.min_length });
        }
        if length > self.inner.max_length {
            return Err(PolicyError::TooLong { max: self.inner.max_length });
        }
        Ok(())
    }

    /// The PHC string (`$argon2id$v=19$m=…`) of `password` with a random salt.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Hash`] or [`PasswordError::Task`] if the computation fails.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        self.blocking(move |argon2| {
            argon2
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| PasswordError::Hash(error.to_string()))
        })
        .await
    }

    /// Whether `password` matches `hash`, the stored hash of the account, or `None` when
    /// there is no such account: then a dummy hash is checked, at the same cost, and the
    /// answer is no.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Task`] if the computation fails; a malformed stored hash is a
    /// mismatch that needs rehashing, not an error.
    pub async fn verify(
        &self,
        password: &str,
        hash: Option<&str>,
    ) -> Result<Verified, PasswordError> {
        let (stored, known) = match hash {
            Some(hash) => (hash.to_owned(), true),
            None => (self.dummy().await?.to_owned(), false),
        };
        let password = password.to_owned();
        let current = self.inner.params.clone();
        self.blocking(move |argon2| {
            let Ok(parsed) = PasswordHash::new(&stored) else {
                return Ok(Verified { matches: false, needs_rehash: true });
            };
            let matches = argon2.verify_password(password.as_bytes(), &parsed).is_ok();
            let same = parsed.algorithm == Algorithm::Argon2id.ident()
                && Params::try_from(&parsed).is_ok_and(|params| {
                    (params.m_cost(), params.t_cost(), params.p_cost())
                        == (current.m_cost(), current.t_cost(), current.p_cost())
                });
            Ok(Verified { matches: matches && known, needs_rehash: !same })
        })
        .await
    }

    async fn dummy(&self) -> Result<&str, PasswordError> {
        let hash = self
            .inner
            .dummy
            .get_or_try_init(|| async {
                // Nobody knows this password: it only gives unknown accounts a real hash
                // to be checked against.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_nanos());
                self.hash(&format!("no account {nanos}")).await
            })
            .await?;
        Ok(hash.as_str())
    }

    /// Runs `work` on the blocking pool once a hashing permit is free.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> Result<T, PasswordError> + Send + 'static,
    ) -> Result<T, PasswordError> {
        // The semaphore lives as long as `self` and is never closed.
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Hash("the hashing permits are closed".to_owned()))?;
        let params = self.inner.params.clone();
        tokio::task::spawn_blocking(move || {
            work(&Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Cheap parameters: these tests are about behaviour, not strength.
    fn light() -> PasswordConfig {
        PasswordConfig { memory_kib: 64, iterations: 1, max_concurrent: 2, ..Default::default() }
    }

    #[tokio::test]
    async fn hashes_verify_and_wrong_passwords_do_not() {
        let passwords = Passwords::new(&light()).unwrap();
        let hash = passwords.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        let right = passwords.verify("correct horse", Some(&hash)).await.unwrap();
        assert_eq!(right, Verified { matches: true, needs_rehash: false });
        let wrong = passwords.verify("battery staple", Some(&hash)).await.unwrap();
        assert!(!wrong.matches);
        assert_ne!(passwords.hash("correct horse").await.unwrap(), hash, "salts differ");
    }

    #[tokio::test]
    async fn owasp_parameters_are_the_default() {
        let passwords = Passwords::new(&PasswordConfig::default()).unwrap();
        let hash = passwords.hash("correct horse").await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{hash}");
    }

    #[tokio::test]
    async fn hashes_made_with_other_parameters_verify_and_ask_for_a_rehash() {
        let old = Passwords::new(&light()).unwrap();
        let hash = old.hash("correct horse").await.unwrap();
        let stronger = PasswordConfig { iterations: 2, ..light() };
        let current = Passwords::new(&stronger).unwrap();
        let verified = current.verify("correct horse", Some(&hash)).await.unwrap();
        assert_eq!(verified, Verified { matches: true, needs_rehash: true });
        let garbage = current.verify("correct horse", Some("not a hash")).await.unwrap();
        assert_eq!(garbage, Verified { matches: false, needs_rehash: true });
    }

    #[tokio::test]
    async fn unknown_accounts_never_match_yet_are_checked_against_a_real_hash() {
        let passwords = Passwords::new(&light()).unwrap();
        assert!(passwords.inner.dummy.get().is_none());
        let unknown = passwords.verify("correct horse", None).await.unwrap();
        assert!(!unknown.matches);
        // The answer came from checking a hash with the configured parameters, so it cost
        // what checking a real account costs.
        let dummy = passwords.inner.dummy.get().unwrap();
        assert!(dummy.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{dummy}");
        assert!(!passwords.verify("correct horse", None).await.unwrap().matches);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_is_bounded_by_the_permits() {
        let config = PasswordConfig { max_concurrent: 1, ..PasswordConfig::default() };
        let passwords = Passwords::new(&config).unwrap();
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (passwords, running, most) = (passwords.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    let work = move |argon2: &Argon2<'static>| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let hashed = argon2.hash_password(b"x").map(drop);
                        std::thread::sleep(Duration::from_millis(10));
                        running.fetch_sub(1, Ordering::SeqCst);
                        hashed.map_err(|error| PasswordError::Hash(error.to_string()))
                    };
                    passwords.blocking(work).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_policy_counts_characters() {
        let passwords = Passwords::new(&light()).unwrap();
        let check = |password: &str| passwords.check_policy(password);
        assert_eq!(check("short"), Err(PolicyError::TooShort { min: 8 }));
        assert_eq!(check("éééééééé"), Ok(()));
        assert_eq!(check(&"x".repeat(128)), Ok(()));
        assert_eq!(check(&"x".repeat(129)), Err(PolicyError::TooLong { max: 128 }));
    }

    #[test]
    fn impossible_parameters_are_refused() {
        let tiny = PasswordConfig { memory_kib: 1, ..PasswordConfig::default() };
        assert!(matches!(Passwords::new(&tiny), Err(PasswordError::Params(_))));
        let none = PasswordConfig { max_concurrent: 0, ..PasswordConfig::default() };
        assert!(matches!(Passwords::new(&none), Err(PasswordError::NoConcurrency)));
    }
}
