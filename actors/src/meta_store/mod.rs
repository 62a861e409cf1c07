//! The metadata actor: the only writer of block records, leaf records, tree nodes, manifests and
//! counters (everything in fjall).
//!
//! It runs on a one-thread `SyncArbiter`, so its messages are applied strictly one after the
//! other, in mailbox order. That is what makes each read-modify-write (refcount, expiry, quota)
//! atomic without locks: nothing else can run between the read and the write. Each batch is
//! atomic: a crash leaves either all of it or none.
//!
//! It never waits for the disk: committing a batch writes fjall's journal, and making it durable
//! is the [`Journal`] actor's job ([`SyncMeta`], one fsync for every commit made before it). An
//! acknowledgement (200, 204, a finished maintenance step) is sent only after that sync, and
//! bytes a removal frees are handed back to the block store only after it too.
//! Reads do not come here at all: the [`crate::meta_reader`] pool serves them from snapshots,
//! so a download never queues behind a writer.
//!
//! Senders: the upload pipeline ([`PutBlocks`], [`CommitDataset`], [`ReleaseBlocks`]), removals
//! and maintenance (`removal.rs`: [`DeleteDataset`], [`DropTree`], [`DeleteBlock`],
//! [`ExpireBlocks`], [`Relocate`]).
//!
//! Uploads in progress *pin* their blocks (a count in the block's record, on disk so memory
//! stays flat), so that a concurrent abort, delete or expiry never removes a block another
//! upload is about to reference. The start-up check clears pins left by a crash.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use actix::{Actor, Handler, Message, SyncContext};
use cid::Cid;
use fjall::{Database, Keyspace, OwnedWriteBatch};

mod commit;
mod fetching;
mod journal;
mod removal;
#[cfg(test)]
pub(crate) mod test_dataset;

pub use commit::CommitDataset;
pub use fetching::{BeginFetch, FetchProgress, Fetched, FetchedBlock, StoreFetched};
pub use journal::{Journal, SyncMeta};
pub use removal::{
    DeleteBlock, DeleteDataset, Deletion, DropTree, ExpireBlocks, Expired, Freed, Relocate, Removed,
};

use crate::{
    error::{Error, Result},
    format::cid::{cid_from_digest, Digest, BLOCK_CODEC},
    records::{self, BlockMeta, Counters, Location},
};

/// Record blocks the block store has written (or that are already stored), pin them for the
/// sending upload, and raise their expiry. A new block takes quota; if the quota would
/// overflow, nothing of the message is applied (the caller then releases what it wrote).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Placed>>")]
pub struct PutBlocks {
    /// The blocks, in the upload's order (a block may appear several times).
    pub blocks: Vec<NewBlock>,
    /// Expiry to give new blocks and to raise existing ones to (unix seconds).
    pub expiry: u64,
}

/// One block of a [`PutBlocks`].
#[derive(Debug, Clone, Copy)]
pub struct NewBlock {
    /// The block's CID.
    pub cid: Cid,
    /// Its size in bytes (the padded block).
    pub size: u64,
    /// Where the block store just wrote it; `None` when the caller found it already stored
    /// and did not write it.
    pub location: Option<Location>,
}

/// What [`PutBlocks`] did with one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// A new record was created and the size counted against the quota.
    Stored,
    /// The block was known; its expiry was raised. If the caller wrote a copy anyway (another
    /// upload stored the same block meanwhile), that copy is `garbage`: release it.
    AlreadyStored {
        /// The caller's now useless copy.
        garbage: Option<Location>,
    },
    /// The caller did not write the block because it was stored, but it was removed since
    /// (a concurrent delete); nothing was pinned: write it and send it again.
    BytesMissing,
}

/// Unpin the blocks of an upload that will not be committed, and remove those that no dataset
/// and no other upload uses (Codex #368: failed uploads must not leave blocks behind).
/// Replies with what was freed; the caller syncs, then releases the bytes.
#[derive(Debug, Message)]
#[rtype(result = "Result<Freed>")]
pub struct ReleaseBlocks {
    /// Digest of every block the upload pinned, once per pin.
    pub blocks: Vec<Digest>,
}

/// Codex's `/space` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Blocks stored (data blocks and manifests).
    pub total_blocks: u64,
    /// The configured quota.
    pub quota_max_bytes: u64,
    /// Bytes used by stored blocks.
    pub quota_used_bytes: u64,
    /// Bytes reserved (always 0 on this node).
    pub quota_reserved_bytes: u64,
}

