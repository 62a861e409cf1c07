//! Test harness: starts the real server (engine + actix-web) on a loopback port, in its own
//! thread and actix system, exactly as `main.rs` does, and talks to it over real HTTP.
//!
//! For tests of the binary itself: `node_process` (the `codex-node` executable as a child
//! process), `lazyfs` (a FUSE file system that can drop unsynced data, for power cuts),
//! `netbed` (homes behind NAT in network namespaces),
//! `workload` (seeded files and the ledger of what a node acknowledged), `clients`
//! (concurrent clients that fill that ledger) and `peers` (several nodes on loopback: connect,
//! fetch from peers, progress, exchange counters). `webdriver` drives a headless Chromium for
//! the dashboard's tests. `slowlink` is a long, narrow link on loopback (a forwarder that paces
//! and delays), shared with `benches/slowlink.rs`.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod answer;
pub mod clients;
pub mod codex;
pub mod lazyfs;
pub mod netbed;
pub mod node_process;
pub mod peers;
pub mod slowlink;
pub mod webdriver;
pub mod workload;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
};

use actix_web::dev::ServerHandle;
use codex_actors::{Config, Node};
use codex_node::HttpConfig;

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// Interesting upload sizes, each exercising a chunking or tree edge.
pub const INTERESTING_SIZES: &[usize] = &[
    1,         // one byte: one padded block, one-leaf tree
    18,        // the Codex test vector size
    65_535,    // one short of a block
    65_536,    // exactly one block: no padding
    65_537,    // one byte into a second block
    131_072,   // two full blocks: even leaf count
    196_608,   // three blocks: odd leaf count at the bottom layer
    262_149,   // five blocks: odd nodes on two layers
    1_000_000, // sixteen blocks, last one partial
];

/// The Codex vector pattern: byte i = (7*i + 3) mod 251.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((7 * i + 3) % 251) as u8).collect()
}

/// A node serving on 127.0.0.1:<free port> with its repository in a temporary directory.
pub struct TestNode {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    handle: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl TestNode {
    pub fn start() -> TestResult<Self> {
        Self::start_with(|c| c)
    }

    pub fn start_with(tune: impl FnOnce(Config) -> Config + Send + 'static) -> TestResult<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut node = Self::start_in(&dir, tune)?;
        node._tmp = Some(tmp);
        Ok(node)
    }

    /// Starts a node on an existing repository (to check what survives a restart).
    pub fn start_in(
        dir: &Path,
        tune: impl FnOnce(Config) -> Config + Send + 'static,
    ) -> TestResult<Self> {
        Self::start_full(dir, tune, HttpConfig::default())
    }

    /// Starts a node with its own HTTP limits, in a temporary directory.
    pub fn start_http(http: HttpConfig) -> TestResult<Self> {
        let tmp = tempfile::tempdir()?;
        let mut node = Self::start_full(tmp.path(), |c| c, http)?;
        node._tmp = Some(tmp);
        Ok(node)
    }

    fn start_full(
        dir: &Path,
        tune: impl FnOnce(Config) -> Config + Send + 'static,
        http: HttpConfig,
    ) -> TestResult<Self> {
        let listener = codex_node::bind(([127, 0, 0, 1], 0).into())?;
        let addr = listener.local_addr()?;
        let config = tune(Config::new(dir));
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let sys = actix_web::rt::System::new();
            sys.block_on(async move {
                let node = match Node::start(config).await {
                    Ok(n) => n,
                    Err(e) => return drop(tx.send(Err(e.to_string()))),
                };
                let server = match codex_node::run(listener, node.clone(), http) {
                    Ok(s) => s,
                    Err(e) => return drop(tx.send(Err(e.to_string()))),
                };
                let _ = tx.send(Ok(server.handle()));
                let _ = server.await;
                let _ = node.shutdown().await;
            });
        });
        let handle = rx.recv()??;
        Ok(Self {
            addr,
            data_dir: dir.to_path_buf(),
            _tmp: None,
            handle,
            thread: Some(thread),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/codex/v1{path}", self.addr)
    }

    /// Stops the server gracefully and waits for the node to sync and close.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(thread) = self.thread.take() {
            let handle = self.handle.clone();
            actix_web::rt::System::new().block_on(handle.stop(true));
            let _ = thread.join();
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A node the helpers below can talk to: ours ([`TestNode`]) or a real Codex node
/// ([`codex::CodexNode`]).
pub trait Api {
    /// The full URL of an API path such as `/space`.
    fn url(&self, path: &str) -> String;
}

impl<T: Api + ?Sized> Api for &T {
    fn url(&self, path: &str) -> String {
        (**self).url(path)
    }
}

impl Api for TestNode {
    fn url(&self, path: &str) -> String {
        TestNode::url(self, path)
    }
}

/// An HTTP agent that returns 4xx/5xx responses instead of turning them into errors.
/// Runs the `codex-node` binary with `args` to the end: exit code, stdout, stderr.
pub fn cli(args: &[&str]) -> TestResult<(i32, String, String)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_codex-node"))
        .args(args)
        .output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout)?,
        String::from_utf8(out.stderr)?,
    ))
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .build(),
    )
}

/// Response status and body text.
pub fn text(resp: ureq::http::Response<ureq::Body>) -> TestResult<(u16, String)> {
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_string()?;
    Ok((status, body))
}

/// Uploads `data` with optional filename and MIME type; returns (status, body).
pub fn upload(
    node: &impl Api,
    data: &[u8],
    filename: Option<&str>,
    mime: Option<&str>,
) -> TestResult<(u16, String)> {
    let mut req = agent().post(node.url("/data"));
    if let Some(name) = filename {
        req = req.header(
            "Content-Disposition",
            format!("attachment; filename=\"{name}\""),
        );
    }
    if let Some(mime) = mime {
        req = req.header("Content-Type", mime);
    }
    text(req.send(data)?)
}

/// Uploads and expects success; returns the manifest CID.
pub fn upload_ok(node: &impl Api, data: &[u8]) -> TestResult<String> {
    let (status, body) = upload(node, data, None, None)?;
    assert_eq!(status, 200, "upload failed: {body}");
    Ok(body)
}

/// Downloads a CID: (status, headers, body bytes).
pub fn download(
    node: &impl Api,
    cid: &str,
    range: Option<&str>,
) -> TestResult<(u16, ureq::http::HeaderMap, Vec<u8>)> {
    let mut req = agent().get(node.url(&format!("/data/{cid}")));
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req.call()?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .with_config()
        .limit(u64::MAX)
        .read_to_vec()?;
    Ok((status, headers, body))
}

/// GET a JSON endpoint.
pub fn get_json(node: &impl Api, path: &str) -> TestResult<(u16, serde_json::Value)> {
    let (status, body) = text(agent().get(node.url(path)).call()?)?;
    Ok((
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
    ))
}

/// Polls `check` until it holds or `limit` passes (for work the node does in the background).
pub fn eventually(
    limit: std::time::Duration,
    mut check: impl FnMut() -> TestResult<bool>,
) -> TestResult<bool> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if check()? {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    Ok(false)
}
