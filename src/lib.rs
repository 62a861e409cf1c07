//! # codex-node: the HTTP front end of a Codex-compatible storage node
//!
//! # Layout
//! - [`run`] serves the Codex REST data API on a bound listener, over an engine [`Node`]
//!   (from the `codex-actors` crate, which knows nothing of HTTP).
//! - `api/`: one file per group of routes (`upload`, `download`, `info`).
//! - `error`: the single mapping from engine errors to status codes and plain-text bodies.
//! - `cli`: command-line flags (Codex's names); [`client`]: the `upload`/`download` commands;
//!   `main.rs` only wires them together.
//!
//! Follow an upload: `api/upload.rs` → `codex_actors::upload` (session) → `chunker` →
//! `hasher` → `block_store` → `meta_store`.
#![deny(missing_docs)]
#![deny(clippy::unwrap_used)]
#![warn(clippy::expect_used)]
#![cfg_attr(test, allow(clippy::expect_used, clippy::unwrap_used))]

mod api;
pub mod cli;
pub mod client;
mod error;
mod metrics;

use std::net::TcpListener;

use actix_web::{dev::Server, middleware, web, App, HttpServer};
pub use codex_actors::Node;
pub use error::ApiError;

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest upload body accepted, in bytes (413 beyond). The quota applies as well.
    pub max_upload_bytes: u64,
    /// actix-web worker threads.
    pub workers: usize,
    /// Where the API listens (filled in by [`run`], shown by `/debug/info`).
    pub listen: Option<std::net::SocketAddr>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: u64::MAX,
            workers: 2,
            listen: None,
        }
    }
}

/// Serves the API on `listener` until the returned server is stopped (it also stops on
/// SIGINT/SIGTERM, finishing requests in flight). Must run inside an actix system.
///
/// # Errors
/// When the listener cannot be used.
pub fn run(listener: TcpListener, node: Node, mut http: HttpConfig) -> std::io::Result<Server> {
    metrics::init();
    http.listen = Some(listener.local_addr()?);
    let workers = http.workers.max(1);
    let node = web::Data::new(node);
    let http = web::Data::new(http);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(node.clone())
            .app_data(http.clone())
            .wrap(middleware::Logger::new("%r %s %b %Dms").log_target("codex_node::http"))
            .configure(api::routes)
    })
    .workers(workers)
    .listen(listener)?
    .run();
    Ok(server)
}
