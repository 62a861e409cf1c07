//! The repository's actors, and the multi-step sequences that involve several of them. Every
//! sequence that frees block bytes goes through [`Repo::settle`]: sync the metadata journal,
//! then hand the dead bytes to the block store. That one function is why no segment file is
//! deleted before the records that stopped pointing into it are durable, and why every
//! acknowledgement of a removal follows its sync. The same sequences are the only senders of
//! dataset events ([`DatasetEvent`]): a commit, a fetch begun, a delete, an expiry step.

use std::future::Future;

use actix::Addr;
use bytes::Bytes;
use cid::Cid;

use crate::{
    block_store::{
        BlockStore, CopyBlocks, PickSparse, ReadBlock, ReadBlocks, ReleaseBytes, SyncBlocks,
        WriteBlocks,
    },
    dataset_events::{DatasetEvent, RemovedBy, Subscriber},
    error::{Error, Result},
    format::cid::MANIFEST_CODEC,
    hasher::Hasher,
    meta_reader::{BlockRef, BlocksIn, FindBlocks, GetLeaves, MetaReader},
    meta_store::{
        BeginFetch, CommitDataset, DeleteBlock, DeleteDataset, Deletion, DropTree, ExpireBlocks,
        Expired, FetchProgress, Journal, MetaStore, Relocate, Removed, SyncMeta,
    },
    records::Location,
};

/// One block of a batch being stored, as the metadata actor is to record it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ToRecord {
    /// Its position in the batch the caller gave [`Repo::store_blocks`].
    pub(crate) at: usize,
    /// Its CID.
    pub(crate) cid: Cid,
    /// Its length in bytes.
    pub(crate) size: u64,
    /// Where its bytes were just written; `None` when a record said it was stored already.
    pub(crate) location: Option<Location>,
}

/// What recording one round of [`Repo::store_blocks`] achieved.
pub(crate) struct Recorded<R> {
    /// The caller's outcome of the round.
    pub(crate) outcome: R,
    /// Copies that no record points at (the block was recorded already, or refused).
    pub(crate) garbage: Vec<Location>,
    /// Positions whose bytes went between the lookup and the record (a concurrent delete):
    /// written again in the next round.
    pub(crate) again: Vec<usize>,
}

/// Rounds of [`Repo::store_blocks`]: a fourth would need a block deleted three times while it
/// is being stored.
const STORE_ROUNDS: usize = 3;

/// Addresses of the repository's actors. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Repo {
    pub(crate) meta: Addr<MetaStore>,
    pub(crate) reader: Addr<MetaReader>,
    pub(crate) blocks: Addr<BlockStore>,
    /// The same block store on threads of its own for reads, so that a download never waits
    /// behind an upload's writes or syncs.
    pub(crate) block_reads: Addr<BlockStore>,
    pub(crate) journal: Addr<Journal>,
    pub(crate) hasher: Addr<Hasher>,
    /// Who hears of datasets stored and removed (the network room, when one runs).
    pub(crate) events: Subscriber,
}

