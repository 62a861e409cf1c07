//! Streaming a dataset that is still being fetched from peers, in order, a run of leaves at a
//! time: the run the fetch stored a moment ago (from its memory: verified on receipt), else the
//! run already in the store (read and verified like any download), else the fetch is asked to
//! get the next leaves first and the pump waits for its progress. One message per run, not per
//! leaf: per-leaf lookups woke every waiting leaf on each progress step and cost the
//! downloader three thread switches per block.

use std::ops::Range;

use actix::Addr;
use bytes::Bytes;
use cid::Cid;
use tokio::sync::{mpsc, watch};

use super::{Fetch, FetchStatus, Fetches, NeedLeaves, Recent};
use crate::{
    download::{pumped, trim, ByteStream},
    error::{Error, FetchFailure, NotOnNetwork, Result},
    format::manifest::Manifest,
    meta_reader::StoredLeaves,
    repo::Repo,
};

/// What a stream of a dataset being fetched needs.
pub(crate) struct Source {
    pub(crate) repo: Repo,
    pub(crate) fetches: Addr<Fetches>,
    pub(crate) manifest_cid: Cid,
    pub(crate) manifest: Manifest,
    pub(crate) status: watch::Receiver<FetchStatus>,
    /// The running fetch, which keeps the blocks it just stored.
    pub(crate) fetch: Option<Addr<Fetch>>,
}

pub(crate) fn stream(source: Source, range: Range<u64>, read_ahead: usize) -> ByteStream {
    pumped(read_ahead, move |tx| async move {
        pump(&source, range, read_ahead, &tx).await
    })
}

async fn pump(
    source: &Source,
    range: Range<u64>,
    read_ahead: usize,
    tx: &mpsc::Sender<Result<Bytes>>,
) -> Result<()> {
    let bs = u64::from(source.manifest.block_size);
    let tree = source.manifest.tree_cid;
    let last = (range.end - 1) / bs; // inclusive; the range is never empty here
    let mut index = range.start / bs;
    let mut status = source.status.clone();
    let mut asked_to = None; // the leaves up to here were asked for first
    while index <= last {
        let run = (read_ahead.max(1) as u64).min(last + 1 - index);
        // The status before the look, not after: a fetch that had ended before the look had
        // stored all it ever will, so a leaf missing then is missing for good. Read after the
        // look, the fetch could store the leaf and complete in between, and a leaf that was
        // there would be answered "not found" (a mixed Codex network's test met it).
        let current = status.borrow_and_update().clone();
        let blocks = next_run(source, index, run).await?;
        if !blocks.is_empty() {
            for block in blocks {
                let piece = trim(block, index, bs, &range);
                index += 1;
                if tx.send(Ok(piece)).await.is_err() {
                    return Ok(()); // client gone
                }
            }
            continue;
        }
        let asked = asked_to.is_some_and(|to| to >= index);
        match current {
            FetchStatus::Failed { reason } => {
                return Err(Error::NotOnNetwork(NotOnNetwork::FetchStopped(reason)))
            }
            FetchStatus::Complete { .. } if asked => return Err(Error::NotFound(tree)),
            _ => {}
        }
        if !asked {
            source.fetches.do_send(NeedLeaves {
                manifest_cid: source.manifest_cid,
                indexes: (index..index + run).collect(),
            });
            asked_to = Some(index + run - 1);
        }
        // Progress wakes us; the timeout rechecks now and then in any case.
        let waited =
            tokio::time::timeout(std::time::Duration::from_secs(1), status.changed()).await;
        if let Ok(Err(_)) = waited {
            // The fetch is gone and said its last word: look once more, then give up.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if matches!(*status.borrow(), FetchStatus::Running { .. }) {
                return Err(Error::NotOnNetwork(NotOnNetwork::FetchStopped(
                    FetchFailure::Stopped,
                )));
            }
            asked_to = Some(last); // a finished fetch is not asked again
        }
    }
    Ok(())
}

/// Up to `run` leaves from `index` on that are here now (none when leaf `index` is not).
async fn next_run(source: &Source, index: u64, run: u64) -> Result<Vec<Bytes>> {
    if let Some(fetch) = &source.fetch {
        let max = usize::try_from(run).unwrap_or(usize::MAX);
        if let Ok(blocks) = fetch.send(Recent { index, max }).await {
            if !blocks.is_empty() {
                return Ok(blocks);
            }
        }
    }
    let tree = source.manifest.tree_cid;
    let stored = StoredLeaves {
        tree,
        start: index,
        count: run,
    };
    let refs = source.repo.reader.send(stored).await??;
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    source.repo.read_leaves(tree, index, refs).await
}
