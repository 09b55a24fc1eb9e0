//! The limits, with the generic cell rate algorithm (GCRA), as the middleware's HTTP rate
//! limits count requests.
//!
//! GCRA keeps one instant per key, the theoretical arrival time (TAT): when the next
//! message would come if messages came at exactly the allowed rate. A message at `now`
//! fits when the TAT, moved on by one emission interval (`per_secs / messages`), is within
//! the burst tolerance (`per_secs`) of `now`; the TAT then moves on. Otherwise the time
//! until it fits is exact: the moved TAT less the tolerance, less `now`.
//!
//! A message counts against its sender's limit and its group's: both must let it through,
//! and only then do both move on, so a message refused for its group costs its sender
//! nothing. The two keys are locked in that order (a user's, then a group's), so checks
//! never wait on each other in a cycle. Keys live in bounded moka caches, made on the first
//! message, and go once idle for a whole period, when their TAT is in the past and they
//! equal a fresh key.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use xcore_messaging::{ConversationId, ConversationKind, Outgoing, Refusal, UserId};

use crate::{Rate, RateLimiterConfig};

/// The per-user and per-group limits of one engine.
#[derive(Debug)]
pub struct Limiter {
    user: Option<Gcra<UserId>>,
    group: Option<Gcra<ConversationId>>,
    exempt: HashSet<UserId>,
    /// Times are nanoseconds since this instant.
    origin: Instant,
}

impl Limiter {
    /// The limits `config` describes; `None` when both are off.
    pub fn new(config: &RateLimiterConfig) -> Option<Self> {
        let user = Gcra::new(config.per_user, config.max_tracked);
        let group = Gcra::new(config.per_group, config.max_tracked);
        if user.is_none() && group.is_none() {
            return None;
        }
        let exempt = config.exempt.iter().map(UserId::from).collect();
        Some(Self { user, group, exempt, origin: Instant::now() })
    }

    /// Counts `outgoing` now: the refusal when it does not fit.
    pub fn check(&self, outgoing: &Outgoing) -> Option<Refusal> {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.check_at(&outgoing.sender, outgoing.conversation, outgoing.kind, now)
    }

    /// Counts a message from `sender` to `conversation` (of `kind`) at `now` nanoseconds
    /// after the limiter was made: the refusal when it does not fit.
    pub fn check_at(
        &self,
        sender: &UserId,
        conversation: ConversationId,
        kind: ConversationKind,
        now: u64,
    ) -> Option<Refusal> {
        if self.exempt.contains(sender) {
            return None;
        }
        let user = self.user.as_ref().map(|gcra| (gcra, gcra.cell(sender.clone())));
        let group = match kind {
            ConversationKind::Direct => None,
            ConversationKind::Group | ConversationKind::Lobby => {
                self.group.as_ref().map(|gcra| (gcra, gcra.cell(conversation)))
            }
        };
        // Both held until both are decided: a sender's and a group's.
        let mut user_tat = user.as_ref().map(|(_, cell)| lock(cell));
        let mut group_tat = group.as_ref().map(|(_, cell)| lock(cell));
        let user_next = user.as_ref().zip(user_tat.as_deref()).map(|((g, _), t)| g.admit(*t, now));
        let group_next =
            group.as_ref().zip(group_tat.as_deref()).map(|((g, _), t)| g.admit(*t, now));
        let refused = [
            user_next.and_then(Result::err).map(|wait| (wait, Limit::User)),
            group_next.and_then(Result::err).map(|wait| (wait, Limit::Group)),
        ];
        // Sending succeeds once both fit: after the longer wait.
        if let Some((wait, limit)) = refused.into_iter().flatten().max_by_key(|(wait, _)| *wait) {
            let rate = match limit {
                Limit::User => self.user.as_ref().map(|gcra| gcra.rate),
                Limit::Group => self.group.as_ref().map(|gcra| gcra.rate),
            };
            return Some(refusal(limit, rate.unwrap_or(Rate::off()), Duration::from_nanos(wait)));
        }
        if let (Some(tat), Some(Ok(next))) = (user_tat.as_deref_mut(), user_next) {
            *tat = next;
        }
        if let (Some(tat), Some(Ok(next))) = (group_tat.as_deref_mut(), group_next) {
            *tat = next;
        }
        None
    }

    /// How many users and groups are tracked now, for tests of the memory bound.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> (u64, u64) {
        (self.user.as_ref().map_or(0, Gcra::tracked), self.group.as_ref().map_or(0, Gcra::tracked))
    }
}

#[derive(Debug, Clone, Copy)]
enum Limit {
    User,
    Group,
}

