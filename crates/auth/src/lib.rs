//! xcore's accounts and authentication.
//!
//! This first part is [`password`]: hashing and verifying passwords with argon2id at the
//! OWASP parameters, off the async runtime and with bounded concurrency, at the same cost
//! for unknown accounts, and with the password policy. Accounts, tokens, sessions and the
//! `/auth` endpoints build on it.

pub mod password;

pub use password::{PasswordConfig, PasswordError, Passwords, PolicyError, Verified};
