//! The metadata actor's removals: deleting a dataset, deleting a single block, expiring blocks
//! for the maintenance actor, releasing an abandoned upload, and pointing records at blocks
//! that compaction moved. Same rules as every other message: one batch each, applied in
//! mailbox order. Blocks held by an upload in progress are left alone.
//!
//! A dataset goes in steps so that a large one never holds the single writer for long: the
//! first batch removes its manifest (from then on it is gone for every reader) and, when no
//! other manifest shares the tree, marks the tree as being deleted; then each [`DropTree`]
//! removes a bounded run of its leaves (dropping blocks nothing else uses) and finally its tree
//! nodes. A crash in between is finished by the start-up check. Every reply lists the bytes
//! freed ([`Freed::released`]); the caller syncs the journal, then hands them to the block
//! store, so no segment file is deleted before the records that stopped pointing into it are
//! durable.

use std::collections::HashMap;

use actix::{Handler, Message};
use cid::Cid;

use super::MetaStore;
use crate::{
    block_store::Move,
    error::{Error, Result},
    format::{
        cid::{Digest, BLOCK_CODEC, MANIFEST_CODEC},
        manifest::Manifest,
    },
    records::{self, BlockMeta, Deleting, LeafRecord, Location},
};

/// Delete a dataset: its manifest at once, and — when no other manifest shares its tree — mark
/// the tree for [`DropTree`]. Absent manifests are not an error.
#[derive(Debug, Message)]
#[rtype(result = "Result<Deletion>")]
pub struct DeleteDataset {
    /// The manifest CID.
    pub cid: Cid,
}

/// Remove the next bounded run of a marked tree's leaves (and the blocks nothing else uses),
/// then its tree nodes. Send again while the reply's `tree` is set.
#[derive(Debug, Message)]
#[rtype(result = "Result<Deletion>")]
pub struct DropTree {
    /// The tree being deleted.
    pub tree: Cid,
}

/// Delete one block that no dataset uses (Codex refuses to delete a block in use).
#[derive(Debug, Message)]
#[rtype(result = "Result<Deletion>")]
pub struct DeleteBlock {
    /// The block CID.
    pub cid: Cid,
}

/// Point block records at the copies compaction made, where they still point at the
/// originals. Replies with the number moved and the locations now dead (the originals, and
/// copies of blocks deleted or rewritten meanwhile).
#[derive(Debug, Message)]
#[rtype(result = "Result<(u64, Vec<Location>)>")]
pub struct Relocate {
    /// The copies made by the block store.
    pub moves: Vec<Move>,
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

/// What a removal freed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    /// Blocks removed (manifest included).
    pub blocks: u64,
    /// Bytes given back to the quota.
    pub bytes: u64,
}

impl std::ops::AddAssign for Removed {
    fn add_assign(&mut self, other: Self) {
        self.blocks += other.blocks;
        self.bytes += other.bytes;
    }
}

/// What a removal step freed, and the block bytes no record points at any more (to release
/// once the step is durable).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Freed {
    /// Counts given back.
    pub removed: Removed,
    /// Dead block copies.
    pub released: Vec<Location>,
}

/// The reply of [`DeleteDataset`], [`DropTree`] and [`DeleteBlock`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deletion {
    /// What this step freed.
    pub freed: Freed,
    /// A tree whose removal is still to be driven with [`DropTree`]; `None` when done.
    pub tree: Option<Cid>,
}

/// The result of an expiry step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expired {
    /// Where the next step resumes; `None` once the scan reached the end.
    pub next: Option<Vec<u8>>,
    /// Datasets whose manifest expired (their trees are in `trees`).
    pub datasets: u64,
    /// What this step freed.
    pub freed: Freed,
    /// Trees to drop with `DropTree`.
    pub trees: Vec<Cid>,
    /// The manifests removed (complete or partial datasets), so they are no longer announced.
    pub manifests: Vec<Cid>,
}

/// Pending changes of one removal batch.
struct Removal {
    batch: fjall::OwnedWriteBatch,
    pending: HashMap<Cid, Option<BlockMeta>>,
    counters: records::Counters,
    freed: Freed,
}

impl MetaStore {
    fn removal(&self) -> Removal {
        Removal {
            batch: self.ks.db.batch(),
            pending: HashMap::new(),
            counters: self.counters,
            freed: Freed::default(),
        }
    }

    /// Commits the removal (not synced: the caller sends `SyncMeta` before acknowledging or
    /// releasing the bytes).
    fn finish(&mut self, r: Removal) -> Result<Freed> {
        self.commit(r.batch, r.pending, r.counters)?;
        Ok(r.freed)
    }

