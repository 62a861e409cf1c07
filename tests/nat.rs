//! Nodes at home (issue 18), with real NATs in network namespaces (`tests/common/netbed.rs`):
//! a bootstrap node that relays on the public segment, and two homes behind NAT routers. Home
//! A uploads; home B knows only the bootstrap node and fetches by CID alone.
//!
//! - Port-preserving NATs: the homes meet through the relay, DCUtR punches a hole, and the
//!   data goes direct: the relay's link carries under 5 % of it.
//! - Port-randomising ("symmetric") NATs: the hole punch fails, the fetch completes relayed.
//! - The same with a relay byte limit below the dataset: the fetch fails in bounded time, its
//!   error (`/network/progress`) names the relay limit that ended it, and so does B's
//!   `/debug/info`.
//! - A's router restarts with another public address: B finds A again by CID (through the
//!   relay, where A reserves again once its pings show the old connection dead).
//!
//! Each test builds its own bed under its own prefix and tears it down, with its nodes.

mod common;

use std::time::{Duration, Instant};

use common::netbed::Bed;
use common::node_process::NodeProcess;
use common::TestResult;
use serde_json::Value;

/// Longest time after A's router changed its address until B fetches from A again.
const NEW_ADDRESS_BOUND: Duration = Duration::from_secs(180);
/// The dataset: 16 MiB, as the issue asks.
const DATASET_BYTES: usize = 16 << 20;
/// Longest wait for a home node to find itself private and hold a relay reservation (AutoNAT
/// waits 5 s, its dial-back 10 s).
const RESERVATION_WAIT: Duration = Duration::from_secs(90);

/// The bed's three nodes and their directories.
struct Homes {
    bed: Bed,
    /// Kept running for the test's length (dropping it stops the node).
    _relay: NodeProcess,
    a: NodeProcess,
    b: NodeProcess,
    dir: tempfile::TempDir,
}

fn listen() -> [&'static str; 2] {
    ["--listen-addrs", "/ip4/0.0.0.0/tcp/8070"]
}

/// Builds the bed (`netbed up` with `bed_args`), starts the relay on pub1 with `relay_args`,
/// and a node in each home that knows only the relay; returns once home A holds a
/// reservation. `None` when the bed cannot be built here (the test then skips).
fn homes(
    test: &str,
    prefix: &str,
    bed_args: &[&str],
    relay_args: &[&str],
) -> TestResult<Option<Homes>> {
    let Some(bed) = Bed::up(test, prefix, bed_args)? else {
        return Ok(None);
    };
    let dir = tempfile::tempdir()?;
    let relay_flags = [&listen()[..], &["--relay-service"], relay_args].concat();
    let relay = bed.spawn("pub1", &dir.path().join("relay"), &relay_flags)?;
    let id = bed.get_json("pub1", &relay.url("/peerid"))?["id"]
        .as_str()
        .ok_or("no peer id")?
        .to_string();
    let bootstrap = format!("/ip4/{}/tcp/8070/p2p/{id}", bed.public_addr("pub1")?);
    let home_flags = [&listen()[..], &["--bootstrap-node", &bootstrap]].concat();
    let a = bed.spawn("home1", &dir.path().join("a"), &home_flags)?;
    let b = bed.spawn("home2", &dir.path().join("b"), &home_flags)?;
    let homes = Homes {
        bed,
        _relay: relay,
        a,
        b,
        dir,
    };
    homes.wait_reserved("home1", &homes.a)?;
    Ok(Some(homes))
}

impl Homes {
    fn nat(&self, ns: &str, node: &NodeProcess) -> TestResult<Value> {
        Ok(self.bed.get_json(ns, &node.url("/debug/info"))?["nat"].clone())
    }

