//! A real Codex node (v0.2.5, through `run-codex`) on loopback for the Codex DHT tests.
//!
//! `run-codex` is looked for in `$CODEX_RUN`, then `<workspace>/../shared/codex/run-codex`,
//! then `/work/shared/codex/run-codex`. If it is missing or cannot run, the test prints
//! `SKIP: <test> because <reason>` straight to stderr (not through the captured `eprintln!`)
//! and passes; any other failure fails it.

use std::io::Write;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A Codex node; killed on drop.
pub struct Codex {
    child: Child,
    /// REST API base, `http://127.0.0.1:<port>/api/codex/v1`.
    pub api: String,
    /// Its UDP discovery port.
    pub disc_port: u16,
    /// Its TCP listen port.
    pub tcp_port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Codex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runner() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("CODEX_RUN") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/codex/run-codex"),
            PathBuf::from("/work/shared/codex/run-codex"),
        ],
    };
    let run = candidates
        .iter()
        .find(|p| p.is_file())
        .ok_or_else(|| format!("no run-codex at {candidates:?} (set CODEX_RUN)"))?;
    let out = Command::new(run)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} cannot be executed: {e}", run.display()))?;
    if !out.status.success() || !String::from_utf8_lossy(&out.stdout).contains("Codex version") {
        return Err(format!(
            "`{} --version` failed ({})",
            run.display(),
            out.status
        ));
    }
    Ok(run.clone())
}

fn free_tcp_port() -> TestResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn free_udp_port() -> TestResult<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Codex {
    /// Starts a node with extra `--flag=value` arguments, or prints SKIP and returns `None`
    /// when Codex cannot run here.
    pub async fn start_or_skip(test: &str, extra: &[String]) -> TestResult<Option<Self>> {
        let run = match runner() {
            Ok(run) => run,
            Err(reason) => {
                let _ = writeln!(std::io::stderr(), "SKIP: {test} because {reason}");
                return Ok(None);
            }
        };
        let dir = tempfile::tempdir()?;
        let (api_port, tcp_port, disc_port) =
            (free_tcp_port()?, free_tcp_port()?, free_udp_port()?);
        let log = dir.path().join("codex.log");
        let child = Command::new(&run)
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--api-port={api_port}"))
            .arg("--api-bindaddr=127.0.0.1")
            .arg(format!("--listen-addrs=/ip4/127.0.0.1/tcp/{tcp_port}"))
            .arg(format!("--disc-port={disc_port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log)?)
            .stderr(Stdio::null())
            .spawn()?;
        let mut codex = Codex {
            child,
            api: format!("http://127.0.0.1:{api_port}/api/codex/v1"),
            disc_port,
            tcp_port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = codex.child.try_wait()? {
                return Err(
                    format!("Codex exited at start ({status}); log {}", codex.log_tail()).into(),
                );
            }
            if codex.get("/space").await.is_ok() {
                return Ok(Some(codex));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("Codex did not answer /space within 30 s".into())
    }

    /// The end of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// GET on its API (ureq blocks, so off the async thread).
    pub async fn get(&self, path: &str) -> TestResult<String> {
        let url = format!("{}{path}", self.api);
        Ok(
            tokio::task::spawn_blocking(move || -> Result<String, ureq::Error> {
                ureq::get(&url).call()?.body_mut().read_to_string()
            })
            .await??,
        )
    }

    /// POST /data; returns the manifest CID text.
    pub async fn upload(&self, data: Vec<u8>) -> TestResult<String> {
        let url = format!("{}/data", self.api);
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

    /// Its `/spr` text.
    pub async fn spr(&self) -> TestResult<String> {
        let v: serde_json::Value = serde_json::from_str(&self.get("/spr").await?)?;
        Ok(v["spr"].as_str().ok_or("no spr field")?.to_string())
    }

    /// Its `/debug/info` as JSON.
    pub async fn debug_info(&self) -> TestResult<serde_json::Value> {
        Ok(serde_json::from_str(&self.get("/debug/info").await?)?)
    }
}

/// Deterministic bytes that differ per seed.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
