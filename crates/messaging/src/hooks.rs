//! Hooks: code that runs when something happens in the engine.
//!
//! Two kinds, with different promises:
//! - `before_message` hooks run in the sender's call, in their declared order, before a
//!   message (or an edit) is stored. Each may rewrite the draft or refuse it with a
//!   [`Refusal`] the sender receives.
//! - notification hooks (`on_connect`, `on_message`, `on_group_created`, …) run after the
//!   fact and never delay the operation: each registered hook has its own queue and task,
//!   so it sees events in the order they happened, and a slow hook holds back nobody but
//!   itself. A hook further behind than `messaging.hook_queue` events loses the oldest.
//!
//! A hook that returns an error, panics or runs past its time limit fires `on_error` and
//! is skipped: the send goes on. (The original engine caught callback errors but never
//! fired `on_error`.) A failing `on_error` hook is only logged.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::Notify;

use crate::engine::{Engine, Inner};
use crate::error::Refusal;
use crate::model::{Conversation, ConversationId, ConversationKind, Draft, Message, Role, UserId};

/// What a hook's error is.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// The events notification hooks subscribe to, by the name `on` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A user connected a device (`connect_user`).
    Connect,
    /// A user disconnected a device, or their presence expired.
    Disconnect,
    /// A message was committed.
    Message,
    /// A hook failed.
    Error,
    GroupCreated,
    GroupRenamed,
    GroupDeleted,
    MemberAdded,
    MemberRemoved,
    MemberRoleChanged,
    MessageEdited,
    MessageDeleted,
}

impl EventKind {
    /// Every kind, in a fixed order.
    pub const ALL: [Self; 12] = [
        Self::Connect,
        Self::Disconnect,
        Self::Message,
        Self::Error,
        Self::GroupCreated,
        Self::GroupRenamed,
        Self::GroupDeleted,
        Self::MemberAdded,
        Self::MemberRemoved,
        Self::MemberRoleChanged,
        Self::MessageEdited,
        Self::MessageDeleted,
    ];

    /// The name hooks are registered under: `on_connect`, `on_message`, ….
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "on_connect",
            Self::Disconnect => "on_disconnect",
            Self::Message => "on_message",
            Self::Error => "on_error",
            Self::GroupCreated => "on_group_created",
            Self::GroupRenamed => "on_group_renamed",
            Self::GroupDeleted => "on_group_deleted",
            Self::MemberAdded => "on_member_added",
            Self::MemberRemoved => "on_member_removed",
            Self::MemberRoleChanged => "on_member_role_changed",
            Self::MessageEdited => "on_message_edited",
            Self::MessageDeleted => "on_message_deleted",
        }
    }
}

impl std::str::FromStr for EventKind {
    type Err = UnknownEvent;

    /// Parses a hook name (`on_connect`, …); other names are refused, as the original
    /// engine refused them.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| UnknownEvent(name.to_owned()))
    }
}

/// A hook name that is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no event `{0}`; expected one of: on_connect, on_disconnect, on_message, on_error, \
         on_group_created, on_group_renamed, on_group_deleted, on_member_added, \
         on_member_removed, on_member_role_changed, on_message_edited, on_message_deleted"
)]
pub struct UnknownEvent(pub String);

/// What happened. Handlers receive it behind an `Arc`, shared by every hook.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Connect {
        user: UserId,
        username: String,
        /// Devices connected now, this one included.
        devices: u32,
        /// Whether the user was offline before.
        came_online: bool,
    },
    Disconnect {
        user: UserId,
        /// Devices still connected.
        devices: u32,
        /// Whether the user is offline now.
        went_offline: bool,
    },
    Message {
        message: Message,
        kind: ConversationKind,
    },
    Error {
        /// The failing hook's name.
        hook: String,
        /// The event or phase it failed on (`before_message`, `on_message`, …).
        during: &'static str,
        reason: String,
    },
    GroupCreated {
        group: Conversation,
        by: UserId,
    },
    GroupRenamed {
        group: Conversation,
        by: UserId,
    },
    GroupDeleted {
        group: ConversationId,
        by: UserId,
    },
    MemberAdded {
        group: ConversationId,
        user: UserId,
        role: Role,
        by: UserId,
    },
    MemberRemoved {
        group: ConversationId,
        user: UserId,
        by: UserId,
    },
    MemberRoleChanged {
        group: ConversationId,
        user: UserId,
        role: Role,
        by: UserId,
    },
    MessageEdited {
        message: Message,
        /// The version the edit replaced.
        previous: Message,
        by: UserId,
    },
    MessageDeleted {
        /// The message as it is now: `deleted`, with its body and attachment erased.
        message: Message,
        /// The version the deletion erased.
        previous: Message,
        by: UserId,
    },
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Connect { .. } => EventKind::Connect,
            Self::Disconnect { .. } => EventKind::Disconnect,
            Self::Message { .. } => EventKind::Message,
            Self::Error { .. } => EventKind::Error,
            Self::GroupCreated { .. } => EventKind::GroupCreated,
            Self::GroupRenamed { .. } => EventKind::GroupRenamed,
            Self::GroupDeleted { .. } => EventKind::GroupDeleted,
            Self::MemberAdded { .. } => EventKind::MemberAdded,
            Self::MemberRemoved { .. } => EventKind::MemberRemoved,
            Self::MemberRoleChanged { .. } => EventKind::MemberRoleChanged,
            Self::MessageEdited { .. } => EventKind::MessageEdited,
            Self::MessageDeleted { .. } => EventKind::MessageDeleted,
        }
    }
}

