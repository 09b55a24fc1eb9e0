//! The greeting hook: whom it greets, when, and the record that keeps it to once.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use diesel::{ExpressionMethods, QueryDsl};
use diesel_async::RunQueryDsl;
use tokio::sync::OnceCell;
use xcore_db::{Database, with_conn};
use xcore_messaging::{Engine, Event, EventKind, HookSet, UserId};

use crate::{Result, WelcomeConfig};

/// What `welcome_message` has replaced by the greeted user's username.
pub const PLACEHOLDER: &str = "{username}";

/// The longest username the engine accepts, in characters.
const MAX_USERNAME_CHARS: usize = 64;

/// The longest a greeting waits, in all, for rate limits that lift soon; a longer wait
/// gives up and leaves the greeting to the user's next coming online.
const MAX_WAIT: Duration = Duration::from_secs(2);

diesel::table! {
    welcome_greetings (user_id) {
        user_id -> Text,
        greeted_at -> Timestamp,
    }
}

/// The length in characters of the longest greeting `template` can give.
pub(crate) fn longest_greeting(template: &str) -> usize {
    let count = template.matches(PLACEHOLDER).count();
    template.chars().count() - count * PLACEHOLDER.len() + count * MAX_USERNAME_CHARS
}

/// The names between braces in `template` that are not the placeholder (`{user}` for a
/// misspelt `{username}`).
pub(crate) fn unknown_placeholders(template: &str) -> Vec<&str> {
    let mut unknown = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        rest = &rest[start + 1..];
        let Some(end) = rest.find('}') else { break };
        let name = &rest[..end];
        let word = !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if word && name != &PLACEHOLDER[1..PLACEHOLDER.len() - 1] {
            unknown.push(name);
        }
        rest = &rest[end + 1..];
    }
    unknown
}

/// Greets users as its config says.
#[derive(Debug)]
pub(crate) struct Greeter {
    template: String,
    sender: UserId,
    sender_name: String,
    once: bool,
    /// Set once the sender is known to exist under its configured name.
    sender_ready: OnceCell<()>,
}

impl Greeter {
    pub(crate) fn new(config: WelcomeConfig) -> Self {
        Self {
            template: config.welcome_message,
            sender: UserId::from(config.sender_id),
            sender_name: config.sender_name,
            once: config.once,
            sender_ready: OnceCell::new(),
        }
    }

    /// Adds the `on_connect` hook, named `welcome`, to `hooks`.
    pub(crate) fn register(self, hooks: &mut HookSet) {
        let greeter = Arc::new(self);
        hooks.on(EventKind::Connect, "welcome", move |event, engine| {
            let greeter = Arc::clone(&greeter);
            async move { greeter.on_connect(&event, &engine).await.map_err(Into::into) }
        });
    }

    /// Greets the user of a `Connect` event who came online, unless `once` and already
    /// greeted.
    async fn on_connect(&self, event: &Event, engine: &Engine) -> Result<()> {
        let Event::Connect { user, username, came_online: true, .. } = event else {
            return Ok(());
        };
        if *user == self.sender {
            return Ok(());
        }
        let db = engine.database();
        // Recorded whatever `once` says, so that turning `once` on later spares the users
        // greeted meanwhile.
        let first = record(db, user).await?;
        if self.once && !first {
            return Ok(());
        }
        if let Err(error) = self.greet(engine, user, username).await {
            if first {
                // Not greeted after all: their next coming online tries again.
                if let Err(forgotten) = forget(db, user).await {
                    tracing::warn!(plugin = "welcome", %user, error = %forgotten,
                        "the greeting failed and its record stays: this user will not be greeted");
                }
            }
            return Err(error);
        }
        tracing::debug!(plugin = "welcome", %user, "user greeted");
        Ok(())
    }

    /// Sends the greeting to `user`, waiting out short rate limits.
    async fn greet(&self, engine: &Engine, user: &UserId, username: &str) -> Result<()> {
        self.sender_ready.get_or_try_init(|| self.ensure_sender(engine)).await?;
        let conversation = engine.direct(&self.sender, user).await?;
        let body = self.template.replace(PLACEHOLDER, username);
        // Within the hook's own time limit, which would otherwise cut the wait short.
        let budget = MAX_WAIT.min(Duration::from_millis(engine.config().hook_timeout_ms) / 2);
        let mut waited = Duration::ZERO;
        loop {
            match engine.send(self.sender.clone(), conversation.id, body.as_str()).await {
                Err(xcore_messaging::Error::Refused(refusal)) => match refusal.retry_after {
                    Some(wait) if waited + wait <= budget => {
                        tokio::time::sleep(wait).await;
                        waited += wait;
                    }
                    _ => return Err(xcore_messaging::Error::Refused(refusal).into()),
                },
                sent => return sent.map(drop).map_err(Into::into),
            }
        }
    }

    /// Registers the sender if missing, or renames it to `sender_name`.
    async fn ensure_sender(&self, engine: &Engine) -> Result<()> {
        use xcore_messaging::Error as E;
        match engine.user(&self.sender).await {
            Ok(user) if user.username == self.sender_name => Ok(()),
            Ok(_) => {
                engine.update_user(&self.sender, Some(&self.sender_name), None).await?;
                Ok(())
            }
            Err(E::UnknownUser(_)) => {
                let metadata = serde_json::json!({});
                match engine.register_user(self.sender.clone(), &self.sender_name, metadata).await {
                    // Registered meanwhile by another node: as good.
                    Ok(_) | Err(E::UserExists(_)) => Ok(()),
                    Err(error) => Err(error.into()),
                }
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// Records that `user` is greeted; `true` when this call recorded it, `false` when it was
/// recorded before (by this node or another).
async fn record(db: &Database, user: &UserId) -> Result<bool> {
    let now = Utc::now().naive_utc();
    let mut conn = db.get().await?;
    let inserted = with_conn!(conn, c => {
        diesel::insert_into(welcome_greetings::table)
            .values((
                welcome_greetings::user_id.eq(user.as_str()),
                welcome_greetings::greeted_at.eq(now),
            ))
            .on_conflict_do_nothing()
            .execute(c)
            .await
    })?;
    Ok(inserted > 0)
}

/// Removes the record of `user`'s greeting.
async fn forget(db: &Database, user: &UserId) -> Result<()> {
    let mut conn = db.get().await?;
    with_conn!(conn, c => {
        diesel::delete(welcome_greetings::table.find(user.as_str())).execute(c).await
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_greeting_counts_the_longest_username() {
        for (template, longest) in [
            ("Hi", 2),
            ("Welcome, {username}!", 10 + MAX_USERNAME_CHARS),
            ("{username} {username}", 1 + 2 * MAX_USERNAME_CHARS),
            ("Grüß dich, {username}", 11 + MAX_USERNAME_CHARS),
        ] {
            assert_eq!(longest_greeting(template), longest, "{template}");
        }
    }

    #[test]
    fn misspelt_placeholders_are_found_and_other_braces_are_text() {
        for (template, unknown) in [
            ("Welcome, {username}!", vec![]),
            ("Welcome, {user} and {name}!", vec!["user", "name"]),
            ("Sets look like {1, 2} or {}; {x", vec![]),
            ("{{username}}", vec![]),
        ] {
            assert_eq!(unknown_placeholders(template), unknown, "{template}");
        }
    }
}
