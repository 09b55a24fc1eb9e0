//! `cargo xtask bench messaging`: what the engine sustains, in-process, in release.
//!
//! 1. Throughput: 100 senders (one task each) send to 10 groups (sender `n` to group
//!    `n % 10`) as fast as their answers come back, for a fixed time; each send is timed
//!    from the call to its committed answer. Group commit on and off, on SQLite (a file,
//!    WAL) and, when `XCORE_TEST_DATABASE_URL` is set, PostgreSQL; the cases are run
//!    interleaved, twice each, so they see the same machine. After each run the
//!    conversations are checked: `last_seq` equals the number of answered sends.
//! 2. History: one conversation of 1,000,000 messages (inserted in bulk by SQL), then
//!    pages of 50 before random positions, read one after another and timed.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use diesel_async::SimpleAsyncConnection;
use xcore_db::{Conn, Database, DatabaseConfig};
use xcore_messaging::{Actor, Engine, MessagingConfig, Page, UserId};

const SENDERS: usize = 100;
const GROUPS: usize = 10;
const RUN: Duration = Duration::from_secs(5);
const HISTORY_MESSAGES: i64 = 1_000_000;
const HISTORY_READS: usize = 5_000;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let postgres = std::env::var("XCORE_TEST_DATABASE_URL").ok();
        if postgres.is_none() {
            println!("(PostgreSQL skipped: XCORE_TEST_DATABASE_URL is not set)");
        }
        let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
        let wanted = |name: &str| filter.as_deref().is_none_or(|filter| name.contains(filter));
        if wanted("throughput") {
            throughput(postgres.is_some()).await;
        }
        if wanted("history") {
            history(postgres.is_some()).await;
        }
    });
}

/// A fresh database: an SQLite file in a temporary directory, or a fresh PostgreSQL one.
async fn database(postgres: bool) -> (Database, Option<tempfile::TempDir>) {
    let (url, dir) = if postgres {
        (xcore_db::testing::fresh_postgres_url("bench").await.unwrap(), None)
    } else {
        let dir = tempfile::tempdir().unwrap();
        (format!("sqlite://{}", dir.path().join("bench.db").display()), Some(dir))
    };
    (Database::new(&DatabaseConfig { url, ..DatabaseConfig::default() }).unwrap(), dir)
}

