//! Starting a real Codex node (v0.2.5, `../shared/codex/run-codex`, or `$CODEX_RUN`) on free
//! loopback ports for one test, and talking to its REST API.

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};

use super::TestResult;

/// A Codex node for one test; killed on drop.
pub struct Codex {
    child: Child,
    /// The REST API base URL.
    pub api: String,
    log: PathBuf,
    /// The data directory (Codex's key file lives in `data/key`).
    pub _dir: tempfile::TempDir,
}

impl Drop for Codex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_tcp_port() -> TestResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn free_udp_port() -> TestResult<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts Codex, or returns `None` after printing why it is skipped.
pub async fn start_codex() -> TestResult<Option<Codex>> {
    let run = std::env::var_os("CODEX_RUN").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/codex/run-codex"
            ))
        },
        PathBuf::from,
    );
    if !run.exists() {
        return skip(format!(
            "no Codex binary at {} (set CODEX_RUN)",
            run.display()
        ));
    }
    let dir = tempfile::tempdir()?;
    let (api_port, tcp_port, disc_port) = (free_tcp_port()?, free_tcp_port()?, free_udp_port()?);
    let log = dir.path().join("codex.log");
    let child = Command::new(&run)
        .arg(format!("--data-dir={}", dir.path().join("data").display()))
        .arg(format!("--api-port={api_port}"))
        .arg("--api-bindaddr=127.0.0.1")
        .arg(format!("--listen-addrs=/ip4/127.0.0.1/tcp/{tcp_port}"))
        .arg(format!("--disc-port={disc_port}"))
        .stdout(std::fs::File::create(&log)?)
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => return skip(format!("{} cannot run: {e}", run.display())),
    };
    let mut codex = Codex {
        child,
        api: format!("http://127.0.0.1:{api_port}/api/codex/v1"),
        log,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(status) = codex.child.try_wait()? {
            let log = codex.log.display();
            return skip(format!("Codex exited at start ({status}); log in {log}"));
        }
        if get(&codex, "/space").await.is_ok() {
            return Ok(Some(codex));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("Codex did not answer /space within 30 s".into())
}

/// A GET on Codex's API, off the async thread (ureq blocks).
pub async fn get(codex: &Codex, path: &str) -> TestResult<String> {
    let url = format!("{}{path}", codex.api);
    let body = tokio::task::spawn_blocking(move || -> Result<String, ureq::Error> {
        ureq::get(&url).call()?.body_mut().read_to_string()
    })
    .await??;
    Ok(body)
}

pub async fn upload(codex: &Codex, data: Vec<u8>) -> TestResult<String> {
    let url = format!("{}/data", codex.api);
    let cid = tokio::task::spawn_blocking(move || -> Result<String, ureq::Error> {
        ureq::post(&url)
            .header("Content-Type", "application/octet-stream")
            .send(&data[..])?
            .body_mut()
            .read_to_string()
    })
    .await??;
    Ok(cid.trim().to_string())
}

/// Codex's peer id and TCP listen address, from `/debug/info`.
pub async fn codex_peer(codex: &Codex) -> TestResult<(PeerId, Multiaddr)> {
    let info: serde_json::Value = serde_json::from_str(&get(codex, "/debug/info").await?)?;
    let id: PeerId = info["id"].as_str().ok_or("no id")?.parse()?;
    let addr: Multiaddr = info["addrs"][0].as_str().ok_or("no addrs")?.parse()?;
    Ok((id, addr))
}

/// Deterministic bytes that do not compress or repeat per block.
pub fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Says why a live-Codex test cannot run here, where the runner shows it (the harness captures
/// `eprintln!`, so a skip would look like a pass): written straight to the process's stderr.
/// Under CI (`CI` set) a skip is a failure: CI must run these tests.
fn skip(reason: String) -> TestResult<Option<Codex>> {
    use std::io::Write as _;
    let test = std::thread::current()
        .name()
        .unwrap_or("a live-Codex test")
        .to_owned();
    if std::env::var_os("CI").is_some() {
        return Err(format!("{test} cannot run under CI because {reason}").into());
    }
    let _ = writeln!(std::io::stderr(), "SKIP: {test} because {reason}");
    Ok(None)
}
