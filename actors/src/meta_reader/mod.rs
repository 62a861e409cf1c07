//! The metadata readers: a pool of threads answering every metadata query (manifests, leaves,
//! block records, space) from fjall snapshots.
//!
//! Reads never go through the metadata actor's mailbox, so a download does not wait behind an
//! upload's commit or a large delete. Each query reads one snapshot, and fjall publishes a
//! batch to snapshots only once all of it is applied, so a reader never sees half of a batch.
//! Readers may see a commit before it is durable; only the acknowledgement to its writer waits
//! for the sync.
//!
//! Runs on a `SyncArbiter` (fjall reads may touch the disk), one instance per thread.

mod network;
mod proofs;
mod trees;

pub use network::{
    FindBlocksAt, FindManifest, HasAddresses, ListFetches, MissingLeaves, SourceBytes,
};
pub use trees::TREE_CACHE_BYTES;

use actix::{Actor, Handler, Message, SyncContext};
use cid::Cid;
use fjall::Readable;

/// Records reserved up front for a leaf lookup (a count is a bound, not a promise).
const LEAF_PREALLOC: u64 = 1024;

use crate::{
    error::{Error, Result},
    format::manifest::Manifest,
    meta_store::{Keyspaces, Space},
    records::{self, BlockMeta, Counters, LeafRecord, Location},
};

/// The manifest stored under a CID.
#[derive(Debug, Message)]
#[rtype(result = "Result<Manifest>")]
pub struct GetManifest {
    /// A manifest CID.
    pub cid: Cid,
}

/// Block CIDs and locations of leaves `start..start+count` of a tree.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<BlockRef>>")]
pub struct GetLeaves {
    /// The dataset's tree CID.
    pub tree: Cid,
    /// First leaf index.
    pub start: u64,
    /// Number of leaves.
    pub count: u64,
}

/// Like [`GetLeaves`], but answers the leaves stored from `start` on, up to the first one that
/// is not (possibly none): what a dataset being fetched has so far.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<BlockRef>>")]
pub struct StoredLeaves {
    /// The dataset's tree CID.
    pub tree: Cid,
    /// First leaf index.
    pub start: u64,
    /// The most leaves wanted.
    pub count: u64,
}

/// A stored block: its CID and where its bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRef {
    /// The block's CID.
    pub cid: Cid,
    /// Where the block store keeps it.
    pub location: Location,
}

/// True when a block or manifest is stored under the CID.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool>")]
pub struct HasBlock {
    /// The CID to look up.
    pub cid: Cid,
}

/// Where each of these blocks is stored, if it is (`None` for a block not stored).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Option<Location>>>")]
pub struct FindBlocks {
    /// The blocks.
    pub cids: Vec<Cid>,
}

/// Every stored manifest, each decoded on its own so that one bad record hides nothing else
/// (Codex stops listing at the first), and the dataset's expiry when asked for.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Dataset>>")]
pub struct ListManifests {
    /// Look up each dataset's expiry too (one more read per dataset).
    pub expiry: bool,
}

/// One stored dataset, as listed.
#[derive(Debug)]
pub struct Dataset {
    /// Its manifest CID.
    pub cid: Cid,
    /// Its manifest, or why it cannot be decoded.
    pub manifest: Result<Manifest>,
    /// Unix seconds at which it expires (its manifest's expiry: the whole dataset goes then);
    /// `None` for never, or when the listing did not ask.
    pub expiry: Option<u64>,
}

/// Repository space figures, as last committed.
#[derive(Debug, Message)]
#[rtype(result = "Result<Space>")]
pub struct GetSpace;

/// The blocks whose records place them in a segment (for compaction; a full scan).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<(Cid, Location)>>")]
pub struct BlocksIn {
    /// The segment file number.
    pub segment: u32,
}

/// A metadata reader; see the module docs.
pub struct MetaReader {
    ks: Keyspaces,
    quota_max: u64,
    /// The tree nodes this reader read for proofs (its own: see [`trees`]).
    trees: trees::TreeCache,
}

impl MetaReader {
    /// A reader over `ks` (one per pool thread).
    pub(crate) fn new(ks: Keyspaces, quota_max: u64) -> Self {
        Self {
            ks,
            quota_max,
            trees: trees::TreeCache::new(TREE_CACHE_BYTES),
        }
    }

    fn get_manifest(&self, cid: Cid) -> Result<Manifest> {
        let snap = self.ks.db.snapshot();
        match snap.get(&self.ks.manifests, cid.to_bytes())? {
            Some(bytes) => Manifest::decode(&bytes).map_err(|e| Error::BadManifest {
                cid,
                reason: e.to_string(),
            }),
            // A dataset still being fetched is not here yet, for local reads.
            None if snap.contains_key(&self.ks.fetching, cid.to_bytes())? => {
                Err(Error::NotFound(cid))
            }
            None if snap.contains_key(&self.ks.block_meta, cid.to_bytes())? => {
                Err(Error::NotAManifest(cid))
            }
            None => Err(Error::NotFound(cid)),
        }
    }

    fn get_leaves(&self, msg: GetLeaves) -> Result<Vec<BlockRef>> {
        let out = self.stored_leaves(msg.tree, msg.start, msg.count)?;
        if (out.len() as u64) < msg.count {
            return Err(Error::NotFound(msg.tree));
        }
        Ok(out)
    }

