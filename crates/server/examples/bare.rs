//! The baseline for `cargo xtask bench http`: a bare axum server answering
//! `GET /plugins/hello/` with the same body as the hello plugin, with no middleware.
//!
//! Usage: `bare <address>`, for example `bare 127.0.0.1:18081`.

use std::sync::Arc;

use axum::serve::ListenerExt;
use axum::{Json, Router, extract::State, routing::get};

#[derive(serde::Serialize)]
struct Greeting {
    message: Arc<str>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18081".to_owned());
    let greeting: Arc<str> = Arc::from("Hello from xcore!");
    let app = Router::new()
        .route(
            "/plugins/hello/",
            get(|State(message): State<Arc<str>>| async { Json(Greeting { message }) }),
        )
        .with_state(greeting);
    let listener = tokio::net::TcpListener::bind(&address).await?.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}
