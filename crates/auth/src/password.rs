//! Password hashing with argon2id.
//!
//! Hashing is deliberately slow (about 20 ms and 19 MiB with OWASP's parameters), so it
//! never runs on a runtime worker, and at most [`PasswordConfig::max_concurrent`] hashes
//! run at once: a flood of logins queues for the hashing permits instead of starving every
//! other request of threads and memory. Verifying a login for an account that does not
//! exist runs the same computation against a dummy hash, so response time does not tell
//! which emails are registered. Hashes made with other parameters still verify, and say so
//! ([`Verified::needs_rehash`]) so the caller can store a new hash while it has the
//! password.
//!
//! The hashes run on a few threads of their own (module `threads`), one per permit,
//! each keeping its argon2 memory from one hash to the next. On tokio's blocking pool
//! every thread that had once hashed kept its 19 MiB in the allocator's per-thread arena,
//! and the server grew by that much for each thread the pool had started; now it holds at
//! most `max_concurrent` times the configured memory, however many passwords it hashes.

mod threads;

use std::sync::Arc;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use threads::{Memory, Threads};

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
    /// Hashes computed at once; more wait. Each runs on a thread of its own that keeps
    /// `memory_kib` once it has hashed.
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
    /// The computation panicked; its thread carries on with the next one.
    #[error("the hashing computation panicked")]
    Task,
    #[error("cannot start a hashing thread: {0}")]
    Thread(std::io::Error),
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

/// Hashes and verifies passwords; clones share the permits and the hashing threads.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    params: Params,
    threads: Threads,
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
    /// A hasher with `config`'s parameters. Its threads start with the first hashes.
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
            threads: Threads::new(config.max_concurrent, params.block_count()),
            params,
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
    /// [`PasswordError::Hash`] if the computation fails, [`PasswordError::Task`] if it
    /// panics, [`PasswordError::Thread`] if no thread could be started to run it.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_owned();
        let params = self.inner.params.clone();
        self.inner
            .threads
            .run(move |memory| {
                let salt = argon2::password_hash::try_generate_salt()
                    .map_err(|error| PasswordError::Hash(error.to_string()))?;
                hash_with_salt(&params, memory, password.as_bytes(), &salt)
            })
            .await
    }

    /// Whether `password` matches `hash`, the stored hash of the account, or `None` when
    /// there is no such account: then a dummy hash is checked, at the same cost, and the
    /// answer is no.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Task`] or [`PasswordError::Thread`] if the computation fails; a
    /// malformed stored hash is a mismatch that needs rehashing, not an error.
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
        self.inner
            .threads
            .run(move |memory| {
                let Ok(parsed) = PasswordHash::new(&stored) else {
                    return Ok(Verified { matches: false, needs_rehash: true });
                };
                let matches = matches(memory, password.as_bytes(), &parsed);
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
}

/// The PHC string of `password` hashed by argon2id with `params` and `salt`, computed in
/// `memory`: what the `argon2` crate's `hash_password` makes, without allocating the
/// memory anew.
fn hash_with_salt(
    params: &Params,
    memory: &mut Memory,
    password: &[u8],
    salt: &[u8],
) -> Result<String, PasswordError> {
    fn failed(error: impl std::fmt::Display) -> PasswordError {
        PasswordError::Hash(error.to_string())
    }
    let salt = Salt::new(salt).map_err(failed)?;
    let mut output = [0u8; Output::MAX_LENGTH];
    let output = output
        .get_mut(..params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN))
        .ok_or_else(|| failed("the output length is over 64 bytes"))?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    memory
        .with_blocks(params.block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password, &salt, output, blocks)
        })?
        .map_err(failed)?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(failed)?,
        salt: Some(salt),
        hash: Some(Output::new(output).map_err(failed)?),
    };
    Ok(hash.to_string())
}

