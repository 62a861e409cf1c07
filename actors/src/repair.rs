//! The start-up check. No upload is in progress when a node starts, so anything an interrupted
//! run left behind can be recognised and removed:
//!
//! - leaf records of a tree no manifest uses (a commit cut short between its batches), and
//!   removals of trees cut short: both are finished as `DropTree`
//!   steps, with the block references they held;
//! - pins of uploads that died with the process;
//! - data blocks no dataset refers to (stored by an upload that never committed);
//! - records whose bytes are gone: the location points past the end of its segment file (a
//!   torn tail after a power loss) or into a missing file. Dropped when no dataset refers to the
//!   block; otherwise the dataset is reported as damaged (that would be a durability bug);
//! - counters that disagree with the block records (recomputed).
//!
//! Fixes are committed in bounded batches (each is idempotent, so a crash during the repair
//! just means the next start repeats part of it) and synced before the node serves.

use std::collections::HashMap;

use cid::Cid;

use crate::{
    error::Result,
    format::cid::{cid_text, BLOCK_CODEC},
    meta_store::{Keyspaces, MetaStore},
    records::{self, BlockMeta, Counters, Deleting, LeafRecord},
};

/// What the start-up check found and fixed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Leaf records of trees without a manifest (commits or removals cut short), removed.
    pub orphan_leaves: u64,
    /// Blocks still held by uploads that died with the process, released.
    pub stale_pins: u64,
    /// Data blocks with no referring dataset, removed.
    pub unreferenced_blocks: u64,
    /// Records whose bytes were missing and that no dataset needed, removed.
    pub missing_bytes: u64,
    /// Referenced blocks whose bytes are missing (data loss; logged, kept).
    pub damaged_blocks: u64,
    /// True when the stored counters disagreed with the block records (never expected: every
    /// batch updates both together).
    pub counters_fixed: bool,
}

impl RepairReport {
    /// True when nothing needed fixing.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }

    /// True when nothing is wrong that a crash (or power loss) of a correct node could leave:
    /// no acknowledged data is missing and the counters match the records. Leftovers of
    /// unacknowledged work (orphan leaves, pins, unreferenced blocks, torn tails nobody
    /// needs) are expected after a crash.
    pub fn is_consistent(&self) -> bool {
        self.damaged_blocks == 0 && !self.counters_fixed
    }
}

/// Checks the repository in `data_dir` without changing it: what would the next start repair?
/// For tests and operators; the node must not be running on the directory.
///
/// # Errors
/// When the repository cannot be opened or read.
pub fn inspect(data_dir: &std::path::Path) -> Result<RepairReport> {
    let ks = Keyspaces::open(data_dir, 8 << 20)?;
    let mut meta = MetaStore::new(ks, u64::MAX, Default::default(), 4096)?;
    let lengths = crate::block_store::segment_lengths(&data_dir.join("blocks"))?;
    Ok(check(&mut meta, &lengths, false)?.0)
}

/// Checks the repository behind `meta`, fixes what an interrupted run left behind, and returns
/// the live bytes per segment that the records account for.
pub(crate) fn run(
    meta: &mut MetaStore,
    lengths: &HashMap<u32, u64>,
) -> Result<(RepairReport, HashMap<u32, u64>)> {
    check(meta, lengths, true)
}

