//! The real `codex-node` binary: flags, start-up log line, graceful stop, and SIGKILL at random
//! moments during concurrent uploads without losing or corrupting anything.

mod common;

use std::{
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
};

use common::{node_process::NodeProcess, workload::Rng, *};

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}/api/codex/v1{path}")
}

#[test]
fn binary_serves_on_port_zero_and_stops_on_sigterm() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut p = NodeProcess::spawn(dir.path(), &[])?;
    let (status, cid) = text(
        agent()
            .post(url(p.addr, "/data"))
            .send(&b"some file contents"[..])?,
    )?;
    assert_eq!(
        (status, cid.as_str()),
        (200, "zDvZRwzm1ePSzKSXt57D5YxHwcSDmsCyYN65wW4HT7fuX9HrzFXy")
    );
    let exit = p.terminate()?;
    assert!(exit.success(), "{exit:?}");
    let log = p.log().join("\n");
    assert!(
        log.contains("upload stored"),
        "one info line per upload:\n{log}"
    );
    assert!(log.contains("bytes=18"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    assert!(codex_actors::repair::inspect(dir.path())?.is_clean());
    Ok(())
}

/// `/debug/info`'s `codex` object follows Codex's schema: strings, and the revision the binary
/// was built from (a schema-driven fuzzer found `contracts: null` and an empty revision).
#[test]
fn debug_info_names_the_version_and_revision_as_strings() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = NodeProcess::spawn(dir.path(), &[])?;
    let (status, info) = get_json(&p, "/debug/info")?;
    assert_eq!(status, 200);
    let codex = &info["codex"];
    for field in ["version", "revision", "contracts"] {
        assert!(codex[field].is_string(), "codex.{field} in {codex}");
    }
    let revision = codex["revision"].as_str().unwrap_or_default();
    assert!(!revision.is_empty(), "{codex}");
    assert_eq!(codex["version"], env!("CARGO_PKG_VERSION"));
    Ok(())
}

#[test]
fn binary_rejects_bad_flags() -> TestResult {
    let out = Command::new(env!("CARGO_BIN_EXE_codex-node"))
        .args(["--api-port", "notaport"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-port"));
    // Segments smaller than 1 MiB are refused, not silently raised.
    let out = Command::new(env!("CARGO_BIN_EXE_codex-node"))
        .args(["--segment-bytes", "1048575"])
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--segment-bytes"));
    Ok(())
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Iterations of upload-then-SIGKILL; each kill lands somewhere else in the upload path.
const KILL_ITERATIONS: u64 = 12;
const UPLOADERS: u64 = 4;

#[derive(Default)]
struct Outcomes {
    /// (cid, seed, len) of uploads answered 200 and not deleted since.
    stored: Vec<(String, u64, usize)>,
    /// Datasets whose DELETE was answered 204.
    deleted: Vec<String>,
}

#[test]
fn sigkill_during_uploads_and_deletes_loses_nothing_acknowledged() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut rng = Rng(0x5EED_C0DE);
    let outcomes: Arc<Mutex<Outcomes>> = Arc::default();
    let mut kills = 0;
    for iteration in 0..KILL_ITERATIONS {
        let mut p = NodeProcess::spawn(dir.path(), &[])?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..UPLOADERS)
            .map(|w| {
                let (outcomes, stop, addr) = (outcomes.clone(), stop.clone(), p.addr);
                let mut rng = Rng(rng.next());
                std::thread::spawn(move || worker(iteration, w, addr, &mut rng, &stop, &outcomes))
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(30 + rng.below(400)));
        p.kill()?; // SIGKILL
        kills += 1;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for w in workers {
            let _ = w.join();
        }
        // What the crash left: only leftovers of unfinished uploads, never damage.
        let report = codex_actors::repair::inspect(dir.path())?;
        assert_eq!(
            report.damaged_blocks, 0,
            "iteration {iteration}: {report:?}"
        );
        assert_eq!(report.missing_bytes, 0, "iteration {iteration}: {report:?}");
        assert!(
            !report.counters_fixed,
            "iteration {iteration}: counters drifted {report:?}"
        );
    }

    let mut p = NodeProcess::spawn(dir.path(), &[])?;
    let outcomes = outcomes.lock().map_err(|_| "poisoned")?;
    assert!(
        outcomes.stored.len() > KILL_ITERATIONS as usize,
        "too few uploads finished"
    );
    assert!(!outcomes.deleted.is_empty(), "no delete finished");
    let listing = text(agent().get(url(p.addr, "/data")).call()?)?.1;
    for (cid, seed, len) in &outcomes.stored {
        let resp = agent().get(url(p.addr, &format!("/data/{cid}"))).call()?;
        assert_eq!(resp.status(), 200, "{cid}");
        let body = resp
            .into_body()
            .with_config()
            .limit(u64::MAX)
            .read_to_vec()?;
        assert!(
            body == content(*seed, *len),
            "{cid} differs after the crashes"
        );
        assert!(
            listing.contains(cid.as_str()),
            "{cid} missing from GET /data"
        );
    }
    for cid in &outcomes.deleted {
        let status = agent()
            .get(url(p.addr, &format!("/data/{cid}")))
            .call()?
            .status();
        assert_eq!(status, 404, "{cid} was deleted (204) but came back");
    }
    assert!(p.terminate()?.success());
    let report = codex_actors::repair::inspect(dir.path())?;
    assert!(
        report.is_clean(),
        "after the repair and a clean stop: {report:?}"
    );
    eprintln!(
        "{} acknowledged uploads and {} acknowledged deletes survived {kills} kills",
        outcomes.stored.len(),
        outcomes.deleted.len()
    );
    Ok(())
}

/// Uploads distinct files; every third round deletes its oldest upload. Records only what the
/// node acknowledged; a request cut by the kill has an unknown outcome and is forgotten.
fn worker(
    iteration: u64,
    w: u64,
    addr: SocketAddr,
    rng: &mut Rng,
    stop: &std::sync::atomic::AtomicBool,
    outcomes: &Mutex<Outcomes>,
) {
    let mut mine: Vec<(String, u64, usize)> = Vec::new();
    for n in 1..=200u64 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
        if n % 3 == 0 && !mine.is_empty() {
            let (cid, _, _) = mine.remove(0);
            if let Ok(mut o) = outcomes.lock() {
                o.stored.retain(|(c, _, _)| *c != cid);
            }
            match agent().delete(url(addr, &format!("/data/{cid}"))).call() {
                Ok(resp) if resp.status() == 204 => {
                    if let Ok(mut o) = outcomes.lock() {
                        o.deleted.push(cid);
                    }
                }
                _ => break, // outcome unknown: neither stored nor deleted for sure
            }
            continue;
        }
        let seed = (iteration << 40) | (w << 32) | n;
        let len = 1 + rng.below(400_000) as usize;
        let data = content(seed, len);
        match agent().post(url(addr, "/data")).send(&data[..]) {
            Ok(resp) if resp.status() == 200 => {
                let Ok(cid) = resp.into_body().read_to_string() else {
                    break;
                };
                if let Ok(mut o) = outcomes.lock() {
                    o.stored.push((cid.clone(), seed, len));
                }
                mine.push((cid, seed, len));
            }
            _ => break, // the node is gone
        }
    }
}
