//! The `xcore` command.

// This is the command-line front end: writing to standard output is its job.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use xcore_server::config::{self, Loaded};
use xcore_server::{Error, Server, build_app, inherited_listener, logging, wait_for_signal};

/// xcore: a plugin-based application server.
#[derive(Debug, Parser)]
#[command(name = "xcore", version, about)]
struct Cli {
    /// Config file (TOML); it must exist. Without it, `xcore.toml` is read if present, and
    /// defaults and environment variables apply.
    #[arg(long, short, global = true, env = "XCORE_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve,
    /// List the plugins linked into this binary, and the commands they add.
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
    /// A command added by a plugin, such as `migrate [--status]` from the database module
    /// (`xcore plugins` lists them).
    #[command(external_subcommand)]
    Plugin(Vec<String>),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration, secrets redacted.
    Show,
    /// Check every section without serving: each problem is named, the exit code is 2.
    Check,
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
    let loaded = match xcore_server::load_config(cli.config.as_deref()) {
        Ok(loaded) => loaded,
        Err(error) => return fail(&error),
    };
    // Serving logs to standard output; a command keeps it for its result.
    let output = match cli.command {
        None | Some(Command::Serve) => logging::Output::Stdout,
        Some(_) => logging::Output::Stderr,
    };
    // Held until the end of `run` so buffered log lines are written out on exit.
    let _log_writer = match logging::init(&loaded.config.log, output) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: cannot set up logging: {error}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&loaded, inherited).await,
        Command::Plugins { json } => plugins(&loaded, json),
        Command::Config { command: ConfigCommand::Show } => show_config(&loaded),
        Command::Config { command: ConfigCommand::Check } => check_config(&loaded),
        Command::Plugin(args) => plugin_command(&loaded, args).await,
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
    // A supervisor killed outright sends no SIGTERM: its going is a signal of its own.
    let shutdown = async {
        tokio::select! {
            () = wait_for_signal() => {}
            () = xcore_server::supervisor::gone() => {}
        }
    };
    Server::start(loaded, inherited).await?.run(shutdown).await
}

/// Runs the plugin command named by the first of `args` with the rest.
async fn plugin_command(loaded: &Loaded, args: Vec<String>) -> Result<(), Error> {
    let mut app = build_app(loaded, true)?;
    let Some((name, rest)) = args.split_first() else {
        return Err(Error::UnknownCommand(String::new()));
    };
    let position = app.commands.iter().position(|command| command.name == name.as_str());
    let Some(command) = position.map(|position| app.commands.swap_remove(position)) else {
        return Err(Error::UnknownCommand(name.clone()));
    };
    let (name, plugin) = (command.name, command.plugin);
    command.run(rest.to_vec()).await.map_err(|source| Error::Command {
        command: name,
        plugin,
        source,
    })
}

fn plugins(loaded: &Loaded, json: bool) -> Result<(), Error> {
    let app = build_app(loaded, true)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&app.plugins).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{:<12} {:<10} {:<8} {:<16} {:<18} DESCRIPTION",
        "NAME", "VERSION", "ENABLED", "SECTION", "PREFIX"
    );
    for p in &app.plugins {
        let enabled = if p.enabled { "yes" } else { "no" };
        let prefix = p.prefix.as_deref().unwrap_or("-");
        println!(
            "{:<12} {:<10} {enabled:<8} {:<16} {prefix:<18} {}",
            p.name, p.version, p.section, p.description
        );
    }
    if !app.commands.is_empty() {
        println!("\ncommands from plugins:");
        for command in &app.commands {
            println!("  xcore {:<12} {} ({})", command.name, command.about, command.plugin);
        }
    }
    Ok(())
}

fn show_config(loaded: &Loaded) -> Result<(), Error> {
    let app = build_app(loaded, true)?;
    println!("{}", config::show(&loaded.config, &app.sections)?);
    Ok(())
}

fn check_config(loaded: &Loaded) -> Result<(), Error> {
    build_app(loaded, true)?;
    match &loaded.file {
        Some(file) => {
            println!("the configuration is valid ({} and the environment)", file.display())
        }
        None => println!("the configuration is valid (defaults and the environment)"),
    }
    Ok(())
}
