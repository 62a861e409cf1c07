//! Leaves and their Merkle proofs for a [`super::FindBlocksAt`] message.
//!
//! A delivery to one of our own peers asks for 48 leaves, nearly always consecutive ones of one
//! tree. Looked up one by one, each cost a point read of its leaf record, another of its
//! neighbour's (the lowest sibling of its proof) and reads of the nodes above; the profile of
//! a seeder spent a tenth of its time there. Here a message's leaves of a tree come from one
//! range scan of their records (their neighbours included), and the nodes above from the
//! reader's [`TreeCache`], so only the nodes it has not seen yet are read from fjall, a chunk of
//! a level per range scan.

use cid::Cid;
use fjall::{Readable, Snapshot};

use super::trees::TreeCache;
use crate::{
    error::{Error, Result},
    format::{
        blockexc::BlockAddress,
        cid::{digest_of, Digest},
        merkle::CodexProof,
    },
    meta_store::Keyspaces,
    records::{self, LeafRecord},
};

/// Widest run of leaf indexes scanned for one message, as a multiple of the leaves it asks
/// for (plus a little): sparse requests scan nothing wasted and fall back to point reads.
const SCAN_SPREAD: u64 = 4;
const SCAN_SLACK: u64 = 64;
/// Nodes of one level read by one range scan when the cache lacks one of them (a power of 2).
const FILL_CHUNK: u64 = 128;

/// The leaf records of a message's trees, scanned once: `cids[k]` is leaf `start + k`.
pub(super) struct LeafRuns {
    runs: Vec<Run>,
    /// Leaf counts already read in this message's snapshot (`None`: the tree is not held).
    counts: Vec<(Cid, Option<u64>)>,
}

struct Run {
    tree: Cid,
    start: u64,
    cids: Vec<Option<Cid>>,
}

impl LeafRuns {
    /// Scans, for each tree `addresses` name leaves of, the records from its lowest asked
    /// index to its highest (widened to whole sibling pairs), unless they are too far apart.
    pub(super) fn scan(
        snap: &Snapshot,
        ks: &Keyspaces,
        addresses: &[BlockAddress],
    ) -> Result<Self> {
        // (tree, lowest, highest, how many)
        let mut spans: Vec<(Cid, u64, u64, u64)> = Vec::new();
        for address in addresses {
            let BlockAddress::Leaf { tree, index } = address else {
                continue;
            };
            match spans.iter_mut().find(|s| s.0 == *tree) {
                Some(s) => {
                    s.1 = s.1.min(*index);
                    s.2 = s.2.max(*index);
                    s.3 += 1;
                }
                None => spans.push((*tree, *index, *index, 1)),
            }
        }
        let mut runs = Vec::with_capacity(spans.len());
        for (tree, low, high, n) in spans {
            let (start, end) = (low & !1, (high | 1).saturating_add(1));
            if end - start > n.saturating_mul(SCAN_SPREAD).saturating_add(SCAN_SLACK) {
                continue;
            }
            let mut cids = vec![None; (end - start) as usize];
            let range = records::leaf_key(&tree, start)..records::leaf_key(&tree, end);
            for guard in snap.range(&ks.leaves, range) {
                let (key, value) = guard.into_inner()?;
                let Some(k) = records::key_index(&key).and_then(|i| i.checked_sub(start)) else {
                    continue;
                };
                if let Some(slot) = cids.get_mut(k as usize) {
                    *slot = leaf_cid(&value)?;
                }
            }
            runs.push(Run { tree, start, cids });
        }
        Ok(Self {
            runs,
            counts: Vec::new(),
        })
    }

    /// What the scan says of leaf `index`: `None` when it did not cover it, `Some(None)` when
    /// the leaf is not stored.
    fn scanned(&self, tree: &Cid, index: u64) -> Option<Option<Cid>> {
        let run = self.runs.iter().find(|r| r.tree == *tree)?;
        let k = usize::try_from(index.checked_sub(run.start)?).ok()?;
        run.cids.get(k).copied()
    }

    /// The block CID of leaf `index` of `tree`.
    pub(super) fn leaf(
        &self,
        snap: &Snapshot,
        ks: &Keyspaces,
        tree: &Cid,
        index: u64,
    ) -> Result<Option<Cid>> {
        match self.scanned(tree, index) {
            Some(found) => Ok(found),
            None => leaf(snap, ks, tree, index),
        }
    }