    /// Unpins an abandoned upload's blocks and drops those nothing else uses.
    pub(super) fn release_blocks(&mut self, blocks: &[Digest]) -> Result<Freed> {
        let mut r = self.removal();
        for digest in blocks {
            let cid = &Self::block_of(digest);
            let Some(mut m) = self.meta(&r.pending, cid)? else {
                continue;
            };
            m.pins = m.pins.saturating_sub(1);
            if m.unused() {
                Self::drop_block(&mut r, cid, &m);
            } else {
                r.pending.insert(*cid, Some(m));
            }
        }
        self.finish(r)
    }

    /// Drops the block's record into the removal; its bytes become dead.
    fn drop_block(r: &mut Removal, cid: &Cid, meta: &BlockMeta) {
        r.freed.released.extend(meta.location);
        r.pending.insert(*cid, None);
        r.counters.quota_used = r.counters.quota_used.saturating_sub(meta.size);
        r.counters.total_blocks = r.counters.total_blocks.saturating_sub(1);
        r.freed.removed.blocks += 1;
        r.freed.removed.bytes += meta.size;
    }

    /// Adds the removal of manifest `cid` to `r`. Returns `None` when there is no such
    /// manifest, else the tree to drop (if no other manifest uses it).
    fn remove_manifest(&self, r: &mut Removal, cid: &Cid) -> Result<Option<Option<Cid>>> {
        let encoded = if let Some(encoded) = self.ks.manifests.get(cid.to_bytes())? {
            r.batch.remove(&self.ks.manifests, cid.to_bytes());
            encoded.to_vec()
        } else if let Some(value) = self.ks.fetching.get(cid.to_bytes())? {
            // A dataset being fetched: it goes the same way, and gives back its reservation.
            let record: records::Fetching = records::decode(&value)?;
            r.batch.remove(&self.ks.fetching, cid.to_bytes());
            r.counters.quota_reserved = r.counters.quota_reserved.saturating_sub(record.reserved);
            record.manifest
        } else {
            return Ok(None);
        };
        if let Some(meta) = self.meta(&r.pending, cid)? {
            Self::drop_block(r, cid, &meta);
        }
        // An unreadable manifest still goes; its tree cannot be found, the start-up check and
        // expiry take care of blocks left without references.
        let Ok(manifest) = Manifest::decode(&encoded) else {
            return Ok(Some(None));
        };
        let tree = manifest.tree_cid;
        let users = self.tree_users(&tree)?;
        if users > 1 {
            let left = records::encode(&(users - 1))?;
            r.batch.insert(&self.ks.trees, tree.to_bytes(), left);
            return Ok(Some(None));
        }
        r.batch.remove(&self.ks.trees, tree.to_bytes());
        let marker = records::encode(&Deleting::default())?;
        r.batch.insert(&self.ks.deleting, tree.to_bytes(), marker);
        Ok(Some(Some(tree)))
    }

    pub(crate) fn delete_dataset(&mut self, cid: Cid) -> Result<Deletion> {
        let mut r = self.removal();
        if cid.codec() != MANIFEST_CODEC {
            return Ok(Deletion::default());
        }
        let Some(tree) = self.remove_manifest(&mut r, &cid)? else {
            return Ok(Deletion::default());
        };
        Ok(Deletion {
            freed: self.finish(r)?,
            tree,
        })
    }

    /// One step of a tree's removal; see the module docs.
    pub(crate) fn drop_tree(&mut self, tree: Cid) -> Result<Deletion> {
        let Some(value) = self.ks.deleting.get(tree.to_bytes())? else {
            return Ok(Deletion::default()); // done, or adopted by a new commit of this tree
        };
        let mut marker: Deleting = records::decode(&value)?;
        let mut r = self.removal();
        let mut seen = 0;
        if !marker.leaves_done {
            let from = records::leaf_key(&tree, marker.next_leaf);
            let to = records::leaf_key(&tree, u64::MAX);
            for guard in self.ks.leaves.range(from..=to).take(self.batch_records) {
                let (key, value) = guard.into_inner()?;
                seen += 1;
                marker.next_leaf = records::key_index(&key).map_or(u64::MAX, |i| i + 1);
                r.batch.remove(&self.ks.leaves, key);
                let leaf: LeafRecord = records::decode(&value)?;
                let Ok(block) = Cid::try_from(leaf.block_cid.as_slice()) else {
                    continue;
                };
                let Some(mut meta) = self.meta(&r.pending, &block)? else {
                    continue;
                };
                meta.ref_count = meta.ref_count.saturating_sub(1);
                if meta.unused() {
                    Self::drop_block(&mut r, &block, &meta);
                } else {
                    r.pending.insert(block, Some(meta));
                }
            }
            marker.leaves_done = seen < self.batch_records;
        } else {
            let nodes = self.ks.tree_nodes.prefix(tree.to_bytes());
            for guard in nodes.take(self.batch_records) {
                r.batch.remove(&self.ks.tree_nodes, guard.key()?);
                seen += 1;
            }
            if seen < self.batch_records {
                r.batch.remove(&self.ks.deleting, tree.to_bytes());
                return Ok(Deletion {
                    freed: self.finish(r)?,
                    tree: None,
                });
            }
        }
        let marker = records::encode(&marker)?;
        r.batch.insert(&self.ks.deleting, tree.to_bytes(), marker);
        Ok(Deletion {
            freed: self.finish(r)?,
            tree: Some(tree),
        })
    }