impl Repo {
    /// Stores `blocks` the one way both uploads and fetches do: look up which are stored
    /// already, write the others (and sync them when `sync`: a fetch records its blocks at once,
    /// an upload syncs once before its commit), then `record` the round with the metadata
    /// actor. Copies no record points at are released at once, and blocks a concurrent delete
    /// removed between the lookup and the record are written again, up to [`STORE_ROUNDS`]
    /// rounds. Each round's outcome is pushed to `outcomes` as soon as it is recorded, so that
    /// a caller whose later round fails still knows what the earlier ones recorded (an upload
    /// releases its pins).
    pub(crate) async fn store_blocks<R, F, Fut>(
        &self,
        blocks: &[(Cid, Bytes)],
        sync: bool,
        outcomes: &mut Vec<R>,
        mut record: F,
    ) -> Result<()>
    where
        F: FnMut(Vec<ToRecord>) -> Fut,
        Fut: Future<Output = Result<Recorded<R>>>,
    {
        let mut todo: Vec<usize> = (0..blocks.len()).collect();
        let mut write_all = false;
        let mut last_missing = None;
        for _ in 0..STORE_ROUNDS {
            let cids = todo.iter().map(|&i| blocks[i].0).collect();
            let stored = if write_all {
                vec![None; todo.len()]
            } else {
                self.reader.send(FindBlocks { cids }).await??
            };
            let missing: Vec<(Cid, Bytes)> = todo
                .iter()
                .zip(&stored)
                .filter(|(_, s)| s.is_none())
                .map(|(&i, _)| blocks[i].clone())
                .collect();
            let mut written = Vec::new().into_iter();
            if !missing.is_empty() {
                written = self
                    .blocks
                    .send(WriteBlocks { blocks: missing })
                    .await??
                    .into_iter();
                if sync {
                    // Durable before any record points at them.
                    self.blocks.send(SyncBlocks).await??;
                }
            }
            let placed: Vec<ToRecord> = todo
                .iter()
                .zip(&stored)
                .map(|(&at, s)| ToRecord {
                    at,
                    cid: blocks[at].0,
                    size: blocks[at].1.len() as u64,
                    location: if s.is_none() { written.next() } else { None },
                })
                .collect();
            // Each copy once: a block repeated in the batch shares one copy.
            let mut fresh: Vec<Location> = placed.iter().filter_map(|p| p.location).collect();
            fresh.sort_by_key(|l| (l.segment, l.offset));
            fresh.dedup();
            let recorded = match record(placed).await {
                Ok(recorded) => recorded,
                Err(e) => {
                    self.release_unrecorded(fresh).await;
                    return Err(e);
                }
            };
            self.release_unrecorded(recorded.garbage).await;
            outcomes.push(recorded.outcome);
            let Some(&first) = recorded.again.first() else {
                return Ok(());
            };
            tracing::debug!(cid = %crate::cid_text(&blocks[first].0), "block deleted while being stored; writing it again");
            last_missing = Some(blocks[first].0);
            todo = recorded.again;
            write_all = true;
        }
        Err(last_missing.map_or(Error::Unavailable, Error::NotFound))
    }

    /// Hands back block copies that no record points at (never did), so their segment can go.
    async fn release_unrecorded(&self, dead: Vec<Location>) {
        if !dead.is_empty() {
            let _ = self.blocks.send(ReleaseBytes { locations: dead }).await;
        }
    }

    /// Makes every metadata commit so far durable, then releases `dead` block bytes.
    pub(crate) async fn settle(&self, dead: Vec<Location>) -> Result<()> {
        self.journal.send(SyncMeta).await??;
        if !dead.is_empty() {
            self.blocks.send(ReleaseBytes { locations: dead }).await?;
        }
        Ok(())
    }

    /// Settles a removal step and drives the tree removal it started (if any) to its end, one
    /// bounded step at a time, each settled before the next. Returns everything freed.
    pub(crate) async fn finish_deletion(&self, mut step: Deletion) -> Result<Removed> {
        let mut removed = Removed::default();
        loop {
            removed += step.freed.removed;
            self.settle(step.freed.released).await?;
            let Some(tree) = step.tree else {
                return Ok(removed);
            };
            step = self.meta.send(DropTree { tree }).await??;
        }
    }

    /// Commits an uploaded dataset whose blocks are written, synced and pinned, makes the
    /// commit durable, and tells the subscriber. Returns the manifest CID.
    pub(crate) async fn commit_dataset(&self, msg: CommitDataset) -> Result<Cid> {
        let tree = msg.manifest.tree_cid;
        let manifest = self.meta.send(msg).await??;
        // The upload's reply promises durability.
        self.journal.send(SyncMeta).await??;
        self.events
            .tell(DatasetEvent::Stored { manifest, tree })
            .await;
        Ok(manifest)
    }

    /// Records the manifest `encoded` (CID `manifest`) as a dataset being fetched (see
    /// [`BeginFetch`]) and tells the subscriber: holding the manifest, this node can serve
    /// what it fetches.
    pub(crate) async fn begin_fetch(
        &self,
        manifest: Cid,
        tree: Cid,
        encoded: Vec<u8>,
        expiry: u64,
    ) -> Result<FetchProgress> {
        let progress = self
            .meta
            .send(BeginFetch {
                manifest: encoded,
                expiry,
            })
            .await??;
        self.events
            .tell(DatasetEvent::Stored { manifest, tree })
            .await;
        Ok(progress)
    }

