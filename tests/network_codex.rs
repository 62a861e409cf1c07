//! Block exchange between our binary and a real Codex node (v0.2.5) on loopback, both ways
//! through `/connect`: the same CIDs, the same bytes, the same manifests, and a mixed swarm in
//! which Codex and our node both seed one downloader. Each test skips, printing `SKIP: … because
//! …`, only where the Codex binary cannot run.

mod common;

use common::{codex::CodexNode, node_process::NodeProcess, peers::*, workload::Rng, *};

/// Seven blocks, the last one partial: an odd leaf count on two layers of the tree.
const SEVEN_BLOCKS: usize = 6 * 65_536 + 1_000;
/// 24 MiB: 384 blocks, more than one fetch window (256), so a downloader asks for blocks in
/// several rounds.
const SWARM: usize = 24 * 1024 * 1024;
const SWARM_BLOCKS: u64 = 384;

fn content(seed: u64, len: usize) -> Vec<u8> {
    Rng::new(seed).bytes(len)
}

/// A Codex node and one of ours, or `None` (skip) where Codex cannot run.
fn codex_and_ours(
    test: &str,
    dir: &std::path::Path,
) -> TestResult<Option<(CodexNode, NodeProcess)>> {
    let Some(codex) = CodexNode::start_or_skip(test)? else {
        return Ok(None);
    };
    Ok(Some((codex, NodeProcess::spawn(dir, &[])?)))
}

#[test]
fn ours_downloads_a_dataset_uploaded_to_codex() -> TestResult {
    let dir = tempfile::tempdir()?;
    let Some((codex, ours)) =
        codex_and_ours("ours_downloads_a_dataset_uploaded_to_codex", dir.path())?
    else {
        return Ok(());
    };
    let data = content(21, SEVEN_BLOCKS);
    let cid = upload_ok(&codex, &data)?;
    connect(&ours, &peer_id(&codex)?, &codex.listen_addr())?;
    let (status, got) = stream_network(&ours, &cid)?;
    assert_eq!(status, 200);
    assert!(
        got == data,
        "{} bytes from Codex, not the upload",
        got.len()
    );
    wait_complete(&ours, &cid)?;
    let (_, p) = progress(&ours, &cid)?;
    assert_eq!(
        (&p["blocksStored"], &p["blocksTotal"]),
        (&7.into(), &7.into())
    );
    // An ordinary dataset now, as if uploaded here: the same manifest JSON and /space as
    // Codex's, and uploading the same bytes gives Codex's CID and stores nothing new.
    let manifest = format!("/data/{cid}/network/manifest");
    assert_eq!(get_json(&codex, &manifest)?, get_json(&ours, &manifest)?);
    assert_eq!(space(&codex)?, space(&ours)?);
    assert_eq!(upload_ok(&ours, &data)?, cid);
    assert_eq!(space(&codex)?, space(&ours)?);
    let (_, _, local) = download(&ours, &cid, None)?;
    assert!(local == data);
    let received = received_by_peer(&ours)?;
    assert_eq!(
        received,
        vec![(peer_id(&codex)?, 8)],
        "7 leaves and the manifest"
    );
    Ok(())
}

#[test]
fn codex_downloads_a_dataset_uploaded_to_ours() -> TestResult {
    let dir = tempfile::tempdir()?;
    let Some((codex, ours)) =
        codex_and_ours("codex_downloads_a_dataset_uploaded_to_ours", dir.path())?
    else {
        return Ok(());
    };
    let data = content(22, SEVEN_BLOCKS);
    let cid = upload_ok(&ours, &data)?;
    connect(&codex, &peer_id(&ours)?, &listen_addr(&ours)?)?;
    let (status, got) = stream_network(&codex, &cid)?;
    assert_eq!(status, 200);
    assert!(got == data, "{} bytes from ours, not the upload", got.len());
    assert_eq!(
        upload_ok(&codex, &data)?,
        cid,
        "Codex computes the same CID"
    );
    let manifest = format!("/data/{cid}/network/manifest");
    assert_eq!(get_json(&codex, &manifest)?, get_json(&ours, &manifest)?);
    assert_eq!(
        exchange_counter(&ours, "blocksSent")?,
        8,
        "7 leaves and the manifest"
    );
    assert_eq!(exchange_counter(&ours, "badBlocks")?, 0);
    Ok(())
}

#[test]
fn codex_and_ours_both_seed_one_downloader() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let Some((codex, seeder)) =
        codex_and_ours("codex_and_ours_both_seed_one_downloader", dirs[0].path())?
    else {
        return Ok(());
    };
    let d = NodeProcess::spawn(dirs[1].path(), &[])?;
    let data = content(23, SWARM);
    let cid = upload_ok(&codex, &data)?;
    assert_eq!(
        upload_ok(&seeder, &data)?,
        cid,
        "the same CID on both seeders"
    );
    connect(&d, &peer_id(&codex)?, &codex.listen_addr())?;
    connect_to(&d, &seeder)?;
    let (status, body) = start_fetch(&d, &cid)?;
    assert_eq!(status, 200, "{body}");
    wait_complete(&d, &cid)?;
    let (_, _, got) = download(&d, &cid, None)?;
    assert!(got == data);
    assert_eq!(space(&d)?, space(&seeder)?);
    let received = received_by_peer(&d)?;
    let from = |id: &str| {
        received
            .iter()
            .find(|(p, _)| p == id)
            .map_or(0, |(_, n)| *n)
    };
    let (from_codex, from_ours) = (from(&peer_id(&codex)?), from(&peer_id(&seeder)?));
    assert_eq!(from_codex + from_ours, SWARM_BLOCKS + 1, "{received:?}");
    assert!(
        from_codex > 0 && from_ours > 0,
        "both seeders contributed: {from_codex} from Codex, {from_ours} from ours"
    );
    Ok(())
}
