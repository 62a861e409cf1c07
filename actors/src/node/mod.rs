//! [`Node`]: the one handle embedders (and the HTTP layer) use to talk to the actors.
//!
//! It starts the actors on a data directory and turns each operation into messages; mailbox
//! errors become [`Error::Unavailable`], so callers see only the engine's error type.

use std::{
    ops::Range,
    sync::{atomic::AtomicU64, Arc},
};

use actix::{Actor, SyncArbiter};
use bytes::Bytes;
use cid::Cid;
use futures_util::{Stream, StreamExt};

use crate::{
    block_store::{segment_lengths, BlockBytes, BlockStore},
    clock::expiry_after,
    config::{Config, BLOCK_SIZE},
    download,
    error::{Error, Result},
    format::manifest::Manifest,
    hasher::Hasher,
    maintenance::Maintenance,
    meta_reader::{
        Dataset, FindManifest, GetManifest, GetSpace, HasBlock, ListFetches, ListManifests,
        MetaReader,
    },
    meta_store::{
        ExpireBlocks, Expired, FetchProgress, Journal, Keyspaces, MetaStore, Removed, Space,
        SyncMeta,
    },
    migration,
    network::{fetch::FetchStatus, Network, NetworkConfig, StoreSettings},
    repair,
    repo::Repo,
    upload::{Pipeline, UploadOptions, UploadSession},
};

/// A running node: cheap to clone, all clones talk to the same actors.
#[derive(Clone)]
pub struct Node {
    repo: Repo,
    config: Arc<Config>,
    /// The network room, when the configuration asks for one.
    network: Option<Network>,
}

pub use crate::download::ByteStream;

/// What opening a repository produces, before any actor runs.
struct Opened {
    meta: MetaStore,
    ks: Keyspaces,
    bytes: BlockBytes,
    committed: Arc<AtomicU64>,
}

/// Opens the database, upgrades its format, runs the start-up check (synced), then opens the
/// block files with the live counts the records give. Blocking: runs on a blocking thread.
fn open_repository(config: &Config) -> Result<Opened> {
    let ks = Keyspaces::open(&config.data_dir, config.cache_bytes)?;
    migration::run(&ks)?;
    let committed = Arc::new(AtomicU64::new(0));
    let mut meta = MetaStore::new(
        ks.clone(),
        config.quota_max_bytes,
        committed.clone(),
        config.batch_records,
    )?;
    let blocks_dir = config.data_dir.join("blocks");
    let lengths = segment_lengths(&blocks_dir)?;
    let (report, live) = repair::run(&mut meta, &lengths)?;
    if !report.is_clean() {
        tracing::warn!(?report, "start-up check repaired the repository");
    }
    // The repair is durable (it syncs), so segments it left without live bytes can go.
    let bytes = BlockBytes::open(&blocks_dir, config.segment_bytes, live)?;
    Ok(Opened {
        meta,
        ks,
        bytes,
        committed,
    })
}

impl Node {
    /// Opens the repository in `config.data_dir` (creating it), runs the start-up check, and
    /// starts the actors, without a network: the node is an island, and [`Node::network`]
    /// answers [`Error::NoNetwork`]. Must be called from inside a running actix `System`. The
    /// check reads every record, so on a large repository this takes a while; it runs on a
    /// blocking thread, not on the caller's event loop.
    ///
    /// # Errors
    /// [`Error::Storage`] when the directory or database cannot be opened or checked;
    /// [`Error::Config`] for a repository written by a newer version.
    pub async fn start(config: Config) -> Result<Self> {
        Self::start_inner(config, None).await
    }

    /// [`Node::start`], taking part in the peer-to-peer network (block exchange, discovery)
    /// with `network`'s settings.
    ///
    /// # Errors
    /// As [`Node::start`]; [`Error::Network`] when the network cannot start (a listen address
    /// taken, an unusable key).
    pub async fn start_with_network(config: Config, network: NetworkConfig) -> Result<Self> {
        Self::start_inner(config, Some(network)).await
    }

    async fn start_inner(config: Config, network: Option<NetworkConfig>) -> Result<Self> {
        let config = config.normalized();
        let cfg = config.clone();
        let opened = tokio::task::spawn_blocking(move || open_repository(&cfg))
            .await
            .map_err(|_| Error::Unavailable)??;
        let Opened {
            meta,
            ks,
            bytes,
            committed,
        } = opened;
        // One thread, so one instance: the factory hands out clones of the opened store.
        // The start-up check ended with a persist: everything counted so far is durable.
        let durable = committed.load(std::sync::atomic::Ordering::Acquire);
        let journal_db = ks.db.clone();
        let journal = SyncArbiter::start(1, move || {
            Journal::new(journal_db.clone(), committed.clone(), durable)
        });
        let meta = SyncArbiter::start(1, move || meta.clone());
        let quota = config.quota_max_bytes;
        let reader = SyncArbiter::start(config.reader_threads, move || {
            MetaReader::new(ks.clone(), quota)
        });
        let read_bytes = bytes.clone();
        let block_reads = SyncArbiter::start(config.block_reader_threads, move || {
            BlockStore::new(read_bytes.clone())
        });
        let blocks = SyncArbiter::start(config.block_store_threads, move || {
            BlockStore::new(bytes.clone())
        });
        let hasher = SyncArbiter::start(config.hasher_threads, Hasher::default);
        let repo = Repo {
            meta,
            reader,
            blocks,
            block_reads,
            journal,
            hasher,
            events: Default::default(),
        };
        tracing::info!(data_dir = %config.data_dir.display(), quota = config.quota_max_bytes, "repository open");
        let store = StoreSettings {
            block_ttl: config.block_ttl,
            read_ahead_blocks: config.read_ahead_blocks,
        };
        let network = match network {
            Some(nc) => Some(Network::start(nc, repo.clone(), store).await?),
            None => None,
        };
        Maintenance::new(
            repo.clone(),
            config.maintenance_interval,
            config.maintenance_batch,
        )
        .start();
        Ok(Self {
            repo,
            config: Arc::new(config),
            network,
        })
    }

