//! The latest frames of recently active conversations, kept gapless so that a resume
//! within them is served from memory rather than the store.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;

use crate::model::ConversationId;

/// The latest frames of each recently active conversation: a resume within them is served
/// from memory, an older one from the store.
#[derive(Default)]
pub(crate) struct Windows {
    cache: Option<moka::sync::Cache<ConversationId, Arc<Mutex<Window>>>>,
    length: usize,
}

impl Windows {
    /// The latest `length` frames of at most `conversations` conversations; none when
    /// either is 0.
    pub fn new(length: usize, conversations: u64) -> Self {
        let cache = (length > 0 && conversations > 0)
            .then(|| moka::sync::Cache::builder().max_capacity(conversations).build());
        Self { cache, length }
    }

    /// Whether frames are kept at all.
    pub fn enabled(&self) -> bool {
        self.cache.is_some()
    }

    /// Keeps message `seq`'s frame as the latest of `conversation`.
    pub fn record(&self, conversation: ConversationId, seq: i64, frame: &Utf8Bytes) {
        if let Some(cache) = &self.cache {
            let window = cache.get_with(conversation, Arc::default);
            lock(&window).push(seq, frame.clone(), self.length);
        }
    }

    /// The frames of `conversation` after `after` (up to `until`), when the window holds
    /// them all.
    pub fn after(
        &self,
        conversation: ConversationId,
        after: i64,
        until: Option<i64>,
    ) -> Option<Vec<(i64, Utf8Bytes)>> {
        let window = self.cache.as_ref()?.get(&conversation)?;
        lock(&window).after(after, until)
    }

    /// Drops `conversation`'s frames: one of them changed.
    pub fn forget(&self, conversation: ConversationId) {
        if let Some(cache) = &self.cache {
            cache.invalidate(&conversation);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl std::fmt::Debug for Windows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Windows").field("length", &self.length).finish_non_exhaustive()
    }
}

/// One conversation's latest frames, with no gap: `frames[i]` is sequence number
/// `first + i`.
#[derive(Debug, Default)]
struct Window {
    first: i64,
    frames: VecDeque<Utf8Bytes>,
}

impl Window {
    fn push(&mut self, seq: i64, frame: Utf8Bytes, length: usize) {
        let next = self.first + self.frames.len() as i64;
        if self.frames.is_empty() || seq > next {
            // A gap (or the first): the window starts again here.
            self.frames.clear();
            self.first = seq;
        } else if seq < next {
            return;
        }
        self.frames.push_back(frame);
        if self.frames.len() > length {
            self.frames.pop_front();
            self.first += 1;
        }
    }

    /// The frames after `after`, up to `until`, if the window holds every one of them
    /// it knows of from `after + 1` on.
    fn after(&self, after: i64, until: Option<i64>) -> Option<Vec<(i64, Utf8Bytes)>> {
        let last = self.first + self.frames.len() as i64 - 1;
        if self.frames.is_empty() || after + 1 < self.first || after >= last {
            return None;
        }
        let end = until.map_or(last, |until| until.min(last));
        let skip = usize::try_from(after + 1 - self.first).ok()?;
        let frames = self.frames.iter().skip(skip).take(usize::try_from(end - after).ok()?);
        Some(frames.enumerate().map(|(i, frame)| (after + 1 + i as i64, frame.clone())).collect())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A frame naming its sequence number.
    pub(in crate::gateway) fn frame(seq: i64) -> Utf8Bytes {
        Utf8Bytes::from(format!("m{seq}"))
    }

    /// The sequence numbers of `frames`, each checked against its frame.
    pub(in crate::gateway) fn seqs(frames: Option<Vec<(i64, Utf8Bytes)>>) -> Option<Vec<i64>> {
        frames.map(|frames| {
            for (seq, frame) in &frames {
                assert_eq!(frame.as_str(), format!("m{seq}"));
            }
            frames.into_iter().map(|(seq, _)| seq).collect()
        })
    }

    #[test]
    fn a_window_keeps_the_latest_frames_without_a_gap() {
        let mut window = Window::default();
        for seq in 1..=10 {
            window.push(seq, frame(seq), 4);
        }
        window.push(9, frame(9), 4); // a duplicate changes nothing
        assert_eq!(seqs(window.after(6, None)), Some(vec![7, 8, 9, 10]));
        assert_eq!(seqs(window.after(7, Some(9))), Some(vec![8, 9]));
        assert_eq!(seqs(window.after(5, None)), None, "7 is the oldest kept: 6 is not");
        assert_eq!(seqs(window.after(10, None)), None, "nothing newer: ask the store");
        // A gap starts the window again.
        window.push(13, frame(13), 4);
        assert_eq!(seqs(window.after(12, None)), Some(vec![13]));
        assert_eq!(seqs(window.after(10, None)), None);
    }
}
