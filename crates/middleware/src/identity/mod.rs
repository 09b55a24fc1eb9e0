//! Who is calling and what they may do: the identity API plugins use.
//!
//! - [`CurrentUser`] and [`OptionalUser`]: the caller, from a bearer access token, as axum
//!   extractors; [`Rejection`] says why there is none (401 with an RFC 6750 challenge).
//! - [`Gate`]: an [`Authenticate`] (the auth module's tokens) and a [`Permissions`]
//!   ([`RolePermissions`] reads the token's role claims) that extractors and guards consult.
//! - [`RequestContext`]: the request id, owning plugin, peer address and gate, carried in
//!   the request's extensions; [`PeerAddr`] extracts the peer address, [`ClientIp`] the
//!   client's (the one a trusted proxy reports, behind one).
//! - [`require`]: a permission guard for a route or a router (401, then 403).
//!
//! The modules depend on each other one way only: `caller` (the types) ← `gate` ←
//! `context` (the extractors) ← `guard`.

mod caller;
mod context;
mod gate;
mod guard;

pub use caller::{CurrentUser, OptionalUser, Rejection, bearer};
pub use context::{ClientIp, PeerAddr, RequestContext, forwarded_client};
pub use gate::{Authenticate, Gate, Permissions, RolePermissions, matches};
pub use guard::{Require, RequireService, require};
