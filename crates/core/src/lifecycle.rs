//! What plugins leave for the host to run: startup and shutdown [`Hook`]s, readiness
//! [`Probe`]s, metric [`Scrape`] callbacks and command-line [`Command`]s.
//!
//! Each is a boxed closure tagged with the plugin that registered it, so the host can run
//! them in the plugins' order and name the plugin when one fails. None of them knows the
//! host: a probe reports a line of text, a command gets its arguments, and the host decides
//! what to answer on `/ready` or print on the terminal.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// What a hook or a command may fail with.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

type HookFuture = Pin<Box<dyn Future<Output = Result<(), HookError>> + Send>>;

/// A startup or shutdown hook of one plugin.
pub struct Hook {
    /// The plugin that registered it.
    pub plugin: &'static str,
    run: Box<dyn FnOnce() -> HookFuture + Send>,
}

impl Hook {
    pub(crate) fn new<F, Fut>(plugin: &'static str, hook: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        Self { plugin, run: Box::new(move || Box::pin(hook()) as HookFuture) }
    }

    /// Runs the hook.
    ///
    /// # Errors
    ///
    /// Returns whatever the hook returned.
    pub async fn run(self) -> Result<(), HookError> {
        (self.run)().await
    }
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook").field("plugin", &self.plugin).finish_non_exhaustive()
    }
}

/// What one readiness probe found: `Ok` with a short description of the healthy
/// dependency (`sqlite`), or `Err` with what is wrong.
pub type ProbeResult = Result<String, String>;

type ProbeFuture = Pin<Box<dyn Future<Output = ProbeResult> + Send>>;

/// A readiness check of one dependency, run by the host on every `/ready`.
///
/// An *essential* dependency that fails makes the server unready (load balancers stop
/// sending traffic); any other makes it degraded: it still serves, more slowly or with
/// less.
#[derive(Clone)]
pub struct Probe {
    /// What is checked, as `/ready` names it (`database`, `cache`).
    pub name: &'static str,
    /// The plugin that registered it.
    pub plugin: &'static str,
    /// Whether the server cannot do its work without it.
    pub essential: bool,
    check: Arc<dyn Fn() -> ProbeFuture + Send + Sync>,
}

impl Probe {
    pub(crate) fn new<F, Fut>(
        name: &'static str,
        plugin: &'static str,
        essential: bool,
        check: F,
    ) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ProbeResult> + Send + 'static,
    {
        Self { name, plugin, essential, check: Arc::new(move || Box::pin(check()) as ProbeFuture) }
    }

    /// Runs the check once.
    pub fn check(&self) -> impl Future<Output = ProbeResult> + Send + 'static {
        (self.check)()
    }
}

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .field("essential", &self.essential)
            .finish_non_exhaustive()
    }
}

/// A callback run just before the host renders `/metrics`, for gauges that are read
/// rather than counted (pool sizes, queue lengths).
#[derive(Clone)]
pub struct Scrape {
    /// The plugin that registered it.
    pub plugin: &'static str,
    run: Arc<dyn Fn() + Send + Sync>,
}

impl Scrape {
    pub(crate) fn new(plugin: &'static str, run: impl Fn() + Send + Sync + 'static) -> Self {
        Self { plugin, run: Arc::new(run) }
    }

    /// Updates the plugin's gauges.
    pub fn run(&self) {
        (self.run)();
    }
}

impl std::fmt::Debug for Scrape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape").field("plugin", &self.plugin).finish_non_exhaustive()
    }
}

type CommandFuture = Pin<Box<dyn Future<Output = Result<(), HookError>> + Send>>;

/// A command-line subcommand of the host binary (`xcore migrate`), provided by a plugin.
///
/// The host builds the application without serving, finds the command by name and runs it
/// with the arguments that followed the name; the command parses them itself.
pub struct Command {
    /// The subcommand's name.
    pub name: &'static str,
    /// One line for the host's help.
    pub about: &'static str,
    /// The plugin that registered it.
    pub plugin: &'static str,
    run: Box<dyn FnOnce(Vec<String>) -> CommandFuture + Send>,
}

impl Command {
    pub(crate) fn new<F, Fut>(
        name: &'static str,
        about: &'static str,
        plugin: &'static str,
        run: F,
    ) -> Self
    where
        F: FnOnce(Vec<String>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), HookError>> + Send + 'static,
    {
        Self {
            name,
            about,
            plugin,
            run: Box::new(move |args| Box::pin(run(args)) as CommandFuture),
        }
    }

    /// Runs the command with `args`, the words after its name.
    ///
    /// # Errors
    ///
    /// Whatever the command failed with, bad arguments included.
    pub async fn run(self, args: Vec<String>) -> Result<(), HookError> {
        (self.run)(args).await
    }
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}
