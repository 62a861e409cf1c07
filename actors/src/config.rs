//! Engine configuration: one place for every default and limit.

use std::{path::PathBuf, time::Duration};

/// Codex's `DefaultBlockSize`: every block (the last one zero-padded) is 64 KiB. A format fact,
/// defined in `format/manifest.rs`; named here with the other defaults.
pub const BLOCK_SIZE: u32 = crate::format::manifest::CODEX_BLOCK_SIZE;
/// Codex's `DefaultQuotaBytes`.
pub const DEFAULT_QUOTA_BYTES: u64 = 20 * 1024 * 1024 * 1024; /* 20 GiB */
/// Codex's `DefaultBlockTtl`.
pub const DEFAULT_BLOCK_TTL: Duration = Duration::from_secs(30 * 24 * 60 * 60); /* 30 days */
/// Codex's `DefaultBlockInterval` between two maintenance passes.
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(600); /* 10 min */
/// Size at which the block store starts a new segment file.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024; /* 1 GiB */
/// Codex's `DefaultNumBlocksPerInterval`.
pub const DEFAULT_MAINTENANCE_BATCH: usize = 1000;

/// How a node is set up. Build it with [`Config::new`] and the setters; every default is set in
/// `new` and named above.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) data_dir: PathBuf,
    pub(crate) quota_max_bytes: u64,
    pub(crate) block_ttl: Duration,
    pub(crate) upload_batch_blocks: usize,
    pub(crate) upload_window_batches: u32,
    pub(crate) hasher_threads: usize,
    pub(crate) block_store_threads: usize,
    pub(crate) block_reader_threads: usize,
    pub(crate) reader_threads: usize,
    pub(crate) batch_records: usize,
    pub(crate) read_ahead_blocks: usize,
    pub(crate) maintenance_interval: Duration,
    pub(crate) maintenance_batch: usize,
    pub(crate) segment_bytes: u64,
    pub(crate) cache_bytes: u64,
    pub(crate) network: Option<crate::network::NetworkConfig>,
}

impl Config {
    /// Defaults for a node whose repository lives in `data_dir` (created if missing).
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            data_dir: data_dir.into(),
            quota_max_bytes: DEFAULT_QUOTA_BYTES,
            block_ttl: DEFAULT_BLOCK_TTL,
            upload_batch_blocks: 64,  /* 4 MiB per message */
            upload_window_batches: 4, /* 16 MiB in flight per upload */
            hasher_threads: cores,
            block_store_threads: 2,
            block_reader_threads: 4,
            reader_threads: 2,
            batch_records: 4096,
            network: None,
            read_ahead_blocks: 64, /* 4 MiB read ahead per download */
            maintenance_interval: DEFAULT_MAINTENANCE_INTERVAL,
            maintenance_batch: DEFAULT_MAINTENANCE_BATCH,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            cache_bytes: 16 * 1024 * 1024, /* 16 MiB */
        }
    }

    /// Most bytes the repository may hold, padded blocks and manifests included.
    /// Default = 20 GiB.
    #[must_use]
    pub fn quota_max_bytes(mut self, bytes: u64) -> Self {
        self.quota_max_bytes = bytes;
        self
    }

    /// How long a stored block lives unless a dataset refers to it. Zero means "never expire"
    /// (Codex's help text promises this; its code expires at once, its #508). Default = 30 days.
    #[must_use]
    pub fn block_ttl(mut self, ttl: Duration) -> Self {
        self.block_ttl = ttl;
        self
    }

    /// Blocks an upload sends per message to the block store and metadata actor (the hasher
    /// gets them in parts of 16, all at once). Every message wakes a thread: larger batches
    /// cost less CPU (1.2 against 1.05 CPU-seconds per GiB for 16 and 64 blocks, see
    /// benches/README.md). Default = 64 (4 MiB).
    #[must_use]
    pub fn upload_batch_blocks(mut self, blocks: usize) -> Self {
        self.upload_batch_blocks = blocks.max(1);
        self
    }

    /// Batches of one upload that may be hashed and stored at once. This bounds an upload's
    /// memory to about `(window + 1) × batch × 64 KiB` (20 MiB by default). Direct writes
    /// are faster from memory the CPU touched recently, so a larger window does not make
    /// uploads faster (8 was no faster than 4, benches/README.md). Default = 4.
    #[must_use]
    pub fn upload_window_batches(mut self, batches: u32) -> Self {
        self.upload_window_batches = batches.max(1);
        self
    }

    /// Threads hashing blocks. Default = the number of cores.
    #[must_use]
    pub fn hasher_threads(mut self, threads: usize) -> Self {
        self.hasher_threads = threads.max(1);
        self
    }

    /// Threads reading and verifying blocks for downloads, apart from the block store's
    /// writers, so a read never queues behind a write or a sync. Reads wait on the disk (they
    /// bypass the page cache), so more threads than cores keep every core verifying.
    /// Default = 4.
    #[must_use]
    pub fn block_reader_threads(mut self, threads: usize) -> Self {
        self.block_reader_threads = threads.max(1);
        self
    }

    /// Threads answering metadata queries (downloads, listings, space) from snapshots, apart
    /// from the single metadata writer. Default = 2.
    #[must_use]
    pub fn reader_threads(mut self, threads: usize) -> Self {
        self.reader_threads = threads.max(1);
        self
    }

    /// Most records one metadata batch of a long operation writes: committing a dataset's
    /// leaves, removing a dataset step by step, the start-up check. Smaller batches let other
    /// work in sooner; larger ones sync less often. Default = 4096.
    #[must_use]
    pub fn batch_records(mut self, records: usize) -> Self {
        self.batch_records = records.max(1);
        self
    }

    /// Blocks a download reads ahead of the client, in reads of 16 that run side by side on
    /// the block readers' threads. Default = 64 (4 MiB).
    #[must_use]
    pub fn read_ahead_blocks(mut self, blocks: usize) -> Self {
        self.read_ahead_blocks = blocks.max(1);
        self
    }

    /// Time between two block-maintenance passes. Default = 10 minutes.
    #[must_use]
    pub fn maintenance_interval(mut self, interval: Duration) -> Self {
        self.maintenance_interval = interval;
        self
    }

    /// Most block records one maintenance pass looks at. Default = 1000.
    #[must_use]
    pub fn maintenance_batch(mut self, entries: usize) -> Self {
        self.maintenance_batch = entries.max(1);
        self
    }

    /// Size at which block bytes go to a new segment file. Smaller segments free the space of
    /// deleted data sooner. Default = 1 GiB.
    #[must_use]
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1024 * 1024);
        self
    }

    /// Size of the metadata block cache. Default = 16 MiB.
    #[must_use]
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Take part in the peer-to-peer network (block exchange, discovery) with these settings.
    /// Default = no network: the node is an island, and network operations answer
    /// [`crate::Error::NoNetwork`].
    #[must_use]
    pub fn network(mut self, network: crate::network::NetworkConfig) -> Self {
        self.network = Some(network);
        self
    }

    /// The network settings, if the node takes part in the network.
    pub fn network_config(&self) -> Option<&crate::network::NetworkConfig> {
        self.network.as_ref()
    }

    /// The repository directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }
}
