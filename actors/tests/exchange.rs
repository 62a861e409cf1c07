//! Block exchange between nodes of this engine on loopback, through the `Node` handle: a
//! dataset uploaded to one node is fetched by another, byte for byte, and passed on.

mod engine_nodes;

use std::time::Duration;

use codex_actors::{Error, FetchFailure, FetchStatus, NetworkConfig};
use engine_nodes::{collect, connect, upload};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A node whose silent peers time out after 5 s.
async fn start(dir: &std::path::Path) -> Result<codex_actors::Node, Error> {
    engine_nodes::start(dir, |mut network| {
        network.exchange.peer_timeout = Duration::from_secs(5);
        network
    })
    .await
}

/// How a fetch ended, once it stops running (within `max`).
async fn ended(
    status: &mut tokio::sync::watch::Receiver<FetchStatus>,
    max: Duration,
) -> Result<FetchStatus, tokio::time::error::Elapsed> {
    tokio::time::timeout(max, async {
        while matches!(*status.borrow_and_update(), FetchStatus::Running { .. }) {
            if status.changed().await.is_err() {
                break;
            }
        }
        status.borrow().clone()
    })
    .await
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed as usize) % 251) as u8)
        .collect()
}

#[test]
fn a_dataset_goes_from_node_to_node_and_on() -> TestResult {
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    actix::System::new().block_on(async move {
        let a = start(dirs[0].path()).await?;
        let b = start(dirs[1].path()).await?;
        let original = data(1_000_000, 7);
        let cid = upload(&a, &original).await?;
        connect(&b, &a).await?;
        let (manifest, stream) = b.network()?.stream(cid, None).await?;
        assert_eq!(manifest.dataset_size, original.len() as u64);
        assert!(collect(stream).await? == original, "B got the bytes");
        // B now holds it as an ordinary dataset, with the same figures as A.
        let mut status = b.network()?.fetch(cid).await?.status;
        while matches!(*status.borrow_and_update(), FetchStatus::Running { .. }) {
            status.changed().await.map_err(|_| Error::Unavailable)?;
        }
        assert_eq!(a.space().await?, b.space().await?);
        assert!(b.partial_datasets().await?.is_empty());
        let (_, local) = b.retrieve(cid).await?;
        assert!(collect(local).await? == original, "B serves it locally");
        a.shutdown().await?;
        drop(a);
        // C gets it from B alone.
        let c = start(dirs[2].path()).await?;
        connect(&c, &b).await?;
        let (_, stream) = c.network()?.stream(cid, None).await?;
        assert!(collect(stream).await? == original, "C got the bytes from B");
        let stats = b.network()?.exchange_stats().await?;
        assert!(stats.blocks_sent >= 16, "{stats:?}");
        assert_eq!(stats.bad_blocks, 0);
        b.shutdown().await?;
        c.shutdown().await?;
        Ok(())
    })
}

#[test]
fn a_manifest_nobody_has_is_not_found_in_bounded_time() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    actix::System::new().block_on(async move {
        let a = engine_nodes::start(dirs[0].path(), |mut network: NetworkConfig| {
            network.manifest_timeout = Duration::from_secs(2);
            network
        })
        .await?;
        let b = start(dirs[1].path()).await?;
        connect(&a, &b).await?;
        let missing = codex_actors::format::manifest::cid_of_encoded(b"nobody has this");
        let started = std::time::Instant::now();
        let got = a.network()?.manifest(missing).await;
        assert!(matches!(got, Err(Error::NotOnNetwork(_))), "{got:?}");
        assert!(started.elapsed() < Duration::from_secs(10));
        a.shutdown().await?;
        b.shutdown().await?;
        Ok(())
    })
}

#[test]
fn a_graceful_stop_saves_the_peers_it_knows() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let path = dirs[0].path().join("peers");
    let (da, db) = (dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf());
    actix::System::new().block_on(async move {
        let a = start(&da).await?;
        let b = start(&db).await?;
        connect(&a, &b).await?;
        // identify runs once the connection is up
        tokio::time::sleep(Duration::from_millis(500)).await;
        a.shutdown().await?;
        b.shutdown().await?;
        Ok::<_, Error>(())
    })?;
    let saved = std::fs::read_to_string(&path)?;
    assert!(saved.lines().count() >= 1, "{saved:?}");
    Ok(())
}

#[test]
fn a_streamed_fetch_asks_for_each_block_once() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    actix::System::new().block_on(async move {
        let a = start(dirs[0].path()).await?;
        let b = start(dirs[1].path()).await?;
        // 49 blocks: the reader asks for leaves the fetch is also getting in order.
        let original = data(3 * 1024 * 1024 + 12_345, 3);
        let cid = upload(&a, &original).await?;
        connect(&b, &a).await?;
        let (_, stream) = b.network()?.stream(cid, None).await?;
        assert!(collect(stream).await? == original);
        let mut status = b.network()?.fetch(cid).await?.status;
        while matches!(*status.borrow_and_update(), FetchStatus::Running { .. }) {
            status.changed().await.map_err(|_| Error::Unavailable)?;
        }
        let (sent, received) = (
            a.network()?.exchange_stats().await?,
            b.network()?.exchange_stats().await?,
        );
        assert_eq!(
            sent.blocks_sent, 50,
            "49 leaves and the manifest, once each"
        );
        assert_eq!(received.blocks_received, 50, "{received:?}");
        assert_eq!(received.duplicate_blocks, 0, "{received:?}");
        a.shutdown().await?;
        b.shutdown().await?;
        Ok(())
    })
}

