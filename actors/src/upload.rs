//! The upload actor: one per upload, it drives blocks through hashing, block storage and
//! metadata, gathers the block CIDs in order and finally commits the manifest.
//!
//! Blocks travel in batches of `batch_blocks` (one message per hop per batch, not per block),
//! and at most `window_batches` batches are in flight; [`AddBlock`] is answered only once its
//! batch is admitted, which is how storage pushes back on the HTTP body. Per batch:
//! [`Hasher`] (`HashBlocks` → CIDs) → [`BlockStore`] (`WriteBlocks`) → [`MetaStore`]
//! (`PutBlocks`: metadata, quota, pins). [`Finish`] flushes the last batch, waits for the
//! window to drain, asks the hasher for the tree root, syncs the block store, and sends
//! `CommitDataset`. [`Abort`] (or a dropped [`UploadSession`]) waits for in-flight batches and
//! then releases everything the upload pinned, so a failed upload leaves nothing behind.
//!
//! Embedders use [`UploadSession`], which also owns this upload's [`Chunker`].

use std::{sync::Arc, time::Instant};

use actix::{
    fut, Actor, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, ResponseActFuture,
    WrapFuture,
};
use bytes::Bytes;
use cid::Cid;
use tokio::sync::Semaphore;

use crate::{
    block_store::{BlockStore, SyncBlocks, WriteBlocks},
    chunker::{Chunker, Close, Feed},
    error::{Error, Result},
    format::{
        cid::{cid_from_digest, cid_text, digest_of, Digest, ROOT_CODEC},
        manifest::Manifest,
    },
    hasher::{HashBlocks, Hasher, TreeRoot},
    meta_store::{CommitDataset, MetaStore, Placed, PutBlocks, ReleaseBlocks},
};

/// Optional manifest fields of an upload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Stored as the manifest's `filename`.
    pub filename: Option<String>,
    /// Stored as the manifest's `mimetype`.
    pub mimetype: Option<String>,
}

/// One block of the upload, numbered by the chunker (blocks arrive in index order).
#[derive(Message)]
#[rtype(result = "Result<()>")]
pub struct AddBlock {
    /// Position of the block in the dataset.
    pub index: u64,
    /// The padded block bytes.
    pub data: Bytes,
}

impl std::fmt::Debug for AddBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddBlock")
            .field("index", &self.index)
            .field("len", &self.data.len())
            .finish()
    }
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
    pub(crate) hasher: Addr<Hasher>,
    pub(crate) blocks: Addr<BlockStore>,
    pub(crate) meta: Addr<MetaStore>,
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

    /// Releases the pins of an upload that will not be committed.
    fn release(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        self.done = true;
        let blocks: Vec<Digest> = std::mem::take(&mut self.leaves)
            .into_iter()
            .flatten()
            .collect();
        let meta = self.pipeline.meta.clone();
        async move {
            if blocks.is_empty() {
                return;
            }
            match meta.send(ReleaseBlocks { blocks }).await {
                Ok(Ok(freed)) => {
                    tracing::info!(freed, "released the blocks of an unfinished upload")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "could not release an unfinished upload"),
                Err(_) => tracing::warn!("metadata actor gone while releasing an upload"),
            }
        }
    }
}

/// Hashes, writes and records one batch. Returns the CIDs once their metadata is committed and
/// pinned; on failure, releases whatever this batch had pinned.
async fn store_batch(p: Pipeline, blocks: Vec<Bytes>) -> Result<Vec<Cid>> {
    let cids = p
        .hasher
        .send(HashBlocks {
            blocks: blocks.clone(),
        })
        .await?;
    let mut pinned: Vec<Digest> = Vec::with_capacity(cids.len());
    let result = place(&p, cids.iter().copied().zip(blocks).collect(), &mut pinned).await;
    if result.is_err() && !pinned.is_empty() {
        // Best effort: the start-up check clears pins that a lost message leaves behind.
        let _ = p.meta.send(ReleaseBlocks { blocks: pinned }).await;
    }
    result.map(|()| cids)
}

