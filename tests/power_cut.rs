//! Power cuts: the real binary with its data directory on LazyFS (see `common/lazyfs.rs`), which
//! keeps written data in its own cache until it is fsynced and can drop everything unsynced.
//!
//! `power_cuts_under_load_lose_nothing_acknowledged` runs rounds. In each, four clients upload
//! 1–70-block files (half of the full blocks from a shared pool of 24), upload their own files
//! again and delete them, while expiry (`--block-ttl 8`) and compaction (`--segment-bytes
//! 1048576`, a maintenance pass a second) run. After a seeded random 0.2–2.5 s of load (and, in
//! about half of the rounds, a further 0–2.5 s in which the clients are done and only maintenance
//! runs) the node is SIGKILLed and LazyFS drops every unsynced byte: the power cut. LazyFS is
//! remounted, the repository is inspected as the start-up check will see it (leftovers of
//! unanswered uploads are fine; a referenced block missing or counters that disagree with the
//! block records are not), and the node restarts and is checked: every upload answered 200 whose
//! expiry is more than 2 s away downloads byte-exact and is listed; every dataset deleted with a
//! 204 (or found absent after an earlier restart) stays absent until an upload of the same
//! content is answered 200 again; anything else may exist and is intact if it does; `/space`
//! equals the blocks and manifests of the listed datasets. The restarted node serves the next
//! round. After the last round a clean stop must leave nothing to repair.
//!
//! Env: `POWER_CUT_SEED` (decimal or `0x…`; printed at the start), `POWER_CUT_CUTS` (default 8),
//! `LAZYFS_SRC` (see `common/lazyfs.rs`). A round takes 4–9 s, 45–60 s for the default 8
//! cuts; the first run also builds LazyFS (about a minute, plus apt-get when its build
//! dependencies are missing).
//!
//! `compaction_then_power_cut_keeps_relocated_blocks` is the deterministic case of one bug the
//! random test finds: the cut lands right after compaction moved blocks and removed their old
//! segment.
//!
//! What LazyFS cannot show: an `fdatasync` holds LazyFS' cache lock for its whole duration
//! (`CustomCacheEngine::sync_pages` in `libs/libpcache/src/engine/backends/custom/
//! custom_cache.cpp`), so every other write and fsync through the mount waits for it. An upload
//! whose `BlockBytes::sync` finds the dirty set already drained by another upload's sync still in
//! progress therefore cannot get its journal synced, and cannot answer 200, before that sync has
//! completed; that race needs an in-engine test.

mod common;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use codex_actors::repair::inspect;
use common::{
    clients::{get, http, json, Client},
    lazyfs::{lazyfs, Mount},
    node_process::NodeProcess,
    peers::{connect_to, space, start_fetch, wait_complete, wait_stored},
    workload::{expected_for, unix_now, Entry, Ledger, Rng, State, BLOCK},
    TestResult,
};

const CLIENTS: usize = 4;
/// Dataset lifetime; a few cuts long, so that expiry runs during the test.
const TTL_SECS: f64 = 8.0;
/// An acknowledged dataset must exist while its expiry is at least this far away.
const MARGIN_SECS: f64 = 2.0;
const FLAGS: &[&str] = &[
    "--block-ttl",
    "8",
    "--block-mi",
    "1",
    "--block-mn",
    "100000",
    "--segment-bytes",
    "1048576",
];
/// LazyFS' cache, allocated at mount time; one round (writes and the checker's reads) must stay
/// well under it, as a full cache writes through.
const CACHE: &str = "512mb";
const MAX_CACHE_PERCENT: u32 = 80;

fn env_u64(name: &str) -> TestResult<Option<u64>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    Ok(Some(parsed.map_err(|e| format!("{name}={text}: {e}"))?))
}

/// LazyFS and a mount, or `None` after printing why this machine cannot run the test.
fn mount_or_skip(test: &str, cache: &str) -> TestResult<Option<Mount>> {
    let reason = match lazyfs()? {
        Ok(fs) => match Mount::new(&fs, cache)? {
            Ok(mount) => return Ok(Some(mount)),
            Err(reason) => reason,
        },
        Err(reason) => reason,
    };
    eprintln!("SKIP: {test} not run because {reason}");
    Ok(None)
}

