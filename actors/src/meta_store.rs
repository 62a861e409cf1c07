//! The metadata actor: the only writer of block metadata, leaf records, manifests and counters.
//!
//! It runs on a one-thread `SyncArbiter`, so its messages are applied strictly one after the
//! other, in mailbox order. That is what makes each read-modify-write (refcount, expiry, quota)
//! atomic without locks: nothing else can run between the read and the write. Each message
//! becomes at most one fjall batch, so a crash leaves either all of a message's changes or none.
//!
//! Senders: the upload actor ([`PutBlocks`], [`CommitDataset`], [`ReleaseBlocks`]), the node
//! handle for reads ([`GetManifest`], [`GetLeaves`], [`HasBlock`], [`GetSpace`]).
//!
//! Uploads in progress *pin* their blocks (a count in the block's record, on disk so memory
//! stays flat), so that a concurrent abort, delete or expiry never removes a block another
//! upload is about to reference. The start-up check clears pins left by a crash.

use std::collections::HashMap;

use actix::{Actor, Handler, Message, SyncContext};
use cid::Cid;
use fjall::{Database, Keyspace, OwnedWriteBatch, PersistMode};

mod reads;
mod removal;

pub use reads::{GetLeaves, GetManifest, HasBlock, ListManifests};
pub use removal::{DeleteBlock, DeleteDataset, ExpireBlocks, Expired, Relocate, Removed};

use crate::{
    error::{Error, Result},
    format::{
        cid::{cid_from_digest, Digest, BLOCK_CODEC},
        manifest::{cid_of_encoded, Manifest},
    },
    records::{self, BlockMeta, Counters, LeafRecord},
    segments::BlockBytes,
};

/// Leaf records written per batch when a dataset is committed.
const LEAF_BATCH: usize = 4096;

/// Record that these blocks (already written by the block store) are stored, and pin them for
/// the sending upload. A new block takes quota; if the quota would overflow, nothing of the
/// message is applied.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Placed>>")]
pub struct PutBlocks {
    /// `(cid, size in bytes)` of each block.
    pub blocks: Vec<(Cid, u64)>,
    /// Expiry to give new blocks and to raise existing ones to (unix seconds).
    pub expiry: u64,
}

/// What [`PutBlocks`] did with one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    /// New metadata was created and the size counted against the quota.
    Stored,
    /// The block was known; its expiry was raised.
    AlreadyStored,
    /// The bytes vanished between the write and this message (a concurrent delete); the
    /// sender must write them again. Nothing was pinned.
    BytesMissing,
}

/// Atomically make a dataset visible: its leaf records, refcounts and manifest block in one
/// batch, synced to disk before the reply. Unpins the leaves.
#[derive(Debug, Message)]
#[rtype(result = "Result<Cid>")]
pub struct CommitDataset {
    /// The manifest to store.
    pub manifest: Manifest,
    /// Block digests in tree order (`codex-block` sha2-256 CIDs), all pinned by earlier
    /// [`PutBlocks`]. Digests rather than CIDs: a third of the memory for large datasets.
    pub leaves: Vec<Digest>,
    /// Expiry for the manifest block (unix seconds).
    pub expiry: u64,
}

/// Unpin the blocks of an upload that will not be committed, and remove those that no dataset
/// and no other upload uses (Codex #368: failed uploads must not leave blocks behind).
#[derive(Debug, Message)]
#[rtype(result = "Result<u64>")]
pub struct ReleaseBlocks {
    /// Digest of every block the upload pinned, once per pin.
    pub blocks: Vec<Digest>,
}

/// Repository space figures.
#[derive(Debug, Message)]
#[rtype(result = "Result<Space>")]
pub struct GetSpace;

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

/// Sync everything written so far to disk.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct Persist;

/// The metadata actor; see the module docs.
#[derive(Clone)]
pub struct MetaStore {
    pub(crate) db: Database,
    pub(crate) block_meta: Keyspace,
    pub(crate) leaves: Keyspace,
    pub(crate) manifests: Keyspace,
    /// Tree CID → number of manifests using it (two names for the same content share a tree).
    pub(crate) trees: Keyspace,
    counters_ks: Keyspace,
    /// Removes bytes inside our batches; never used to write.
    pub(crate) bytes: BlockBytes,
    /// In-memory copy of the persisted counters; written back in every batch that changes them.
    pub(crate) counters: Counters,
    /// Quota from the configuration (Codex does not persist it either).
    quota_max: u64,
}

