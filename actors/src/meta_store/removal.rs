//! The metadata actor's removals: deleting a dataset, deleting a single block, and expiring
//! blocks for the maintenance actor. Same rules as every other message: one batch each, applied
//! in mailbox order.
//!
//! Unlike Codex, a block a live dataset needs is never removed (its #1291), an expired manifest
//! takes its whole dataset with it (leaf records included), and blocks pinned by an upload in
//! progress are left alone.

use std::collections::HashMap;

use actix::{Handler, Message};
use cid::Cid;

use super::MetaStore;
use crate::{
    error::{Error, Result},
    format::{
        cid::{cid_from_digest, Digest, BLOCK_CODEC, MANIFEST_CODEC},
        manifest::Manifest,
    },
    records::{self, BlockMeta, LeafRecord},
    segments::{Location, Move},
};

/// Delete a dataset: its manifest, and — when no other manifest shares its tree — its leaf
/// records, and every block no other dataset uses. Absent manifests are not an error.
#[derive(Debug, Message)]
#[rtype(result = "Result<Removed>")]
pub struct DeleteDataset {
    /// The manifest CID.
    pub cid: Cid,
}

/// Delete one block that no dataset uses (Codex refuses to delete a block in use).
#[derive(Debug, Message)]
#[rtype(result = "Result<Removed>")]
pub struct DeleteBlock {
    /// The block CID.
    pub cid: Cid,
}

/// Point the block index at blocks that compaction copied, where it still points at the
/// originals. Replies with the number of blocks moved.
#[derive(Debug, Message)]
#[rtype(result = "Result<u64>")]
pub struct Relocate {
    /// The copies made by the block store.
    pub moves: Vec<Move>,
}

/// What a removal freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Blocks removed (manifest included).
    pub blocks: u64,
    /// Bytes given back to the quota.
    pub bytes: u64,
}

/// One maintenance step: look at up to `limit` block records after `after` and remove what has
/// expired by `now`.
#[derive(Debug, Message)]
#[rtype(result = "Result<Expired>")]
pub struct ExpireBlocks {
    /// Unix seconds; records with `expiry < now` are expired.
    pub now: u64,
    /// Resume after this key (the previous step's `next`), or from the start.
    pub after: Option<Vec<u8>>,
    /// Most records to look at.
    pub limit: usize,
}

/// The result of an [`ExpireBlocks`] step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Where the next step resumes; `None` once the scan reached the end.
    pub next: Option<Vec<u8>>,
    /// Datasets whose manifest expired, deleted whole.
    pub datasets: u64,
    /// Everything removed.
    pub removed: Removed,
}

/// Pending changes of one removal batch.
struct Removal {
    batch: fjall::OwnedWriteBatch,
    pending: HashMap<Cid, Option<BlockMeta>>,
    counters: records::Counters,
    released: Vec<Location>,
    removed: Removed,
}

impl MetaStore {
    fn removal(&self) -> Removal {
        Removal {
            batch: self.db.batch(),
            pending: HashMap::new(),
            counters: self.counters,
            released: Vec::new(),
            removed: Removed::default(),
        }
    }

    /// Commits the removal; `durable` syncs the journal before the reply (a 204 means the
    /// deletion survives a crash, as a 200 means an upload does).
    fn finish(&mut self, r: Removal, durable: bool) -> Result<Removed> {
        let changed = !r.pending.is_empty();
        self.commit(r.batch, r.pending, r.counters)?;
        if durable && changed {
            self.db.persist(fjall::PersistMode::SyncAll)?;
        }
        self.bytes.released(&r.released);
        Ok(r.removed)
    }

    /// Unpins an abandoned upload's blocks and drops those nothing else uses. Not synced: a
    /// crash before the next sync only leaves what the start-up check removes anyway.
    pub(super) fn release_blocks(&mut self, blocks: &[Digest]) -> Result<u64> {
        let mut r = self.removal();
        for digest in blocks {
            let cid = &cid_from_digest(BLOCK_CODEC, digest);
            let Some(mut m) = self.meta(&r.pending, cid)? else {
                continue;
            };
            m.pins = m.pins.saturating_sub(1);
            if m.unused() {
                self.drop_block(&mut r, cid, &m)?;
            } else {
                r.pending.insert(*cid, Some(m));
            }
        }
        Ok(self.finish(r, false)?.bytes)
    }

    /// Drops the block's metadata and bytes into the removal.
    fn drop_block(&self, r: &mut Removal, cid: &Cid, meta: &BlockMeta) -> Result<()> {
        if cid.codec() == BLOCK_CODEC {
            r.released.extend(self.bytes.remove_in(&mut r.batch, cid)?);
        }
        r.pending.insert(*cid, None);
        r.counters.quota_used = r.counters.quota_used.saturating_sub(meta.size);
        r.counters.total_blocks = r.counters.total_blocks.saturating_sub(1);
        r.removed.blocks += 1;
        r.removed.bytes += meta.size;
        Ok(())
    }

