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

/// How a node is set up: plain data, like the network's configuration ([`crate::NetworkConfig`]).
/// Start from [`Config::new`], which sets every default (named above), and change fields with
/// struct update syntax: `Config { quota_max_bytes: 1 << 30, ..Config::new(dir) }`. Counts of
/// threads, blocks and records below 1 are taken as 1, and segments are at least 1 MiB.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repository directory (created if missing).
    pub data_dir: PathBuf,
    /// Most bytes the repository may hold, padded blocks and manifests included.
    /// Default = 20 GiB.
    pub quota_max_bytes: u64,
    /// How long a stored block lives unless a dataset refers to it. Zero means "never expire"
    /// (Codex's help text promises this; its code expires at once, its #508). Default = 30 days.
    pub block_ttl: Duration,
    /// Blocks an upload sends per message to the block store and metadata actor (the hasher
    /// gets them in parts of 16, all at once). Every message wakes a thread: larger batches
    /// cost less CPU (1.2 against 1.05 CPU-seconds per GiB for 16 and 64 blocks, see
    /// benches/README.md). Default = 64 (4 MiB).
    pub upload_batch_blocks: usize,
    /// Batches of one upload that may be hashed and stored at once. This bounds an upload's
    /// memory to about `(window + 1) × batch × 64 KiB` (20 MiB by default). Direct writes
    /// are faster from memory the CPU touched recently, so a larger window does not make
    /// uploads faster (8 was no faster than 4, benches/README.md). Default = 4.
    pub upload_window_batches: u32,
    /// Threads hashing blocks. Default = the number of cores.
    pub hasher_threads: usize,
    /// Threads writing and syncing block bytes and compacting. Default = 2.
    pub block_store_threads: usize,
    /// Threads reading and verifying blocks for downloads, apart from the block store's
    /// writers, so a read never queues behind a write or a sync. Reads wait on the disk (they
    /// bypass the page cache), so more threads than cores keep every core verifying.
    /// Default = 4.
    pub block_reader_threads: usize,
    /// Threads answering metadata queries (downloads, listings, space) from snapshots, apart
    /// from the single metadata writer. Default = 2.
    pub reader_threads: usize,
    /// Most records one metadata batch of a long operation writes: committing a dataset's
    /// leaves, removing a dataset step by step, the start-up check. Smaller batches let other
    /// work in sooner; larger ones sync less often. Default = 4096.
    pub batch_records: usize,
    /// Blocks a download reads ahead of the client, in reads of 16 that run side by side on
    /// the block readers' threads. Default = 64 (4 MiB).
    pub read_ahead_blocks: usize,
    /// Time between two block-maintenance passes. Default = 10 minutes.
    pub maintenance_interval: Duration,
    /// Most block records one maintenance pass looks at. Default = 1000.
    pub maintenance_batch: usize,
    /// Size at which block bytes go to a new segment file. Smaller segments free the space of
    /// deleted data sooner. Default = 1 GiB.
    pub segment_bytes: u64,
    /// Size of the metadata block cache. Default = 16 MiB.
    pub cache_bytes: u64,
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
            read_ahead_blocks: 64, /* 4 MiB read ahead per download */
            maintenance_interval: DEFAULT_MAINTENANCE_INTERVAL,
            maintenance_batch: DEFAULT_MAINTENANCE_BATCH,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            cache_bytes: 16 * 1024 * 1024, /* 16 MiB */
        }
    }

    /// The same configuration with every count at least 1 and segments at least 1 MiB: what
    /// the node runs with.
    pub(crate) fn normalized(mut self) -> Self {
        for n in [
            &mut self.upload_batch_blocks,
            &mut self.hasher_threads,
            &mut self.block_store_threads,
            &mut self.block_reader_threads,
            &mut self.reader_threads,
            &mut self.batch_records,
            &mut self.read_ahead_blocks,
            &mut self.maintenance_batch,
        ] {
            *n = (*n).max(1);
        }
        self.upload_window_batches = self.upload_window_batches.max(1);
        self.segment_bytes = self.segment_bytes.max(1024 * 1024);
        self
    }
}
