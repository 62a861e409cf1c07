//! Streaming a dataset (or a byte range of it) back out of the store.
//!
//! A task spawned on the caller's arbiter looks up leaf records in batches (from the metadata
//! readers, never behind a writer), keeps up to `read_ahead` blocks in flight at the block
//! store in reads of [`READ_BATCH`] (each read verifies its blocks against their CIDs, and the
//! reads in flight run on different threads) and pushes the trimmed bytes into a bounded
//! channel. When the client goes away the channel closes and the task stops at its next send:
//! an abandoned download costs at most the read-ahead.

use std::ops::Range;

use bytes::Bytes;
use futures_util::{stream::FuturesOrdered, StreamExt};
use tokio::sync::mpsc;

/// The bytes of a dataset (or of a range of it), streamed block by block.
pub type ByteStream = futures_util::stream::BoxStream<'static, Result<Bytes>>;

use crate::{
    error::{Error, Result},
    format::manifest::Manifest,
    meta_reader::GetLeaves,
    repo::Repo,
};

/// Leaf records fetched per metadata request.
const LEAF_BATCH: u64 = 256;
/// Blocks per read message: neighbours in a segment are read with one aligned read, and the
/// messages in flight go to different block-store threads, which verify them side by side.
const READ_BATCH: usize = 16;

/// The byte range a read of a dataset of `size` bytes serves: all of it when `None`; an empty
/// range, or one past the end, is [`Error::RangeNotSatisfiable`].
pub(crate) fn range_within(size: u64, range: Option<Range<u64>>) -> Result<Range<u64>> {
    let range = range.unwrap_or(0..size);
    if range.start >= range.end || range.end > size {
        return Err(Error::RangeNotSatisfiable { size });
    }
    Ok(range)
}

pub(crate) fn stream(
    repo: Repo,
    manifest: Manifest,
    range: Range<u64>,
    read_ahead: usize,
) -> ByteStream {
    pumped(read_ahead, move |tx| async move {
        pump(&repo, &manifest, range, read_ahead, &tx).await
    })
}

/// A stream fed by `pump`, spawned on the caller's arbiter, through a channel of `read_ahead`
/// pieces; the pump's error, if any, is the stream's last item.
pub(crate) fn pumped<F, Fut>(read_ahead: usize, pump: F) -> ByteStream
where
    F: FnOnce(mpsc::Sender<Result<Bytes>>) -> Fut + 'static,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    let (tx, rx) = mpsc::channel(read_ahead.max(1));
    let errors = tx.clone();
    actix_rt::spawn(async move {
        if let Err(e) = pump(tx).await {
            // The receiver may be gone already; then nobody needs the error.
            let _ = errors.send(Err(e)).await;
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
    let tree = manifest.tree_cid;
    let first = range.start / bs;
    let last = (range.end - 1) / bs; // inclusive; the range is never empty here
    let per_read = READ_BATCH.min(read_ahead.max(1));
    let mut next_leaf = first; // the first leaf not asked for yet
    let mut refs = Vec::new().into_iter(); // records of the leaves from `next_leaf` on
    let mut reads = FuturesOrdered::new();
    let mut in_flight = 0;
    let mut index = first;
    loop {
        while in_flight < read_ahead && next_leaf <= last {
            let n = per_read
                .min(read_ahead - in_flight)
                .min((last + 1 - next_leaf) as usize);
            let mut batch = Vec::with_capacity(n);
            while batch.len() < n {
                if let Some(block) = refs.next() {
                    batch.push(block);
                    continue;
                }
                let start = next_leaf + batch.len() as u64;
                let count = LEAF_BATCH.min(last + 1 - start);
                let records = repo.reader.send(GetLeaves { tree, start, count }).await??;
                if records.is_empty() {
                    return Err(Error::NotFound(tree));
                }
                refs = records.into_iter();
            }
            reads.push_back(repo.read_leaves(tree, next_leaf, batch));
            next_leaf += n as u64;
            in_flight += n;
        }
        let Some(read) = reads.next().await else {
            return Ok(());
        };
        let blocks = read?;
        in_flight -= blocks.len();
        for block in blocks {
            let piece = trim(block, index, bs, &range);
            index += 1;
            if tx.send(Ok(piece)).await.is_err() {
                return Ok(()); // client gone
            }
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
