//! # codex-node: the HTTP front end of a Codex-compatible storage node
//!
//! # Layout
//! - [`run`] serves the Codex REST data API on a bound listener, over an engine [`Node`]
//!   (from the `codex-actors` crate, which knows nothing of HTTP).
//! - `api/`: one file per group of routes (`upload`, `download`, `info`).
//! - `dashboard/`: the web page served at `/`, which uses only those routes.
//! - `error`: the single mapping from engine errors to status codes and plain-text bodies.
//! - `guard`: who may talk to the API (the `Host` and `Origin` checks against web pages, and
//!   CORS for origins allowed with `--api-cors-origin`).
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
mod dashboard;
mod error;
mod guard;
mod metrics;

use std::net::TcpListener;

use actix_web::{
    dev::{Server, Service},
    http::StatusCode,
    middleware, web, App, HttpResponse, HttpServer,
};
pub use codex_actors::Node;
pub use error::ApiError;
use futures_util::future::LocalBoxFuture;
use guard::{Guard, Verdict};

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest upload body accepted, in bytes (413 beyond). The quota applies as well.
    pub max_upload_bytes: u64,
    /// actix-web worker threads.
    pub workers: usize,
    /// Largest total size of a request's header names and values (431 beyond).
    pub max_header_bytes: usize,
    /// Where the API listens (filled in by [`run`], shown by `/debug/info`).
    pub listen: Option<std::net::SocketAddr>,
    /// Origins (`scheme://host[:port]`, as browsers write them) of web apps that may use the
    /// API from their own pages; every other foreign origin is refused.
    pub cors_origins: Vec<String>,
    /// Host names (besides the node's own addresses) under which clients may reach the API,
    /// on any port: a reverse proxy's, or the machine's name.
    pub allowed_hosts: Vec<String>,
    /// Whether `/` serves the dashboard (off: `/` is a 404, as on Codex).
    pub dashboard: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_upload_bytes: u64::MAX,
            workers: 2,
            max_header_bytes: 16 * 1024, /* 16 KiB */
            listen: None,
            cors_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            dashboard: true,
        }
    }
}

/// Bytes of a response gathered before one write to the socket. actix-http's default (32 KiB)
/// makes one `send` per 64 KiB block of a download, and on loopback each send also runs the
/// receiver's side; a larger buffer sends several blocks at once. It is per connection that is
/// writing, and given back above actix-http's retention limit.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// Binds the API listener with a backlog of 1024 pending connections (the standard library's
/// `TcpListener::bind` allows 128, and a burst of clients then waits on SYN retries).
///
/// # Errors
/// When the address cannot be bound.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Serves the API on `listener` until the returned server is stopped through its handle (the
/// binary does so on SIGINT/SIGTERM, finishing requests in flight). Must run inside an actix
/// system.
///
/// # Errors
/// When the listener cannot be used.
pub fn run(listener: TcpListener, node: Node, mut http: HttpConfig) -> std::io::Result<Server> {
    metrics::init();
    http.listen = Some(listener.local_addr()?);
    let workers = http.workers.max(1);
    let max_header_bytes = http.max_header_bytes;
    let guard = Guard::new(
        listener.local_addr()?,
        http.cors_origins.clone(),
        http.allowed_hosts.clone(),
    );
    let with_dashboard = http.dashboard;
    let node = web::Data::new(node);
    let http = web::Data::new(http);
    let server = HttpServer::new(move || {
        let guard = guard.clone();
        App::new()
            .app_data(node.clone())
            .app_data(http.clone())
            .wrap_fn(move |req, srv| {
                // actix-web's own header limits are fixed; this one is ours and configurable.
                let size: usize = req
                    .headers()
                    .iter()
                    .map(|(k, v)| k.as_str().len() + v.len())
                    .sum();
                let verdict = if size > max_header_bytes {
                    Verdict::Answer(
                        HttpResponse::build(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
                            .content_type("text/plain; charset=utf-8")
                            .body(format!("Request headers exceed {max_header_bytes} bytes")),
                    )
                } else {
                    guard.check(req.request())
                };
                match verdict {
                    Verdict::Answer(resp) => {
                        let resp = req.into_response(resp).map_into_right_body();
                        Box::pin(async move { Ok(resp) }) as LocalBoxFuture<'static, _>
                    }
                    Verdict::Pass(cors) => {
                        let call = srv.call(req);
                        Box::pin(async move {
                            let mut resp = call.await?;
                            if let Some(origin) = cors {
                                guard::add_cors(resp.headers_mut(), origin);
                            }
                            Ok(resp.map_into_left_body())
                        }) as LocalBoxFuture<'static, _>
                    }
                }
            })
            .wrap(middleware::Logger::new("%r %s %b %Dms").log_target("codex_node::http"))
            .configure(|cfg| {
                if with_dashboard {
                    dashboard::routes(cfg);
                }
            })
            .configure(api::routes)
    })
    .workers(workers)
    // The caller decides when to stop (main.rs on SIGINT/SIGTERM): actix-server's own signal
    // handling would stop the whole actix system right after the HTTP workers, before the
    // engine has synced its journal and the network has saved its peers.
    .disable_signals()
    .tcp_nodelay(true)
    .h1_write_buffer_size(WRITE_BUFFER_BYTES)
    .listen(listener)?
    .run();
    Ok(server)
}
