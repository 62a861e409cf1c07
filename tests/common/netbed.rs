//! The NAT test bed (`../shared/tools/netbed/netbed`, see its README): network namespaces with a
//! public segment and homes behind NAT routers, built per test under a unique prefix and torn
//! down (with every process inside) when the [`Bed`] is dropped.
//!
//! Nodes run inside with [`Bed::spawn`]; their API listens on the namespace's own loopback, so
//! the test talks to it with `curl` run in the same namespace ([`Bed::curl`]). No traffic leaves
//! the bed: it has no link to the root namespace.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::node_process::NodeProcess;
use super::TestResult;

/// A built bed; dropping it runs `netbed down --kill`.
pub struct Bed {
    prefix: String,
}

fn tool() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/netbed/netbed")
}

/// Why the bed cannot be built here, if it cannot: not root, or no netbed script.
fn unusable() -> Option<String> {
    if !tool().exists() {
        return Some(format!("{} is missing", tool().display()));
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("network namespaces need root".into());
    }
    None
}

impl Bed {
    /// Builds a bed under `prefix` (unique per test) with netbed's `up` options `args`. `None`
    /// (after printing `SKIP: … because …`) when this machine cannot; under `CI` that is an
    /// error instead, as CI must never skip.
    pub fn up(test: &str, prefix: &str, args: &[&str]) -> TestResult<Option<Bed>> {
        if let Some(why) = unusable() {
            if std::env::var_os("CI").is_some() {
                return Err(format!("{test} cannot run under CI because {why}").into());
            }
            println!("SKIP: {test} because {why}");
            return Ok(None);
        }
        let bed = Bed {
            prefix: prefix.to_string(),
        };
        bed.run(&[&["up"], args].concat())?;
        Ok(Some(bed))
    }

    /// Runs netbed with this bed's prefix; its stdout.
    fn run(&self, args: &[&str]) -> TestResult<String> {
        let out = Command::new(tool())
            .args(["--prefix", &self.prefix])
            .args(args)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "netbed {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Runs `cmd` in namespace `ns`; its stdout.
    pub fn exec(&self, ns: &str, cmd: &[&str]) -> TestResult<String> {
        self.run(&[&["exec", ns], cmd].concat())
    }

    /// `ns`'s address as others on the internet see it.
    pub fn public_addr(&self, ns: &str) -> TestResult<String> {
        Ok(self.run(&["addr", ns, "--public"])?.trim().to_string())
    }

    /// Bytes per link to the internet: link name → (sent, received).
    pub fn counters(&self) -> TestResult<HashMap<String, (u64, u64)>> {
        let mut out = HashMap::new();
        for line in self.run(&["counters"])?.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if let [link, sent, received] = f[..] {
                if let (Ok(s), Ok(r)) = (sent.parse(), received.parse()) {
                    out.insert(link.to_string(), (s, r));
                }
            }
        }
        Ok(out)
    }

    /// Starts the node binary in namespace `ns` (netbed execs it: the pid is the node's).
    pub fn spawn(&self, ns: &str, dir: &Path, extra: &[&str]) -> TestResult<NodeProcess> {
        let tool = tool();
        let tool = tool.to_str().ok_or("netbed path is not UTF-8")?;
        NodeProcess::spawn_wrapped(&[tool, "--prefix", &self.prefix, "exec", ns], dir, extra)
    }

    /// Runs `curl -s` with `args` in namespace `ns`; its stdout (errors when curl fails).
    pub fn curl(&self, ns: &str, args: &[&str]) -> TestResult<String> {
        self.run(&[&["exec", ns, "curl", "-s"], args].concat())
    }

    /// GETs `url` inside `ns` and parses the JSON answer.
    pub fn get_json(&self, ns: &str, url: &str) -> TestResult<serde_json::Value> {
        Ok(serde_json::from_str(&self.curl(ns, &[url])?)?)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = Command::new(tool())
            .args(["--prefix", &self.prefix, "down", "--kill"])
            .output();
    }
}