#[test]
fn power_cuts_under_load_lose_nothing_acknowledged() -> TestResult {
    let seed = env_u64("POWER_CUT_SEED")?.unwrap_or(0x9E37_79B9_7F4A_7C15);
    let cuts = env_u64("POWER_CUT_CUTS")?.unwrap_or(8);
    eprintln!("power cuts: seed {seed:#x}, {cuts} cuts (POWER_CUT_SEED, POWER_CUT_CUTS)");
    let Some(mut mount) = mount_or_skip("power_cuts_under_load_lose_nothing_acknowledged", CACHE)?
    else {
        return Ok(());
    };
    let data = mount.path().join("node");
    let mut rng = Rng::new(seed);
    let ledger = Mutex::new(Ledger::default());
    let mut logs: Vec<Vec<String>> = Vec::new(); // one per node run, in order
    let mut node = NodeProcess::spawn(&data, FLAGS)?;
    let started = Instant::now();
    for cut in 1..=cuts {
        let round = Instant::now();
        let load = Duration::from_millis(200 + rng.below(2300));
        // Every other round the clients stop first and only maintenance (expiry, compaction)
        // runs when the power goes: nothing else syncs then.
        let idle = Duration::from_millis(rng.below(2) * rng.below(2500));
        let stop = AtomicBool::new(false);
        let base = node.url("");
        std::thread::scope(|s| {
            let clients: Vec<_> = (0..CLIENTS)
                .map(|id| {
                    let mut client = Client {
                        id,
                        round: cut,
                        base: &base,
                        ledger: &ledger,
                        stop: &stop,
                        rng: Rng::new(rng.next()),
                        ttl_secs: TTL_SECS,
                    };
                    s.spawn(move || client.run())
                })
                .collect();
            std::thread::sleep(load);
            if !idle.is_zero() {
                stop.store(true, Ordering::Relaxed);
                for client in clients {
                    let _ = client.join();
                }
                std::thread::sleep(idle);
            }
            let killed = node.kill(); // the power cut, part one: the process dies at once
            stop.store(true, Ordering::Relaxed);
            killed
        })?;
        logs.push(node.log());
        let recover = Instant::now();
        let usage = mount.cache_usage_percent()?;
        if usage >= MAX_CACHE_PERCENT {
            return Err(format!("LazyFS' cache was {usage}% full at cut {cut}: writes may have gone straight to disk and survived the cut; raise CACHE or lower the load").into());
        }
        mount.clear_cache()?; // part two: every unsynced byte is lost
        mount.remount()?;
        let report = inspect(&data)?;
        let mut failures = Vec::new();
        if report.damaged_blocks > 0 || report.counters_fixed {
            failures.push(format!(
                "inspect before the restart: referenced blocks missing or counters that disagree with the block records: {report:?}"
            ));
        }
        node = NodeProcess::spawn(&data, FLAGS)?;
        let recovered = recover.elapsed();
        let mut ledger = ledger.lock().map_err(|_| "poisoned")?;
        failures.extend(check(&node, &mut ledger, cut)?);
        failures.append(&mut ledger.anomalies);
        let (stored, gone, unknown) = ledger.tally();
        eprintln!(
            "cut {cut}/{cuts} after {} ms of load and {} ms idle: {} uploads and {} deletes acknowledged so far; {stored} stored, {gone} absent, {unknown} unknown; cache {usage}%; {report:?}; round {:.1} s (cut to restarted {:.1} s)",
            load.as_millis(),
            idle.as_millis(),
            ledger.uploads_acked,
            ledger.deletes_acked,
            round.elapsed().as_secs_f64(),
            recovered.as_secs_f64()
        );
        logs.push(node.log());
        verdict(seed, cut, &failures, &ledger, &logs)?;
    }
    // A clean stop leaves nothing to repair, and the restarted node agrees with its records.
    assert!(node.terminate()?.success(), "graceful stop failed");
    logs.push(node.log());
    let report = inspect(&data)?;
    assert!(report.is_clean(), "after a clean stop: {report:?}");
    let mut node = NodeProcess::spawn(&data, FLAGS)?;
    let mut ledger = ledger.lock().map_err(|_| "poisoned")?;
    let failures = check(&node, &mut ledger, cuts + 1)?;
    logs.push(node.log());
    verdict(seed, cuts + 1, &failures, &ledger, &logs)?;
    assert!(node.terminate()?.success(), "graceful stop failed");
    eprintln!(
        "{cuts} power cuts survived in {:.1} s ({:.1} s per cut): {} uploads and {} deletes acknowledged",
        started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64() / cuts.max(1) as f64,
        ledger.uploads_acked,
        ledger.deletes_acked
    );
    Ok(())
}