impl MetaStore {
    /// Opens the repository database under `data_dir` and the metadata actor's state.
    pub(crate) fn open_dir(
        data_dir: &std::path::Path,
        quota_max: u64,
        segment_bytes: u64,
        cache_bytes: u64,
    ) -> Result<(Self, BlockBytes)> {
        std::fs::create_dir_all(data_dir)?;
        // An explicit, small block cache: it is the one part of fjall's memory that reads grow.
        let db = Database::builder(data_dir.join("repo"))
            .cache_size(cache_bytes)
            .open()?;
        let bytes = BlockBytes::open(&db, &data_dir.join("blocks"), segment_bytes)?;
        Ok((Self::open(db, bytes.clone(), quota_max)?, bytes))
    }

    /// Opens the metadata keyspaces in `db` and loads the counters.
    pub(crate) fn open(db: Database, bytes: BlockBytes, quota_max: u64) -> Result<Self> {
        let ks = |name: &str| db.keyspace(name, records::keyspace_options);
        let (block_meta, leaves, manifests, trees, counters_ks) = (
            ks(records::BLOCK_META)?,
            ks(records::LEAVES)?,
            ks(records::MANIFESTS)?,
            ks(records::TREES)?,
            ks(records::COUNTERS)?,
        );
        let counters = match counters_ks.get(records::COUNTERS_KEY)? {
            Some(v) => records::decode(&v)?,
            None => Counters::default(),
        };
        Ok(Self {
            db,
            block_meta,
            leaves,
            manifests,
            trees,
            counters_ks,
            bytes,
            counters,
            quota_max,
        })
    }

    pub(crate) fn meta(
        &self,
        pending: &HashMap<Cid, Option<BlockMeta>>,
        cid: &Cid,
    ) -> Result<Option<BlockMeta>> {
        if let Some(m) = pending.get(cid) {
            return Ok(*m);
        }
        match self.block_meta.get(cid.to_bytes())? {
            Some(v) => Ok(Some(records::decode(&v)?)),
            None => Ok(None),
        }
    }

    /// Adds `size` bytes and one block to `counters`, refusing to pass the quota.
    pub(crate) fn take_quota(&self, counters: &mut Counters, size: u64) -> Result<()> {
        let after = counters
            .quota_used
            .saturating_add(counters.quota_reserved)
            .saturating_add(size);
        if after > self.quota_max {
            return Err(Error::QuotaExceeded {
                used: counters.quota_used,
                reserved: counters.quota_reserved,
                max: self.quota_max,
                needed: size,
            });
        }
        counters.quota_used += size;
        counters.total_blocks += 1;
        Ok(())
    }

    /// Writes `pending` metadata and `counters` into `batch` and commits it.
    pub(crate) fn commit(
        &mut self,
        mut batch: OwnedWriteBatch,
        pending: HashMap<Cid, Option<BlockMeta>>,
        counters: Counters,
    ) -> Result<()> {
        for (cid, meta) in pending {
            match meta {
                Some(m) => batch.insert(&self.block_meta, cid.to_bytes(), records::encode(&m)?),
                None => batch.remove(&self.block_meta, cid.to_bytes()),
            }
        }
        batch.insert(
            &self.counters_ks,
            records::COUNTERS_KEY,
            records::encode(&counters)?,
        );
        batch.commit()?;
        self.counters = counters;
        Ok(())
    }

    /// [`PutBlocks`]; when it fails (quota), the bytes of its blocks that have no metadata
    /// are removed again, so a refused write leaves nothing on disk either.
    pub(crate) fn put_blocks(&mut self, msg: PutBlocks) -> Result<Vec<Placed>> {
        let result = self.try_put_blocks(&msg);
        if result.is_err() {
            let mut batch = self.db.batch();
            let mut released = Vec::new();
            for (cid, _) in &msg.blocks {
                if self.block_meta.get(cid.to_bytes())?.is_none() {
                    released.extend(self.bytes.remove_in(&mut batch, cid)?);
                }
            }
            batch.commit()?;
            self.bytes.released(&released);
        }
        result
    }

    fn try_put_blocks(&mut self, msg: &PutBlocks) -> Result<Vec<Placed>> {
        let mut pending = HashMap::new();
        let mut counters = self.counters;
        let mut placed = Vec::with_capacity(msg.blocks.len());
        for (cid, size) in &msg.blocks {
            let outcome = match self.meta(&pending, cid)? {
                Some(mut m) if m.size == *size => {
                    m.expiry = m.expiry.max(msg.expiry);
                    m.pins += 1;
                    pending.insert(*cid, Some(m));
                    Placed::AlreadyStored
                }
                Some(_) => return Err(Error::Corrupted(*cid)),
                None if !self.bytes.contains(cid)? => Placed::BytesMissing,
                None => {
                    self.take_quota(&mut counters, *size)?;
                    pending.insert(
                        *cid,
                        Some(BlockMeta {
                            expiry: msg.expiry,
                            size: *size,
                            ref_count: 0,
                            pins: 1,
                        }),
                    );
                    Placed::Stored
                }
            };
            placed.push(outcome);
        }
        self.commit(self.db.batch(), pending, counters)?;
        Ok(placed)
    }