    /// Adds the deletion of dataset `cid` to `r`; false when there is no such manifest.
    fn remove_dataset(&self, r: &mut Removal, cid: &Cid) -> Result<bool> {
        let Some(encoded) = self.manifests.get(cid.to_bytes())? else {
            return Ok(false);
        };
        r.batch.remove(&self.manifests, cid.to_bytes());
        if let Some(meta) = self.meta(&r.pending, cid)? {
            self.drop_block(r, cid, &meta)?;
        }
        // An unreadable manifest still goes; its tree cannot be found, the start-up check and
        // expiry take care of blocks left without references.
        let Ok(manifest) = Manifest::decode(&encoded) else {
            return Ok(true);
        };
        let tree = manifest.tree_cid;
        let users = self.tree_users(&tree)?;
        if users > 1 {
            r.batch
                .insert(&self.trees, tree.to_bytes(), records::encode(&(users - 1))?);
            return Ok(true);
        }
        r.batch.remove(&self.trees, tree.to_bytes());
        for index in 0..manifest.blocks_count() {
            let key = records::leaf_key(&tree, index);
            let Some(value) = self.leaves.get(&key)? else {
                continue;
            };
            r.batch.remove(&self.leaves, key);
            let leaf: LeafRecord = records::decode(&value)?;
            let Ok(block) = Cid::try_from(leaf.block_cid.as_slice()) else {
                continue;
            };
            let Some(mut meta) = self.meta(&r.pending, &block)? else {
                continue;
            };
            meta.ref_count = meta.ref_count.saturating_sub(1);
            if meta.unused() {
                self.drop_block(r, &block, &meta)?;
            } else {
                r.pending.insert(block, Some(meta));
            }
        }
        Ok(true)
    }

    fn delete_dataset(&mut self, cid: Cid) -> Result<Removed> {
        let mut r = self.removal();
        if cid.codec() != MANIFEST_CODEC || !self.remove_dataset(&mut r, &cid)? {
            return Ok(Removed::default());
        }
        self.finish(r, true)
    }

    fn delete_block(&mut self, cid: Cid) -> Result<Removed> {
        let mut r = self.removal();
        let Some(meta) = self.meta(&r.pending, &cid)? else {
            return Ok(Removed::default());
        };
        if !meta.unused() || cid.codec() != BLOCK_CODEC {
            return Err(Error::BlockInUse(cid));
        }
        self.drop_block(&mut r, &cid, &meta)?;
        self.finish(r, true)
    }

    fn expire(&mut self, msg: ExpireBlocks) -> Result<Expired> {
        let mut r = self.removal();
        let mut out = Expired::default();
        let mut seen = 0;
        let range = match &msg.after {
            Some(after) => self.block_meta.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_slice()),
                std::ops::Bound::Unbounded,
            )),
            None => self.block_meta.iter(),
        };
        let mut expired = Vec::new();
        for guard in range.take(msg.limit) {
            let (key, value) = guard.into_inner()?;
            seen += 1;
            out.next = Some(key.to_vec());
            let meta: BlockMeta = records::decode(&value)?;
            if meta.expiry < msg.now {
                if let Ok(cid) = Cid::try_from(key.as_ref()) {
                    expired.push((cid, meta));
                }
            }
        }
        if seen < msg.limit {
            out.next = None;
        }
        for (cid, meta) in expired {
            if cid.codec() == MANIFEST_CODEC {
                if self.remove_dataset(&mut r, &cid)? {
                    out.datasets += 1;
                }
            } else if r.pending.get(&cid).is_none_or(Option::is_some) {
                // Skip blocks a dataset removal above already dropped or still references.
                let current = self.meta(&r.pending, &cid)?.unwrap_or(meta);
                if current.unused() {
                    self.drop_block(&mut r, &cid, &current)?;
                }
            }
        }
        out.removed = self.finish(r, true)?;
        Ok(out)
    }
}

impl Handler<Relocate> for MetaStore {
    type Result = Result<u64>;
    fn handle(&mut self, msg: Relocate, _: &mut Self::Context) -> Self::Result {
        let mut batch = self.db.batch();
        let (mut moved, mut dead) = (Vec::new(), Vec::new());
        for mv in &msg.moves {
            if self.bytes.relocate_in(&mut batch, mv)? {
                moved.push(mv.from);
            } else {
                dead.push(mv.to); // deleted or stored anew meanwhile: the copy is garbage
            }
        }
        batch.commit()?;
        self.bytes.released(&moved);
        self.bytes.released(&dead);
        Ok(moved.len() as u64)
    }
}

impl Handler<DeleteDataset> for MetaStore {
    type Result = Result<Removed>;
    fn handle(&mut self, msg: DeleteDataset, _: &mut Self::Context) -> Self::Result {
        self.delete_dataset(msg.cid)
    }
}

impl Handler<DeleteBlock> for MetaStore {
    type Result = Result<Removed>;
    fn handle(&mut self, msg: DeleteBlock, _: &mut Self::Context) -> Self::Result {
        self.delete_block(msg.cid)
    }
}

impl Handler<ExpireBlocks> for MetaStore {
    type Result = Result<Expired>;
    fn handle(&mut self, msg: ExpireBlocks, _: &mut Self::Context) -> Self::Result {
        self.expire(msg)
    }
}