#[test]
fn two_seeders_share_a_download() -> TestResult {
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    actix::System::new().block_on(async move {
        let a = start(dirs[0].path()).await?;
        let b = start(dirs[1].path()).await?;
        let c = start(dirs[2].path()).await?;
        // 1024 blocks, four fetch windows at their floor. While only one holder is known it
        // may be asked for half of `max_requests_per_peer` (256 blocks) at once, so a smaller
        // dataset would be mostly gone before the second one's presence arrives.
        let original = data(64 * 1024 * 1024, 5);
        let cid = upload(&a, &original).await?;
        assert_eq!(upload(&b, &original).await?, cid);
        connect(&c, &a).await?;
        connect(&c, &b).await?;
        let mut status = c.network()?.fetch(cid).await?.status;
        while matches!(*status.borrow_and_update(), FetchStatus::Running { .. }) {
            status.changed().await.map_err(|_| Error::Unavailable)?;
        }
        assert!(
            matches!(*status.borrow(), FetchStatus::Complete { total: 1024 }),
            "{:?}",
            *status.borrow()
        );
        let stats = c.network()?.exchange_stats().await?;
        let shares: Vec<u64> = stats.per_peer.iter().map(|p| p.blocks_received).collect();
        assert_eq!(shares.iter().sum::<u64>(), 1025, "{shares:?}");
        // Whoever answers first cannot take every request: the other gets a fair part (about
        // half, in practice).
        assert!(
            shares.len() == 2 && shares.iter().all(|n| *n >= 256),
            "each seeder sent at least a quarter: {shares:?}"
        );
        for n in [a, b, c] {
            n.shutdown().await?;
        }
        Ok(())
    })
}

/// Expiry removes a dataset whose fetch is running: the fetch stops, saying why, and nothing it
/// stored stays behind (issue 17: before, expiry removed the dataset under the fetch, which ran
/// on until its next batch was refused with "not found in local store").
/// A fetch whose only seeder goes away fails once its wants run out of retries, and says why
/// afterwards (`Network::last_failure`, the `error` of `/network/progress`) until it is
/// started again: a fetch started in the background has no one else to tell.
#[test]
fn a_failed_fetch_keeps_its_reason_until_it_is_started_again() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    actix::System::new().block_on(async move {
        let a = start(dirs[0].path()).await?;
        // One block in flight at a time, so the fetch is still under way when A stops; few
        // quick retries, so it fails soon after.
        let b = engine_nodes::start(dirs[1].path(), |mut network| {
            network.fetch_window_min = 1;
            network.fetch_window = 1;
            network.exchange.peer_timeout = Duration::from_secs(1);
            network.exchange.refresh_interval = Duration::from_millis(200);
            network.exchange.retries = 2;
            network
        })
        .await?;
        let cid = upload(&a, &data(16 * 1024 * 1024, 3)).await?;
        connect(&b, &a).await?;
        let mut status = b.network()?.fetch(cid).await?.status;
        a.shutdown().await?;
        let ended = ended(&mut status, Duration::from_secs(30))
            .await
            .map_err(|_| "the fetch still runs 30 s after its only seeder stopped")?;
        assert!(
            matches!(
                &ended,
                FetchStatus::Failed {
                    reason: FetchFailure::NoPeer(_)
                }
            ),
            "the fetch ended as {ended:?}"
        );
        let network = b.network()?;
        let kept = network.last_failure(cid).await?;
        assert!(
            matches!(kept, Some(FetchFailure::NoPeer(_))),
            "the reason is not kept: {kept:?}"
        );
        let said = kept.map(|r| r.to_string()).unwrap_or_default();
        assert!(said.starts_with("no peer delivered leaf "), "{said}");
        // Started again, it runs: the old reason no longer stands.
        let again = network.fetch(cid).await?;
        assert!(matches!(
            *again.status.borrow(),
            FetchStatus::Running { .. }
        ));
        assert!(network.last_failure(cid).await?.is_none());
        b.shutdown().await?;
        Ok(())
    })
}

#[test]
fn expiry_stops_the_fetch_of_the_dataset_it_removes() -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    actix::System::new().block_on(async move {
        let a = start(dirs[0].path()).await?;
        let b = start(dirs[1].path()).await?;
        // 1,024 blocks: the expiry below lands while the fetch is under way.
        let original = data(64 * 1024 * 1024, 9);
        let cid = upload(&a, &original).await?;
        connect(&b, &a).await?;
        let mut status = b.network()?.fetch(cid).await?.status;
        let expired = b.expire(u64::MAX).await?;
        assert_eq!(expired.datasets, 1, "the partial dataset expired");
        let ended = ended(&mut status, Duration::from_secs(10))
            .await
            .map_err(|_| "the fetch still runs 10 s after its dataset expired")?;
        match &ended {
            FetchStatus::Failed { reason } => assert!(
                matches!(reason, FetchFailure::Expired | FetchFailure::Removed),
                "the fetch says why it stopped: {reason:?}"
            ),
            other => panic!("the fetch of an expired dataset ended as {other:?}"),
        }
        // Whatever the fetch stored after the expiry was refused and released.
        tokio::time::sleep(Duration::from_millis(300)).await;
        b.expire(u64::MAX).await?;
        let space = b.space().await?;
        assert_eq!(
            (
                space.total_blocks,
                space.quota_used_bytes,
                space.quota_reserved_bytes
            ),
            (0, 0, 0),
            "{space:?}"
        );
        assert!(b.partial_datasets().await?.is_empty());
        assert!(b.fetch_progress(cid).await?.is_none());
        // A new fetch starts from nothing and completes.
        let (_, stream) = b.network()?.stream(cid, None).await?;
        assert!(
            collect(stream).await? == original,
            "fetched again, byte-exact"
        );
        a.shutdown().await?;
        b.shutdown().await?;
        Ok(())
    })
}
