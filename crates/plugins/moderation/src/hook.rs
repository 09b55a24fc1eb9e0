//! The `before_message` hook: sanctions first, then the word list.
//!
//! It runs in the sender's call, within the engine's `before_hook_timeout_ms`, so it does
//! as little as it can there: a user's sanctions come from the node's memory when they
//! were read recently, and the word filter's record is written by a task of its own. A
//! slow record never delays a message or, worse, lets the hook time out: the engine lets
//! the message through when a hook fails, and a refusal must hold.

use std::sync::Arc;

use xcore_messaging::{Decision, HookSet, Outgoing, Refusal};

use crate::filter::WordFilter;
use crate::model::{ActionKind, Entry, WORD_FILTER};
use crate::store::Moderation;
use crate::{ORDER, WordAction};

/// What the hook holds.
struct Hook {
    moderation: Moderation,
    filter: Option<WordFilter>,
    action: WordAction,
}

impl Hook {
    async fn decide(&self, mut outgoing: Outgoing) -> crate::Result<Decision> {
        if let Some(refusal) = self.moderation.refusal(&outgoing.sender).await? {
            return Ok(Decision::Refuse(refusal));
        }
        let Some(filter) = &self.filter else { return Ok(Decision::Accept(outgoing.draft)) };
        let found = filter.find(&outgoing.draft.body);
        if found.is_empty() {
            return Ok(Decision::Accept(outgoing.draft));
        }
        let reason = format!(
            "matched {}",
            found.iter().map(|word| format!("`{word}`")).collect::<Vec<_>>().join(", ")
        );
        let (kind, decision) = match self.action {
            WordAction::Refuse => (
                ActionKind::Refuse,
                Decision::Refuse(Refusal::new(
                    "word_refused",
                    "your message contains a word that is not allowed here",
                )),
            ),
            WordAction::Mask => {
                outgoing.draft.body = filter.mask(&outgoing.draft.body);
                (ActionKind::Mask, Decision::Accept(outgoing.draft))
            }
        };
        let entry = Entry::new(WORD_FILTER, kind, &outgoing.sender)
            .at(outgoing.conversation, outgoing.edit_of)
            .reason(Some(reason));
        let moderation = self.moderation.clone();
        tokio::spawn(async move {
            if let Err(error) = moderation.record(entry).await {
                tracing::warn!(plugin = "moderation", %error,
                    "the word filter acted but the action could not be recorded");
            }
        });
        Ok(decision)
    }
}

/// Adds the hook, named `moderation`, at [`ORDER`].
pub(crate) fn register(
    hooks: &mut HookSet,
    moderation: Moderation,
    filter: Option<WordFilter>,
    action: WordAction,
) {
    let hook = Arc::new(Hook { moderation, filter, action });
    hooks.before_message(ORDER, "moderation", move |outgoing, _| {
        let hook = Arc::clone(&hook);
        async move { hook.decide(outgoing).await.map_err(Into::into) }
    });
}
