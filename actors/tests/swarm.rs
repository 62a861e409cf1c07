//! A swarm on loopback, through the `Node` handle: nodes that know only a bootstrap node find a
//! dataset by its CID alone (DHT providers), fetch it from whoever has it, and from each other.

mod engine_nodes;

use std::time::Duration;

use codex_actors::{Error, Node};
use engine_nodes::{address_of, collect, upload};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DOWNLOADERS: usize = 6;

async fn start(dir: &std::path::Path, bootstrap: Option<String>) -> Result<Node, Error> {
    engine_nodes::start(dir, |mut network| {
        network.net.bootstrap.extend(bootstrap);
        network.fetch_window = 32; // a window much smaller than the dataset: downloaders overlap
        network
    })
    .await
}

#[test]
fn downloaders_find_a_dataset_by_cid_and_share_it() -> TestResult {
    let dirs: Vec<tempfile::TempDir> = (0..DOWNLOADERS + 2)
        .map(|_| tempfile::tempdir())
        .collect::<Result<_, _>>()?;
    actix::System::new().block_on(async move {
        let bootstrap = start(dirs[0].path(), None).await?;
        let entry = address_of(&bootstrap).await?;
        let uploader = start(dirs[1].path(), Some(entry.clone())).await?;
        let mut downloaders = Vec::new();
        for dir in &dirs[2..] {
            downloaders.push(start(dir.path(), Some(entry.clone())).await?);
        }
        let original: Vec<u8> = (0..8_000_000).map(|i| (i * 7 % 251) as u8).collect();
        let cid = upload(&uploader, &original).await?;
        // The dataset's two keys (manifest and tree) are announced before anyone looks.
        let announced = std::time::Instant::now();
        while uploader.network()?.dht_stats().await?.announcements < 2 {
            assert!(
                announced.elapsed() < Duration::from_secs(20),
                "never announced"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let fetches = downloaders.iter().map(|d| {
            let d = d.clone();
            async move {
                let (_, stream) = d.network()?.stream(cid, None).await?;
                collect(stream).await
            }
        });
        let results = futures_util::future::join_all(fetches).await;
        for (i, r) in results.into_iter().enumerate() {
            let bytes = r?;
            assert!(bytes == original, "downloader {i} got other bytes");
        }
        let sent = uploader.network()?.exchange_stats().await?.blocks_sent;
        let blocks = (original.len() as u64).div_ceil(65536);
        eprintln!(
            "uploader served {sent} of {} blocks",
            blocks * DOWNLOADERS as u64
        );
        for node in downloaders.iter().chain([&uploader, &bootstrap]) {
            node.shutdown().await?;
        }
        Ok(())
    })
}