/// A message on its way to be stored, as `before_message` hooks see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub sender: UserId,
    pub conversation: ConversationId,
    pub kind: ConversationKind,
    pub draft: Draft,
    /// `Some(seq)` when this is an edit of message `seq`.
    pub edit_of: Option<i64>,
}

/// What a `before_message` hook decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Store this draft (the one received, or a rewrite).
    Accept(Draft),
    /// Do not store; the sender receives the refusal.
    Refuse(Refusal),
}

type Notify_ =
    Arc<dyn Fn(Arc<Event>, Engine) -> BoxFuture<'static, Result<(), HookError>> + Send + Sync>;
type Before =
    Arc<dyn Fn(Outgoing, Engine) -> BoxFuture<'static, Result<Decision, HookError>> + Send + Sync>;

/// Hooks collected before they are installed on an engine: what plugins fill through
/// `MessagingExt::messaging_hooks` in their `build`, and the messaging module installs in
/// its `finish`.
#[derive(Default, Clone)]
pub struct HookSet {
    notify: Vec<(EventKind, String, Notify_)>,
    before: Vec<(i32, String, Before)>,
}

impl std::fmt::Debug for HookSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HookSet")
            .field(
                "notify",
                &self.notify.iter().map(|(kind, name, _)| (kind, name)).collect::<Vec<_>>(),
            )
            .field(
                "before",
                &self.before.iter().map(|(order, name, _)| (order, name)).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl HookSet {
    /// Runs `handler` after each event of `kind`. `name` identifies the hook in `on_error`
    /// reports and logs.
    pub fn on<F, Fut>(&mut self, kind: EventKind, name: impl Into<String>, handler: F) -> &mut Self
    where
        F: Fn(Arc<Event>, Engine) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        self.notify.push((
            kind,
            name.into(),
            Arc::new(move |event, engine| handler(event, engine).boxed()),
        ));
        self
    }

    /// Runs `handler` on every message and edit before it is stored, after the hooks of a
    /// lower `order` (equal orders run by name).
    pub fn before_message<F, Fut>(
        &mut self,
        order: i32,
        name: impl Into<String>,
        handler: F,
    ) -> &mut Self
    where
        F: Fn(Outgoing, Engine) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Decision, HookError>> + Send + 'static,
    {
        self.before.push((
            order,
            name.into(),
            Arc::new(move |outgoing, engine| handler(outgoing, engine).boxed()),
        ));
        self
    }

    /// How many hooks the set holds.
    pub fn len(&self) -> usize {
        self.notify.len() + self.before.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The hooks an engine runs: replaced as a whole when hooks are added.
#[derive(Default)]
pub(crate) struct Hooks {
    listeners: Vec<Arc<Listener>>,
    before: Vec<(i32, String, Before)>,
}

impl Hooks {
    /// These hooks and `set`'s.
    pub(crate) fn with(&self, set: HookSet, limits: &Limits) -> Self {
        let mut listeners = self.listeners.clone();
        listeners.extend(set.notify.into_iter().map(|(kind, name, handler)| {
            Arc::new(Listener::new(kind, name, handler, limits.queue))
        }));
        let mut before = self.before.clone();
        before.extend(set.before);
        before.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        Self { listeners, before }
    }

    pub(crate) fn listener_count(&self) -> usize {
        self.listeners.len()
    }

    pub(crate) fn has_before(&self) -> bool {
        !self.before.is_empty()
    }

    /// Whether any hook listens to `kind`: events nobody listens to are not built.
    pub(crate) fn listens(&self, kind: EventKind) -> bool {
        self.listeners.iter().any(|listener| listener.kind == kind)
    }
}

/// Hook time limits and queue length, from the config.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub before: Duration,
    pub notify: Duration,
    pub queue: usize,
}

/// One notification hook: its queue, and the task that drains it (started on the first
/// event, inside the runtime).
struct Listener {
    kind: EventKind,
    name: String,
    handler: Notify_,
    capacity: usize,
    queue: Mutex<VecDeque<Arc<Event>>>,
    wake: Notify,
    started: OnceLock<()>,
}

impl Listener {
    fn new(kind: EventKind, name: String, handler: Notify_, capacity: usize) -> Self {
        Self {
            kind,
            name,
            handler,
            capacity,
            queue: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            started: OnceLock::new(),
        }
    }

    /// Queues `event`; returns how many older events were dropped to make room.
    fn push(self: &Arc<Self>, event: Arc<Event>, engine: &Weak<Inner>, limits: Limits) -> usize {
        self.started.get_or_init(|| {
            tokio::spawn(drain(Arc::clone(self), engine.clone(), limits));
        });
        let mut dropped = 0;
        if let Ok(mut queue) = self.queue.lock() {
            while queue.len() >= self.capacity {
                queue.pop_front();
                dropped += 1;
            }
            queue.push_back(event);
        }
        self.wake.notify_one();
        dropped
    }
}

/// Runs `listener`'s handler on its events, one at a time, until the engine is dropped.
async fn drain(listener: Arc<Listener>, engine: Weak<Inner>, limits: Limits) {
    loop {
        let next = listener.queue.lock().ok().and_then(|mut queue| queue.pop_front());
        let Some(event) = next else {
            if engine.strong_count() == 0 {
                return;
            }
            // Wakes on the next push, or checks now and then whether the engine is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), listener.wake.notified()).await;
            continue;
        };
        let Some(inner) = engine.upgrade() else { return };
        let engine = Engine::from_inner(inner);
        let call = std::panic::catch_unwind(AssertUnwindSafe(|| {
            (listener.handler)(Arc::clone(&event), engine.clone())
        }));
        let outcome = match call {
            Ok(future) => guarded(future, limits.notify).await,
            Err(panic) => Err(Failure::Panicked(panic_text(&panic))),
        };
        if let Err(failure) = outcome {
            engine.hook_failed(&listener.name, listener.kind.name(), &failure);
        }
    }
}

/// Why a hook did not complete.
#[derive(Debug)]
pub(crate) enum Failure {
    Failed(String),
    Panicked(String),
    TimedOut(Duration),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(error) => write!(f, "failed: {error}"),
            Self::Panicked(panic) => write!(f, "panicked: {panic}"),
            Self::TimedOut(limit) => write!(f, "took longer than {} ms", limit.as_millis()),
        }
    }
}

