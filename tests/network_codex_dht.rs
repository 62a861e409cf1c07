//! Joining a Codex network through Codex's DHT (issue 19), against the real Codex v0.2.5
//! binary on loopback: Codex nodes and our binary find each other's datasets by CID alone,
//! with no `/connect` anywhere. Each test prints how long discovery took. Each skips, printing
//! `SKIP: … because …`, only where the Codex binary cannot run (and fails under CI).

mod common;

use std::time::{Duration, Instant};

use common::{codex::CodexNode, node_process::NodeProcess, peers::*, workload::Rng, *};

/// Five blocks, the last one partial.
const DATASET: usize = 4 * 65_536 + 777;
/// How long a node may take to join the DHT through its bootstrap node.
const JOIN_WAIT: Duration = Duration::from_secs(30);

fn content(seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(DATASET)
}

/// A node's `/spr`.
fn spr(node: &impl Api) -> TestResult<String> {
    let (status, body) = get_json(node, "/spr")?;
    assert_eq!(status, 200, "/spr: {body}");
    Ok(body["spr"].as_str().ok_or("no spr in /spr")?.to_owned())
}

/// The nodes of a node's `/debug/info` `table` that answered it.
fn table_peers(node: &impl Api) -> TestResult<Vec<String>> {
    let (_, info) = get_json(node, "/debug/info")?;
    Ok(info["table"]["nodes"]
        .as_array()
        .map(|nodes| {
            nodes
                .iter()
                .filter(|n| n["seen"].as_bool() == Some(true))
                .filter_map(|n| n["peerId"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Waits until `node`'s DHT table holds every peer of `peers`.
fn wait_knows(node: &impl Api, name: &str, peers: &[&str]) -> TestResult {
    let known = eventually(JOIN_WAIT, || {
        let table = table_peers(node)?;
        Ok(peers.iter().all(|p| table.iter().any(|t| t == p)))
    })?;
    assert!(
        known,
        "{name} never had {peers:?} in its table: {:?}",
        table_peers(node)?
    );
    Ok(())
}

/// A Codex node bootstrapped from `spr`.
fn codex_from(spr: &str) -> TestResult<CodexNode> {
    CodexNode::start_with(&[format!("--bootstrap-node={spr}")])
}

/// Our binary bootstrapped from `spr`.
fn ours_from(dir: &std::path::Path, spr: &str) -> TestResult<NodeProcess> {
    NodeProcess::spawn(dir, &["--bootstrap-node", spr])
}

/// Fetches `cid` by CID alone on `node`, checks the bytes and says how long it took.
fn fetch_by_cid(node: &impl Api, cid: &str, data: &[u8], what: &str) -> TestResult {
    let took = timed_fetch(node, cid, data, what)?;
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("{what}: discovered and fetched by CID in {took:?}\n").as_bytes(),
    );
    Ok(())
}

/// Fetches `cid` on `node` by CID alone and checks the bytes; returns how long it took.
fn timed_fetch(node: &impl Api, cid: &str, data: &[u8], what: &str) -> TestResult<Duration> {
    let started = Instant::now();
    let (status, got) = stream_network(node, cid)?;
    let took = started.elapsed();
    assert_eq!(status, 200, "{what}: {}", String::from_utf8_lossy(&got));
    assert!(got == data, "{what}: {} bytes, not the upload", got.len());
    Ok(took)
}

/// X, the bootstrap node, and C1, bootstrapped from X, which knows X; `None` to skip.
fn codex_network(test: &str) -> TestResult<Option<(CodexNode, CodexNode)>> {
    let Some(x) = CodexNode::start_or_skip(test)? else {
        return Ok(None);
    };
    let c1 = codex_from(&spr(&x)?)?;
    wait_knows(&c1, "C1", &[&peer_id(&x)?])?;
    Ok(Some((x, c1)))
}

#[test]
fn ours_finds_a_codex_upload_through_codex_dht() -> TestResult {
    let Some((x, c1)) = codex_network("ours_finds_a_codex_upload_through_codex_dht")? else {
        return Ok(());
    };
    let data = content(1);
    let cid = upload_ok(&c1, &data)?;
    let dir = tempfile::tempdir()?;
    let ours = ours_from(dir.path(), &spr(&x)?)?;
    wait_knows(&ours, "ours", &[&peer_id(&x)?])?;
    fetch_by_cid(&ours, &cid, &data, "ours <- Codex C1")?;
    let from: Vec<String> = received_by_peer(&ours)?
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(from, vec![peer_id(&c1)?], "the uploader, found in the DHT");
    Ok(())
}

#[test]
fn codex_finds_our_upload_through_codex_dht() -> TestResult {
    let Some((x, _c1)) = codex_network("codex_finds_our_upload_through_codex_dht")? else {
        return Ok(());
    };
    let x_spr = spr(&x)?;
    let dir = tempfile::tempdir()?;
    let ours = ours_from(dir.path(), &x_spr)?;
    wait_knows(&ours, "ours", &[&peer_id(&x)?])?;
    let data = content(2);
    let cid = upload_ok(&ours, &data)?;
    let c2 = codex_from(&x_spr)?;
    wait_knows(&c2, "C2", &[&peer_id(&x)?])?;
    fetch_by_cid(&c2, &cid, &data, "Codex C2 <- ours")?;
    Ok(())
}

#[test]
fn codex_joins_through_our_spr_and_finds_a_codex_upload() -> TestResult {
    let Some((x, c1)) = codex_network("codex_joins_through_our_spr_and_finds_a_codex_upload")?
    else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let ours = ours_from(dir.path(), &spr(&x)?)?;
    // Joined: we know C1 too, so C1 announces its upload to us as well. C3 may learn no other
    // node from us (Codex asks for three log distances only), and must find the provider here.
    wait_knows(&ours, "ours", &[&peer_id(&x)?, &peer_id(&c1)?])?;
    let data = content(3);
    let cid = upload_ok(&c1, &data)?;
    let c3 = codex_from(&spr(&ours)?)?;
    wait_knows(&c3, "C3", &[&peer_id(&ours)?])?;
    fetch_by_cid(
        &c3,
        &cid,
        &data,
        "Codex C3 (joined through ours) <- Codex C1",
    )?;
    Ok(())
}

#[test]
fn a_mixed_network_of_three_codex_nodes_and_three_of_ours_shares_everything() -> TestResult {
    let test = "a_mixed_network_of_three_codex_nodes_and_three_of_ours_shares_everything";
    let Some((x, c1)) = codex_network(test)? else {
        return Ok(());
    };
    let x_spr = spr(&x)?;
    let x_id = peer_id(&x)?;
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    // One of ours joins through another of ours, the others through Codex's X.
    let o1 = ours_from(dirs[0].path(), &x_spr)?;
    wait_knows(&o1, "O1", &[&x_id])?;
    let o2 = ours_from(dirs[1].path(), &x_spr)?;
    let o3 = ours_from(dirs[2].path(), &spr(&o1)?)?;
    let c2 = codex_from(&spr(&o2)?)?;
    wait_knows(&o2, "O2", &[&x_id])?;
    wait_knows(&o3, "O3", &[&peer_id(&o1)?])?;
    wait_knows(&c2, "C2", &[&peer_id(&o2)?])?;
    let nodes: [(&str, &dyn Api); 6] = [
        ("X", &x),
        ("C1", &c1),
        ("C2", &c2),
        ("O1", &o1),
        ("O2", &o2),
        ("O3", &o3),
    ];
    let mut datasets = Vec::new();
    for (i, (name, node)) in nodes.iter().enumerate() {
        let data = content(10 + i as u64);
        datasets.push((*name, upload_ok(node, &data)?, data));
    }
    let mut times = Vec::new();
    for (name, node) in &nodes {
        for (owner, cid, data) in datasets.iter().filter(|(owner, _, _)| owner != name) {
            let what = format!("{name} <- {owner}");
            times.push((timed_fetch(node, cid, data, &what)?, what));
        }
    }
    times.sort();
    let median = times[times.len() / 2].0;
    let (slowest, which) = times.last().ok_or("no fetch")?;
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!(
            "6 nodes, 30 fetches by CID alone: median {median:?}, slowest {slowest:?} ({which})\n"
        )
        .as_bytes(),
    );
    Ok(())
}