fn must_exist(entry: &Entry) -> bool {
    matches!(entry.state, State::Stored { until } if until - MARGIN_SECS > unix_now())
}

/// Checks a restarted node against the ledger and returns what is wrong. Datasets found absent
/// become [`State::Gone`]: nothing but a new upload may bring them back.
fn check(node: &NodeProcess, ledger: &mut Ledger, round: u64) -> TestResult<Vec<String>> {
    let agent = http();
    let mut failures = Vec::new();
    let mut cids: Vec<String> = ledger.entries.keys().cloned().collect();
    cids.sort();
    for cid in &cids {
        let Some(entry) = ledger.entries.get_mut(cid) else {
            continue;
        };
        let url = node.url(&format!("/data/{cid}"));
        let required = must_exist(entry);
        let (status, body) = get(&agent, &url)?;
        let intact = status == 200 && body.is_some_and(|b| b == entry.spec.bytes());
        // Absent means no manifest either: a 404 with the manifest present is a dataset whose
        // blocks are missing. A dataset may also expire while it is being downloaded.
        let absent = |agent: &ureq::Agent| -> TestResult<bool> {
            let manifest = node.url(&format!("/data/{cid}/network/manifest"));
            Ok(get(agent, &url)?.0 == 404 && get(agent, &manifest)?.0 == 404)
        };
        let problem = match status {
            200 if intact && entry.state == State::Gone => {
                Some("deleted (204) or found absent earlier, yet it downloads again")
            }
            200 if intact => None,
            404 if entry.state == State::Gone => None,
            404 if required => {
                Some("answered 200 before the cut and not expired, yet it answers 404")
            }
            _ if !required && absent(&agent)? => {
                entry.state = State::Gone;
                entry
                    .history
                    .push(format!("round {round}: absent after the restart"));
                None
            }
            200 => Some("downloads with wrong or missing bytes"),
            404 => Some("manifest present, yet the download answers 404"),
            _ => Some("download failed"),
        };
        if let Some(problem) = problem {
            let state = match entry.state {
                State::Stored { .. } if required => "acknowledged, not expired",
                State::Stored { .. } => "acknowledged, expiring",
                State::Gone => "deleted or absent",
                State::Unknown => "outcome unknown",
            };
            let found = diagnose(&agent, node, entry)?;
            failures.push(format!(
                "{cid} [{state}]: {problem} (GET {status}; {found})"
            ));
        }
    }
    // A removal runs in synced steps (the manifest first, then the tree's leaves), and expiry
    // may be between two of them: its dataset is no longer listed while its blocks still count
    // in /space until the next step. Such a gap closes within a maintenance pass or two; a leak
    // does not.
    let mut listing = check_listing_and_space(&agent, node, ledger)?;
    for _ in 0..10 {
        if listing.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        listing = check_listing_and_space(&agent, node, ledger)?;
    }
    failures.extend(listing);
    Ok(failures)
}

