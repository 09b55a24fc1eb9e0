//! `cargo xtask contract`: the OpenAPI document checked against the server it describes.
//!
//! The real `xcore` binary (the debug build the tests use) serves a fresh SQLite database,
//! and schemathesis tests every operation of `/openapi.json` with all of its checks and all
//! of its phases, twice: once anonymous and once signed in. Whatever the document lists is
//! tested, so a module or plugin is covered as soon as its routes are documented, and
//! anything the server answers that the document does not say (an undocumented status, a
//! body of another shape, a 5xx) fails the task.
//!
//! Runs are reproducible: a fixed seed, a bounded number of examples, one worker, no
//! example database and no cache carried between runs. The server's quotas and login
//! lockout are lifted (see [`settings::lifted_limits`]), since a run sends thousands of
//! requests from one address.
//!
//! Schemathesis is installed at a pinned version into a virtual environment under the
//! target directory, kept between runs and built again only when the pin changes. Each
//! run leaves its files in `<target>/contract/<run>/`: the server's configuration and log,
//! `schemathesis.toml` and the JSON report.

mod report;
mod settings;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::bench::{Process, free_port, post, wait_until_healthy, xcore_command};
use crate::run;
use settings::{EMAIL, PASSWORD, Run, SCHEMATHESIS, lifted_limits, st_args, st_config};

/// What one run found.
struct Outcome {
    run: Run,
    passed: bool,
    lines: Vec<String>,
}

/// `cargo xtask contract [-- <st run arguments>]`: the extra arguments go to both runs.
pub fn main(args: &[String]) -> Result<()> {
    let extra: Vec<String> = args.iter().skip_while(|arg| *arg == "--").cloned().collect();
    let start = Instant::now();
    crate::dev::build()?;
    let binary = crate::dev::binary();
    let root = crate::target_dir().join("contract");
    let st = schemathesis(&root.join("venv"))?;
    let outcomes = Run::ALL
        .into_iter()
        .map(|run| check(run, &binary, &st, &root.join(run.name()), &extra))
        .collect::<Result<Vec<_>>>()?;

    println!();
    println!("contract: schemathesis {SCHEMATHESIS} on {}", binary.display());
    for outcome in &outcomes {
        let verdict = if outcome.passed { "passed" } else { "FAILED" };
        println!("{} run {verdict}:", outcome.run.name());
        for line in &outcome.lines {
            println!("  {line}");
        }
    }
    let failed = outcomes.iter().filter(|outcome| !outcome.passed).count();
    println!(
        "took {:.0} s; files of each run in {}",
        start.elapsed().as_secs_f64(),
        root.display()
    );
    println!("contract: {} passed, {failed} failed", outcomes.len() - failed);
    if failed > 0 {
        bail!("the server does not do what its OpenAPI document says: see the failures above");
    }
    Ok(())
}

/// The `st` command of the virtual environment `venv`, installing the pinned schemathesis
/// there first unless that version already is.
fn schemathesis(venv: &Path) -> Result<PathBuf> {
    let st = venv.join("bin").join("st");
    let marker = venv.join("schemathesis-version");
    let installed = std::fs::read_to_string(&marker).ok();
    if installed.as_deref().map(str::trim) == Some(SCHEMATHESIS) && st.is_file() {
        return Ok(st);
    }
    eprintln!("installing schemathesis {SCHEMATHESIS} into {}", venv.display());
    remove_dir(venv)?;
    run(Command::new("python3").args(["-m", "venv"]).arg(venv))
        .context("python3 with its venv module is needed (Debian: python3-venv)")?;
    run(Command::new(venv.join("bin").join("python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        &format!("schemathesis=={SCHEMATHESIS}"),
    ]))?;
    std::fs::write(&marker, SCHEMATHESIS)?;
    Ok(st)
}

/// Serves a fresh database from `dir` and runs schemathesis `st` against it as `run`.
fn check(run: Run, binary: &Path, st: &Path, dir: &Path, extra: &[String]) -> Result<Outcome> {
    remove_dir(dir)?;
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let limits = lifted_limits(&effective_config(binary, &dir)?);
    std::fs::write(dir.join("xcore.toml"), toml::to_string(&limits)?)?;

    let port = free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let log_path = dir.join("server.log");
    let log = File::create(&log_path)?;
    let mut command = xcore_command(binary, &dir, port);
    without_inherited_settings(&mut command);
    command.stdout(log.try_clone()?).stderr(log);
    let mut server = Process(command.spawn().context("cannot start xcore")?);
    wait_until_healthy(addr, Duration::from_secs(30))
        .with_context(|| format!("the server did not start: see {}", log_path.display()))?;
    if run == Run::Authenticated {
        let account = format!(r#"{{"email": "{EMAIL}", "password": "{PASSWORD}"}}"#);
        let status = post(addr, "/auth/register", &account)?;
        if status != 201 {
            bail!("registering the account of the authenticated run answered {status}");
        }
    }

    let config = dir.join("schemathesis.toml");
    std::fs::write(&config, st_config(run))?;
    let report = dir.join("report.json");
    println!("contract, {} run: schemathesis {SCHEMATHESIS} against http://{addr}", run.name());
    let status = Command::new(st)
        .current_dir(&dir)
        .args(st_args(&format!("http://{addr}"), &config, &report, extra))
        .status()
        .with_context(|| format!("cannot run {}", st.display()))?;
    let exited = server.0.try_wait()?;
    drop(server);

    let mut lines = match std::fs::read_to_string(&report) {
        Ok(text) => report::summarize(&text)?,
        Err(_) => vec![format!("schemathesis wrote no report ({status})")],
    };
    if let Some(exit) = exited {
        lines
            .push(format!("the server exited during the run ({exit}): see {}", log_path.display()));
    }
    Ok(Outcome { run, passed: status.success() && exited.is_none(), lines })
}

/// The server's effective configuration in `dir`, from `xcore config show`.
fn effective_config(binary: &Path, dir: &Path) -> Result<toml::Table> {
    let mut command = Command::new(binary);
    command.current_dir(dir).args(["config", "show"]);
    without_inherited_settings(&mut command);
    let output = command.output().context("cannot run `xcore config show`")?;
    if !output.status.success() {
        bail!("`xcore config show` failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    toml::from_str(&String::from_utf8_lossy(&output.stdout))
        .context("cannot read `xcore config show`")
}

/// Removes the `XCORE_*` settings `command` would inherit (but those it sets itself), so
/// the server runs on its defaults and the run's `xcore.toml` alone.
fn without_inherited_settings(command: &mut Command) {
    let own: Vec<_> = command.get_envs().map(|(key, _)| key.to_owned()).collect();
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("XCORE_") && !own.contains(&key) {
            command.env_remove(key);
        }
    }
    command.env_remove("RUST_LOG");
}

/// Removes `dir` and everything in it, if it exists.
fn remove_dir(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}