    /// The leaf count of `tree`, read once per message.
    fn count(&mut self, snap: &Snapshot, ks: &Keyspaces, tree: &Cid) -> Result<Option<u64>> {
        if let Some((_, count)) = self.counts.iter().find(|(t, _)| t == tree) {
            return Ok(*count);
        }
        let count = snap
            .get(&ks.tree_nodes, records::leaf_count_key(tree))?
            .and_then(|v| records::leaf_count(&v));
        self.counts.push((*tree, count));
        Ok(count)
    }

    /// The proof of leaf `index`: level 0 siblings from the scanned leaves (or the nodes a
    /// fetched proof showed), the levels above from `cache`, read from disk and kept there
    /// when it does not have them yet.
    pub(super) fn proof(
        &mut self,
        snap: &Snapshot,
        ks: &Keyspaces,
        cache: &mut TreeCache,
        tree: &Cid,
        index: u64,
    ) -> Result<CodexProof> {
        // The count comes from this snapshot, never from the cache: a tree removed since it
        // was cached has none, and its cached nodes are not used.
        let count = self.count(snap, ks, tree)?.ok_or(Error::NotFound(*tree))?;
        let cached = cache.tree(tree, count);
        let runs = &*self;
        let node = |level: usize, i: u64| -> Result<Digest> {
            if level == 0 {
                return runs.level_zero(snap, ks, tree, i);
            }
            if let Some(digest) = cached.node(level, i) {
                return Ok(digest);
            }
            if !cached.keeps(level) {
                return stored_node(snap, ks, tree, level, i)?.ok_or(Error::NotFound(*tree));
            }
            // One range scan fills the aligned chunk around the node: the proofs of the next
            // messages need its neighbours, and a scan costs a fraction of a point read per
            // node.
            let start = i & !(FILL_CHUNK - 1);
            let range = records::node_key(tree, level as u8, start)
                ..records::node_key(tree, level as u8, start.saturating_add(FILL_CHUNK));
            for guard in snap.range(&ks.tree_nodes, range) {
                let (key, value) = guard.into_inner()?;
                if let (Some(j), Ok(digest)) = (
                    records::key_index(&key),
                    <[u8; 32]>::try_from(value.as_ref()),
                ) {
                    cached.keep(level, j, digest);
                }
            }
            cached.node(level, i).ok_or(Error::NotFound(*tree))
        };
        CodexProof::from_lookup(count, index, node)?.ok_or(Error::NotFound(*tree))
    }

    /// Leaf `i`'s digest: from its record if it is held, else from a node a fetched proof
    /// showed.
    fn level_zero(&self, snap: &Snapshot, ks: &Keyspaces, tree: &Cid, i: u64) -> Result<Digest> {
        let held = self.leaf(snap, ks, tree, i)?;
        if let Some(digest) = held.as_ref().and_then(digest_of) {
            return Ok(digest);
        }
        stored_node(snap, ks, tree, 0, i)?.ok_or(Error::NotFound(*tree))
    }
}

/// Node `i` of `level` of `tree` as stored in `tree_nodes`.
fn stored_node(
    snap: &Snapshot,
    ks: &Keyspaces,
    tree: &Cid,
    level: usize,
    i: u64,
) -> Result<Option<Digest>> {
    let key = records::node_key(tree, level as u8, i);
    match snap.get(&ks.tree_nodes, key)? {
        Some(v) => Ok(Some(
            <[u8; 32]>::try_from(v.as_ref()).map_err(|_| Error::NotFound(*tree))?,
        )),
        None => Ok(None),
    }
}

/// The block CID of leaf `index` of `tree`.
pub(super) fn leaf(snap: &Snapshot, ks: &Keyspaces, tree: &Cid, index: u64) -> Result<Option<Cid>> {
    match snap.get(&ks.leaves, records::leaf_key(tree, index))? {
        Some(v) => leaf_cid(&v),
        None => Ok(None),
    }
}

/// The block CID a leaf record names (`None` if it is not a CID, as before).
fn leaf_cid(value: &[u8]) -> Result<Option<Cid>> {
    let record: LeafRecord = records::decode(value)?;
    Ok(Cid::try_from(record.block_cid.as_slice()).ok())
}