/// Runs `future` within `limit`, catching a panic.
async fn guarded<T>(
    future: BoxFuture<'static, Result<T, HookError>>,
    limit: Duration,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, AssertUnwindSafe(future).catch_unwind()).await {
        Ok(Ok(Ok(value))) => Ok(value),
        Ok(Ok(Err(error))) => Err(Failure::Failed(error.to_string())),
        Ok(Err(panic)) => Err(Failure::Panicked(panic_text(&panic))),
        Err(_) => Err(Failure::TimedOut(limit)),
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_owned())
}

impl Engine {
    /// Queues `event` for every hook listening to its kind.
    pub(crate) fn notify(&self, event: Event) {
        let hooks = self.hooks();
        let kind = event.kind();
        let live = &self.inner().live;
        let watched = live.receiver_count() > 0;
        if !watched && !hooks.listens(kind) {
            return;
        }
        let event = Arc::new(event);
        if watched {
            // No receiver left meanwhile is not an error: nobody is watching.
            let _ = live.send(Arc::clone(&event));
        }
        let limits = self.inner().limits;
        for listener in hooks.listeners.iter().filter(|listener| listener.kind == kind) {
            let dropped = listener.push(Arc::clone(&event), &Arc::downgrade(self.inner()), limits);
            if dropped > 0 && kind != EventKind::Error {
                let reason = format!("{dropped} event(s) dropped: the hook is too far behind");
                self.hook_failed(&listener.name, kind.name(), &Failure::Failed(reason));
            }
        }
    }

    /// Reports a failed hook: logs it and fires `on_error` (but not for `on_error` hooks,
    /// whose failures are only logged).
    pub(crate) fn hook_failed(&self, hook: &str, during: &'static str, failure: &Failure) {
        tracing::warn!(plugin = "messaging", hook, during, %failure, "messaging hook failed");
        if during != EventKind::Error.name() {
            self.notify(Event::Error {
                hook: hook.to_owned(),
                during,
                reason: failure.to_string(),
            });
        }
    }

    /// Runs the `before_message` hooks over `outgoing` in order: the draft to store, or the
    /// refusal.
    pub(crate) async fn run_before_hooks(&self, mut outgoing: Outgoing) -> Result<Draft, Refusal> {
        let hooks = self.hooks();
        let limit = self.inner().limits.before;
        for (_, name, handler) in &hooks.before {
            let call = std::panic::catch_unwind(AssertUnwindSafe(|| {
                handler(outgoing.clone(), self.clone())
            }));
            let outcome = match call {
                Ok(future) => guarded(future, limit).await,
                Err(panic) => Err(Failure::Panicked(panic_text(&panic))),
            };
            match outcome {
                Ok(Decision::Accept(draft)) => outgoing.draft = draft,
                Ok(Decision::Refuse(refusal)) => return Err(refusal),
                Err(failure) => self.hook_failed(name, "before_message", &failure),
            }
        }
        Ok(outgoing.draft)
    }
}
