//! The upload actor: one per upload, it drives blocks through hashing, block storage and
//! metadata, gathers the block CIDs in order and finally commits the manifest.
//!
//! Blocks travel in batches of `batch_blocks` (one message per hop per batch, not per block),
//! and at most `window_batches` batches are in flight; [`AddBlock`] is answered only once its
//! batch is admitted, which is how storage pushes back on the HTTP body. Per batch:
//! `Hasher` (`HashBlocks` → CIDs, in parts sent to every hasher thread at once) →
//! `MetaReader` (`FindBlocks`: which are stored already) →
//! `BlockStore` (`WriteBlocks` of the others → locations) → `MetaStore` (`PutBlocks`: records,
//! quota, pins). [`Finish`] flushes the last batch, waits for the window to drain, asks the
//! hasher for the tree's layers, syncs the block store (bytes durable before any dataset
//! points at them), sends `CommitDataset`, and syncs the metadata journal: only then is the
//! CID returned. [`Abort`] (or a dropped [`UploadSession`]) waits for in-flight batches and
//! then releases everything the upload pinned; a failed `Finish` does the same before it
//! replies, so a client told "507" already sees the quota back.
//!
//! Embedders use [`UploadSession`] (`session.rs`), which also owns this upload's chunker.

mod session;

pub use crate::chunker::AddBlock;

use std::{sync::Arc, time::Instant};

use actix::{
    fut, Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, ResponseActFuture,
    WrapFuture,
};
use bytes::Bytes;
use cid::Cid;
use tokio::sync::Semaphore;

use crate::{
    block_store::SyncBlocks,
    error::{Error, Result},
    format::{
        cid::{cid_from_digest, cid_text, digest_of, Digest, ROOT_CODEC},
        manifest::Manifest,
    },
    hasher::{HashBlocks, TreeLayers},
    meta_store::{CommitDataset, NewBlock, Placed, PutBlocks, ReleaseBlocks},
    repo::{Recorded, Repo},
};

pub use session::UploadSession;

/// Blocks per hashing message: 1 MiB, small enough that a storage batch keeps every hasher
/// thread busy, large enough that the message costs little next to the hashing.
const HASH_BLOCKS: usize = 16;

/// Optional manifest fields of an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Stored as the manifest's `filename`.
    pub filename: Option<String>,
    /// Stored as the manifest's `mimetype`.
    pub mimetype: Option<String>,
}

/// All blocks were sent; build and commit the manifest. Replies with the manifest CID.
#[derive(Debug, Message)]
#[rtype(result = "Result<Cid>")]
pub struct Finish {
    /// Real bytes received (the chunker's count).
    pub dataset_size: u64,
}

/// Give up: release every pinned block once in-flight work is done.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Abort;

/// Where an upload sends its work, and how much it may have in flight.
#[derive(Clone)]
pub(crate) struct Pipeline {
    pub(crate) repo: Repo,
    pub(crate) block_size: u32,
    pub(crate) batch_blocks: usize,
    pub(crate) window_batches: u32,
    /// Expiry given to the upload's blocks and manifest (unix seconds).
    pub(crate) expiry: u64,
}

/// The upload actor; see the module docs.
pub struct Upload {
    pipeline: Pipeline,
    options: UploadOptions,
    /// One permit per batch in flight; `Finish` and `Abort` take them all to wait for the rest.
    window: Arc<Semaphore>,
    /// Blocks waiting to fill the next batch, and the index of its first block.
    batch: Vec<Bytes>,
    batch_start: u64,
    /// Block digests by index, filled as batches complete: the one structure that grows with
    /// the upload (33 bytes per 64 KiB block, 0.05 %). Every filled slot is a pinned block.
    leaves: Vec<Option<Digest>>,
    /// The first failure; every later call reports it.
    failure: Option<Error>,
    /// Set once the manifest is committed or the upload released.
    done: bool,
    started: Instant,
}

impl Upload {
    pub(crate) fn new(pipeline: Pipeline, options: UploadOptions) -> Self {
        let window = Arc::new(Semaphore::new(pipeline.window_batches as usize));
        Self {
            batch: Vec::with_capacity(pipeline.batch_blocks),
            pipeline,
            options,
            window,
            batch_start: 0,
            leaves: Vec::new(),
            failure: None,
            done: false,
            started: Instant::now(),
        }
    }

    fn batch_done(&mut self, start: u64, result: Result<Vec<Cid>>) {
        match result {
            Ok(cids) => {
                let first = usize::try_from(start).unwrap_or(usize::MAX);
                let end = first.saturating_add(cids.len());
                if self.leaves.len() < end {
                    self.leaves.resize(end, None);
                }
                for (slot, cid) in self.leaves.iter_mut().skip(first).zip(&cids) {
                    *slot = digest_of(cid);
                }
            }
            Err(e) => {
                if self.failure.is_none() {
                    tracing::debug!(start, error = %e, "upload batch failed");
                    self.failure = Some(e);
                }
            }
        }
    }

