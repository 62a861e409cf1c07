//! The upload actor: one per upload, it drives each block through hashing, block storage and
//! metadata, gathers the block CIDs in order and finally commits the manifest.
//!
//! Pipeline per block, up to `upload_window_blocks` blocks at once:
//! [`AddBlock`] → [`Hasher`] (CID) → [`BlockStore`] (bytes) → [`MetaStore`] (`PutBlocks`: metadata,
//! quota, pin). [`Finish`] waits for the window to drain, asks the hasher for the tree root,
//! builds the manifest and sends `CommitDataset`. [`Abort`] (or a dropped [`UploadSession`])
//! waits for in-flight blocks and then releases everything the upload pinned, so a failed
//! upload leaves nothing behind.
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
    block_store::{BlockStore, SyncBlocks, WriteBlock},
    chunker::{Chunker, Close, Feed},
    error::{Error, Result},
    format::{
        cid::{cid_from_digest, digest_of, Digest, ROOT_CODEC},
        manifest::Manifest,
    },
    hasher::{HashBlock, Hasher, TreeRoot},
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

/// One block of the upload, numbered by the chunker.
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

/// Where an upload sends its work.
#[derive(Clone)]
pub(crate) struct Pipeline {
    pub(crate) hasher: Addr<Hasher>,
    pub(crate) blocks: Addr<BlockStore>,
    pub(crate) meta: Addr<MetaStore>,
    pub(crate) block_size: u32,
    pub(crate) window: u32,
    /// Expiry given to the upload's blocks and manifest (unix seconds).
    pub(crate) expiry: u64,
}

/// The upload actor; see the module docs.
pub struct Upload {
    pipeline: Pipeline,
    options: UploadOptions,
    /// Permits for blocks in flight; `Finish` and `Abort` take them all to wait for the rest.
    window: Arc<Semaphore>,
    /// Block digests by index, filled as blocks complete (32 bytes per 64 KiB block).
    leaves: Vec<Option<Digest>>,
    /// Blocks pinned in the metadata actor, to release if the upload fails.
    pinned: Vec<Cid>,
    /// The first failure; every later call reports it.
    failure: Option<Error>,
    /// Set once the manifest is committed or the upload released.
    done: bool,
    started: Instant,
}

impl Upload {
    pub(crate) fn new(pipeline: Pipeline, options: UploadOptions) -> Self {
        let window = Arc::new(Semaphore::new(pipeline.window as usize));
        Self {
            pipeline,
            options,
            window,
            leaves: Vec::new(),
            pinned: Vec::new(),
            failure: None,
            done: false,
            started: Instant::now(),
        }
    }

    fn block_done(&mut self, index: u64, result: Result<Cid>) {
        match result {
            Ok(cid) => {
                self.pinned.push(cid);
                let slot = usize::try_from(index).unwrap_or(usize::MAX);
                if self.leaves.len() <= slot {
                    self.leaves.resize(slot.saturating_add(1), None);
                }
                if let Some(s) = self.leaves.get_mut(slot) {
                    *s = digest_of(&cid);
                }
            }
            Err(e) => {
                if self.failure.is_none() {
                    tracing::debug!(index, error = %e, "upload block failed");
                    self.failure = Some(e);
                }
            }
        }
    }

    /// A future that resolves once every in-flight block has finished.
    fn drained(&self) -> impl std::future::Future<Output = ()> + 'static {
        let window = self.window.clone();
        let all = self.pipeline.window;
        async move {
            // The semaphore is never closed, so this only waits; the permits go back on drop.
            let _ = window.acquire_many_owned(all).await;
        }
    }

    /// Release pins of an upload that will not be committed.
    fn release(&mut self) -> impl std::future::Future<Output = ()> + 'static {
        self.done = true;
        let cids = std::mem::take(&mut self.pinned);
        let meta = self.pipeline.meta.clone();
        async move {
            if cids.is_empty() {
                return;
            }
            match meta.send(ReleaseBlocks { cids }).await {
                Ok(Ok(freed)) => tracing::info!(freed, "released blocks of an unfinished upload"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not release blocks of an unfinished upload")
                }
                Err(_) => tracing::warn!("metadata actor gone while releasing an upload"),
            }
        }
    }
}

