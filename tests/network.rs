//! Block exchange between real `codex-node` binaries on loopback, through the HTTP API: a
//! dataset passed from node to node, two seeders, a seeder killed mid-transfer, a downloader
//! killed mid-transfer and resumed, a partial dataset left to expire, a fetch cancelled by
//! DELETE, a dataset refused up front by the quota, and the `connect` and `download --network`
//! commands.

mod common;

use std::time::Duration;

use common::{node_process::NodeProcess, peers::*, workload::Rng, *};

/// 3 MiB and a bit: 49 blocks, the last one partial (an odd leaf count).
const SMALL: usize = 3 * 1024 * 1024 + 12_345;
/// 32 MiB: 512 blocks, large enough to act while a transfer runs.
const LARGE: usize = 32 * 1024 * 1024;

fn content(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

fn api(node: &NodeProcess) -> String {
    format!("http://{}", node.addr)
}

/// The `GET /data` entry of `cid` on `node`, if listed.
fn listed(node: &impl Api, cid: &str) -> TestResult<Option<serde_json::Value>> {
    let (status, body) = get_json(node, "/data")?;
    assert_eq!(status, 200);
    Ok(body["content"]
        .as_array()
        .ok_or("no content")?
        .iter()
        .find(|e| e["cid"] == cid)
        .cloned())
}

#[test]
fn a_dataset_goes_from_a_to_b_and_from_b_to_c_once_a_is_gone() -> TestResult {
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let mut a = NodeProcess::spawn(dirs[0].path(), &[])?;
    let b = NodeProcess::spawn(dirs[1].path(), &[])?;
    let data = content(1, SMALL);
    let cid = upload_ok(&a, &data)?;

    connect_to(&b, &a)?;
    let (status, got) = stream_network(&b, &cid)?;
    assert_eq!(status, 200);
    assert!(got == data, "B streamed {} bytes, not A's", got.len());
    wait_complete(&b, &cid)?;
    let (_, p) = progress(&b, &cid)?;
    assert_eq!(
        (&p["blocksStored"], &p["blocksTotal"], &p["complete"]),
        (&49.into(), &49.into(), &true.into()),
        "{p}"
    );
    // Once complete, B holds an ordinary dataset: the same manifest, listing entry and figures
    // as A, and a local download.
    let manifest = |n: &NodeProcess| get_json(n, &format!("/data/{cid}/network/manifest"));
    assert_eq!(manifest(&a)?, manifest(&b)?);
    assert!(listed(&b, &cid)?.is_some(), "B lists {cid}");
    assert_eq!(listed(&a, &cid)?, listed(&b, &cid)?);
    assert_eq!(space(&a)?, space(&b)?);
    let (status, _, local) = download(&b, &cid, None)?;
    assert!(status == 200 && local == data, "B serves it locally");
    assert_eq!(
        exchange_counter(&a, "blocksSent")?,
        50,
        "49 leaves + the manifest"
    );

    // A goes away; C gets the dataset from B alone, with the `connect` and `download --network`
    // commands.
    a.terminate()?;
    let c = NodeProcess::spawn(dirs[2].path(), &[])?;
    let (code, stdout, stderr) = cli(&[
        "connect",
        &peer_id(&b)?,
        "--addrs",
        &listen_addr(&b)?,
        "--api",
        &api(&c),
    ])?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Successfully connected"), "{stdout}");
    let out = dirs[2].path().join("out.bin");
    let out_text = out.to_str().ok_or("path")?;
    let (code, _, stderr) = cli(&[
        "download",
        &cid,
        "--network",
        "-o",
        out_text,
        "--api",
        &api(&c),
    ])?;
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read(&out)? == data, "C wrote B's bytes");
    wait_complete(&c, &cid)?;
    assert_eq!(space(&b)?, space(&c)?);
    assert_eq!(exchange_counter(&b, "blocksSent")?, 50);
    assert_eq!(exchange_counter(&c, "blocksReceived")?, 50);
    assert_eq!(received_by_peer(&c)?, vec![(peer_id(&b)?, 50)]);
    // The same counters, Codex's way, on /metrics.
    let counter = |n: u64| Some(("counter".to_owned(), n));
    assert_eq!(
        metric(&b, "codex_block_exchange_blocks_sent_total")?,
        counter(50)
    );
    assert_eq!(
        metric(&c, "codex_block_exchange_blocks_received_total")?,
        counter(50)
    );
    for zero in [
        "codex_block_exchange_bad_blocks_received_total",
        "codex_block_exchange_requests_failed_total",
        "codex_block_exchange_retries_total",
        "codex_block_exchange_peer_timeouts_total",
    ] {
        assert_eq!(metric(&c, zero)?, counter(0), "{zero}");
    }
    let gauge = |n: u64| Some(("gauge".to_owned(), n));
    assert_eq!(
        metric(&b, "codex_block_exchange_peers")?,
        gauge(1),
        "C (A is gone)"
    );
    assert_eq!(metric(&c, "codex_block_exchange_pending_blocks")?, gauge(0));
    Ok(())
}

