//! A long, narrow link (issue 18), functionally: two `codex-node` binaries whose only connection
//! runs through a forwarder that paces to 20 Mbit/s and delays by a 100 ms round trip. A dataset
//! fetched over it arrives byte for byte, every block of it through the link, and the fetch's
//! window of blocks in flight grew from its floor with what it measured. How fast is measured by
//! `benches/slowlink.sh`, never here.

mod common;

use std::time::Duration;

use common::{
    node_process::NodeProcess,
    peers::*,
    slowlink::{Forwarder, Link},
    workload::Rng,
    *,
};

/// 6 MiB: 96 blocks, about 2.5 s at 20 Mbit/s.
const SIZE: usize = 6 * 1024 * 1024;
/// The fetch window's floor on the downloader: well below the link's bandwidth-delay product
/// (20 Mbit/s × two 100 ms round trips, wantHave then wantBlock, is about 8 blocks, twice
/// that with the window's gain), so it must grow to fill the link.
const FLOOR: u64 = 4;

#[test]
fn a_fetch_over_a_long_narrow_link_is_exact_and_its_window_grows() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let a = NodeProcess::spawn(dirs[0].path(), &[])?;
    let floor = FLOOR.to_string();
    let b = NodeProcess::spawn(
        dirs[1].path(),
        &["--fetch-window-min", &floor, "--fetch-window-max", "64"],
    )?;
    let data = Rng::new(18).bytes(SIZE);
    let cid = upload_ok(&a, &data)?;

    // B reaches A only through the link: it dials the forwarder, which dials A.
    let a_addr = listen_addr(&a)?;
    let a_port: u16 = a_addr.rsplit('/').next().ok_or("no port")?.parse()?;
    let link = Link::new(20.0, Duration::from_millis(100));
    let forwarder = Forwarder::start(
        "127.0.0.1:0".parse()?,
        ([127, 0, 0, 1], a_port).into(),
        link,
    )?;
    let via = format!("/ip4/127.0.0.1/tcp/{}", forwarder.addr.port());
    connect(&b, &peer_id(&a)?, &via)?;

    // A background fetch (no reader asking for leaves out of turn): every block it wants is
    // one of its window.
    let (status, body) = start_fetch(&b, &cid)?;
    assert_eq!(status, 200, "{body}");
    wait_complete(&b, &cid)?;
    let (status, _, got) = download(&b, &cid, None)?;
    assert_eq!(status, 200);
    assert!(got == data, "B holds {} bytes, not A's", got.len());
    assert!(
        forwarder.moved() >= SIZE as u64,
        "only {} bytes went through the link",
        forwarder.moved()
    );

    // The window grew with the measured rate × latency: B had more blocks wanted at once
    // than its floor allows.
    let most = exchange_counter(&b, "mostPendingBlocks")?;
    println!("most blocks wanted at once: {most} (floor {FLOOR}, ceiling 64)");
    assert!(
        most > FLOOR && most <= 64,
        "at most {most} blocks were wanted at once (floor {FLOOR}, ceiling 64)"
    );
    let windows: Vec<u64> = exchange(&b)?["peerList"]
        .as_array()
        .ok_or("no peerList")?
        .iter()
        .filter_map(|p| p["requestWindow"].as_u64())
        .collect();
    assert_eq!(windows.len(), 1, "one peer, A, with its request window");
    Ok(())
}