    fn delete_block(&mut self, cid: Cid) -> Result<Deletion> {
        let mut r = self.removal();
        let Some(meta) = self.meta(&r.pending, &cid)? else {
            return Ok(Deletion::default());
        };
        if !meta.unused() || cid.codec() != BLOCK_CODEC {
            return Err(Error::BlockInUse(cid));
        }
        Self::drop_block(&mut r, &cid, &meta);
        Ok(Deletion {
            freed: self.finish(r)?,
            tree: None,
        })
    }

    fn expire(&mut self, msg: ExpireBlocks) -> Result<Expired> {
        let mut r = self.removal();
        let mut out = Expired::default();
        let range = match &msg.after {
            Some(after) => self.ks.block_meta.range::<&[u8], _>((
                std::ops::Bound::Excluded(after.as_slice()),
                std::ops::Bound::Unbounded,
            )),
            None => self.ks.block_meta.iter(),
        };
        let mut expired = Vec::new();
        let mut seen = 0;
        for guard in range.take(msg.limit) {
            let (key, value) = guard.into_inner()?;
            seen += 1;
            out.next = Some(key.to_vec());
            let meta: BlockMeta = records::decode(&value)?;
            if meta.expiry < msg.now {
                if let Ok(cid) = Cid::try_from(key.as_ref()) {
                    expired.push(cid);
                }
            }
        }
        if seen < msg.limit {
            out.next = None;
        }
        for cid in expired {
            if cid.codec() == MANIFEST_CODEC {
                if let Some(tree) = self.remove_manifest(&mut r, &cid)? {
                    out.datasets += 1;
                    out.trees.extend(tree);
                    out.manifests.push(cid);
                }
            } else if let Some(current) = self.meta(&r.pending, &cid)? {
                // A block only goes when no dataset and no upload holds it (Codex deletes
                // expired blocks under live manifests, its #1291).
                if current.unused() {
                    Self::drop_block(&mut r, &cid, &current);
                }
            }
        }
        out.freed = self.finish(r)?;
        Ok(out)
    }

    fn relocate(&mut self, moves: &[Move]) -> Result<(u64, Vec<Location>)> {
        let mut pending = HashMap::new();
        let mut dead = Vec::with_capacity(moves.len());
        let mut moved = 0;
        for mv in moves {
            match self.meta(&pending, &mv.cid)? {
                Some(mut m) if m.location == Some(mv.from) => {
                    m.location = Some(mv.to);
                    pending.insert(mv.cid, Some(m));
                    dead.push(mv.from);
                    moved += 1;
                }
                // Deleted or stored anew meanwhile: the copy is garbage, never resurrected.
                _ => dead.push(mv.to),
            }
        }
        self.commit(self.ks.db.batch(), pending, self.counters)?;
        Ok((moved, dead))
    }
}

impl Handler<DeleteDataset> for MetaStore {
    type Result = Result<Deletion>;
    fn handle(&mut self, msg: DeleteDataset, _: &mut Self::Context) -> Self::Result {
        self.delete_dataset(msg.cid)
    }
}

impl Handler<DropTree> for MetaStore {
    type Result = Result<Deletion>;
    fn handle(&mut self, msg: DropTree, _: &mut Self::Context) -> Self::Result {
        self.drop_tree(msg.tree)
    }
}

impl Handler<DeleteBlock> for MetaStore {
    type Result = Result<Deletion>;
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

impl Handler<Relocate> for MetaStore {
    type Result = Result<(u64, Vec<Location>)>;
    fn handle(&mut self, msg: Relocate, _: &mut Self::Context) -> Self::Result {
        self.relocate(&msg.moves)
    }
}

#[cfg(test)]
mod tests;
