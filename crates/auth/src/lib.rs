//! xcore's accounts and authentication.
//!
//! [`Auth`] runs the account flows: registration, login with lockout and two-factor
//! (TOTP or single-use recovery codes), refresh-token rotation with reuse detection,
//! logout, profile, password change and reset (codes delivered through a [`Notifier`]),
//! and sessions. [`http::router`] serves them as the `/auth` API, and [`AuthPlugin`] makes
//! the crate a module of the server (`[auth]`, `/auth`, the request gate). The parts are usable on
//! their own: [`password`] (argon2id off the async runtime, bounded, at the same cost for
//! unknown accounts), [`token`] (JWTs with a pinned algorithm, issuer and audience
//! checked), [`refresh`], [`lockout`], [`accounts`], [`sessions`] and [`codes`].
//! [`TokenAuthenticator`] plugs the access tokens into `xcore-middleware`'s `Gate`.

pub mod accounts;
pub mod codes;
mod command;
pub mod config;
mod email;
pub mod http;
pub mod keys;
pub mod lockout;
pub mod notifier;
pub mod otp_key;
pub mod password;
mod plugin;
pub mod refresh;
pub mod revocations;
mod service;
pub mod sessions;
pub mod token;

pub use accounts::{Account, AccountError, Accounts, MIGRATIONS};
pub use config::AuthConfig;
pub use lockout::LockoutConfig;
pub use notifier::{LogNotifier, Message, Notifier, NotifierConfig, SmtpNotifier};
pub use otp_key::OtpKey;
pub use password::{PasswordConfig, PasswordError, Passwords, PolicyError, Verified};
pub use plugin::AuthPlugin;
pub use service::{Auth, AuthError, OtpSetup, StoredOtpSecrets, TokenAuthenticator, Tokens};
pub use sessions::{SessionError, Sessions};
pub use token::{AccessTokens, Claims, TokenError};