    pub(crate) fn commit_dataset(&mut self, msg: CommitDataset) -> Result<Cid> {
        let tree = msg.manifest.tree_cid;
        let encoded = msg.manifest.encode();
        let manifest_cid = cid_of_encoded(&encoded);
        let size = encoded.len() as u64;
        let mut counters = self.counters;
        let manifest_meta = match self.meta(&HashMap::new(), &manifest_cid)? {
            Some(mut m) => {
                m.expiry = m.expiry.max(msg.expiry);
                m
            }
            None => {
                // Checked before any leaf is written, so the final batch cannot fail on quota.
                self.take_quota(&mut counters, size)?;
                BlockMeta {
                    expiry: msg.expiry,
                    size,
                    ref_count: 0,
                    pins: 0,
                }
            }
        };
        // Leaf records and refcounts go in bounded batches, so memory stays flat however large
        // the dataset. They stay invisible until the final batch below adds the manifest and
        // the tree's user count; after a crash in between, the start-up check removes leaves
        // of trees that no manifest uses.
        for (chunk_no, chunk) in msg.leaves.chunks(LEAF_BATCH).enumerate() {
            let mut batch = self.db.batch();
            let mut pending = HashMap::new();
            let first = (chunk_no * LEAF_BATCH) as u64;
            for (index, digest) in (first..).zip(chunk) {
                let cid = &cid_from_digest(BLOCK_CODEC, digest);
                let key = records::leaf_key(&tree, index);
                let mut meta = self.meta(&pending, cid)?.ok_or(Error::NotFound(*cid))?;
                meta.pins = meta.pins.saturating_sub(1); // the upload's hold becomes a reference
                let known = self.leaves.contains_key(&key)?;
                if !known {
                    meta.ref_count += 1;
                }
                pending.insert(*cid, Some(meta));
                if known {
                    continue; // same content stored before: the leaf already counts once
                }
                batch.insert(
                    &self.leaves,
                    key,
                    records::encode(&LeafRecord {
                        block_cid: cid.to_bytes(),
                    })?,
                );
            }
            self.commit(batch, pending, self.counters)?;
        }
        let mut batch = self.db.batch();
        if !self.manifests.contains_key(manifest_cid.to_bytes())? {
            let users = self.tree_users(&tree)? + 1;
            batch.insert(&self.trees, tree.to_bytes(), records::encode(&users)?);
        }
        batch.insert(&self.manifests, manifest_cid.to_bytes(), encoded);
        self.commit(
            batch,
            HashMap::from([(manifest_cid, Some(manifest_meta))]),
            counters,
        )?;
        // The reply promises durability: sync the journal before answering.
        self.db.persist(PersistMode::SyncAll)?;
        Ok(manifest_cid)
    }

    /// Manifests that use `tree`.
    pub(crate) fn tree_users(&self, tree: &Cid) -> Result<u64> {
        match self.trees.get(tree.to_bytes())? {
            Some(v) => records::decode(&v),
            None => Ok(0),
        }
    }

    fn space(&self) -> Space {
        Space {
            total_blocks: self.counters.total_blocks,
            quota_max_bytes: self.quota_max,
            quota_used_bytes: self.counters.quota_used,
            quota_reserved_bytes: self.counters.quota_reserved,
        }
    }
}

impl Actor for MetaStore {
    type Context = SyncContext<Self>;
}

impl Handler<PutBlocks> for MetaStore {
    type Result = Result<Vec<Placed>>;
    fn handle(&mut self, msg: PutBlocks, _: &mut Self::Context) -> Self::Result {
        self.put_blocks(msg)
    }
}

impl Handler<CommitDataset> for MetaStore {
    type Result = Result<Cid>;
    fn handle(&mut self, msg: CommitDataset, _: &mut Self::Context) -> Self::Result {
        self.commit_dataset(msg)
    }
}

impl Handler<ReleaseBlocks> for MetaStore {
    type Result = Result<u64>;
    fn handle(&mut self, msg: ReleaseBlocks, _: &mut Self::Context) -> Self::Result {
        self.release_blocks(&msg.blocks)
    }
}

impl Handler<GetSpace> for MetaStore {
    type Result = Result<Space>;
    fn handle(&mut self, _: GetSpace, _: &mut Self::Context) -> Self::Result {
        Ok(self.space())
    }
}

impl Handler<Persist> for MetaStore {
    type Result = Result<()>;
    fn handle(&mut self, _: Persist, _: &mut Self::Context) -> Self::Result {
        Ok(self.db.persist(PersistMode::SyncAll)?)
    }
}
