//! A misbehaving peer (`bad_peer/`, on the same libp2p stack) against a node of this engine.
//!
//! Each case: our node `O` fetches dataset `X`, which only the bad peer `B` claims to have at
//! first. `B` serves the manifest honestly, then answers the first request for leaves with one
//! kind of bad message, and behaves from then on. A good node `S` is connected to `O` all along.
//! Checked every time: `O` stores nothing of the bad message (its progress and `/space` stay
//! as they were), counts it, and closes `B`'s stream or connection; `S` is still served by `O`
//! meanwhile; once `S` has `X` too, the fetch completes well within the peer timeout, byte for
//! byte, and the repository is consistent afterwards.

mod bad_peer;
mod dataset;
mod engine_nodes;
mod net_common;

use std::time::Duration;

use bad_peer::{dataset, BadPeer, Misbehaviour, Report};
use codex_actors::{Error, ExchangeStats, FetchStatus, Node};
use dataset::BLOCK;
use engine_nodes::{collect, connect, upload};
use net_common::TestResult;

/// How long the fetch may take once the good seeder has the dataset. Well under the peer
/// timeout (30 s by default): a bad peer must not hold the fetch up until it times out.
const COMPLETE_WITHIN: Duration = Duration::from_secs(15);

/// A node with the default peer timeout (30 s): the fetch must not need it to get past the
/// bad peer.
async fn start(dir: &std::path::Path) -> Result<Node, Error> {
    engine_nodes::start(dir, |network| network).await
}

/// Polls `O`'s counters until `done` holds them (10 s at most).
async fn wait_stats(
    node: &Node,
    done: impl Fn(&ExchangeStats) -> bool,
) -> TestResult<ExchangeStats> {
    let started = std::time::Instant::now();
    loop {
        let stats = node.network()?.exchange_stats().await?;
        if done(&stats) || started.elapsed() > Duration::from_secs(10) {
            return Ok(stats);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn run_case(how: Misbehaviour) -> TestResult {
    let dirs = [tempfile::tempdir()?, tempfile::tempdir()?];
    let (o_dir, s_dir) = (dirs[0].path().to_path_buf(), dirs[1].path().to_path_buf());
    let o_path = o_dir.clone();
    actix::System::new().block_on(async move {
        // 20 blocks, the last one partial; `other` has the same shape and other bytes.
        let x = dataset(1, 19 * BLOCK + 4321)?;
        let other = dataset(2, 19 * BLOCK + 4321)?;
        let y = dataset(3, 5 * BLOCK + 17)?;
        let o = start(&o_path).await?;
        let s = start(&s_dir).await?;
        assert_eq!(
            upload(&o, &y.data).await?,
            y.manifest_cid,
            "built as Codex does"
        );
        connect(&s, &o).await?;
        let before = o.space().await?;

        let to = o.network()?.peer_id();
        let addr = o
            .network()?
            .listen_addrs()
            .await?
            .into_iter()
            .next()
            .ok_or("no addr")?;
        let (x_cid, x_data, x_manifest_len) = (x.manifest_cid, x.data.clone(), x.manifest.len());
        let mut bad = BadPeer::start(to, addr, x, other, how).await?;
        let fetcher = o.clone();
        let fetch = actix_rt::spawn(async move { fetcher.network()?.fetch(x_cid).await });
        bad.expect(Report::Misbehaved).await?;
        let stats = wait_stats(&o, |s| s.bad_blocks > 0).await?;
        assert_eq!(stats.bad_blocks, 1, "{how:?}: {stats:?}");
        let violations = u64::from(how.is_violation());
        assert_eq!(stats.violations, violations, "{how:?}: {stats:?}");
        if how.is_violation() {
            bad.expect(Report::StreamClosed).await?;
        }
        // Whatever it sent, a bad peer is disconnected: its requests go to others at once.
        bad.expect(Report::Disconnected).await?;
        // Nothing of the bad message is stored: only the manifest of X is new.
        let fetching = fetch.await??;
        let progress = o.fetch_progress(x_cid).await?.ok_or("no progress")?;
        assert_eq!(progress.0.stored, 0, "{how:?}");
        let now = o.space().await?;
        assert_eq!(now.total_blocks, before.total_blocks + 1, "{how:?}");
        assert_eq!(
            now.quota_used_bytes,
            before.quota_used_bytes + x_manifest_len as u64
        );

        // The good peer is served meanwhile.
        let (_, stream) = s.network()?.stream(y.manifest_cid, None).await?;
        assert!(collect(stream).await? == y.data, "{how:?}: S got Y");

        // Once S holds X as well, the fetch completes without waiting out the bad peer.
        assert_eq!(upload(&s, &x_data).await?, x_cid);
        let mut status = fetching.status;
        let done = tokio::time::timeout(COMPLETE_WITHIN, async {
            while matches!(*status.borrow_and_update(), FetchStatus::Running { .. }) {
                if status.changed().await.is_err() {
                    break;
                }
            }
            status.borrow().clone()
        })
        .await;
        let Ok(FetchStatus::Complete { total }) = done else {
            return Err(
                format!("{how:?}: not complete within {COMPLETE_WITHIN:?}: {done:?}").into(),
            );
        };
        assert_eq!(total, 20);
        let (_, local) = o.retrieve(x_cid).await?;
        assert!(
            collect(local).await? == x_data,
            "{how:?}: O has X, byte for byte"
        );
        assert_eq!(o.space().await?, s.space().await?, "{how:?}");
        let stats = o.network()?.exchange_stats().await?;
        assert_eq!(stats.bad_blocks, 1, "{how:?}: {stats:?}");
        o.shutdown().await?;
        s.shutdown().await?;
        drop(o);
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    let report = codex_actors::repair::inspect(&o_dir)?;
    assert!(report.is_clean(), "{how:?}: {report:?}");
    Ok(())
}

#[test]
fn a_block_whose_bytes_do_not_match_its_cid_is_refused() -> TestResult {
    run_case(Misbehaviour::WrongBytes)
}

#[test]
fn a_block_with_a_proof_for_another_tree_is_refused() -> TestResult {
    run_case(Misbehaviour::WrongProof)
}

#[test]
fn a_block_nobody_asked_for_is_refused() -> TestResult {
    run_case(Misbehaviour::Unrequested)
}

#[test]
fn an_oversized_frame_is_refused() -> TestResult {
    run_case(Misbehaviour::OversizedFrame)
}

#[test]
fn garbage_protobuf_is_refused() -> TestResult {
    run_case(Misbehaviour::Garbage)
}

#[test]
fn an_enum_value_out_of_range_is_refused() -> TestResult {
    run_case(Misbehaviour::EnumOutOfRange)
}