/// What is left of a dataset: its manifest, and how many of its distinct blocks exist.
fn diagnose(agent: &ureq::Agent, node: &NodeProcess, entry: &Entry) -> TestResult<String> {
    let cid = &entry.expected.cid;
    let (manifest, _) = get(agent, &node.url(&format!("/data/{cid}/network/manifest")))?;
    let distinct: HashSet<_> = entry.expected.blocks.iter().collect();
    let log = node.log();
    let (mut recorded, mut missing) = (0, 0);
    for block in &distinct {
        let text = codex_actors::cid_text(block);
        let answer = json(agent, &node.url(&format!("/data/{text}/exists")))?;
        recorded += u32::from(answer[&text].as_bool() == Some(true));
        let mark = format!("missing cid={text}");
        missing += u32::from(log.iter().any(|l| l.contains(&mark)));
    }
    let manifest = match manifest {
        200 => "manifest present".to_string(),
        status => format!("manifest missing ({status})"),
    };
    Ok(format!(
        "{manifest}; {recorded} of its {} distinct blocks have records (GET …/exists); the start-up check found {missing} of them missing",
        distinct.len()
    ))
}

/// `GET /data` lists every dataset that must exist and none that must not, and `/space` equals
/// the blocks and manifests of the listed datasets.
fn check_listing_and_space(
    agent: &ureq::Agent,
    node: &NodeProcess,
    ledger: &Ledger,
) -> TestResult<Vec<String>> {
    // Expiry may run meanwhile: take a listing between two equal /space answers.
    let mut tries = 0;
    let (space, listing) = loop {
        let before = json(agent, &node.url("/space"))?;
        let listing = json(agent, &node.url("/data"))?;
        let after = json(agent, &node.url("/space"))?;
        tries += 1;
        if before == after || tries == 10 {
            break (after, listing);
        }
    };
    let listed: HashSet<String> = listing["content"]
        .as_array()
        .ok_or("GET /data without content")?
        .iter()
        .filter_map(|item| item["cid"].as_str().map(str::to_string))
        .collect();
    let mut failures = Vec::new();
    let (mut blocks, mut manifest_bytes) = (HashSet::new(), 0);
    for cid in &listed {
        match ledger.entries.get(cid) {
            None => failures.push(format!("{cid}: listed by GET /data, never uploaded")),
            Some(e) if e.state == State::Gone => failures.push(format!(
                "{cid}: listed by GET /data, but deleted (204) or found absent earlier"
            )),
            Some(e) => {
                blocks.extend(e.expected.blocks.iter().copied());
                manifest_bytes += e.expected.manifest_bytes;
            }
        }
    }
    for (cid, entry) in &ledger.entries {
        if must_exist(entry) && !listed.contains(cid) {
            failures.push(format!(
                "{cid}: acknowledged and not expired, missing from GET /data"
            ));
        }
    }
    let want = (
        blocks.len() as u64 + listed.len() as u64,
        blocks.len() as u64 * BLOCK as u64 + manifest_bytes,
    );
    let got = (
        space["totalBlocks"].as_u64().unwrap_or(u64::MAX),
        space["quotaUsedBytes"].as_u64().unwrap_or(u64::MAX),
    );
    if got != want {
        failures.push(format!(
            "GET /space says {} blocks and {} bytes used; the {} listed datasets hold {} blocks and {} bytes",
            got.0, got.1, listed.len(), want.0, want.1
        ));
    }
    Ok(failures)
}

/// Prints the failures of a round with their evidence, and fails the test if there are any.
fn verdict(
    seed: u64,
    round: u64,
    failures: &[String],
    ledger: &Ledger,
    logs: &[Vec<String>],
) -> TestResult {
    if failures.is_empty() {
        return Ok(());
    }
    eprintln!("{}", failure_report(seed, round, failures, ledger, logs));
    Err(format!(
        "power cut {round} (seed {seed:#x}): {} failures, listed above",
        failures.len()
    )
    .into())
}

