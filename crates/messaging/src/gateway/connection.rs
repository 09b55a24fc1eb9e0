//! One open connection as the hub sees it: its bounded queue, and how it is asked to close.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::sync::Notify;

use super::close;
use super::hub::Outbound;
use crate::model::UserId;

/// Asks a connection to close, once, with a code.
#[derive(Debug, Default)]
pub(crate) struct Closer {
    code: AtomicU16,
    notify: Notify,
}

impl Closer {
    /// Asks for a close with `code`, unless one was asked already.
    pub fn close(&self, code: u16) {
        if self.code.compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            // The reader and the writer both wait; a waiter created before the code was
            // set is woken, one created after sees the code.
            self.notify.notify_waiters();
        }
    }

    /// The code asked for, if any.
    pub fn code(&self) -> Option<u16> {
        match self.code.load(Ordering::Acquire) {
            0 => None,
            code => Some(code),
        }
    }

    /// Waits for a close to be asked.
    pub async fn wait(&self) -> u16 {
        loop {
            let notified = self.notify.notified();
            if let Some(code) = self.code() {
                return code;
            }
            notified.await;
        }
    }
}

/// One open connection, as the hub sees it.
#[derive(Debug)]
pub(crate) struct Connection {
    pub id: u64,
    pub user: UserId,
    pub queue: Queue,
    pub closer: Closer,
    /// The queue is half full: a writer gathering deliveries writes them now.
    pub pressure: Notify,
}

impl Connection {
    /// Queues `outbound`; a full queue makes this a slow consumer, closed.
    pub fn push(&self, outbound: Outbound) -> bool {
        match self.queue.push(outbound) {
            Some(len) => {
                if len >= self.queue.capacity / 2 {
                    self.pressure.notify_one();
                }
                true
            }
            None => {
                self.closer.close(close::SLOW);
                false
            }
        }
    }
}

/// A connection's bounded queue, for its writer.
///
/// A deque that gives its memory back once drained of a burst: an idle connection holds
/// next to nothing (a channel keeps a block of slots, some 1.3 KB, for its whole life).
#[derive(Debug)]
pub(crate) struct Queue {
    items: Mutex<VecDeque<Outbound>>,
    /// Something was queued into an empty queue.
    ready: Notify,
    capacity: usize,
}

/// Slots a drained queue may keep: more, left by a burst, are freed.
const KEPT_SLOTS: usize = 64;

impl Queue {
    pub fn new(capacity: usize) -> Self {
        Self { items: Mutex::new(VecDeque::new()), ready: Notify::new(), capacity }
    }

    /// Queues `outbound` unless the queue is full; the length it leaves.
    fn push(&self, outbound: Outbound) -> Option<usize> {
        let mut items = lock(&self.items);
        if items.len() >= self.capacity {
            return None;
        }
        items.push_back(outbound);
        let len = items.len();
        drop(items);
        if len == 1 {
            self.ready.notify_one();
        }
        Some(len)
    }

    /// The next item, waiting for one.
    pub async fn recv(&self) -> Outbound {
        loop {
            let ready = self.ready.notified();
            if let Some(outbound) = self.try_recv() {
                return outbound;
            }
            ready.await;
        }
    }

    /// The next item, if one is queued.
    pub fn try_recv(&self) -> Option<Outbound> {
        let mut items = lock(&self.items);
        let outbound = items.pop_front();
        if items.is_empty() && items.capacity() > KEPT_SLOTS {
            *items = VecDeque::new();
        }
        outbound
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
