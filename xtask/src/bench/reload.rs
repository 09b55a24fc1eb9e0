//! `bench reload`: the two costs of `cargo xtask dev` a developer waits for, the build
//! and the swap, and whether a swap loses requests.
//!
//! It drives `dev`'s own build and `Supervisor` rather than copies of them, so the figures
//! are those of the tool in use.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::load::percentile;
use super::machine;
use super::servers::{Scratch, answers_ok_on};

/// Swaps `bench reload` makes under a steady request loop.
const SWAPS: usize = 20;
/// Client threads of the request loop.
const RELOAD_CLIENTS: usize = 4;

/// `cargo xtask dev`'s two costs: the build after a plugin changes, and the swap from the
/// new process being ready to the old one gone; and the requests lost during swaps.
pub(super) fn reload() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    println!("machine: {}", machine());
    crate::dev::build()?;
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/plugins/hello/src/lib.rs");
    let mut builds = Vec::new();
    for _ in 0..3 {
        std::fs::File::options()
            .append(true)
            .open(&hello)?
            .set_modified(std::time::SystemTime::now())?;
        builds.push(crate::dev::build()?.as_secs_f64());
    }
    builds.sort_by(f64::total_cmp);

    let scratch = Scratch::new("reload")?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut supervisor = crate::dev::Supervisor::new(listener, crate::dev::binary(), Vec::new())?
        .current_dir(&scratch.0)
        .env("XCORE_LOG__LEVEL", "warn");
    supervisor.swap()?;
    let running = Arc::new(AtomicBool::new(true));
    let counters: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
    let clients: Vec<_> = (0..RELOAD_CLIENTS)
        .map(|_| {
            let (running, counters) = (running.clone(), counters.clone());
            std::thread::spawn(move || {
                while running.load(Ordering::SeqCst) {
                    let outcome = match TcpStream::connect(addr) {
                        Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => 2,
                        Err(_) => 1,
                        Ok(mut stream) => usize::from(!answers_ok_on(&mut stream, "/health")),
                    };
                    counters[outcome].fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    let mut swaps = Vec::with_capacity(SWAPS);
    for _ in 0..SWAPS {
        std::thread::sleep(Duration::from_millis(100));
        swaps.push(supervisor.swap()?.as_secs_f64() * 1000.0);
    }
    std::thread::sleep(Duration::from_millis(100));
    running.store(false, Ordering::SeqCst);
    for client in clients {
        client.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    supervisor.stop();
    swaps.sort_by(f64::total_cmp);
    let [ok, failed, refused] = counters.as_ref().each_ref().map(|c| c.load(Ordering::SeqCst));
    println!(
        "| build after touching the hello plugin (debug, 3 runs) | min {:.1} s | median {:.1} s | max {:.1} s |",
        builds[0], builds[1], builds[2]
    );
    println!(
        "| swap, new process ready → old one exited ({SWAPS} swaps) | min {:.1} ms | median {:.1} ms | p90 {:.1} ms | max {:.1} ms |",
        swaps[0],
        percentile(&swaps, 0.5),
        percentile(&swaps, 0.9),
        swaps[SWAPS - 1]
    );
    println!(
        "| requests during the {SWAPS} swaps ({RELOAD_CLIENTS} clients, a new connection each) | {ok} answered 200 | {failed} failed | {refused} refused |"
    );
    Ok(())
}
