//! [`Node`]: the one handle embedders (and the HTTP layer) use to talk to the actors.
//!
//! It starts the actors on a data directory and turns each operation into messages; mailbox
//! errors become [`Error::Unavailable`], so callers see only the engine's error type.

use std::{
    ops::Range,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix::{Actor, Addr, SyncArbiter};
use bytes::Bytes;
use cid::Cid;
use futures_util::{stream::BoxStream, Stream, StreamExt};

use crate::{
    block_store::{BlockStore, CompactStep},
    config::{Config, BLOCK_SIZE},
    download,
    error::{Error, Result},
    format::cid::MANIFEST_CODEC,
    format::manifest::Manifest,
    hasher::Hasher,
    maintenance::Maintenance,
    meta_store::{
        DeleteBlock, DeleteDataset, ExpireBlocks, Expired, GetManifest, GetSpace, HasBlock,
        ListManifests, MetaStore, Persist, Relocate, Removed, Space,
    },
    repair,
    upload::{Pipeline, UploadOptions, UploadSession},
};

/// A running node: cheap to clone, all clones talk to the same actors.
#[derive(Clone)]
pub struct Node {
    meta: Addr<MetaStore>,
    blocks: Addr<BlockStore>,
    hasher: Addr<Hasher>,
    config: std::sync::Arc<Config>,
}

/// The bytes of a dataset (or of a range of it), streamed block by block.
pub type ByteStream = BoxStream<'static, Result<Bytes>>;

impl Node {
    /// Opens the repository in `config.data_dir` (creating it) and starts the actors.
    /// Must be called from inside a running actix `System`.
    ///
    /// # Errors
    /// [`Error::Storage`] when the directory or database cannot be opened.
    pub fn start(config: Config) -> Result<Self> {
        let (mut meta, bytes) = MetaStore::open_dir(
            &config.data_dir,
            config.quota_max_bytes,
            config.segment_bytes,
            config.cache_bytes,
        )?;
        let report = repair::run(&mut meta)?;
        if !report.is_clean() {
            tracing::warn!(?report, "start-up check repaired the repository");
        }
        // One thread, so one instance: the factory hands out clones of the opened store.
        let meta = SyncArbiter::start(1, move || meta.clone());
        let blocks = SyncArbiter::start(config.block_store_threads, move || {
            BlockStore::new(bytes.clone())
        });
        let hasher = SyncArbiter::start(config.hasher_threads, Hasher::default);
        Maintenance::new(
            meta.clone(),
            blocks.clone(),
            config.maintenance_interval,
            config.maintenance_batch,
        )
        .start();
        tracing::info!(data_dir = %config.data_dir.display(), quota = config.quota_max_bytes, "repository open");
        Ok(Self {
            meta,
            blocks,
            hasher,
            config: std::sync::Arc::new(config),
        })
    }

    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn expiry(&self) -> u64 {
        expiry_after(self.config.block_ttl)
    }

    /// Starts an upload; feed it with [`UploadSession::write`].
    pub fn upload(&self, options: UploadOptions) -> UploadSession {
        UploadSession::start(
            Pipeline {
                hasher: self.hasher.clone(),
                blocks: self.blocks.clone(),
                meta: self.meta.clone(),
                block_size: BLOCK_SIZE,
                batch_blocks: self.config.upload_batch_blocks,
                window_batches: self.config.upload_window_batches,
                expiry: self.expiry(),
            },
            options,
        )
    }

    /// Stores a whole stream as a dataset and returns its manifest CID.
    ///
    /// # Errors
    /// A stream error ([`Error::Stream`]), [`Error::EmptyUpload`], [`Error::QuotaExceeded`] or a
    /// storage failure. Nothing of a failed upload stays stored.
    pub async fn store<S, E>(&self, stream: S, options: UploadOptions) -> Result<Cid>
    where
        S: Stream<Item = std::result::Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let mut session = self.upload(options);
        let mut stream = std::pin::pin!(stream);
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| Error::Stream(e.to_string()))?;
            session.write(piece).await?;
        }
        session.finish().await
    }

    /// The manifest stored under `cid`.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::NotAManifest`] for a data block, [`Error::BadManifest`].
    pub async fn manifest(&self, cid: Cid) -> Result<Manifest> {
        self.meta.send(GetManifest { cid }).await?
    }

    /// Streams bytes `range` of the dataset described by `manifest` (the whole dataset when
    /// `None`). Only the blocks covering the range are read; each is checked against its CID.
    ///
    /// # Errors
    /// [`Error::RangeNotSatisfiable`] for a range outside the dataset. Errors while streaming
    /// (a missing or corrupted block) arrive as the stream's last item.
    pub fn read(&self, manifest: &Manifest, range: Option<Range<u64>>) -> Result<ByteStream> {
        let size = manifest.dataset_size;
        let range = range.unwrap_or(0..size);
        if range.start >= range.end || range.end > size {
            return Err(Error::RangeNotSatisfiable { size });
        }
        Ok(download::stream(
            self.meta.clone(),
            self.blocks.clone(),
            manifest.clone(),
            range,
            self.config.read_ahead_blocks,
        ))
    }

    /// The manifest and a stream of the whole dataset.
    ///
    /// # Errors
    /// As [`Node::manifest`].
    pub async fn retrieve(&self, cid: Cid) -> Result<(Manifest, ByteStream)> {
        let manifest = self.manifest(cid).await?;
        let stream = self.read(&manifest, None)?;
        Ok((manifest, stream))
    }

    /// Every stored manifest with its CID. A manifest that cannot be decoded is reported as an
    /// error item; the others are still listed.
    ///
    /// # Errors
    /// A storage failure while iterating.
    pub async fn manifests(&self) -> Result<Vec<(Cid, Result<Manifest>)>> {
        self.meta.send(ListManifests).await?
    }

    /// Deletes a dataset (manifest CID) or a block no dataset uses (block CID). Blocks shared
    /// with other datasets stay. Deleting something absent is not an error.
    ///
    /// # Errors
    /// [`Error::BlockInUse`] for a block a dataset still needs; a storage failure.
    pub async fn delete(&self, cid: Cid) -> Result<Removed> {
        if cid.codec() == MANIFEST_CODEC {
            self.meta.send(DeleteDataset { cid }).await?
        } else {
            self.meta.send(DeleteBlock { cid }).await?
        }
    }

    /// Runs one whole expiry pass over every block record as if the time were `now` (unix
    /// seconds), instead of waiting for the maintenance timer. For tests and operators.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn expire(&self, now: u64) -> Result<Expired> {
        let mut total = Expired::default();
        let mut after = None;
        loop {
            let step = self
                .meta
                .send(ExpireBlocks {
                    now,
                    after,
                    limit: self.config.maintenance_batch,
                })
                .await??;
            total.datasets += step.datasets;
            total.removed.blocks += step.removed.blocks;
            total.removed.bytes += step.removed.bytes;
            match step.next {
                Some(next) => after = Some(next),
                None => return Ok(total),
            }
        }
    }

    /// Reclaims the space of deleted blocks now: compacts every sealed segment file that is
    /// less than half live (the maintenance timer does one step per pass). Returns the number
    /// of blocks moved.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn compact(&self) -> Result<u64> {
        let mut moved = 0;
        // Each step empties one segment; the bound only guards against a segment that cannot
        // be emptied (a corrupted block is left in place).
        for _ in 0..10_000 {
            let Some(moves) = self.blocks.send(CompactStep).await?? else {
                break;
            };
            moved += self.meta.send(Relocate { moves }).await??;
        }
        Ok(moved)
    }

    /// True when a block or manifest with this CID is stored locally.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn exists(&self, cid: Cid) -> Result<bool> {
        self.meta.send(HasBlock { cid }).await?
    }

    /// Block count and quota figures.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the node is shutting down.
    pub async fn space(&self) -> Result<Space> {
        self.meta.send(GetSpace).await?
    }

    /// Syncs everything to disk; call before stopping the actix system.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn shutdown(&self) -> Result<()> {
        self.meta.send(Persist).await?
    }
}

/// Unix seconds at which a block stored now with `ttl` expires; a zero TTL never expires.
pub(crate) fn expiry_after(ttl: Duration) -> u64 {
    if ttl.is_zero() {
        return u64::MAX;
    }
    unix_now().saturating_add(ttl.as_secs())
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::other(e)
    }
}