/// The failures, with the history and log lines of the datasets they name.
fn failure_report(
    seed: u64,
    round: u64,
    failures: &[String],
    ledger: &Ledger,
    logs: &[Vec<String>],
) -> String {
    let mut out = format!(
        "power cut {round} (seed {seed:#x}; POWER_CUT_SEED={seed:#x} repeats the workload): {} failures\n",
        failures.len()
    );
    for f in failures.iter().take(12) {
        out += &format!("  - {f}\n");
    }
    if failures.len() > 12 {
        out += &format!("  - … and {} more\n", failures.len() - 12);
    }
    let mut named: Vec<&Entry> = ledger
        .entries
        .values()
        .filter(|e| {
            failures
                .iter()
                .take(12)
                .any(|f| f.contains(&e.expected.cid))
        })
        .collect();
    named.sort_by(|a, b| a.expected.cid.cmp(&b.expected.cid));
    for entry in named.iter().take(6) {
        out += &format!(
            "{} ({} bytes, {} blocks):\n",
            entry.expected.cid,
            entry.expected.len,
            entry.expected.blocks.len()
        );
        for h in &entry.history {
            out += &format!("    {h}\n");
        }
        for (run, log) in logs.iter().enumerate() {
            for line in log.iter().filter(|l| l.contains(&entry.expected.cid)) {
                out += &format!("    node run {run}: {line}\n");
            }
        }
    }
    for (run, log) in logs.iter().enumerate() {
        let notable = log
            .iter()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"));
        for line in notable.take(12) {
            out += &format!("node run {run}: {line}\n");
        }
    }
    // What the engine did last before the cut (requests left out).
    if let Some(killed) = logs.len().checked_sub(2).and_then(|run| logs.get(run)) {
        let engine = engine_lines(killed);
        out += "last engine lines of the node run before:\n";
        for line in &engine[engine.len().saturating_sub(15)..] {
            out += &format!("    {line}\n");
        }
    }
    out
}

/// The engine's own lines and every warning or error (no request lines, no fjall recovery).
fn engine_lines(log: &[String]) -> Vec<&str> {
    log.iter()
        .filter(|l| l.contains("codex_actors") || l.contains(" WARN ") || l.contains("ERROR"))
        .map(String::as_str)
        .collect()
}

/// Compaction copies the live blocks of a mostly-dead segment, points the index at the copies
/// and removes the old file. A power cut right after that must not leave the durable index
/// pointing into the removed file.
#[test]
fn compaction_then_power_cut_keeps_relocated_blocks() -> TestResult {
    let Some(mut mount) =
        mount_or_skip("compaction_then_power_cut_keeps_relocated_blocks", "256mb")?
    else {
        return Ok(());
    };
    let data = mount.path().join("node");
    let flags = [
        "--block-ttl",
        "0",
        "--block-mi",
        "1",
        "--segment-bytes",
        "1048576",
    ];
    let mut node = NodeProcess::spawn(&data, &flags)?;
    let agent = http();
    let mut rng = Rng::new(0xC0_4AC7);
    let upload = |data: &[u8]| -> TestResult<String> {
        let resp = agent.post(node.url("/data")).send(data)?;
        assert_eq!(resp.status(), 200);
        let cid = resp.into_body().read_to_string()?;
        assert_eq!(cid, expected_for(data).cid);
        Ok(cid)
    };
    // A 1 MiB segment holds 15 blocks: segment 0 gets `kept` and 12 blocks of `doomed`.
    let kept = rng.bytes(3 * BLOCK);
    let kept_cid = upload(&kept)?;
    let doomed_cid = upload(&rng.bytes(20 * BLOCK))?;
    upload(&rng.bytes(20 * BLOCK))?;
    let status = agent
        .delete(node.url(&format!("/data/{doomed_cid}")))
        .call()?
        .status();
    assert_eq!(status, 204);
    // Segment 0 is now a fifth live: the next pass moves `kept` and removes the file.
    let compacted = common::eventually(Duration::from_secs(20), || {
        Ok(node.log().iter().any(|l| l.contains("compacted a segment")))
    })?;
    assert!(
        compacted,
        "no compaction within 20 s:\n{}",
        engine_lines(&node.log()).join("\n")
    );
    node.kill()?;
    let removed = !mount
        .backing()
        .join("node/blocks/seg-00000000.dat")
        .exists();
    let log_before = node.log();
    mount.clear_cache()?;
    mount.remount()?;
    let report = inspect(&data)?;
    let node = NodeProcess::spawn(&data, &flags)?;
    let (status, body) = get(&agent, &node.url(&format!("/data/{kept_cid}")))?;
    let intact = status == 200 && body.as_deref() == Some(&kept[..]);
    let context = format!(
        "segment 0 removed before the cut: {removed}; inspect before the restart: {report:?}\nlog before the cut:\n{}\nlog after the restart:\n{}",
        engine_lines(&log_before).join("\n"),
        engine_lines(&node.log()).join("\n")
    );
    assert!(
        intact,
        "{kept_cid}, moved by compaction, answers {status} after the power cut; {context}"
    );
    assert_eq!(report.damaged_blocks, 0, "{context}");
    Ok(())
}

