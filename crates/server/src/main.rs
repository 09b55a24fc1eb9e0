//! The `xcore` command.

// This is the command-line front end: writing to standard output is its job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xcore_server::config::{self, Loaded};
use xcore_server::{
    Error, Server, Services, build_app, inherited_listener, logging, wait_for_signal,
};

/// xcore: a plugin-based application server.
#[derive(Debug, Parser)]
#[command(name = "xcore", version, about)]
struct Cli {
    /// Config file (TOML). A missing file is fine: defaults and environment apply.
    #[arg(long, short, global = true, env = "XCORE_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// Apply pending database migrations.
    Migrate {
        /// List applied and pending migrations instead of applying them.
        #[arg(long)]
        status: bool,
    },
    /// List the plugins linked into this binary.
    Plugins {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets redacted.
    Show,
}

fn main() -> ExitCode {
    // Taken while the process has one thread: it edits the environment.
    let inherited = match inherited_listener() {
        Ok(inherited) => inherited,
        Err(error) => {
            eprintln!("error: LISTEN_FDS does not name a usable TCP socket: {error}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse();
    match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run(cli, inherited)),
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, inherited: Option<std::net::TcpListener>) -> ExitCode {
    let loaded = match config::load(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(errors) => return fail(&Error::Config(errors)),
    };
    // Held until the end of `run` so buffered log lines are written out on exit.
    let _log_writer = match logging::init(&loaded.config.log) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: cannot set up logging: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&loaded, inherited).await,
        Command::Migrate { status } => migrate(&loaded, status).await,
        Command::Plugins { json } => plugins(&loaded, json),
        Command::Config { command: ConfigCommand::Show } => show_config(&loaded),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn fail(error: &Error) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(error.exit_code())
}

async fn serve(loaded: &Loaded, inherited: Option<std::net::TcpListener>) -> Result<(), Error> {
    if !loaded.file.1 && loaded.file.0.as_path() != std::path::Path::new(config::DEFAULT_FILE) {
        tracing::warn!(file = %loaded.file.0.display(), "config file not found; using defaults and environment");
    }
    Server::start(loaded, inherited).await?.run(wait_for_signal()).await
}

async fn migrate(loaded: &Loaded, status: bool) -> Result<(), Error> {
    let services = Services::offline(&loaded.config)?;
    let app = build_app(&loaded.figment, &services)?;
    let db = services.db;
    let sets =
        app.extensions.get::<xcore_db::Migrations>().map(|m| m.sets.clone()).unwrap_or_default();
    if status {
        let migrations = db.migration_status(&sets).await?;
        println!("{:<10} {:<12} {:<16} NAME", "STATE", "SET", "VERSION");
        for m in &migrations {
            let state = if m.applied { "applied" } else { "pending" };
            println!("{state:<10} {:<12} {:<16} {}", m.set, m.version, m.name);
        }
        let pending = migrations.iter().filter(|m| !m.applied).count();
        println!("{} applied, {pending} pending", migrations.len() - pending);
    } else {
        let applied = db.migrate(&sets).await?;
        for m in &applied {
            println!("applied {} {} ({})", m.version, m.name, m.set);
        }
        println!("{} migration(s) applied", applied.len());
    }
    Ok(())
}

fn plugins(loaded: &Loaded, json: bool) -> Result<(), Error> {
    let app = build_app(&loaded.figment, &Services::offline(&loaded.config)?)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&app.plugins).unwrap_or_default());
        return Ok(());
    }
    println!("{:<16} {:<10} {:<8} {:<24} DESCRIPTION", "NAME", "VERSION", "ENABLED", "PREFIX");
    for p in &app.plugins {
        let enabled = if p.enabled { "yes" } else { "no" };
        let prefix = p.prefix.as_deref().unwrap_or("-");
        println!("{:<16} {:<10} {enabled:<8} {prefix:<24} {}", p.name, p.version, p.description);
    }
    Ok(())
}

fn show_config(loaded: &Loaded) -> Result<(), Error> {
    println!("{}", config::show(&loaded.config)?);
    Ok(())
}
