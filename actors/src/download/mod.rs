//! Streaming a dataset (or a byte range of it) back out of the store.
//!
//! A task spawned on the caller's arbiter looks up leaf records in batches (from the metadata
//! readers, never behind a writer), keeps up to `read_ahead` block reads in flight at the block
//! store (which verifies every block against its CID) and pushes the trimmed bytes into a
//! bounded channel. When the client goes away the
//! channel closes and the task stops at its next send: an abandoned download costs at most the
//! read-ahead.

pub(crate) mod fetching;

use std::ops::Range;

use bytes::Bytes;
use futures_util::{stream::FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

use crate::{
    error::{Error, Result},
    format::manifest::Manifest,
    meta_reader::GetLeaves,
    node::ByteStream,
    repo::Repo,
};

/// Leaf records fetched per metadata request.
const LEAF_BATCH: u64 = 256;

pub(crate) fn stream(
    repo: Repo,
    manifest: Manifest,
    range: Range<u64>,
    read_ahead: usize,
) -> ByteStream {
    let (tx, rx) = mpsc::channel(read_ahead.max(1));
    actix_rt::spawn(async move {
        if let Err(e) = pump(&repo, &manifest, range, read_ahead, &tx).await {
            // The receiver may be gone already; then nobody needs the error.
            let _ = tx.send(Err(e)).await;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

async fn pump(
    repo: &Repo,
    manifest: &Manifest,
    range: Range<u64>,
    read_ahead: usize,
    tx: &mpsc::Sender<Result<Bytes>>,
) -> Result<()> {
    let bs = u64::from(manifest.block_size);
    let first = range.start / bs;
    let last = (range.end - 1) / bs; // inclusive; the range is never empty here
    let mut next_leaf = first;
    let mut reads = FuturesOrdered::new();
    let mut index = first;
    let mut refs = Vec::new().into_iter();
    loop {
        while reads.len() < read_ahead && next_leaf <= last {
            let block = match refs.next() {
                Some(block) => block,
                None => {
                    let count = LEAF_BATCH.min(last + 1 - next_leaf);
                    let batch = repo
                        .reader
                        .send(GetLeaves {
                            tree: manifest.tree_cid,
                            start: next_leaf,
                            count,
                        })
                        .await??;
                    refs = batch.into_iter();
                    match refs.next() {
                        Some(block) => block,
                        None => return Err(Error::NotFound(manifest.tree_cid)),
                    }
                }
            };
            reads.push_back(repo.read_leaf(manifest.tree_cid, next_leaf, block));
            next_leaf += 1;
        }
        let Some(read) = reads.next().await else {
            return Ok(());
        };
        let block = read?;
        let piece = trim(block, index, bs, &range);
        index += 1;
        if tx.send(Ok(piece)).await.is_err() {
            return Ok(()); // client gone
        }
    }
}

/// The part of block `index` (of `bs` bytes, the last one padded) that lies in `range`.
pub(crate) fn trim(block: Bytes, index: u64, bs: u64, range: &Range<u64>) -> Bytes {
    let block_start = index * bs;
    let lo = range.start.saturating_sub(block_start).min(bs) as usize;
    let hi = (range.end - block_start).min(bs).min(block.len() as u64) as usize;
    block.slice(lo..hi.max(lo))
}