#[test]
fn a_downloader_takes_blocks_from_both_seeders() -> TestResult {
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let seeders = [
        NodeProcess::spawn(dirs[0].path(), &[])?,
        NodeProcess::spawn(dirs[1].path(), &[])?,
    ];
    let d = NodeProcess::spawn(dirs[2].path(), &[])?;
    let data = content(2, LARGE);
    let cid = upload_ok(&seeders[0], &data)?;
    assert_eq!(upload_ok(&seeders[1], &data)?, cid);
    for s in &seeders {
        connect_to(&d, s)?;
    }
    let (status, body) = start_fetch(&d, &cid)?;
    assert_eq!(status, 200, "{body}");
    wait_complete(&d, &cid)?;
    let (_, _, got) = download(&d, &cid, None)?;
    assert!(got == data);
    let mut received = received_by_peer(&d)?;
    received.sort_by_key(|(_, n)| *n);
    assert!(
        received.len() == 2 && received[0].1 > 0,
        "blocks came from both: {received:?}"
    );
    assert_eq!(received[0].1 + received[1].1, 513);
    let sent: Vec<u64> = seeders
        .iter()
        .map(|s| exchange_counter(s, "blocksSent"))
        .collect::<TestResult<_>>()?;
    assert!(sent.iter().all(|n| *n > 0), "both seeders served: {sent:?}");
    assert_eq!(
        exchange_counter(&d, "blocksReceived")?,
        513,
        "each block once, from one seeder or the other"
    );
    assert!(sent.iter().sum::<u64>() >= 513, "{sent:?}");
    Ok(())
}

/// Blocks of [`LARGE`].
const LARGE_BLOCKS: u64 = 512;

#[test]
fn a_download_completes_from_the_other_seeder_when_one_is_killed() -> TestResult {
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let mut a = NodeProcess::spawn(dirs[0].path(), &[])?;
    let b = NodeProcess::spawn(dirs[1].path(), &[])?;
    let d = NodeProcess::spawn(dirs[2].path(), &[])?;
    let data = content(3, LARGE);
    let cid = upload_ok(&a, &data)?;
    assert_eq!(upload_ok(&b, &data)?, cid);
    connect_to(&d, &a)?;
    connect_to(&d, &b)?;
    assert_eq!(start_fetch(&d, &cid)?.0, 200);
    wait_stored(&d, &cid, LARGE_BLOCKS / 8)?;
    assert!(exchange_counter(&a, "blocksSent")? > 0, "A was serving");
    let b_before = exchange_counter(&b, "blocksSent")?;
    a.kill()?;
    let killed = std::time::Instant::now();
    let at_kill = blocks_stored(&d, &cid)?;
    assert!(
        at_kill < LARGE_BLOCKS,
        "the transfer ended before the kill: nothing was tested"
    );
    // A's connection closes with its process, so its requests go to B at once (the peer
    // timeout, 30 s, is not needed).
    wait_complete(&d, &cid)?;
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "took {took:?} after the kill"
    );
    let (status, _, got) = download(&d, &cid, None)?;
    assert!(status == 200 && got == data);
    assert_eq!(space(&d)?, space(&b)?);
    assert!(
        exchange_counter(&b, "blocksSent")? > b_before,
        "B served the rest"
    );
    assert_eq!(
        exchange_counter(&d, "blocksReceived")?,
        LARGE_BLOCKS + 1,
        "each block once (and the manifest)"
    );
    Ok(())
}