/// Whether `password` hashes to `stored`'s output with `stored`'s algorithm, version and
/// parameters, computed in `memory`: what the `argon2` crate's `verify_password` answers.
/// Any failure to compute is a mismatch, as there.
fn matches(memory: &mut Memory, password: &[u8], stored: &PasswordHash) -> bool {
    let (Some(salt), Some(expected)) = (&stored.salt, &stored.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(&*stored.algorithm) else { return false };
    let Ok(version) = stored.version.map_or(Ok(Version::default()), Version::try_from) else {
        return false;
    };
    // With the stored output's length, as the crate does.
    let Ok(params) = Params::try_from(stored) else { return false };
    let mut output = [0u8; Output::MAX_LENGTH];
    let Some(output) = output.get_mut(..expected.len()) else { return false };
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = memory.with_blocks(params.block_count(), |blocks| {
        argon2.hash_password_into_with_memory(password, salt, output, blocks)
    });
    // `Output`'s equality takes the same time wherever the outputs differ.
    matches!(computed, Ok(Ok(()))) && Output::new(output).is_ok_and(|output| output == *expected)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

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
                    let params = passwords.inner.params.clone();
                    let work = move |memory: &mut Memory| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let hashed = hash_with_salt(&params, memory, b"x", b"saltsalt");
                        std::thread::sleep(Duration::from_millis(10));
                        running.fetch_sub(1, Ordering::SeqCst);
                        hashed
                    };
                    passwords.inner.threads.run(work).await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    /// A hash made by the `argon2` crate's own `hash_password_with_salt`.
    fn by_the_crate(
        algorithm: Algorithm,
        version: Version,
        params: &Params,
        password: &str,
    ) -> String {
        use argon2::PasswordHasher;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        argon2.hash_password_with_salt(password.as_bytes(), b"a salt of 16 b.").unwrap().to_string()
    }

    #[test]
    fn hashing_in_kept_memory_gives_what_the_crate_gives() {
        let params = Params::new(64, 2, 1, None).unwrap();
        let mut memory = Memory::new(params.block_count());
        // Each hash runs in memory the one before it filled.
        for password in ["correct horse", "battery staple", "correct horse", ""] {
            let ours =
                hash_with_salt(&params, &mut memory, password.as_bytes(), b"a salt of 16 b.");
            let theirs = by_the_crate(Algorithm::Argon2id, Version::V0x13, &params, password);
            assert_eq!(ours.unwrap(), theirs, "{password:?}");
        }
    }

    #[test]
    fn hashes_made_by_the_crate_with_any_parameters_verify_in_kept_memory() {
        // Memory kept for 64 blocks: the larger hash gets its own for one call.
        let mut memory = Memory::new(64);
        let check = |memory: &mut Memory, algorithm, version, params: Params| {
            let hash = by_the_crate(algorithm, version, &params, "correct horse");
            let parsed = PasswordHash::new(&hash).unwrap();
            assert!(matches(memory, b"correct horse", &parsed), "{hash}");
            assert!(!matches(memory, b"correct horsf", &parsed), "{hash}");
        };
        check(
            &mut memory,
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        check(
            &mut memory,
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32, 3, 2, Some(16)).unwrap(),
        );
        check(
            &mut memory,
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(256, 1, 1, None).unwrap(),
        );
        check(
            &mut memory,
            Algorithm::Argon2i,
            Version::V0x13,
            Params::new(64, 2, 1, None).unwrap(),
        );
        check(
            &mut memory,
            Algorithm::Argon2d,
            Version::V0x10,
            Params::new(64, 2, 1, Some(64)).unwrap(),
        );
    }

    #[tokio::test]
    async fn a_panicking_hash_is_an_error_and_hashing_goes_on() {
        let passwords = Passwords::new(&light()).unwrap();
        let panicked =
            passwords.inner.threads.run(|_| -> Result<(), _> { panic!("in the hash") }).await;
        assert!(matches!(panicked, Err(PasswordError::Task)), "{panicked:?}");
        let hash = passwords.hash("correct horse").await.unwrap();
        assert!(passwords.verify("correct horse", Some(&hash)).await.unwrap().matches);
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
