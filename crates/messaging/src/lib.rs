//! xcore's messaging engine.
//!
//! An [`Engine`] holds users (with presence), the lobby every user belongs to, groups
//! with owners, admins and members, direct conversations between two users, and their
//! messages. Each message gets its conversation's next sequence number, with no gap and
//! no duplicate whoever sends at the same time on whichever node, and a send is answered
//! only once its message is committed (in batches: see [`commit`]). Hooks run before a
//! message is stored (to rewrite or refuse it) and after every event (see [`hooks`]).
//!
//! The engine is a library first: [`Engine::in_memory`] gives one on a private SQLite
//! database; [`Engine::new`] takes any [`xcore_db::Database`], SQLite or PostgreSQL. In
//! the server, the `messaging` module ([`MessagingPlugin`]) builds it from `[messaging]`,
//! installs the hooks plugins registered through [`MessagingExt`], and mounts the
//! `/messaging` API.
//!
//! The original engine's calls keep their names and meaning: `register_user`,
//! `connect_user`, `disconnect_user`, `send_message(id, content)` (to the lobby), and
//! `on(event, handler)` with `on_connect`, `on_disconnect`, `on_message` and `on_error`.
//! Its `engine_state.json` imports as it is ([`state`]: `xcore messaging import FILE`),
//! and `xcore messaging export` writes everything the engine stores in the same format,
//! extended.

pub mod commit;
mod config;
mod engine;
mod error;
pub mod gateway;
pub mod hooks;
pub mod http;
mod model;
mod plugin;
mod presence;
mod schema;
pub mod state;
pub mod testing;

pub use config::MessagingConfig;
pub use engine::Engine;
pub use error::{Error, Refusal, Result};
pub use gateway::{Gateway, GatewayConfig};
pub use hooks::{Decision, Event, EventKind, HookError, HookSet, Outgoing};
pub use http::MODERATE;
pub use model::{
    Actor, Conversation, ConversationId, ConversationKind, ConversationSummary, Draft, Member,
    Message, Page, Presence, Role, User, UserId,
};
pub use plugin::{MessagingExt, MessagingPlugin};
pub use presence::RemotePresence;
pub use schema::MIGRATIONS;
pub use state::{Counts, ExportReport, ImportReport, Position, StateError};