async fn throughput(postgres: bool) {
    println!("\n| backend | group commit | messages/s | p50 | p99 | max |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut cases = vec![(false, true), (false, false)];
    if postgres {
        cases.extend([(true, true), (true, false)]);
    }
    for round in 0..2 {
        for &(postgres, group) in &cases {
            let result = throughput_case(postgres, group).await;
            let backend = if postgres { "PostgreSQL" } else { "SQLite" };
            let commit = if group { "on" } else { "off" };
            println!(
                "| {backend} | {commit} | {:.0} | {} | {} | {} | (round {})",
                result.rate,
                millis(result.p50),
                millis(result.p99),
                millis(result.max),
                round + 1
            );
        }
    }
}

struct Throughput {
    rate: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn throughput_case(postgres: bool, group_commit: bool) -> Throughput {
    let (db, _dir) = database(postgres).await;
    let config = MessagingConfig { group_commit, ..MessagingConfig::default() };
    let engine = Engine::new(db, config);
    engine.migrate().await.unwrap();
    let users: Vec<UserId> = (0..SENDERS).map(|n| UserId::from(format!("user{n}"))).collect();
    for user in &users {
        engine.register_user(user.clone(), user.as_str(), serde_json::json!({})).await.unwrap();
    }
    let mut groups = Vec::new();
    for g in 0..GROUPS {
        let members: Vec<UserId> = users.iter().skip(g).step_by(GROUPS).cloned().collect();
        let group =
            engine.create_group(members[0].clone(), &format!("g{g}"), &members).await.unwrap();
        groups.push(group.id);
    }
    let running = Arc::new(AtomicBool::new(true));
    let body = "x".repeat(100);
    let mut tasks = Vec::new();
    for (n, user) in users.iter().enumerate() {
        let (engine, running, user, body) =
            (engine.clone(), running.clone(), user.clone(), body.clone());
        let group = groups[n % GROUPS];
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(4096);
            while running.load(Ordering::Relaxed) {
                let start = Instant::now();
                engine.send(user.clone(), group, body.as_str()).await.unwrap();
                latencies.push(start.elapsed());
            }
            (group, latencies)
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    running.store(false, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut sent = std::collections::HashMap::<i64, i64>::new();
    for task in tasks {
        let (group, mut times) = task.await.unwrap();
        *sent.entry(group).or_default() += times.len() as i64;
        latencies.append(&mut times);
    }
    let elapsed = started.elapsed();
    // Every answered send is stored, numbered without a gap.
    let reader = &users[0];
    for (g, &group) in groups.iter().enumerate() {
        let member = &users[g];
        let conversation = engine.conversation(member, group).await.unwrap();
        assert_eq!(conversation.last_seq, sent[&group], "group {g}");
        let last =
            engine.history(&Actor::user(member), group, Page::Latest { limit: 1 }).await.unwrap();
        assert_eq!(last[0].seq, sent[&group]);
    }
    let _ = reader;
    latencies.sort_unstable();
    Throughput {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: quantile(&latencies, 0.50),
        p99: quantile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or_default(),
    }
}

async fn history(postgres: bool) {
    println!("\n| backend | page | reads | p50 | p99 | max |");
    println!("|---|---|---:|---:|---:|---:|");
    let mut backends = vec![false];
    if postgres {
        backends.push(true);
    }
    for postgres in backends {
        let (db, _dir) = database(postgres).await;
        let engine = Engine::new(db.clone(), MessagingConfig::default());
        engine.migrate().await.unwrap();
        engine.register_user("reader", "Reader", serde_json::json!({})).await.unwrap();
        let group = engine.create_group("reader", "big", &[]).await.unwrap().id;
        let started = Instant::now();
        seed(&db, group, postgres).await;
        let seeded = started.elapsed();
        assert_eq!(
            engine.conversation(&"reader".into(), group).await.unwrap().last_seq,
            HISTORY_MESSAGES
        );
        let backend = if postgres { "PostgreSQL" } else { "SQLite" };
        let reader = Actor::user("reader");
        for (name, latest) in [("50 before a random seq", false), ("latest 50", true)] {
            let mut latencies = Vec::with_capacity(HISTORY_READS);
            let mut state = 0x9e37_79b9_7f4a_7c15_u64;
            for _ in 0..HISTORY_READS {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let seq = 51 + (state % (HISTORY_MESSAGES as u64 - 50)) as i64;
                let page = if latest {
                    Page::Latest { limit: 50 }
                } else {
                    Page::Before { seq, limit: 50 }
                };
                let start = Instant::now();
                let messages = engine.history(&reader, group, page).await.unwrap();
                latencies.push(start.elapsed());
                assert_eq!(messages.len(), 50);
            }
            latencies.sort_unstable();
            println!(
                "| {backend} | {name} | {HISTORY_READS} | {} | {} | {} | (1,000,000 messages, seeded in {:.1} s)",
                millis(quantile(&latencies, 0.50)),
                millis(quantile(&latencies, 0.99)),
                millis(latencies[latencies.len() - 1]),
                seeded.as_secs_f64()
            );
        }
    }
}

/// Inserts messages 1..=HISTORY_MESSAGES into `group` in one statement per backend.
async fn seed(db: &Database, group: i64, postgres: bool) {
    let sql = if postgres {
        format!(
            "INSERT INTO messaging_messages (conversation_id, seq, sender_id, body, created_at, deleted) \
             SELECT {group}, n, 'reader', 'message ' || n, now() AT TIME ZONE 'utc', FALSE \
             FROM generate_series(1, {HISTORY_MESSAGES}) AS n; \
             UPDATE messaging_conversations SET last_seq = {HISTORY_MESSAGES} WHERE id = {group};"
        )
    } else {
        format!(
            "WITH RECURSIVE n(v) AS (SELECT 1 UNION ALL SELECT v + 1 FROM n WHERE v < {HISTORY_MESSAGES}) \
             INSERT INTO messaging_messages (conversation_id, seq, sender_id, body, created_at, deleted) \
             SELECT {group}, v, 'reader', 'message ' || v, CURRENT_TIMESTAMP, 0 FROM n; \
             UPDATE messaging_conversations SET last_seq = {HISTORY_MESSAGES} WHERE id = {group};"
        )
    };
    let mut conn = db.get().await.unwrap();
    match &mut conn {
        Conn::Sqlite(c) => c.batch_execute(&sql).await.unwrap(),
        Conn::Postgres(c) => c.batch_execute(&sql).await.unwrap(),
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn millis(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}