/// What the sender is told.
fn refusal(limit: Limit, rate: Rate, wait: Duration) -> Refusal {
    let (messages, secs, after) = (rate.messages, rate.per_secs, readable(wait));
    let message = match limit {
        Limit::User => format!(
            "You are sending messages too fast: at most {messages} every {secs} s. \
             Try again in {after}."
        ),
        Limit::Group => format!(
            "This conversation receives too many messages: at most {messages} every {secs} s \
             from all its members. Try again in {after}."
        ),
    };
    Refusal::new("rate_limited", message).retry_after(wait)
}

/// `wait` for a person: tenths of a second below 10 s, then whole seconds, rounded up so
/// that trying again after it succeeds.
fn readable(wait: Duration) -> String {
    let tenths = wait.as_nanos().div_ceil(100_000_000);
    if tenths < 100 {
        format!("{}.{} s", tenths / 10, tenths % 10)
    } else {
        format!("{} s", wait.as_nanos().div_ceil(1_000_000_000))
    }
}

/// A lock that a panic elsewhere cannot leave unusable: the guarded value is a number,
/// always valid.
fn lock(cell: &Mutex<u64>) -> MutexGuard<'_, u64> {
    cell.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One limit: the TAT of every key.
struct Gcra<K> {
    rate: Rate,
    /// Nanoseconds between two messages at the allowed rate.
    emission: u64,
    /// Nanoseconds of burst: `messages` emission intervals, the period.
    tolerance: u64,
    max_keys: u64,
    /// Made on the first message: a cache allocates its tables when made, which a server
    /// that sends no message need not pay for.
    tats: OnceLock<moka::sync::Cache<K, Arc<Mutex<u64>>>>,
}