fn check(
    meta: &mut MetaStore,
    lengths: &HashMap<u32, u64>,
    apply: bool,
) -> Result<(RepairReport, HashMap<u32, u64>)> {
    let mut report = RepairReport::default();
    // References that dropping the orphan trees gives back (only counted when not applying;
    // applying really drops them before the block pass).
    let mut dropped_refs: HashMap<Cid, u64> = HashMap::new();
    for (tree, leaves) in orphan_trees(&meta.ks)? {
        report.orphan_leaves += leaves;
        if apply {
            let marker = records::encode(&Deleting::default())?;
            if !meta.ks.deleting.contains_key(tree.to_bytes())? {
                meta.ks.deleting.insert(tree.to_bytes(), marker)?;
            }
            let mut next = Some(tree);
            while let Some(t) = next {
                let step = meta.drop_tree(t)?;
                report.unreferenced_blocks += step.freed.removed.blocks;
                next = step.tree;
            }
        } else {
            for guard in meta.ks.leaves.prefix(tree.to_bytes()) {
                let leaf: LeafRecord = records::decode(&guard.value()?)?;
                if let Ok(block) = Cid::try_from(leaf.block_cid.as_slice()) {
                    *dropped_refs.entry(block).or_default() += 1;
                }
            }
        }
    }

    // Reservations belong to datasets being fetched: the sum of what their records hold.
    let mut reserved = 0u64;
    for guard in meta.ks.fetching.iter() {
        let record: records::Fetching = records::decode(&guard.value()?)?;
        reserved = reserved.saturating_add(record.reserved);
    }
    let mut counters = Counters {
        quota_reserved: reserved,
        ..Counters::default()
    };
    // The same sums over every record, before removals: what the stored counters must equal.
    let mut recorded = counters;
    let mut live: HashMap<u32, u64> = HashMap::new();
    let mut pending: HashMap<Cid, Option<BlockMeta>> = HashMap::new();
    for guard in meta.ks.block_meta.iter() {
        let (key, value) = guard.into_inner()?;
        let Ok(cid) = Cid::try_from(key.as_ref()) else {
            continue;
        };
        let stored: BlockMeta = records::decode(&value)?;
        let mut m = stored;
        recorded.total_blocks += 1;
        recorded.quota_used += m.size;
        m.ref_count = m
            .ref_count
            .saturating_sub(dropped_refs.get(&cid).copied().unwrap_or(0));
        if m.pins > 0 {
            m.pins = 0;
            report.stale_pins += 1;
        }
        let is_data = cid.codec() == BLOCK_CODEC;
        let has_bytes = if is_data {
            m.location
                .is_some_and(|l| lengths.get(&l.segment).is_some_and(|&len| l.end() <= len))
        } else {
            meta.ks.manifests.contains_key(&key)? || meta.ks.fetching.contains_key(&key)?
        };
        let keep = if is_data && m.ref_count == 0 {
            report.unreferenced_blocks += 1;
            false
        } else if !has_bytes && m.ref_count == 0 {
            report.missing_bytes += 1;
            false
        } else {
            if !has_bytes {
                let file_len = m.location.and_then(|l| lengths.get(&l.segment));
                tracing::error!(cid = %cid_text(&cid), refs = m.ref_count, location = ?m.location, ?file_len, "block referenced by a dataset is missing");
                report.damaged_blocks += 1;
            }
            true
        };
        if keep {
            counters.total_blocks += 1;
            counters.quota_used += m.size;
            if let Some(loc) = m.location.filter(|_| has_bytes) {
                *live.entry(loc.segment).or_default() += u64::from(loc.len);
            }
            if m != stored {
                pending.insert(cid, Some(m));
            }
        } else {
            pending.insert(cid, None);
        }
        if apply && pending.len() >= meta.batch_records {
            let counters_now = meta.counters;
            meta.commit(
                meta.ks.db.batch(),
                std::mem::take(&mut pending),
                counters_now,
            )?;
        }
    }
    report.counters_fixed = recorded != meta.counters;
    if apply {
        meta.commit(meta.ks.db.batch(), pending, counters)?;
        meta.ks.db.persist(fjall::PersistMode::SyncAll)?;
    }
    Ok((report, live))
}

/// Trees that have leaf records but no manifest (a commit cut short), or whose removal was cut
/// short, with their number of leaf records. (A tree's nodes are written after its leaves and
/// removed after them, so a tree with nodes but no leaves always has a removal marker.)
fn orphan_trees(ks: &Keyspaces) -> Result<Vec<(Cid, u64)>> {
    let mut counts: HashMap<Vec<u8>, u64> = HashMap::new();
    let mut known: HashMap<Vec<u8>, bool> = HashMap::new();
    for guard in ks.leaves.iter() {
        let key = guard.key()?;
        let tree = key.get(..key.len().saturating_sub(8)).unwrap_or_default();
        let used = match known.get(tree) {
            Some(used) => *used,
            None => {
                let used = ks.trees.contains_key(tree)? && !ks.deleting.contains_key(tree)?;
                known.insert(tree.to_vec(), used);
                used
            }
        };
        if !used {
            *counts.entry(tree.to_vec()).or_default() += 1;
        }
    }
    for guard in ks.deleting.iter() {
        counts.entry(guard.key()?.to_vec()).or_default();
    }
    Ok(counts
        .into_iter()
        .filter_map(|(tree, n)| Some((Cid::try_from(tree.as_slice()).ok()?, n)))
        .collect())
}
