//! Running the server: listening (or inheriting a socket), serving, draining.

mod connections;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Loaded;
use crate::{Error, build_app, http, metrics};

/// A server that has started its plugins and holds its listening socket.
pub struct Server {
    listener: TcpListener,
    edge: http::Edge,
    draining: Arc<AtomicBool>,
    shutdown: Vec<xcore_core::Hook>,
    grace: Duration,
    limits: connections::Limits,
}

impl Server {
    /// Builds the application, runs the startup hooks (the database module applies the
    /// migrations in its own) and opens the listening socket: `inherited` when given (see
    /// [`inherited_listener`]), otherwise `server.host:server.port`.
    ///
    /// # Errors
    ///
    /// Any build, startup-hook or socket failure.
    pub async fn start(
        loaded: &Loaded,
        inherited: Option<std::net::TcpListener>,
    ) -> Result<Self, Error> {
        let config = &loaded.config;
        // Installed first: modules bind their metric handles to it when they are built.
        let metrics = metrics::handle();
        let mut app = build_app(loaded, false)?;
        app.start().await.map_err(|(plugin, source)| Error::Startup { plugin, source })?;
        let draining = Arc::new(AtomicBool::new(false));
        let edge = http::router(&mut app, config, metrics, draining.clone());
        let listener = listen(&config.server.host, config.server.port, inherited).await?;
        Ok(Self {
            listener,
            edge,
            draining,
            shutdown: app.shutdown,
            grace: Duration::from_secs(config.server.shutdown_grace_secs),
            limits: connections::Limits::new(&config.server),
        })
    }

    /// The address the server listens on.
    ///
    /// # Errors
    ///
    /// When the socket cannot report it.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting connections, lets in-flight
    /// requests finish within the grace period, and runs the shutdown hooks in reverse
    /// order of registration.
    ///
    /// # Errors
    ///
    /// When serving fails.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Self { listener, edge, draining, shutdown: hooks, grace, limits } = self;
        let (stopping, stopped) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            sd_notify("STOPPING=1");
            tracing::info!(
                grace_secs = grace.as_secs(),
                "shutting down: draining in-flight requests"
            );
            draining.store(true, Ordering::Relaxed);
            let _ = stopping.send(true);
        };
        let upkeep = tokio::spawn(upkeep(metrics::handle()));
        let mut grace_stopped = stopped.clone();
        let server = connections::serve(listener, edge, limits, stopped, ACCEPT_LINGER);
        // Everything is built and the socket is open: a supervisor can send traffic here.
        sd_notify("READY=1");
        let grace_elapsed = async move {
            if grace_stopped.wait_for(|stopping| *stopping).await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = async { tokio::join!(server, signal); } => {}
            () = grace_elapsed => {
                tracing::warn!("grace period elapsed: closing the connections still open");
            }
        }
        upkeep.abort();
        for hook in hooks.into_iter().rev() {
            let plugin = hook.plugin;
            if let Err(error) = hook.run().await {
                tracing::error!(plugin, %error, "shutdown hook failed");
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("address", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

/// The listening socket passed by a supervisor through `LISTEN_FDS` (systemd socket
/// activation, `cargo xtask dev`, `systemfd`), if any.
///
/// Call it before starting the async runtime: it removes `LISTEN_FDS` and `LISTEN_PID` from
/// the environment (so children do not inherit them), which is only sound while the
/// process has a single thread.
///
/// # Errors
///
/// When `LISTEN_FDS` names a descriptor that is not a TCP socket.
pub fn inherited_listener() -> std::io::Result<Option<std::net::TcpListener>> {
    listenfd::ListenFd::from_env().take_tcp_listener(0)
}

async fn listen(
    host: &str,
    port: u16,
    inherited: Option<std::net::TcpListener>,
) -> Result<TcpListener, Error> {
    let address = format!("{host}:{port}");
    let listen_error = |source| Error::Listen { address: address.clone(), source };
    let listener = match inherited {
        Some(inherited) => {
            inherited.set_nonblocking(true).map_err(listen_error)?;
            let listener = TcpListener::from_std(inherited).map_err(listen_error)?;
            tracing::info!("serving on the listening socket inherited through LISTEN_FDS");
            listener
        }
        None => TcpListener::bind(&address).await.map_err(listen_error)?,
    };
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "listening on http://{address}");
    }
    Ok(listener)
}

/// How long a draining server keeps its connections open after it stops accepting and
/// before it closes the idle ones.
///
/// A connection accepted just before shutdown may not have sent its request yet (the
/// client wrote it, the bytes are in flight or unread): closing it as idle would reset a
/// request the client already sent. Once this process stops accepting, new connections
/// wait in the socket's queue for the next process (`cargo xtask dev`, systemd socket
/// activation), so only the ones already accepted need the time.
const ACCEPT_LINGER: Duration = Duration::from_millis(50);

/// Tells the supervisor named by `NOTIFY_SOCKET` (systemd with `Type=notify`, `cargo xtask
/// dev`) about the server's state, as sd_notify(3) does: `READY=1` once it serves,
/// `STOPPING=1` when it begins to drain. Without the variable it does nothing; a failure
/// is logged, never fatal.
fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|socket| {
        let bytes = path.as_encoded_bytes();
        // A leading `@` names a socket in Linux's abstract namespace.
        if let Some(name) = bytes.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt as _;
            let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &address)
        } else {
            socket.send_to(state.as_bytes(), &path)
        }
    });
    if let Err(error) = sent {
        tracing::warn!(%error, state, "cannot notify the supervisor");
    }
}

/// Keeps the metrics histograms bounded in memory.
async fn upkeep(handle: metrics_exporter_prometheus::PrometheusHandle) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        interval.tick().await;
        handle.run_upkeep();
    }
}

/// Completes on the first SIGINT (Ctrl-C) or SIGTERM.
pub async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("received SIGINT"),
        () = terminate => tracing::info!("received SIGTERM"),
    }
}