/// The fjall database and its keyspaces (see [`crate::records`]), shared by the writer, the
/// journal syncer and the readers. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Keyspaces {
    pub(crate) db: Database,
    pub(crate) block_meta: Keyspace,
    pub(crate) leaves: Keyspace,
    pub(crate) tree_nodes: Keyspace,
    pub(crate) manifests: Keyspace,
    /// Tree CID → number of manifests using it (two names for the same content share a tree).
    pub(crate) trees: Keyspace,
    pub(crate) deleting: Keyspace,
    pub(crate) fetching: Keyspace,
    pub(crate) counters: Keyspace,
}

impl Keyspaces {
    /// Opens (creating) the repository database under `data_dir`.
    pub(crate) fn open(data_dir: &std::path::Path, cache_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        // An explicit, small block cache: it is the one part of fjall's memory that reads grow.
        let db = Database::builder(data_dir.join("repo"))
            .cache_size(cache_bytes)
            .open()?;
        let ks = |name: &str| db.keyspace(name, records::keyspace_options);
        Ok(Self {
            block_meta: ks(records::BLOCK_META)?,
            leaves: ks(records::LEAVES)?,
            tree_nodes: ks(records::TREE_NODES)?,
            manifests: ks(records::MANIFESTS)?,
            trees: ks(records::TREES)?,
            deleting: ks(records::DELETING)?,
            fetching: ks(records::FETCHING)?,
            counters: ks(records::COUNTERS)?,
            db,
        })
    }

    /// The persisted counters.
    pub(crate) fn counters(&self) -> Result<Counters> {
        match self.counters.get(records::COUNTERS_KEY)? {
            Some(v) => records::decode(&v),
            None => Ok(Counters::default()),
        }
    }
}

/// The metadata actor; see the module docs.
#[derive(Clone)]
pub struct MetaStore {
    pub(crate) ks: Keyspaces,
    /// In-memory copy of the persisted counters; written back in every batch that changes them.
    pub(crate) counters: Counters,
    /// Quota from the configuration (Codex does not persist it either).
    quota_max: u64,
    /// Batches committed so far, for the [`Journal`]'s group commit.
    committed: Arc<AtomicU64>,
    /// Most records one batch of a long operation (commit, tree removal, repair) writes, so
    /// that memory stays flat and other messages get their turn.
    pub(crate) batch_records: usize,
}

impl MetaStore {
    /// The writer over `ks`, with counters loaded.
    pub(crate) fn new(
        ks: Keyspaces,
        quota_max: u64,
        committed: Arc<AtomicU64>,
        batch_records: usize,
    ) -> Result<Self> {
        let counters = ks.counters()?;
        Ok(Self {
            ks,
            counters,
            quota_max,
            committed,
            batch_records: batch_records.max(1),
        })
    }

