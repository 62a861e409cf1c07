//! Streaming a dataset that is still being fetched from peers: each leaf is read from the store
//! as soon as it is there; a leaf that is not asks the running fetch to get it first and waits
//! for the fetch's progress. The window of leaves read ahead is bounded, as for local reads.

use std::ops::Range;

use actix::Addr;
use bytes::Bytes;
use cid::Cid;
use futures_util::{stream::FuturesOrdered, StreamExt};
use tokio::sync::{mpsc, watch};

use crate::{
    error::{Error, Result},
    fetch::{Fetch, FetchStatus, Fetches, NeedLeaves, Recent},
    format::manifest::Manifest,
    meta_reader::GetLeaves,
    node::ByteStream,
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
    let (tx, rx) = mpsc::channel(read_ahead.max(1));
    actix_rt::spawn(async move {
        if let Err(e) = pump(&source, range, read_ahead, &tx).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

async fn pump(
    source: &Source,
    range: Range<u64>,
    read_ahead: usize,
    tx: &mpsc::Sender<Result<Bytes>>,
) -> Result<()> {
    let bs = u64::from(source.manifest.block_size);
    let first = range.start / bs;
    let last = (range.end - 1) / bs; // inclusive; the range is never empty here
    let mut next = first;
    let mut index = first;
    let mut reads = FuturesOrdered::new();
    loop {
        while reads.len() < read_ahead && next <= last {
            reads.push_back(leaf(source, next));
            next += 1;
        }
        let Some(read) = reads.next().await else {
            return Ok(());
        };
        let block = read?;
        let piece = super::trim(block, index, bs, &range);
        index += 1;
        if tx.send(Ok(piece)).await.is_err() {
            return Ok(()); // client gone
        }
    }
}

/// Leaf `i`, waiting for the fetch to store it if needed.
async fn leaf(source: &Source, i: u64) -> Result<Bytes> {
    let tree = source.manifest.tree_cid;
    let mut status = source.status.clone();
    let mut asked = false;
    loop {
        // Stored a moment ago by the fetch: its bytes were verified on receipt.
        if let Some(fetch) = &source.fetch {
            if let Ok(Some(bytes)) = fetch.send(Recent { index: i }).await {
                return Ok(bytes);
            }
        }
        let found = source
            .repo
            .reader
            .send(GetLeaves {
                tree,
                start: i,
                count: 1,
            })
            .await?;
        match found {
            Ok(refs) => {
                let r = refs.first().copied().ok_or(Error::NotFound(tree))?;
                return source.repo.read_leaf(tree, i, r).await;
            }
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let current = status.borrow_and_update().clone();
        match current {
            FetchStatus::Failed { reason } => return Err(Error::NotOnNetwork(reason)),
            FetchStatus::Complete { .. } if asked => return Err(Error::NotFound(tree)),
            _ => {}
        }
        if !asked {
            source.fetches.do_send(NeedLeaves {
                manifest_cid: source.manifest_cid,
                indexes: vec![i],
            });
            asked = true;
        }
        // Progress wakes us; the timeout rechecks now and then in any case.
        let waited =
            tokio::time::timeout(std::time::Duration::from_secs(1), status.changed()).await;
        if let Ok(Err(_)) = waited {
            // The fetch is gone and said its last word: look once more, then give up.
            asked = true;
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if !matches!(*status.borrow(), FetchStatus::Running { .. }) {
                continue;
            }
            return Err(Error::NotOnNetwork("the fetch stopped".into()));
        }
    }
}
