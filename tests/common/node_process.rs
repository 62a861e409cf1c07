//! The real `codex-node` binary as a child process: started with `--api-port 0`, its address
//! read from the start-up log line, its log kept for failure reports, stopped with SIGTERM or
//! SIGKILL. Dropping a [`NodeProcess`] kills the node, so a failing test leaves none behind.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
};

use super::{Api, TestResult};

/// A running `codex-node` binary.
pub struct NodeProcess {
    child: Child,
    /// Where the REST API listens (from the log line `listening on http://ADDR/…`).
    pub addr: SocketAddr,
    /// Every stderr line so far; the reader thread appends until the process exits.
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
    exited: bool,
}

impl NodeProcess {
    /// Starts the binary on `dir` with `--api-port 0` plus `extra` flags, and waits for the line
    /// that gives its address. The error carries the log when the node stops before that.
    /// Unless `extra` says otherwise, the network listens on a free loopback port, and Codex's
    /// DHT on a free UDP port of the same address (tests send
    /// traffic to loopback only).
    pub fn spawn(dir: &Path, extra: &[&str]) -> TestResult<Self> {
        Self::spawn_wrapped(&[], dir, extra)
    }

    /// As [`NodeProcess::spawn`], with the binary started through `wrapper` (e.g. `netbed
    /// exec home1`, which execs it in a network namespace: the process id is still the
    /// node's). Unless `extra` says otherwise, `--nat none`.
    pub fn spawn_wrapped(wrapper: &[&str], dir: &Path, extra: &[&str]) -> TestResult<Self> {
        let own_network = extra
            .iter()
            .any(|a| a.starts_with("--listen-addrs") || *a == "--no-network");
        let loopback: &[&str] = if own_network {
            &[]
        } else {
            &["--listen-addrs", "/ip4/127.0.0.1/tcp/0"]
        };
        // Parallel tests must not all bind Codex's DHT to its default port 8090.
        let disc: &[&str] = if extra.iter().any(|a| a.starts_with("--disc-port")) {
            &[]
        } else {
            &["--disc-port", "0"]
        };
        // Tests never ask a router for a port mapping (UPnP sends multicast beyond the test).
        let nat: &[&str] = if extra.iter().any(|a| a.starts_with("--nat")) {
            &[]
        } else {
            &["--nat", "none"]
        };
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_codex-node"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_codex-node")),
        };
        let mut child = command
            .arg("--data-dir")
            .arg(dir)
            .args(["--api-port", "0"])
            .args(loopback)
            .args(disc)
            .args(nat)
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line?;
            log.lock().map_err(|_| "poisoned")?.push(line.clone());
            if let Some(at) = line.find("listening on http://") {
                let rest = &line[at + "listening on http://".len()..];
                addr = Some(rest.split('/').next().unwrap_or_default().parse()?);
                break;
            }
        }
        let Some(addr) = addr else {
            let _ = child.kill();
            let _ = child.wait();
            let log = log.lock().map_err(|_| "poisoned")?.join("\n");
            return Err(format!("the node never logged its address; its log:\n{log}").into());
        };
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Ok(Self {
            child,
            addr,
            log,
            reader: Some(reader),
            exited: false,
        })
    }

    /// The URL of an API path, e.g. `url("/data")`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/api/codex/v1{path}", self.addr)
    }

    /// The node's operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log lines so far (all of them once the node has exited).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// SIGKILL, then waits for the process and for the rest of its log.
    pub fn kill(&mut self) -> TestResult {
        self.child.kill()?;
        self.child.wait()?;
        self.finish_log();
        Ok(())
    }

    /// SIGTERM (a graceful stop), then waits for the exit status and the rest of the log.
    pub fn terminate(&mut self) -> TestResult<ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let status = self.child.wait()?;
        self.finish_log();
        Ok(status)
    }

    fn finish_log(&mut self) {
        self.exited = true;
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Api for NodeProcess {
    fn url(&self, path: &str) -> String {
        NodeProcess::url(self, path)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if !self.exited {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