#[test]
fn a_downloader_killed_mid_transfer_resumes_after_a_restart() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let a = NodeProcess::spawn(dirs[0].path(), &[])?;
    let mut d = NodeProcess::spawn(dirs[1].path(), &[])?;
    let data = content(4, LARGE);
    let cid = upload_ok(&a, &data)?;
    let full = space(&a)?;
    connect_to(&d, &a)?;
    assert_eq!(start_fetch(&d, &cid)?.0, 200);
    let seen = wait_stored(&d, &cid, LARGE_BLOCKS / 8)?;
    d.kill()?;

    // What was stored survives the kill and the start-up check; the rest stays reserved.
    let mut d = NodeProcess::spawn(dirs[1].path(), &[])?;
    let (status, p) = progress(&d, &cid)?;
    assert_eq!(status, 200, "{p}");
    let stored = p["blocksStored"].as_u64().ok_or("blocksStored")?;
    assert!(
        (seen..LARGE_BLOCKS).contains(&stored),
        "{stored} stored, {seen} seen before the kill"
    );
    assert_eq!(
        (&p["complete"], &p["fetching"]),
        (&false.into(), &false.into())
    );
    assert_eq!(
        partial_datasets(&d)?,
        vec![(cid.clone(), stored, LARGE_BLOCKS)]
    );
    let s = space(&d)?;
    let figure = |v: &serde_json::Value, k: &str| v[k].as_u64().ok_or(format!("no {k}"));
    assert_eq!(
        figure(&s, "quotaReservedBytes")?,
        (LARGE_BLOCKS - stored) * 65_536
    );
    assert_eq!(
        figure(&s, "quotaUsedBytes")? + figure(&s, "quotaReservedBytes")?,
        figure(&full, "quotaUsedBytes")?,
        "used + reserved = the whole dataset: {s}"
    );
    assert!(
        listed(&d, &cid)?.is_none(),
        "a partial dataset is not listed"
    );

    connect_to(&d, &a)?;
    assert_eq!(start_fetch(&d, &cid)?.0, 200);
    wait_complete(&d, &cid)?;
    let (status, _, got) = download(&d, &cid, None)?;
    assert!(status == 200 && got == data);
    assert_eq!(space(&d)?, full);
    assert!(partial_datasets(&d)?.is_empty());
    let received = exchange_counter(&d, "blocksReceived")?;
    assert_eq!(received, LARGE_BLOCKS - stored, "only the missing blocks");
    d.terminate()?;
    let report = codex_actors::repair::inspect(dirs[1].path())?;
    assert!(report.is_clean(), "{report:?}");
    Ok(())
}

#[test]
fn deleting_a_dataset_being_fetched_cancels_the_fetch_and_frees_everything() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let a = NodeProcess::spawn(dirs[0].path(), &[])?;
    let mut d = NodeProcess::spawn(dirs[1].path(), &[])?;
    let data = content(5, LARGE);
    let cid = upload_ok(&a, &data)?;
    let empty = space(&d)?;
    connect_to(&d, &a)?;
    assert_eq!(start_fetch(&d, &cid)?.0, 200);
    wait_stored(&d, &cid, LARGE_BLOCKS / 8)?;
    let resp = agent().delete(d.url(&format!("/data/{cid}"))).call()?;
    assert_eq!(resp.status().as_u16(), 204);

    // Nothing of it is left, and nothing more arrives: the fetch and its wants are gone.
    let gone = eventually(Duration::from_secs(10), || {
        Ok(space(&d)? == empty && exchange_counter(&d, "pendingBlocks")? == 0)
    })?;
    assert!(gone, "space {} vs {empty}", space(&d)?);
    assert_eq!(progress(&d, &cid)?.0, 404);
    assert!(partial_datasets(&d)?.is_empty());
    assert!(listed(&d, &cid)?.is_none());
    assert_eq!(space(&d)?, empty);
    d.terminate()?;
    let report = codex_actors::repair::inspect(dirs[1].path())?;
    assert!(report.is_clean(), "{report:?}");
    Ok(())
}

#[test]
fn a_dataset_that_cannot_fit_the_quota_is_refused_up_front() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let a = NodeProcess::spawn(dirs[0].path(), &[])?;
    let d = NodeProcess::spawn(dirs[1].path(), &["--storage-quota", "2000000"])?;
    let cid = upload_ok(&a, &content(6, SMALL))?;
    let empty = space(&d)?;
    connect_to(&d, &a)?;
    let (status, body) = start_fetch(&d, &cid)?;
    assert_eq!(status, 507, "{body}");
    let (status, _) = stream_network(&d, &cid)?;
    assert_eq!(status, 507);
    assert_eq!(space(&d)?, empty, "nothing stored, nothing reserved");
    assert_eq!(progress(&d, &cid)?.0, 404);
    assert!(partial_datasets(&d)?.is_empty());
    assert_eq!(
        exchange_counter(&a, "blocksSent")?,
        2,
        "the manifest, once per request"
    );
    Ok(())
}

#[test]
fn a_partial_dataset_nobody_resumes_expires() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let a = NodeProcess::spawn(dirs[0].path(), &[])?;
    // Blocks live 4 s; expiry runs every second.
    let flags = ["--block-ttl", "4", "--block-mi", "1"];
    let mut d = NodeProcess::spawn(dirs[1].path(), &flags)?;
    let empty = space(&d)?;
    let cid = upload_ok(&a, &content(7, LARGE))?;
    connect_to(&d, &a)?;
    assert_eq!(start_fetch(&d, &cid)?.0, 200);
    wait_stored(&d, &cid, LARGE_BLOCKS / 8)?;
    d.kill()?;
    // (That it survives a restart is checked above; here it is left alone.)
    let d = NodeProcess::spawn(dirs[1].path(), &flags)?;
    let expired = eventually(Duration::from_secs(15), || Ok(space(&d)? == empty))?;
    assert!(expired, "{} vs {empty}", space(&d)?);
    assert!(partial_datasets(&d)?.is_empty());
    assert_eq!(progress(&d, &cid)?.0, 404);
    Ok(())
}