/// Writes the bytes, then records the metadata. A concurrent delete can remove known bytes
/// between the two steps; the metadata actor then answers `BytesMissing` and those blocks are
/// written again (a third miss in a row would need three deletes of the same block).
async fn place(p: &Pipeline, mut todo: Vec<(Cid, Bytes)>, pinned: &mut Vec<Digest>) -> Result<()> {
    let mut last_missing = None;
    for _ in 0..3 {
        p.blocks
            .send(WriteBlocks {
                blocks: todo.clone(),
            })
            .await??;
        let entries = todo.iter().map(|(c, b)| (*c, b.len() as u64)).collect();
        let placed = p
            .meta
            .send(PutBlocks {
                blocks: entries,
                expiry: p.expiry,
            })
            .await??;
        let mut missing = Vec::new();
        for (block, outcome) in todo.into_iter().zip(placed) {
            if outcome == Placed::BytesMissing {
                missing.push(block);
            } else {
                pinned.extend(digest_of(&block.0));
            }
        }
        let Some((first, _)) = missing.first() else {
            return Ok(());
        };
        tracing::debug!(cid = %cid_text(first), "block deleted while being stored; writing it again");
        last_missing = Some(*first);
        todo = missing;
    }
    Err(last_missing.map_or(Error::Unavailable, Error::NotFound))
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
            .map(|result: Result<Cid>, act, ctx| {
                if result.is_ok() {
                    act.done = true;
                    act.leaves = Vec::new();
                } else {
                    ctx.spawn(act.release().into_actor(act));
                }
                result
            })
        }))
    }
}

/// Tree root, manifest, durable bytes, then the atomic dataset commit.
async fn commit(
    p: Pipeline,
    options: UploadOptions,
    leaves: Vec<Digest>,
    dataset_size: u64,
    started: Instant,
) -> Result<Cid> {
    let blocks = leaves.len();
    let (root, leaves) = p.hasher.send(TreeRoot { leaves }).await?;
    let root = root.ok_or(Error::EmptyUpload)?;
    let manifest = Manifest::new(
        cid_from_digest(ROOT_CODEC, &root),
        dataset_size,
        p.block_size,
        options.filename,
        options.mimetype,
    );
    let hashed_ms = started.elapsed().as_millis() as u64;
    // Bytes must be durable before the metadata that makes them reachable is.
    p.blocks.send(SyncBlocks).await??;
    let synced_ms = started.elapsed().as_millis() as u64;
    let cid = p
        .meta
        .send(CommitDataset {
            manifest,
            leaves,
            expiry: p.expiry,
        })
        .await??;
    tracing::debug!(hashed_ms, synced_ms, "upload phases");
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

/// An upload in progress, for embedders: [`write`](Self::write) bytes, then
/// [`finish`](Self::finish). Dropping it unfinished aborts the upload and releases its blocks.
pub struct UploadSession {
    chunker: Addr<Chunker>,
    upload: Addr<Upload>,
    finished: bool,
}

impl UploadSession {
    pub(crate) fn start(pipeline: Pipeline, options: UploadOptions) -> Self {
        let block_size = pipeline.block_size;
        let upload = Upload::new(pipeline, options).start();
        let chunker = Chunker::new(block_size, upload.clone()).start();
        Self {
            chunker,
            upload,
            finished: false,
        }
    }

    /// Adds the next piece of the file. Resolves once the piece's complete blocks are admitted
    /// into the pipeline, so awaiting it applies backpressure.
    ///
    /// # Errors
    /// The upload's first failure (for example [`Error::QuotaExceeded`]).
    pub async fn write(&mut self, data: Bytes) -> Result<()> {
        self.chunker.send(Feed(data)).await?
    }

    /// Ends the stream and commits the dataset. Returns the manifest CID once it is durable.
    ///
    /// # Errors
    /// [`Error::EmptyUpload`] for an upload without bytes, or the upload's first failure; the
    /// upload's blocks are released in both cases.
    pub async fn finish(mut self) -> Result<Cid> {
        self.finished = true;
        let size = match self.chunker.send(Close).await? {
            Ok(size) => size,
            Err(e) => {
                let _ = self.upload.send(Abort).await;
                return Err(e);
            }
        };
        self.upload.send(Finish { dataset_size: size }).await?
    }

    /// Abandons the upload and waits until its blocks are released.
    pub async fn abort(mut self) {
        self.finished = true;
        let _ = self.upload.send(Abort).await;
    }
}

impl Drop for UploadSession {
    fn drop(&mut self) {
        if !self.finished {
            // A fire-and-forget notice: the client is gone and nobody waits for the answer.
            self.upload.do_send(Abort);
        }
    }
}