    /// Admits the current batch into the window and starts it; resolves once admitted.
    fn dispatch(&mut self) -> ResponseActFuture<Self, Result<()>> {
        if self.batch.is_empty() {
            return Box::pin(fut::ready(Ok(())));
        }
        let blocks = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(self.pipeline.batch_blocks),
        );
        let start = self.batch_start;
        self.batch_start += blocks.len() as u64;
        let window = self.window.clone();
        let pipeline = self.pipeline.clone();
        Box::pin(
            async move { window.acquire_owned().await }
                .into_actor(self)
                .map(move |permit, act, ctx| {
                    let permit = permit.map_err(|_| Error::Unavailable)?;
                    ctx.spawn(store_batch(pipeline, blocks).into_actor(act).map(
                        move |result, act, _| {
                            drop(permit);
                            act.batch_done(start, result);
                        },
                    ));
                    Ok(())
                }),
        )
    }

    /// A future that resolves once every in-flight batch has finished.
    fn drained(&self) -> impl std::future::Future<Output = ()> + 'static {
        let window = self.window.clone();
        let all = self.pipeline.window_batches;
        async move {
            // The semaphore is never closed, so this only waits; the permits go back on drop.
            let _ = window.acquire_many_owned(all).await;
        }
    }

    /// Releases the pins of an upload that will not be committed; resolves once the release
    /// is durable and the freed bytes are handed back.
    fn release(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        self.done = true;
        let blocks: Vec<Digest> = std::mem::take(&mut self.leaves)
            .into_iter()
            .flatten()
            .collect();
        let repo = self.pipeline.repo.clone();
        async move {
            if blocks.is_empty() {
                return;
            }
            match release_pins(&repo, blocks).await {
                Ok(freed) => tracing::info!(freed, "released the blocks of an unfinished upload"),
                Err(e) => tracing::warn!(error = %e, "could not release an unfinished upload"),
            }
        }
    }
}

/// Unpins `blocks`, syncs, and releases the bytes nothing uses any more. Returns the bytes freed.
async fn release_pins(repo: &Repo, blocks: Vec<Digest>) -> Result<u64> {
    let freed = repo.meta.send(ReleaseBlocks { blocks }).await??;
    let bytes = freed.removed.bytes;
    repo.settle(freed.released).await?;
    Ok(bytes)
}

/// Hashes, writes and records one batch. Returns the CIDs once their records are committed and
/// pinned; on failure, releases whatever this batch had pinned.
async fn store_batch(p: Pipeline, blocks: Vec<Bytes>) -> Result<Vec<Cid>> {
    let cids = hash(&p, &blocks).await?;
    let mut pinned: Vec<Digest> = Vec::with_capacity(cids.len());
    let result = place(&p, cids.iter().copied().zip(blocks).collect(), &mut pinned).await;
    if result.is_err() && !pinned.is_empty() {
        // Best effort: the start-up check clears pins that a lost message leaves behind.
        let _ = release_pins(&p.repo, pinned).await;
    }
    result.map(|()| cids)
}

/// The CIDs of `blocks`, hashed in parts of [`HASH_BLOCKS`] on every hasher thread at once:
/// storage batches are large (one message per hop for many blocks: each hop wakes a thread),
/// but hashing one on a single thread would leave the other cores idle meanwhile.
async fn hash(p: &Pipeline, blocks: &[Bytes]) -> Result<Vec<Cid>> {
    let parts = blocks.chunks(HASH_BLOCKS).map(|part| {
        p.repo.hasher.send(HashBlocks {
            blocks: part.to_vec(),
        })
    });
    let hashed = futures_util::future::try_join_all(parts).await?;
    Ok(hashed.into_iter().flatten().collect())
}

/// Stores one batch the repository's way ([`Repo::store_blocks`]: look up, write, record,
/// release leftovers, write again what a concurrent delete removed meanwhile), recording with
/// [`PutBlocks`]. Every block recorded is pinned for this upload, in `pinned`, even when a
/// later round fails. The bytes are synced once, before the commit.
async fn place(p: &Pipeline, blocks: Vec<(Cid, Bytes)>, pinned: &mut Vec<Digest>) -> Result<()> {
    let (meta, expiry) = (p.repo.meta.clone(), p.expiry);
    let mut rounds: Vec<Vec<Digest>> = Vec::new();
    let result = p
        .repo
        .store_blocks(&blocks, false, &mut rounds, |batch| {
            let meta = meta.clone();
            async move {
                let entries = batch
                    .iter()
                    .map(|b| NewBlock {
                        cid: b.cid,
                        size: b.size,
                        location: b.location,
                    })
                    .collect();
                let outcomes = meta
                    .send(PutBlocks {
                        blocks: entries,
                        expiry,
                    })
                    .await??;
                let mut recorded = Recorded {
                    outcome: Vec::new(),
                    garbage: Vec::new(),
                    again: Vec::new(),
                };
                for (b, outcome) in batch.iter().zip(outcomes) {
                    match outcome {
                        Placed::BytesMissing => recorded.again.push(b.at),
                        Placed::AlreadyStored { garbage } => {
                            recorded.garbage.extend(garbage);
                            recorded.outcome.extend(digest_of(&b.cid));
                        }
                        Placed::Stored => recorded.outcome.extend(digest_of(&b.cid)),
                    }
                }
                Ok(recorded)
            }
        })
        .await;
    pinned.extend(rounds.into_iter().flatten());
    result
}