    /// Waits until `node` found itself private and a relay accepted its reservation.
    fn wait_reserved(&self, ns: &str, node: &NodeProcess) -> TestResult {
        let start = Instant::now();
        loop {
            let nat = self.nat(ns, node)?;
            let accepted = nat["relayReservations"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["accepted"] == true));
            if nat["reachability"] == "private" && accepted {
                println!(
                    "{ns}: private, reservation held after {:?}",
                    start.elapsed()
                );
                return Ok(());
            }
            if start.elapsed() > RESERVATION_WAIT {
                return Err(format!(
                    "{ns} holds no reservation: {nat}\nlog:\n{}",
                    node.log().join("\n")
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Home A uploads `data`; its CID.
    fn upload(&self, data: &[u8]) -> TestResult<String> {
        let file = self.dir.path().join(format!("upload-{}.bin", data.len()));
        std::fs::write(&file, data)?;
        let cid = self.bed.curl(
            "home1",
            &[
                "-H",
                "Content-Type: application/octet-stream",
                "--data-binary",
                &format!("@{}", file.display()),
                &self.a.url("/data"),
            ],
        )?;
        Ok(cid.trim().to_string())
    }

    /// Home B fetches `cid` by CID alone, within `max`: the HTTP status (0 when the transfer
    /// broke off) and the bytes that arrived.
    fn fetch(&self, cid: &str, max: Duration) -> TestResult<(u16, Vec<u8>)> {
        let out = self.dir.path().join("fetched.bin");
        let _ = std::fs::remove_file(&out);
        let url = self.b.url(&format!("/data/{cid}/network/stream"));
        let max = max.as_secs().to_string();
        // curl fails when a stream breaks off: the status and bytes tell the test what it got.
        let status = match self.bed.curl(
            "home2",
            &[
                "--max-time",
                &max,
                "-o",
                &out.display().to_string(),
                "-w",
                "%{http_code}",
                &url,
            ],
        ) {
            Ok(code) => code.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        let bytes = std::fs::read(&out).unwrap_or_default();
        Ok((status, bytes))
    }

    /// Bytes that crossed pub1's link (both ways) while `f` ran.
    fn relay_bytes<T>(&self, f: impl FnOnce() -> TestResult<T>) -> TestResult<(T, u64)> {
        let before = self.bed.counters()?;
        let out = f()?;
        let after = self.bed.counters()?;
        let link = |c: &std::collections::HashMap<String, (u64, u64)>| {
            c.get("pub1").map(|(s, r)| s + r).unwrap_or(0)
        };
        Ok((out, link(&after).saturating_sub(link(&before))))
    }

    /// B's view of its connection to A: `direct`, `relayed` or `direct+relayed`.
    fn b_to_a(&self) -> TestResult<Value> {
        let a_id = self.bed.get_json("home1", &self.a.url("/peerid"))?["id"].clone();
        let nat = self.nat("home2", &self.b)?;
        let peers = nat["peers"].as_array().cloned().unwrap_or_default();
        Ok(peers
            .into_iter()
            .find(|p| p["peerId"] == a_id)
            .unwrap_or(Value::Null))
    }
}

/// The 16 MiB dataset.
fn dataset() -> Vec<u8> {
    dataset_of(DATASET_BYTES, 0x9E37_79B9_7F4A_7C15)
}

/// `len` random-looking bytes from `seed` (so that nothing compresses or deduplicates).
fn dataset_of(len: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Seconds since midnight of a log line's timestamp (`2026-12-07T04:46:08.498304Z …`).
fn log_secs(line: &str) -> Option<f64> {
    let t = line.get(11..26)?;
    let mut f = t.split(':');
    let (h, m, s) = (f.next()?, f.next()?, f.next()?);
    Some(h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + s.parse::<f64>().ok()?)
}

/// From a node's first relayed connection (dialled through a circuit, or accepted from one,
/// which the log shows as a bare `/p2p/<id>` address) to its first hole punch, from its log.
fn hole_punch_time(node: &NodeProcess) -> Option<f64> {
    let log = node.log();
    let relayed = log.iter().find(|l| {
        l.contains("peer connected") && (l.contains("p2p-circuit") || l.contains("addr=/p2p/"))
    })?;
    let punched = log.iter().find(|l| l.contains("hole punched"))?;
    Some(log_secs(punched)? - log_secs(relayed)?)
}

fn log_tail(node: &NodeProcess, what: &str) -> String {
    let log = node.log();
    let from = log.len().saturating_sub(40);
    format!("{what} log:\n{}", log[from..].join("\n"))
}

#[test]
fn homes_behind_port_preserving_nats_fetch_direct_after_a_hole_punch() -> TestResult {
    let Some(h) = homes("hole punch", "nt1-", &[], &[])? else {
        return Ok(());
    };
    let data = dataset();
    let cid = h.upload(&data)?;
    let started = Instant::now();
    let ((status, got), relayed) = h.relay_bytes(|| h.fetch(&cid, Duration::from_secs(180)))?;
    let took = started.elapsed();
    assert_eq!(status, 200, "{}", log_tail(&h.b, "B"));
    assert!(got == data, "fetched {} bytes, not the dataset", got.len());
    let share = relayed as f64 / data.len() as f64;
    let link = h.b_to_a()?;
    let nat_b = h.nat("home2", &h.b)?;
    let nat_a = h.nat("home1", &h.a)?;
    println!(
        "hole punch: fetched {} bytes in {took:?}; pub1's link carried {relayed} bytes ({:.2} %); \
         B to A: {link}; hole punches A {} B {}",
        data.len(),
        share * 100.0,
        nat_a["holePunchesSucceeded"],
        nat_b["holePunchesSucceeded"],
    );
    assert!(share < 0.05, "the relay carried {relayed} bytes");
    assert_eq!(link["connection"], "direct", "B's connection to A: {link}");
    for (name, node) in [("A", &h.a), ("B", &h.b)] {
        if let Some(t) = hole_punch_time(node) {
            println!(
                "hole punch: {name} went direct {:.0} ms after its relayed connection",
                t * 1000.0
            );
        }
    }
    let punched = nat_a["holePunchesSucceeded"].as_u64().unwrap_or(0)
        + nat_b["holePunchesSucceeded"].as_u64().unwrap_or(0);
    assert!(punched >= 1, "no hole punch counted: A {nat_a} B {nat_b}");
    Ok(())
}

#[test]
fn homes_behind_symmetric_nats_fetch_through_the_relay() -> TestResult {
    let Some(h) = homes("relayed fetch", "nt2-", &["--symmetric"], &[])? else {
        return Ok(());
    };
    let data = dataset();
    let cid = h.upload(&data)?;
    let ((status, got), relayed) = h.relay_bytes(|| h.fetch(&cid, Duration::from_secs(180)))?;
    assert_eq!(status, 200, "{}", log_tail(&h.b, "B"));
    assert!(got == data, "fetched {} bytes, not the dataset", got.len());
    let link = h.b_to_a()?;
    println!(
        "symmetric NAT: pub1's link carried {relayed} bytes ({:.0} % of the dataset); B to A: {link}",
        relayed as f64 * 100.0 / data.len() as f64
    );
    // Through the relay, the data crosses pub1's link twice.
    assert!(
        relayed as usize > data.len(),
        "the relay carried only {relayed} bytes"
    );
    assert_eq!(link["connection"], "relayed", "B's connection to A: {link}");
    Ok(())
}

#[test]
fn a_relay_byte_limit_below_the_dataset_fails_the_fetch_with_a_reason() -> TestResult {
    let limit = (4u64 << 20).to_string(); // 4 MiB per circuit, a quarter of the dataset
    let Some(h) = homes(
        "relay limit",
        "nt3-",
        &["--symmetric"],
        &["--relay-max-circuit-bytes", &limit],
    )?
    else {
        return Ok(());
    };
    let data = dataset();
    let cid = h.upload(&data)?;
    let started = Instant::now();
    let (status, got) = h.fetch(&cid, Duration::from_secs(400))?;
    let took = started.elapsed();
    assert!(
        status != 200 || got.len() < data.len(),
        "the fetch completed ({status}, {} bytes) through a relay limited to {limit} bytes",
        got.len()
    );
    assert!(
        took < Duration::from_secs(390),
        "the fetch was ended by curl's timeout, not by the node"
    );
    let nat = h.nat("home2", &h.b)?;
    let reasons = nat["relayLimitsReached"].to_string();
    // The fetch itself says why it stopped: the progress route carries its error.
    let progress = h
        .bed
        .get_json("home2", &h.b.url(&format!("/data/{cid}/network/progress")))?;
    println!(
        "relay limit: the fetch ended after {took:?} with status {status}, {} bytes; {reasons}; progress {progress}",
        got.len()
    );
    let said = "limit of 4194304 bytes per circuit was reached";
    assert!(
        reasons.contains(said),
        "B does not say a relay limit ended the circuit: {nat}\n{}",
        log_tail(&h.b, "B")
    );
    assert!(
        progress["fetching"] == false
            && progress["error"].as_str().is_some_and(|e| e.contains(said)),
        "the fetch's own error does not name the relay limit: {progress}\n{}",
        log_tail(&h.b, "B")
    );
    Ok(())
}

#[test]
fn a_home_whose_router_gets_a_new_address_is_found_again_by_cid() -> TestResult {
    let Some(h) = homes("new address", "nt4-", &[], &[])? else {
        return Ok(());
    };
    let first = dataset_of(4 << 20, 1);
    let second = dataset_of(4 << 20, 2);
    let (first_cid, second_cid) = (h.upload(&first)?, h.upload(&second)?);
    let (status, got) = h.fetch(&first_cid, Duration::from_secs(120))?;
    assert!(
        status == 200 && got == first,
        "first fetch: {status}, {} bytes",
        got.len()
    );
    // router1 comes back with another public address: every mapping through it is gone, and
    // A's connections (to the relay, to B) die without a word.
    let old = h.bed.public_addr("home1")?;
    let new = "198.18.0.151";
    h.bed.exec(
        "router1",
        &["ip", "addr", "del", &format!("{old}/24"), "dev", "wan"],
    )?;
    h.bed.exec(
        "router1",
        &["ip", "addr", "add", &format!("{new}/24"), "dev", "wan"],
    )?;
    h.bed.exec(
        "router1",
        &["ip", "route", "replace", "default", "via", "198.18.0.1"],
    )?;
    // Until B's pings show its direct connection to A dead (15 s + 20 s at most), B asks A
    // over it and a request for the manifest gives up after 20 s (404), as a user would see:
    // the user asks again, until A is found again through the relay.
    let started = Instant::now();
    let mut tries = 0;
    let took = loop {
        tries += 1;
        let (status, got) = h.fetch(&second_cid, Duration::from_secs(120))?;
        if status == 200 && got == second {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < NEW_ADDRESS_BOUND,
            "A not found again {:?} after the change (last: {status}, {} bytes)\n{}\n{}",
            started.elapsed(),
            got.len(),
            log_tail(&h.b, "B"),
            log_tail(&h.a, "A")
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let link = h.b_to_a()?;
    println!(
        "new address: {old} -> {new}; B fetched A's second dataset {took:?} after the change \
         ({tries} tries); B to A: {link}"
    );
    Ok(())
}