/// Fetched datasets are held to the same rule as uploads: a fetch that reported itself
/// complete survives a power cut whole, and one cut short keeps only blocks whose bytes were
/// synced before their records, so it resumes and ends byte-exact. The seeder runs beside the
/// mount, on an ordinary directory.
#[test]
fn a_power_cut_during_fetches_loses_nothing_acknowledged() -> TestResult {
    let Some(mut mount) = mount_or_skip(
        "a_power_cut_during_fetches_loses_nothing_acknowledged",
        "256mb",
    )?
    else {
        return Ok(());
    };
    let seeder_dir = tempfile::tempdir()?;
    let seeder = NodeProcess::spawn(seeder_dir.path(), &[])?;
    let agent = http();
    let mut rng = Rng::new(0x0FE7_C4ED);
    let done = rng.bytes(40 * BLOCK + 123);
    let partial = rng.bytes(400 * BLOCK);
    let mut cids = Vec::new();
    for bytes in [&done, &partial] {
        let resp = agent.post(seeder.url("/data")).send(&bytes[..])?;
        assert_eq!(resp.status(), 200);
        cids.push(resp.into_body().read_to_string()?);
    }
    let (done_cid, partial_cid) = (&cids[0], &cids[1]);

    let data = mount.path().join("node");
    let mut node = NodeProcess::spawn(&data, &[])?;
    connect_to(&node, &seeder)?;
    assert_eq!(start_fetch(&node, done_cid)?.0, 200);
    wait_complete(&node, done_cid)?; // the acknowledgement: progress says complete
    assert_eq!(start_fetch(&node, partial_cid)?.0, 200);
    wait_stored(&node, partial_cid, 40)?;
    node.kill()?;
    let log_before = node.log();
    mount.clear_cache()?;
    mount.remount()?;
    let report = inspect(&data)?;
    let context = format!(
        "inspect before the restart: {report:?}\nlog before the cut:\n{}",
        engine_lines(&log_before).join("\n")
    );
    assert_eq!(report.damaged_blocks, 0, "{context}");
    assert_eq!(report.missing_bytes, 0, "{context}");

    let node = NodeProcess::spawn(&data, &[])?;
    let (status, body) = get(&agent, &node.url(&format!("/data/{done_cid}")))?;
    assert!(
        status == 200 && body.as_deref() == Some(&done[..]),
        "the completed fetch answers {status} after the power cut; {context}"
    );
    connect_to(&node, &seeder)?;
    assert_eq!(start_fetch(&node, partial_cid)?.0, 200, "{context}");
    wait_complete(&node, partial_cid)?;
    let (status, body) = get(&agent, &node.url(&format!("/data/{partial_cid}")))?;
    assert!(
        status == 200 && body.as_deref() == Some(&partial[..]),
        "the resumed fetch answers {status}; {context}\nlog after the restart:\n{}",
        engine_lines(&node.log()).join("\n")
    );
    assert_eq!(space(&node)?, space(&seeder)?, "the same two datasets");
    Ok(())
}