impl Actor for Upload {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Self::Context) {
        if !self.done && self.leaves.iter().any(Option::is_some) {
            // Stopped without Finish or Abort (all handles dropped): release in the background.
            actix_rt::spawn(self.release());
        }
    }
}

impl Handler<AddBlock> for Upload {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: AddBlock, _: &mut Self::Context) -> Self::Result {
        if let Some(e) = &self.failure {
            return Box::pin(fut::ready(Err(e.clone())));
        }
        if self.batch.is_empty() {
            self.batch_start = msg.index;
        }
        self.batch.push(msg.data);
        if self.batch.len() < self.pipeline.batch_blocks {
            return Box::pin(fut::ready(Ok(())));
        }
        self.dispatch()
    }
}

impl Handler<Finish> for Upload {
    type Result = ResponseActFuture<Self, Result<Cid>>;

    fn handle(&mut self, msg: Finish, _: &mut Self::Context) -> Self::Result {
        let admitted_and_drained = self
            .dispatch()
            .then(|admitted, act, _| act.drained().into_actor(act).map(move |(), _, _| admitted));
        Box::pin(admitted_and_drained.then(move |admitted, act, _| {
            let failure = admitted.err().or_else(|| act.failure.clone());
            // A copy: the actor keeps its list to release the blocks if the commit fails.
            let leaves: Option<Vec<Digest>> = act.leaves.iter().copied().collect();
            let (p, options, started) = (act.pipeline.clone(), act.options.clone(), act.started);
            async move {
                if let Some(e) = failure {
                    return Err(e);
                }
                if msg.dataset_size == 0 {
                    return Err(Error::EmptyUpload);
                }
                commit(
                    p,
                    options,
                    leaves.ok_or(Error::Unavailable)?,
                    msg.dataset_size,
                    started,
                )
                .await
            }
            .into_actor(act)
            .then(|result: Result<Cid>, act, _| {
                if result.is_ok() {
                    act.done = true;
                    act.leaves = Vec::new();
                    return futures_util::future::Either::Left(fut::ready(result));
                }
                // Reply only once the release is done (issue 10, item 6).
                futures_util::future::Either::Right(
                    act.release().into_actor(act).map(move |(), _, _| result),
                )
            })
        }))
    }
}

/// Tree, manifest, durable bytes, the dataset commit, and its sync.
async fn commit(
    p: Pipeline,
    options: UploadOptions,
    leaves: Vec<Digest>,
    dataset_size: u64,
    started: Instant,
) -> Result<Cid> {
    let blocks = leaves.len();
    let mut layers = p
        .repo
        .hasher
        .send(TreeLayers { leaves })
        .await?
        .ok_or(Error::EmptyUpload)?
        .into_iter();
    let leaves = layers.next().ok_or(Error::EmptyUpload)?;
    let nodes: Vec<Vec<Digest>> = layers.collect();
    let root = nodes
        .last()
        .and_then(|top| top.first())
        .ok_or(Error::EmptyUpload)?;
    let manifest_tree = cid_from_digest(ROOT_CODEC, root);
    let manifest = Manifest::new(
        manifest_tree,
        dataset_size,
        p.block_size,
        options.filename,
        options.mimetype,
    );
    let hashed_ms = started.elapsed().as_millis() as u64;
    // Bytes must be durable before the metadata that makes them reachable is committed: any
    // later journal sync (another upload's, a delete's) would make that metadata durable.
    p.repo.blocks.send(SyncBlocks).await??;
    let synced_ms = started.elapsed().as_millis() as u64;
    let cid = p
        .repo
        .commit_dataset(CommitDataset {
            manifest,
            leaves,
            nodes,
            expiry: p.expiry,
        })
        .await?;
    let committed_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(hashed_ms, synced_ms, committed_ms, "upload phases");
    tracing::info!(
        cid = %cid_text(&cid),
        bytes = dataset_size,
        blocks,
        ms = started.elapsed().as_millis() as u64,
        "upload stored"
    );
    Ok(cid)
}

impl Handler<Abort> for Upload {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Abort, _: &mut Self::Context) -> Self::Result {
        self.batch.clear();
        Box::pin(
            self.drained()
                .into_actor(self)
                .then(|(), act, _| act.release().into_actor(act)),
        )
    }
}