/// Hash, write and record one block. Returns its CID once its metadata is committed and pinned.
async fn store_block(p: Pipeline, data: Bytes) -> Result<Cid> {
    let size = data.len() as u64;
    let cid = p.hasher.send(HashBlock { data: data.clone() }).await?;
    // A concurrent delete can remove known bytes between our write and our metadata; the
    // metadata actor then says so and we write again. Twice in a row would need two deletes.
    for _ in 0..3 {
        p.blocks
            .send(WriteBlock {
                cid,
                data: data.clone(),
            })
            .await??;
        let placed = p
            .meta
            .send(PutBlocks {
                blocks: vec![(cid, size)],
                expiry: p.expiry,
            })
            .await??;
        if placed.first() != Some(&Placed::BytesMissing) {
            return Ok(cid);
        }
    }
    Err(Error::NotFound(cid))
}

impl Actor for Upload {
    type Context = Context<Self>;

    fn stopped(&mut self, ctx: &mut Self::Context) {
        if !self.done && !self.pinned.is_empty() {
            // Dropped without Finish or Abort: release in the background.
            let release = self.release();
            let _ = ctx; // the context is gone; run on the arbiter instead
            actix_rt::spawn(release);
        }
    }
}

impl Handler<AddBlock> for Upload {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, msg: AddBlock, _: &mut Self::Context) -> Self::Result {
        if let Some(e) = &self.failure {
            return Box::pin(fut::ready(Err(e.clone())));
        }
        let window = self.window.clone();
        let pipeline = self.pipeline.clone();
        Box::pin(
            async move { window.acquire_owned().await }
                .into_actor(self)
                .map(move |permit, _act, ctx| {
                    let permit = permit.map_err(|_| Error::Unavailable)?;
                    let index = msg.index;
                    ctx.spawn(store_block(pipeline, msg.data).into_actor(_act).map(
                        move |result, act, _| {
                            drop(permit);
                            act.block_done(index, result);
                        },
                    ));
                    Ok(())
                }),
        )
    }
}

impl Handler<Finish> for Upload {
    type Result = ResponseActFuture<Self, Result<Cid>>;

    fn handle(&mut self, msg: Finish, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.drained().into_actor(self).then(move |(), act, _| {
            let failure = act.failure.clone();
            let leaves: Option<Vec<Digest>> = std::mem::take(&mut act.leaves).into_iter().collect();
            let p = act.pipeline.clone();
            let options = act.options.clone();
            let started = act.started;
            let pinned = act.pinned.clone();
            async move {
                if let Some(e) = failure {
                    return Err(e);
                }
                if msg.dataset_size == 0 {
                    return Err(Error::EmptyUpload);
                }
                let leaves = leaves.ok_or(Error::Unavailable)?;
                let root = p.hasher.send(TreeRoot { leaves: leaves.clone() }).await?.ok_or(Error::EmptyUpload)?;
                let tree_cid = cid_from_digest(ROOT_CODEC, &root);
                let manifest = Manifest::new(tree_cid, msg.dataset_size, p.block_size, options.filename, options.mimetype);
                let leaf_cids = leaves.iter().map(|d| cid_from_digest(crate::format::cid::BLOCK_CODEC, d)).collect();
                let _ = pinned;
                // Bytes must be durable before the metadata that makes them reachable is.
                p.blocks.send(SyncBlocks).await??;
                let cid = p.meta.send(CommitDataset { manifest, leaves: leaf_cids, expiry: p.expiry }).await??;
                tracing::info!(cid = %crate::format::cid::cid_text(&cid), bytes = msg.dataset_size, blocks = leaves.len(), elapsed_ms = started.elapsed().as_millis() as u64, "upload stored");
                Ok(cid)
            }
            .into_actor(act)
            .map(|result: Result<Cid>, act, ctx| {
                if result.is_ok() {
                    act.done = true;
                    act.pinned.clear();
                } else {
                    let release = act.release();
                    ctx.spawn(release.into_actor(act));
                }
                result
            })
        }))
    }
}

impl Handler<Abort> for Upload {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Abort, _: &mut Self::Context) -> Self::Result {
        Box::pin(
            self.drained()
                .into_actor(self)
                .then(|(), act, _| act.release().into_actor(act)),
        )
    }
}

/// An upload in progress, for embedders: feed it bytes, then [`finish`](Self::finish) it.
/// Dropping it without finishing aborts the upload and releases its blocks.
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
