//! A round at a fixed rate, and what is measured of it: latencies, CPU and memory.

use super::*;

/// Sends at `rate` deliveries per second (the message rate times the members) for
/// `seconds`, waits for the stragglers, and reports the round.
pub(crate) async fn run_round(
    target: &mut Target,
    round: u64,
    rate: f64,
    seconds: f64,
) -> Result<Value> {
    let shared = target.shared.clone();
    for shard in shared.latencies.lock().map_err(poisoned)?.iter() {
        shard.lock().map_err(poisoned)?.clear();
    }
    shared.acks.lock().map_err(poisoned)?.clear();
    shared.delivered.store(0, Ordering::Relaxed);
    shared.last_delivery.store(0, Ordering::Relaxed);
    let closed_before = shared.closed.load(Ordering::Relaxed);
    shared.round.store(round, Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss, reason = "a member count is far below 2^52")]
    let per_second = rate / target.members as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "positive, small")]
    let total = (per_second * seconds).round().max(1.0) as u64;
    let interval = Duration::from_secs_f64(1.0 / per_second);
    let outbox = target.outbox.clone().context("no sender socket")?;

    let cpu_before = cpu_ticks(target.pid)?;
    let start = tokio::time::Instant::now();
    let start_micros = now_micros();
    for index in 0..total {
        let due = start + interval.mul_f64(index as f64);
        tokio::time::sleep_until(due).await;
        let number = target.next_ref;
        target.next_ref += 1;
        let sent = now_micros();
        let body = body(round, sent);
        let frame = match target.kind {
            Kind::Xcore => format!(
                r#"{{"type":"send","ref":{number},"conversation":{},"body":"{body}"}}"#,
                target.conversation
            ),
            Kind::XcoreSocketIo => format!(
                r#"42/chat,{number}["send",{{"conversation":{},"body":"{body}"}}]"#,
                target.conversation
            ),
            Kind::SocketIo => format!(r#"42{number}["send","{body}"]"#),
        };
        target.pending.lock().map_err(poisoned)?.insert(number, sent);
        outbox.send(Message::text(frame)).context("the sender's socket is closed")?;
    }
    let send_end = now_micros();
    let expected = total * u64::try_from(target.members)?;
    let drain_until = tokio::time::Instant::now() + DRAIN;
    while shared.delivered.load(Ordering::Relaxed) < expected
        && tokio::time::Instant::now() < drain_until
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_after = cpu_ticks(target.pid)?;
    // Later deliveries of this round are not counted.
    shared.round.store(0, Ordering::Relaxed);

    let mut latencies = Vec::new();
    for shard in shared.latencies.lock().map_err(poisoned)?.iter() {
        latencies.extend_from_slice(&shard.lock().map_err(poisoned)?);
    }
    latencies.sort_unstable();
    let mut acks = std::mem::take(&mut *shared.acks.lock().map_err(poisoned)?);
    acks.sort_unstable();
    target.pending.lock().map_err(poisoned)?.clear();
    let delivered = latencies.len() as u64;
    let last = shared.last_delivery.load(Ordering::Relaxed).max(send_end);
    #[allow(clippy::cast_precision_loss, reason = "counts and µs are far below 2^52")]
    let (achieved, cpu_us) = (
        delivered as f64 / ((last - start_micros) as f64 / 1e6),
        (cpu_after - cpu_before) as f64 * 10_000.0 / delivered.max(1) as f64,
    );
    let send_seconds = Duration::from_micros(send_end - start_micros).as_secs_f64();
    // Sustained: (nearly) every delivery arrived, at (nearly) the rate asked for, and the
    // sender kept to its schedule.
    #[allow(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    let sustained = delivered as f64 >= 0.999 * expected as f64
        && achieved >= 0.95 * rate
        && send_seconds <= seconds * 1.05;
    Ok(json!({
        "kind": "round",
        "server": target.kind.name(),
        "members": target.members,
        "rate": rate,
        "seconds": seconds,
        "sent": total,
        "expected": expected,
        "delivered": delivered,
        "deliveries_per_sec": achieved,
        // Missing deliveries count as slower than any that came.
        "p50_ms": quantile_ms(&latencies, expected, 0.50),
        "p99_ms": quantile_ms(&latencies, expected, 0.99),
        "ack_p50_ms": quantile_ms(&acks, total, 0.50),
        "ack_p99_ms": quantile_ms(&acks, total, 0.99),
        "cpu_us_per_delivery": cpu_us,
        "closed_sockets": shared.closed.load(Ordering::Relaxed) - closed_before,
        "sustained": sustained,
    }))
}

/// The `q` quantile (nearest rank) of `sorted` µs among `of` samples in ms; the samples
/// missing from `sorted` count as infinitely slow (JSON `null`).
pub(crate) fn quantile_ms(sorted: &[u32], of: u64, q: f64) -> Value {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "small, positive")]
    #[allow(clippy::cast_precision_loss, reason = "counts are far below 2^52")]
    let rank = ((q * of as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).map_or(Value::Null, |&micros| json!(f64::from(micros) / 1000.0))
}

/// User plus system CPU time of `pid`, in clock ticks (USER_HZ, 100 on Linux).
pub(crate) fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |index: usize| -> Result<u64> {
        fields.get(index).and_then(|value| value.parse().ok()).context("malformed stat")
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    Ok(field(11)? + field(12)?)
}

/// The resident set size of `pid`, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// Opens `count` idle sockets (authenticated on xcore, connected to the main namespace on
/// Socket.IO; subscribed to nothing) and reports the server's RSS growth per socket.
pub(crate) async fn idle_memory(target: &Target, count: usize) -> Result<Value> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(target.pid)?;
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let (kind, ws, permits) = (target.kind, target.ws.clone(), permits.clone());
        let token = if target.tokens.is_empty() {
            None
        } else {
            Some(target.tokens[index % target.tokens.len()].clone())
        };
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            open(kind, &ws, token.as_deref()).await
        });
    }
    let mut sockets = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        sockets.push(joined??);
    }
    // Keep reading so pings are answered, as an idle client would.
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let kind = target.kind;
            tokio::spawn(async move {
                let (mut sink, mut stream) = socket.split();
                while let Some(Ok(frame)) = stream.next().await {
                    if let Message::Text(text) = frame
                        && kind.engine_io()
                        && text.as_str() == "2"
                        && sink.send(Message::text("3")).await.is_err()
                    {
                        return;
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(target.pid)?;
    for reader in &readers {
        reader.abort();
    }
    #[allow(clippy::cast_precision_loss, reason = "KiB and counts are far below 2^52")]
    let per_connection = after.saturating_sub(before) as f64 * 1024.0 / count as f64;
    Ok(json!({
        "kind": "idle",
        "server": target.kind.name(),
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_connection": per_connection,
    }))
}