    /// The records of leaves `start..start + count` up to the first hole.
    fn stored_leaves(&self, tree: Cid, first: u64, count: u64) -> Result<Vec<BlockRef>> {
        let snap = self.ks.db.snapshot();
        let mut out = Vec::with_capacity(count.min(LEAF_PREALLOC) as usize);
        let start = records::leaf_key(&tree, first);
        let end = records::leaf_key(&tree, first.saturating_add(count));
        for (expected, guard) in (first..).zip(snap.range(&self.ks.leaves, start..end)) {
            let (key, value) = guard.into_inner()?;
            if records::key_index(&key) != Some(expected) {
                break; // a hole: the run ends here
            }
            let leaf: LeafRecord = records::decode(&value)?;
            let cid = Cid::try_from(leaf.block_cid.as_slice()).map_err(|_| Error::BadManifest {
                cid: tree,
                reason: format!("leaf {expected} is not a CID"),
            })?;
            let location = block_meta(&snap, &self.ks, &cid)?
                .and_then(|m| m.location)
                .ok_or(Error::NotFound(cid))?;
            out.push(BlockRef { cid, location });
        }
        Ok(out)
    }

    fn list_manifests(&self, with_expiry: bool) -> Result<Vec<Dataset>> {
        let snap = self.ks.db.snapshot();
        let mut out = Vec::new();
        for guard in snap.iter(&self.ks.manifests) {
            let (key, value) = guard.into_inner()?;
            let Ok(cid) = Cid::try_from(key.as_ref()) else {
                continue;
            };
            let manifest = Manifest::decode(&value).map_err(|e| Error::BadManifest {
                cid,
                reason: e.to_string(),
            });
            let expiry = match with_expiry {
                true => block_meta(&snap, &self.ks, &cid)?
                    .map(|m| m.expiry)
                    .filter(|e| *e != u64::MAX),
                false => None,
            };
            out.push(Dataset {
                cid,
                manifest,
                expiry,
            });
        }
        Ok(out)
    }

    fn blocks_in(&self, segment: u32) -> Result<Vec<(Cid, Location)>> {
        let snap = self.ks.db.snapshot();
        let mut out = Vec::new();
        for guard in snap.iter(&self.ks.block_meta) {
            let (key, value) = guard.into_inner()?;
            let meta: BlockMeta = records::decode(&value)?;
            let Some(loc) = meta.location.filter(|l| l.segment == segment) else {
                continue;
            };
            if let Ok(cid) = Cid::try_from(key.as_ref()) {
                out.push((cid, loc));
            }
        }
        Ok(out)
    }
}

/// The record of `cid` in `snap`.
pub(crate) fn block_meta(
    snap: &fjall::Snapshot,
    ks: &Keyspaces,
    cid: &Cid,
) -> Result<Option<BlockMeta>> {
    match snap.get(&ks.block_meta, cid.to_bytes())? {
        Some(v) => Ok(Some(records::decode(&v)?)),
        None => Ok(None),
    }
}

impl Actor for MetaReader {
    type Context = SyncContext<Self>;
}

impl Handler<GetManifest> for MetaReader {
    type Result = Result<Manifest>;
    fn handle(&mut self, msg: GetManifest, _: &mut Self::Context) -> Self::Result {
        self.get_manifest(msg.cid)
    }
}

impl Handler<GetLeaves> for MetaReader {
    type Result = Result<Vec<BlockRef>>;
    fn handle(&mut self, msg: GetLeaves, _: &mut Self::Context) -> Self::Result {
        self.get_leaves(msg)
    }
}

impl Handler<StoredLeaves> for MetaReader {
    type Result = Result<Vec<BlockRef>>;
    fn handle(&mut self, msg: StoredLeaves, _: &mut Self::Context) -> Self::Result {
        self.stored_leaves(msg.tree, msg.start, msg.count)
    }
}

impl Handler<HasBlock> for MetaReader {
    type Result = Result<bool>;
    fn handle(&mut self, msg: HasBlock, _: &mut Self::Context) -> Self::Result {
        let snap = self.ks.db.snapshot();
        let key = msg.cid.to_bytes();
        Ok(snap.contains_key(&self.ks.block_meta, &key)?
            || snap.contains_key(&self.ks.manifests, &key)?)
    }
}

impl Handler<FindBlocks> for MetaReader {
    type Result = Result<Vec<Option<Location>>>;
    fn handle(&mut self, msg: FindBlocks, _: &mut Self::Context) -> Self::Result {
        let snap = self.ks.db.snapshot();
        msg.cids
            .iter()
            .map(|cid| Ok(block_meta(&snap, &self.ks, cid)?.and_then(|m| m.location)))
            .collect()
    }
}

impl Handler<ListManifests> for MetaReader {
    type Result = Result<Vec<Dataset>>;
    fn handle(&mut self, msg: ListManifests, _: &mut Self::Context) -> Self::Result {
        self.list_manifests(msg.expiry)
    }
}

impl Handler<GetSpace> for MetaReader {
    type Result = Result<Space>;
    fn handle(&mut self, _: GetSpace, _: &mut Self::Context) -> Self::Result {
        let snap = self.ks.db.snapshot();
        let counters: Counters = match snap.get(&self.ks.counters, records::COUNTERS_KEY)? {
            Some(v) => records::decode(&v)?,
            None => Counters::default(),
        };
        Ok(Space {
            total_blocks: counters.total_blocks,
            quota_max_bytes: self.quota_max,
            quota_used_bytes: counters.quota_used,
            quota_reserved_bytes: counters.quota_reserved,
        })
    }
}

impl Handler<BlocksIn> for MetaReader {
    type Result = Result<Vec<(Cid, Location)>>;
    fn handle(&mut self, msg: BlocksIn, _: &mut Self::Context) -> Self::Result {
        self.blocks_in(msg.segment)
    }
}

#[cfg(test)]
mod tests;
