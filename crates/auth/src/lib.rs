//! xcore's accounts and authentication.
//!
//! So far: [`password`], hashing and verifying passwords with argon2id at the OWASP
//! parameters, off the async runtime and with bounded concurrency, at the same cost for
//! unknown accounts, and with the password policy; [`token`], signed access tokens with a
//! pinned algorithm and checked issuer and audience; [`refresh`], opaque refresh tokens
//! stored as hashes; and [`lockout`], the back-off after repeated failed logins. Accounts,
//! sessions and the `/auth` endpoints build on them.

pub mod accounts;
pub mod codes;
pub mod config;
pub mod http;
pub mod lockout;
pub mod notifier;
pub mod password;
pub mod refresh;
mod service;
pub mod sessions;
pub mod token;

pub use accounts::{Account, AccountError, Accounts, MIGRATIONS};
pub use config::AuthConfig;
pub use lockout::LockoutConfig;
pub use notifier::{LogNotifier, Message, Notifier, NotifierConfig};
pub use password::{PasswordConfig, PasswordError, Passwords, PolicyError, Verified};
pub use service::{Auth, AuthError, OtpSetup, TokenAuthenticator, Tokens};
pub use sessions::{SessionError, Sessions};
pub use token::{AccessTokens, Claims, TokenError};