    /// The network room: peers, and datasets from peers.
    ///
    /// # Errors
    /// [`Error::NoNetwork`] on a node started without one.
    pub fn network(&self) -> Result<&Network> {
        self.network.as_ref().ok_or(Error::NoNetwork)
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
                repo: self.repo.clone(),
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
        self.repo.reader.send(GetManifest { cid }).await?
    }

    /// Streams bytes `range` of the dataset described by `manifest` (the whole dataset when
    /// `None`). Only the blocks covering the range are read; each is checked against its CID.
    ///
    /// # Errors
    /// [`Error::RangeNotSatisfiable`] for a range outside the dataset. Errors while streaming
    /// (a missing or corrupted block) arrive as the stream's last item.
    pub fn read(&self, manifest: &Manifest, range: Option<Range<u64>>) -> Result<ByteStream> {
        let range = download::range_within(manifest.dataset_size, range)?;
        Ok(download::stream(
            self.repo.clone(),
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
        let datasets = self.datasets(false).await?;
        Ok(datasets.into_iter().map(|d| (d.cid, d.manifest)).collect())
    }

    /// Every stored dataset: its CID, its manifest (or why it cannot be decoded) and, when
    /// `with_expiry` (one more read per dataset), its expiry.
    ///
    /// # Errors
    /// A storage failure while iterating.
    pub async fn datasets(&self, with_expiry: bool) -> Result<Vec<Dataset>> {
        self.repo
            .reader
            .send(ListManifests {
                expiry: with_expiry,
            })
            .await?
    }

    /// Deletes a dataset (manifest CID) or a block no dataset uses (block CID). Blocks shared
    /// with other datasets stay. Deleting something absent is not an error. Durable when it
    /// returns; a large dataset goes in bounded steps, so other work goes on meanwhile.
    ///
    /// # Errors
    /// [`Error::BlockInUse`] for a block a dataset still needs; a storage failure.
    pub async fn delete(&self, cid: Cid) -> Result<Removed> {
        self.repo.delete(cid).await
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
                .repo
                .expire_step(ExpireBlocks {
                    now,
                    after,
                    limit: self.config.maintenance_batch,
                })
                .await?;
            total.datasets += step.datasets;
            total.freed.removed += step.freed.removed;
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
            match self.repo.compact_step().await? {
                Some(n) => moved += n,
                None => break,
            }
        }
        Ok(moved)
    }

    /// True when a block or manifest with this CID is stored locally.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn exists(&self, cid: Cid) -> Result<bool> {
        self.repo.reader.send(HasBlock { cid }).await?
    }

    /// Block count and quota figures.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the node is shutting down.
    pub async fn space(&self) -> Result<Space> {
        self.repo.reader.send(GetSpace).await?
    }

    /// Progress of dataset `cid` here: blocks stored of blocks total, and whether a fetch runs.
    /// `None` when nothing of it is stored. While a fetch runs, its status is the figure (it
    /// publishes what the store answered each batch); otherwise the store's record.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn fetch_progress(&self, cid: Cid) -> Result<Option<(FetchProgress, bool)>> {
        let Some(local) = self.repo.reader.send(FindManifest { cid }).await?? else {
            return Ok(None);
        };
        let running = match &self.network {
            Some(network) => network.running_fetch(cid).await?,
            None => None,
        };
        Ok(Some(match running {
            Some(FetchStatus::Running { stored, total }) => (
                FetchProgress {
                    stored,
                    total,
                    complete: false,
                },
                true,
            ),
            Some(_) => (local.progress, true),
            None => (local.progress, false),
        }))
    }

    /// Every dataset stored partially (being fetched, or cut short), with its progress.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn partial_datasets(&self) -> Result<Vec<(Cid, FetchProgress)>> {
        self.repo.reader.send(ListFetches).await?
    }

    /// Syncs everything to disk; call before stopping the actix system.
    ///
    /// # Errors
    /// A storage failure.
    pub async fn shutdown(&self) -> Result<()> {
        if let Some(network) = &self.network {
            network.shutdown().await;
        }
        self.repo.journal.send(SyncMeta).await?
    }
}

impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::other(e)
    }
}