    /// Deletes a dataset (manifest CID) or an unused block (block CID); durable when it returns.
    /// A dataset's fetch is stopped first (the subscriber hears of the removal before it
    /// starts), so that it stores nothing more.
    pub(crate) async fn delete(&self, cid: Cid) -> Result<Removed> {
        let first = if cid.codec() == MANIFEST_CODEC {
            let removed = DatasetEvent::Removed {
                manifest: cid,
                by: RemovedBy::Delete,
            };
            self.events.tell(removed).await;
            self.meta.send(DeleteDataset { cid }).await??
        } else {
            self.meta.send(DeleteBlock { cid }).await??
        };
        self.finish_deletion(first).await
    }

    /// One expiry step (see [`ExpireBlocks`]), with the datasets it expired removed whole,
    /// everything settled, and the subscriber told.
    pub(crate) async fn expire_step(&self, msg: ExpireBlocks) -> Result<Expired> {
        let mut step = self.meta.send(msg).await??;
        let freed = std::mem::take(&mut step.freed);
        let mut removed = self.finish_deletion(Deletion { freed, tree: None }).await?;
        // The manifests' removal is durable now: whatever serves or fetches them stops before
        // their trees go (a tree drop that fails is finished by the start-up check).
        for manifest in &step.manifests {
            let removed = DatasetEvent::Removed {
                manifest: *manifest,
                by: RemovedBy::Expiry,
            };
            self.events.tell(removed).await;
        }
        for tree in std::mem::take(&mut step.trees) {
            removed += self
                .finish_deletion(Deletion::default().with_tree(tree))
                .await?;
        }
        step.freed.removed = removed;
        Ok(step)
    }

    /// One compaction step: copy the live blocks of the sparsest sealed segment, point their
    /// records at the copies, sync, and only then release the originals (which deletes the old
    /// file). Returns the blocks moved, or `None` when no segment needs compacting.
    pub(crate) async fn compact_step(&self) -> Result<Option<u64>> {
        let Some(segment) = self.blocks.send(PickSparse).await?? else {
            return Ok(None);
        };
        let blocks = self.reader.send(BlocksIn { segment }).await??;
        let moves = self.blocks.send(CopyBlocks { segment, blocks }).await??;
        if moves.is_empty() {
            return Ok(Some(0));
        }
        let (moved, dead) = self.meta.send(Relocate { moves }).await??;
        self.settle(dead).await?;
        Ok(Some(moved))
    }

    /// Reads leaf `index` of `tree`, verified; looks the leaf up again once when its bytes
    /// moved (compaction) between the lookup and the read.
    pub(crate) async fn read_leaf(
        &self,
        tree: Cid,
        index: u64,
        known: BlockRef,
    ) -> Result<bytes::Bytes> {
        let read = |r: BlockRef| {
            self.block_reads.send(ReadBlock {
                cid: r.cid,
                location: r.location,
            })
        };
        match read(known).await? {
            Err(Error::NotFound(_)) => {
                let again = self
                    .reader
                    .send(GetLeaves {
                        tree,
                        start: index,
                        count: 1,
                    })
                    .await??;
                let fresh = again.first().copied().ok_or(Error::NotFound(tree))?;
                read(fresh).await?
            }
            other => other,
        }
    }

    /// Reads leaves `first..` of `tree` whose records are `known`, verified, in one message to
    /// the block store; a leaf whose bytes moved meanwhile is looked up and read again.
    pub(crate) async fn read_leaves(
        &self,
        tree: Cid,
        first: u64,
        known: Vec<BlockRef>,
    ) -> Result<Vec<bytes::Bytes>> {
        let blocks = known.iter().map(|r| (r.cid, r.location)).collect();
        let read = self.block_reads.send(ReadBlocks { blocks }).await?;
        let mut out = Vec::with_capacity(read.len());
        for ((index, block), r) in (first..).zip(read).zip(known) {
            out.push(match block {
                Err(Error::NotFound(_)) => self.read_leaf(tree, index, r).await?,
                other => other?,
            });
        }
        Ok(out)
    }
}

impl Deletion {
    fn with_tree(mut self, tree: Cid) -> Self {
        self.tree = Some(tree);
        self
    }
}
