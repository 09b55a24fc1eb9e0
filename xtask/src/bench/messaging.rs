//! `bench messaging`: the messaging engine in-process (`crates/messaging/benches`): send
//! throughput and send-to-commit latency with group commit on and off, and history pages
//! over a million messages, on SQLite and, when `XCORE_TEST_DATABASE_URL` is set,
//! PostgreSQL. It needs no running xcore; `cargo bench` builds it in release.

use std::process::Command;

use anyhow::Result;

use super::machine;
use crate::{cargo, run};

/// Runs the engine's benchmark binary; `filter` (`throughput` or `history`) runs one half.
pub(super) fn messaging(filter: Option<&str>) -> Result<()> {
    println!("machine: {}", machine());
    let mut command = Command::new(cargo());
    command.args(["bench", "-p", "xcore-messaging", "--bench", "messaging", "--"]);
    command.args(filter);
    run(&mut command)
}
