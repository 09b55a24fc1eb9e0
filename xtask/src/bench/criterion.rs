//! `bench cache` and the first half of `bench auth`: the crates' own criterion benchmarks.
//!
//! They measure library code in-process, so they need neither the release build nor a
//! running xcore; each runs `cargo bench` on its crate and leaves the report to criterion.

use std::process::Command;

use anyhow::Result;

use super::machine;
use crate::{cargo, run};

/// The cache's criterion benchmarks; the Redis ones run when `XCORE_TEST_REDIS_URL` is set.
pub(super) fn cache() -> Result<()> {
    println!("machine: {}", machine());
    run(Command::new(cargo()).args(["bench", "-p", "xcore-cache", "--bench", "cache"]))
}

/// The auth crate's criterion benchmarks: `CurrentUser` per request, password hashing.
pub(super) fn auth_criterion() -> Result<()> {
    println!("machine: {}", machine());
    run(Command::new(cargo()).args(["bench", "-p", "xcore-auth", "--bench", "auth"]))
}