    /// The record of `cid`: from `pending` (this message's changes so far) or the store.
    pub(crate) fn meta(
        &self,
        pending: &HashMap<Cid, Option<BlockMeta>>,
        cid: &Cid,
    ) -> Result<Option<BlockMeta>> {
        if let Some(m) = pending.get(cid) {
            return Ok(*m);
        }
        match self.ks.block_meta.get(cid.to_bytes())? {
            Some(v) => Ok(Some(records::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Adds `size` bytes and one block to `counters`, refusing to pass the quota.
    pub(crate) fn take_quota(&self, counters: &mut Counters, size: u64) -> Result<()> {
        self.check_quota(counters, size)?;
        counters.quota_used += size;
        counters.total_blocks += 1;
        Ok(())
    }

    /// `QuotaExceeded` unless `needed` more bytes fit beside what is used and reserved.
    pub(crate) fn check_quota(&self, counters: &Counters, needed: u64) -> Result<()> {
        let after = counters
            .quota_used
            .saturating_add(counters.quota_reserved)
            .saturating_add(needed);
        if after > self.quota_max {
            return Err(Error::QuotaExceeded {
                used: counters.quota_used,
                reserved: counters.quota_reserved,
                max: self.quota_max,
                needed,
            });
        }
        Ok(())
    }

    /// Writes `pending` records and `counters` into `batch` and commits it (not synced).
    pub(crate) fn commit(
        &mut self,
        mut batch: OwnedWriteBatch,
        pending: HashMap<Cid, Option<BlockMeta>>,
        counters: Counters,
    ) -> Result<()> {
        for (cid, meta) in pending {
            match meta {
                Some(m) => batch.insert(&self.ks.block_meta, cid.to_bytes(), records::encode(&m)?),
                None => batch.remove(&self.ks.block_meta, cid.to_bytes()),
            }
        }
        if counters != self.counters {
            batch.insert(
                &self.ks.counters,
                records::COUNTERS_KEY,
                records::encode(&counters)?,
            );
        }
        batch.commit()?;
        self.counters = counters;
        self.committed.fetch_add(1, Ordering::Release);
        Ok(())
    }

    pub(crate) fn put_blocks(&mut self, msg: &PutBlocks) -> Result<Vec<Placed>> {
        let mut pending = HashMap::new();
        let mut counters = self.counters;
        let mut placed = Vec::with_capacity(msg.blocks.len());
        // A copy written once for a block repeated in the batch is garbage once, not once per
        // repetition: releasing it twice would undercount its segment's live bytes and get
        // the segment deleted while other blocks in it are still in use.
        let mut reported: HashSet<Location> = HashSet::new();
        for b in &msg.blocks {
            let outcome = match self.meta(&pending, &b.cid)? {
                Some(mut m) if m.size == b.size => {
                    m.expiry = m.expiry.max(msg.expiry);
                    m.pins += 1;
                    pending.insert(b.cid, Some(m));
                    // The same copy twice in one message (a block repeated in a batch) is
                    // the stored copy, not garbage.
                    let garbage = b
                        .location
                        .filter(|l| Some(*l) != m.location && reported.insert(*l));
                    Placed::AlreadyStored { garbage }
                }
                Some(_) => return Err(Error::Corrupted(b.cid)),
                None => match b.location {
                    None => Placed::BytesMissing,
                    Some(location) => {
                        self.take_quota(&mut counters, b.size)?;
                        let meta = BlockMeta {
                            expiry: msg.expiry,
                            size: b.size,
                            ref_count: 0,
                            pins: 1,
                            location: Some(location),
                        };
                        pending.insert(b.cid, Some(meta));
                        Placed::Stored
                    }
                },
            };
            placed.push(outcome);
        }
        self.commit(self.ks.db.batch(), pending, counters)?;
        Ok(placed)
    }

    /// Manifests that use `tree`.
    pub(crate) fn tree_users(&self, tree: &Cid) -> Result<u64> {
        match self.ks.trees.get(tree.to_bytes())? {
            Some(v) => records::decode(&v),
            None => Ok(0),
        }
    }

    /// The digest of a block CID as a `codex-block` CID (leaves are stored as digests).
    pub(crate) fn block_of(digest: &Digest) -> Cid {
        cid_from_digest(BLOCK_CODEC, digest)
    }
}

impl Actor for MetaStore {
    type Context = SyncContext<Self>;
}

impl Handler<PutBlocks> for MetaStore {
    type Result = Result<Vec<Placed>>;
    fn handle(&mut self, msg: PutBlocks, _: &mut Self::Context) -> Self::Result {
        self.put_blocks(&msg)
    }
}

impl Handler<ReleaseBlocks> for MetaStore {
    type Result = Result<Freed>;
    fn handle(&mut self, msg: ReleaseBlocks, _: &mut Self::Context) -> Self::Result {
        self.release_blocks(&msg.blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cid::block_cid;

    fn store(dir: &std::path::Path) -> Result<MetaStore> {
        MetaStore::new(
            Keyspaces::open(dir, 8 << 20)?,
            u64::MAX,
            Default::default(),
            4096,
        )
    }

    fn at(offset: u64) -> Location {
        Location {
            segment: 0,
            offset,
            len: 65536,
            checksum: None,
        }
    }

    /// A block repeated in one batch, written once by an upload that raced with another upload
    /// of the same block: its one useless copy is reported once.
    #[test]
    fn a_repeated_block_copy_is_garbage_once() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut meta = store(dir.path())?;
        let cid = block_cid(b"pool block");
        let first = PutBlocks {
            blocks: vec![NewBlock {
                cid,
                size: 65536,
                location: Some(at(0)),
            }],
            expiry: 1,
        };
        assert_eq!(meta.put_blocks(&first)?, vec![Placed::Stored]);
        let copy = NewBlock {
            cid,
            size: 65536,
            location: Some(at(70_000)),
        };
        let racing = PutBlocks {
            blocks: vec![copy, copy],
            expiry: 1,
        };
        let placed = meta.put_blocks(&racing)?;
        let garbage: Vec<Location> = placed
            .iter()
            .filter_map(|p| match p {
                Placed::AlreadyStored { garbage } => *garbage,
                _ => None,
            })
            .collect();
        assert_eq!(garbage, vec![at(70_000)]);
        Ok(())
    }
}
