//! Harness for the real Codex node (nim-codex v0.2.5, through its `run-codex` wrapper): starts
//! one on free loopback ports with a temporary data directory, waits until its API answers, and
//! stops it on drop. Tests compare our node with it side by side.
//!
//! Where the binary is missing or cannot run (another machine), the test prints
//! `SKIP: … because …` on stderr and returns, except under CI (`CI` set), where that fails the
//! test: see [`CodexNode::start_or_skip`]. Any other
//! failure (the node runs but never becomes ready, or dies) fails the test.

use std::{
    fs::File,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use super::{agent, Api, TestResult};

/// How long a node may take to answer `GET /space` after it was started (it takes 1–3 s).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a node may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Start attempts: a free port picked here can be taken by someone else before Codex binds it.
const ATTEMPTS: usize = 3;

/// A running Codex node; SIGTERM (then SIGKILL) on drop.
pub struct CodexNode {
    child: Child,
    api: SocketAddr,
    listen_port: u16,
    disc_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    // Holds the data dir and the log; `Drop::drop` stops the process before it is removed.
    _tmp: tempfile::TempDir,
}

impl CodexNode {
    /// Starts a node, or prints `SKIP: <test> because <reason>` and returns `None` when the
    /// Codex binary is missing or cannot run on this machine.
    pub fn start_or_skip(test: &str) -> TestResult<Option<Self>> {
        Self::start_with_or_skip(test, &[])
    }

    /// As [`start_or_skip`](Self::start_or_skip), with extra `--flag=value` arguments (for
    /// example `--bootstrap-node=<spr>`).
    pub fn start_with_or_skip(test: &str, extra: &[String]) -> TestResult<Option<Self>> {
        match runner() {
            Ok(_) => Self::start_with(extra).map(Some),
            // CI must run these tests: there a skip is a failure.
            Err(reason) if std::env::var_os("CI").is_some() => {
                Err(format!("{test} cannot run under CI because {reason}").into())
            }
            Err(reason) => {
                // Straight to stderr: `eprintln!` would be captured, and hidden, for a test
                // that passes, and a skip must never look like a silent pass.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIP: {test} (live Codex comparison) because {reason}"
                );
                Ok(None)
            }
        }
    }

    /// Starts a node with extra `--flag=value` arguments; an error if Codex cannot run here.
    pub fn start_with(extra: &[String]) -> TestResult<Self> {
        let run = runner().map_err(|r| format!("Codex cannot run here: {r}"))?;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match Self::launch(run, extra)? {
                Ok(node) => return Ok(node),
                // A port taken between our probe and Codex's bind: try other ports.
                Err(log) if log.contains("ddress already in use") => last = log,
                Err(log) => return Err(format!("Codex did not start:\n{log}").into()),
            }
        }
        Err(format!("Codex did not start after {ATTEMPTS} attempts:\n{last}").into())
    }

    /// One attempt. The outer error is a harness failure; the inner one is the node's log
    /// tail when it exited or never answered.
    fn launch(run: &Path, extra: &[String]) -> TestResult<Result<Self, String>> {
        let tmp = tempfile::tempdir()?;
        let data_dir = tmp.path().join("data");
        let log = tmp.path().join("codex.log");
        let api_port = free_tcp_port()?;
        let listen_port = free_tcp_port()?;
        let disc_port = free_udp_port()?;
        let out = File::create(&log)?;
        let child = Command::new(run)
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--api-port={api_port}"))
            .arg("--api-bindaddr=127.0.0.1")
            .arg(format!("--listen-addrs=/ip4/127.0.0.1/tcp/{listen_port}"))
            .arg(format!("--disc-port={disc_port}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut node = Self {
            child,
            api: SocketAddr::from(([127, 0, 0, 1], api_port)),
            listen_port,
            disc_port,
            data_dir,
            log,
            _tmp: tmp,
        };
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if let Some(status) = node.child.try_wait()? {
                return Ok(Err(format!(
                    "exited with {status}; log:\n{}",
                    node.log_tail()
                )));
            }
            if let Ok(resp) = agent().get(node.url("/space")).call() {
                if resp.status() == 200 {
                    return Ok(Ok(node));
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(Err(format!(
            "no answer from /space within {READY_TIMEOUT:?}; log:\n{}",
            node.log_tail()
        )))
    }

    /// `http://127.0.0.1:<api port>/api/codex/v1<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/codex/v1{path}", self.api)
    }

    /// The node's data directory (`repo/`, `meta/`, `key`, …).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The libp2p address it listens on, `/ip4/127.0.0.1/tcp/<port>`.
    pub fn listen_addr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}", self.listen_port)
    }

    /// Its UDP discovery (DHT) port.
    pub fn disc_port(&self) -> u16 {
        self.disc_port
    }

    /// The OS process id (of Codex itself: `run-codex` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last few kilobytes of what the node printed, for failure messages.
    pub fn log_tail(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let cut = text.len().saturating_sub(4000);
        let cut = (cut..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[cut..].to_owned()
    }

    /// Stops the node: SIGTERM, then SIGKILL if it has not exited within a few seconds.
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while started.elapsed() < STOP_TIMEOUT {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api for CodexNode {
    fn url(&self, path: &str) -> String {
        CodexNode::url(self, path)
    }
}

impl Drop for CodexNode {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `run-codex` script, checked once per test binary by running `--version`; `Err` says why
/// it cannot be used. Looked up in `$CODEX_RUN`, then `<crate>/../shared/codex/run-codex`, then
/// `/work/shared/codex/run-codex`.
pub fn runner() -> Result<&'static Path, String> {
    static RUNNER: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    RUNNER
        .get_or_init(find_runner)
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

fn find_runner() -> Result<PathBuf, String> {
    let candidates: Vec<PathBuf> = match std::env::var_os("CODEX_RUN") {
        Some(p) => vec![PathBuf::from(p)],
        None => vec![
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/codex/run-codex"),
            PathBuf::from("/work/shared/codex/run-codex"),
        ],
    };
    let Some(run) = candidates.iter().find(|p| p.is_file()) else {
        return Err(format!(
            "no run-codex at {} (set CODEX_RUN to its path)",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    };
    let out = Command::new(run)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{} cannot be executed: {e}", run.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !text.contains("Codex version") {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "`{} --version` failed ({}): {}",
            run.display(),
            out.status,
            err.lines().next().unwrap_or("no output")
        ));
    }
    Ok(run.clone())
}

/// A TCP port free on 127.0.0.1 at the time of the call.
pub fn free_tcp_port() -> TestResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A UDP port free on 127.0.0.1 at the time of the call.
pub fn free_udp_port() -> TestResult<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}