impl<K> std::fmt::Debug for Gcra<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gcra").field("rate", &self.rate).finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Send + Sync + 'static> Gcra<K> {
    /// The limit `rate` over at most `max_keys` keys; `None` when it is off.
    fn new(rate: Rate, max_keys: u64) -> Option<Self> {
        if !rate.enabled || rate.messages == 0 {
            return None;
        }
        let period = Duration::from_secs(rate.per_secs.max(1));
        let emission =
            u64::try_from(period.as_nanos() / u128::from(rate.messages)).unwrap_or(u64::MAX).max(1);
        let tolerance = emission.saturating_mul(u64::from(rate.messages));
        Some(Self { rate, emission, tolerance, max_keys, tats: OnceLock::new() })
    }

    /// The TATs, kept for at most `max_keys` keys and dropped once idle for a period.
    fn tats(&self) -> &moka::sync::Cache<K, Arc<Mutex<u64>>> {
        self.tats.get_or_init(|| {
            moka::sync::Cache::builder()
                .max_capacity(self.max_keys)
                .time_to_idle(Duration::from_nanos(self.tolerance) + Duration::from_millis(1))
                .build()
        })
    }

    #[cfg(test)]
    fn tracked(&self) -> u64 {
        self.tats().run_pending_tasks();
        self.tats().entry_count()
    }

    /// The TAT of `key`; a new key's is 0, in the past of every `now`.
    fn cell(&self, key: K) -> Arc<Mutex<u64>> {
        self.tats().get_with(key, || Arc::new(Mutex::new(0)))
    }

    /// The TAT after a message at `now`, when it fits; the nanoseconds until it fits
    /// otherwise.
    fn admit(&self, tat: u64, now: u64) -> Result<u64, u64> {
        let next = tat.max(now).saturating_add(self.emission);
        let allowed_from = next.saturating_sub(self.tolerance);
        if now < allowed_from { Err(allowed_from - now) } else { Ok(next) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn limiter(per_user: Rate, per_group: Rate) -> Limiter {
        let config = RateLimiterConfig {
            per_user,
            per_group,
            exempt: vec!["bot".to_owned()],
            max_tracked: 1000,
        };
        Limiter::new(&config).unwrap()
    }

    fn wait(refusal: Option<Refusal>) -> Option<Duration> {
        refusal.map(|refusal| refusal.retry_after.unwrap())
    }

    /// Sends from `user` to group 1 at `at` nanoseconds: the wait when refused.
    fn send(limiter: &Limiter, user: &str, at: u64) -> Option<Duration> {
        wait(limiter.check_at(&UserId::from(user), 1, ConversationKind::Group, at))
    }

    #[test]
    fn a_burst_fits_then_one_message_per_interval_with_the_exact_wait() {
        let limiter = limiter(Rate::per(4, 2), Rate::off());
        for n in 0..4 {
            assert_eq!(send(&limiter, "ada", 10 * SEC), None, "message {n} of the burst");
        }
        // One every 0.5 s: the fifth fits half a second later, to the nanosecond.
        assert_eq!(send(&limiter, "ada", 10 * SEC), Some(Duration::from_millis(500)));
        assert_eq!(send(&limiter, "ada", 10 * SEC + 200_000_000), Some(Duration::from_millis(300)));
        assert_eq!(send(&limiter, "ada", 10 * SEC + SEC / 2 - 1), Some(Duration::from_nanos(1)));
        assert_eq!(send(&limiter, "ada", 10 * SEC + SEC / 2), None);
        assert_eq!(send(&limiter, "ada", 10 * SEC + SEC / 2), Some(Duration::from_millis(500)));
        // A refused message does not count: after a whole period, the whole burst again.
        for _ in 0..4 {
            assert_eq!(send(&limiter, "ada", 13 * SEC), None);
        }
        assert!(send(&limiter, "ada", 13 * SEC).is_some());
        // Another user has a budget of their own.
        assert_eq!(send(&limiter, "bob", 13 * SEC), None);
    }

    #[test]
    fn a_message_refused_for_its_group_costs_its_sender_nothing() {
        let limiter = limiter(Rate::per(2, 10), Rate::per(3, 10));
        assert_eq!(send(&limiter, "ada", SEC), None);
        assert_eq!(send(&limiter, "bob", SEC), None);
        assert_eq!(send(&limiter, "bob", SEC), None);
        // The group is full; Ada's own budget has one left, kept for another conversation.
        let refusal = limiter.check_at(&UserId::from("ada"), 1, ConversationKind::Group, SEC);
        let refusal = refusal.unwrap();
        assert_eq!(refusal.code, "rate_limited");
        assert!(refusal.message.starts_with("This conversation receives"), "{}", refusal.message);
        assert_eq!(
            wait(limiter.check_at(&UserId::from("ada"), 2, ConversationKind::Group, SEC)),
            None
        );
        // Now both are full: the longer wait is the one that counts. Ada's next fits in
        // 5 s, the group's in 10/3 s.
        let refusal = limiter.check_at(&UserId::from("ada"), 1, ConversationKind::Group, SEC);
        let refusal = refusal.unwrap();
        assert_eq!(refusal.retry_after, Some(Duration::from_secs(5)));
        assert_eq!(
            refusal.message,
            "You are sending messages too fast: at most 2 every 10 s. Try again in 5.0 s."
        );
    }

    #[test]
    fn direct_conversations_have_no_group_limit_and_the_lobby_has_one() {
        let limiter = limiter(Rate::off(), Rate::per(1, 10));
        let ada = UserId::from("ada");
        for _ in 0..5 {
            assert!(limiter.check_at(&ada, 7, ConversationKind::Direct, SEC).is_none());
        }
        assert!(limiter.check_at(&ada, 8, ConversationKind::Lobby, SEC).is_none());
        assert!(limiter.check_at(&ada, 8, ConversationKind::Lobby, SEC).is_some());
    }

    #[test]
    fn exempt_users_are_never_limited_and_no_limit_means_no_limiter() {
        let limiter = limiter(Rate::per(1, 10), Rate::per(1, 10));
        for _ in 0..5 {
            assert_eq!(send(&limiter, "bot", SEC), None);
        }
        let off = RateLimiterConfig {
            per_user: Rate::off(),
            per_group: Rate::off(),
            ..RateLimiterConfig::default()
        };
        assert!(Limiter::new(&off).is_none());
    }

    /// A flood of distinct users cannot grow memory past `max_tracked` keys per limit.
    #[test]
    fn memory_is_bounded_by_max_tracked() {
        let config = RateLimiterConfig { max_tracked: 50, ..RateLimiterConfig::default() };
        let limiter = Limiter::new(&config).unwrap();
        for n in 0..5_000 {
            let user = UserId::from(format!("user{n}"));
            limiter.check_at(&user, n, ConversationKind::Group, SEC);
        }
        let (users, groups) = limiter.tracked();
        assert!(users <= 50 && groups <= 50, "{users} users, {groups} groups tracked");
    }

    #[test]
    fn waits_read_in_tenths_then_seconds_rounded_up() {
        for (nanos, text) in [
            (1, "0.1 s"),
            (500_000_000, "0.5 s"),
            (500_000_001, "0.6 s"),
            (9_900_000_000, "9.9 s"),
            (9_900_000_001, "10 s"),
            (61_000_000_000, "61 s"),
        ] {
            assert_eq!(readable(Duration::from_nanos(nanos)), text, "{nanos}");
        }
    }
}
