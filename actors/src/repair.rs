//! The start-up consistency check. No upload is in progress when a node starts, so anything an
//! interrupted upload left behind can be recognised and removed:
//!
//! - block bytes without metadata (written just before a crash),
//! - leaf records of a tree no manifest uses (a commit cut short between its batches), with
//!   the block references they held,
//! - data blocks no dataset refers to (stored by an upload that never committed),
//! - metadata whose bytes are gone (dropped only when no dataset refers to it; otherwise the
//!   dataset is reported as damaged),
//! - counters that disagree with the block metadata (recomputed).
//!
//! All fixes go into one batch, so a crash during the repair leaves the store as it was.

use std::collections::HashMap;

use cid::Cid;

use crate::{
    error::Result,
    format::cid::{cid_text, BLOCK_CODEC},
    meta_store::MetaStore,
    records::{self, BlockMeta, Counters, LeafRecord},
};

/// What the start-up check found and fixed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// Block bytes without metadata, removed.
    pub orphan_bytes: u64,
    /// Leaf records of trees without a manifest, removed.
    pub orphan_leaves: u64,
    /// Blocks still held by uploads that died with the process, released.
    pub stale_pins: u64,
    /// Data blocks with no referring dataset, removed.
    pub unreferenced_blocks: u64,
    /// Metadata records whose bytes were missing, removed.
    pub missing_bytes: u64,
    /// Referenced blocks whose bytes are missing (data loss; logged, kept).
    pub damaged_blocks: u64,
    /// True when the stored counters disagreed with the block metadata (never expected: every
    /// batch updates both together).
    pub counters_fixed: bool,
}

impl RepairReport {
    /// True when nothing needed fixing.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

/// Checks the repository in `data_dir` without changing it: what would the next start repair?
/// For tests and operators; the node must not be running on the directory.
///
/// # Errors
/// When the repository cannot be opened or read.
pub fn inspect(data_dir: &std::path::Path) -> Result<RepairReport> {
    let (mut meta, _) = MetaStore::open_dir(
        data_dir,
        u64::MAX,
        crate::config::DEFAULT_SEGMENT_BYTES,
        8 << 20,
    )?;
    check(&mut meta, false)
}

/// Checks the repository behind `meta` and fixes what an interrupted run left behind.
pub(crate) fn run(meta: &mut MetaStore) -> Result<RepairReport> {
    check(meta, true)
}

fn check(meta: &mut MetaStore, apply: bool) -> Result<RepairReport> {
    let mut report = RepairReport::default();
    let mut batch = meta.db.batch();
    let mut released = Vec::new();
    let mut pending: HashMap<Cid, Option<BlockMeta>> = HashMap::new();
    let mut counters = Counters {
        quota_reserved: meta.counters.quota_reserved,
        ..Counters::default()
    };
    // The same sums over every record, before removals: what the stored counters must equal.
    let mut recorded = counters;

    for cid in meta.bytes.cids() {
        let cid = cid?;
        if !meta.block_meta.contains_key(cid.to_bytes())? {
            released.extend(meta.bytes.remove_in(&mut batch, &cid)?);
            report.orphan_bytes += 1;
        }
    }
    // Leaves first: dropping them lowers refcounts that the block pass below looks at.
    let mut known_trees: HashMap<Vec<u8>, bool> = HashMap::new();
    for guard in meta.leaves.iter() {
        let (key, value) = guard.into_inner()?;
        let tree = key
            .get(..key.len().saturating_sub(8))
            .unwrap_or_default()
            .to_vec();
        let used = match known_trees.get(&tree) {
            Some(used) => *used,
            None => {
                let used = meta.trees.contains_key(&tree)?;
                known_trees.insert(tree, used);
                used
            }
        };
        if used {
            continue;
        }
        batch.remove(&meta.leaves, key);
        report.orphan_leaves += 1;
        let leaf: LeafRecord = records::decode(&value)?;
        let Ok(block) = Cid::try_from(leaf.block_cid.as_slice()) else {
            continue;
        };
        if let Some(mut m) = meta.meta(&pending, &block)? {
            m.ref_count = m.ref_count.saturating_sub(1);
            pending.insert(block, Some(m));
        }
    }
    for guard in meta.block_meta.iter() {
        let (key, value) = guard.into_inner()?;
        let Ok(cid) = Cid::try_from(key.as_ref()) else {
            continue;
        };
        let stored: BlockMeta = records::decode(&value)?;
        let mut m = pending.get(&cid).copied().flatten().unwrap_or(stored);
        if m.pins > 0 {
            // Holds of uploads that died with the process.
            m.pins = 0;
            pending.insert(cid, Some(m));
            report.stale_pins += 1;
        }
        recorded.total_blocks += 1;
        recorded.quota_used += m.size;
        let is_data = cid.codec() == BLOCK_CODEC;
        let has_bytes = if is_data {
            meta.bytes.contains(&cid)?
        } else {
            meta.manifests.contains_key(&key)?
        };
        if is_data && m.ref_count == 0 {
            if has_bytes {
                released.extend(meta.bytes.remove_in(&mut batch, &cid)?);
            }
            pending.insert(cid, None);
            report.unreferenced_blocks += 1;
            continue;
        }
        if !has_bytes {
            if m.ref_count == 0 {
                pending.insert(cid, None);
                report.missing_bytes += 1;
                continue;
            }
            tracing::error!(cid = %cid_text(&cid), refs = m.ref_count, "block referenced by a dataset is missing");
            report.damaged_blocks += 1;
        }
        counters.total_blocks += 1;
        counters.quota_used += m.size;
    }
    report.counters_fixed = recorded != meta.counters;
    if apply && (!report.is_clean() || counters != meta.counters) {
        meta.commit(batch, pending, counters)?;
        meta.bytes.released(&released);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{
        format::{
            cid::{block_cid, cid_from_digest, digest_of, ROOT_CODEC},
            manifest::Manifest,
        },
        meta_store::{CommitDataset, PutBlocks},
    };

    #[test]
    fn leaves_of_a_commit_cut_short_are_removed_with_their_blocks() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (mut meta, bytes) = MetaStore::open_dir(dir.path(), u64::MAX, 1 << 30, 8 << 20)?;
        let blocks: Vec<Bytes> = (1u8..=3).map(|i| Bytes::from(vec![i; 65536])).collect();
        let cids: Vec<Cid> = blocks.iter().map(|b| block_cid(b)).collect();
        bytes.write(&cids.iter().copied().zip(blocks).collect::<Vec<_>>())?;
        meta.put_blocks(PutBlocks {
            blocks: cids.iter().map(|c| (*c, 65536)).collect(),
            expiry: u64::MAX,
        })?;
        let leaves = cids.iter().filter_map(digest_of).collect();
        let tree = cid_from_digest(ROOT_CODEC, &[9; 32]);
        let manifest = Manifest::new(tree, 3 * 65536, 65536, None, None);
        let manifest_cid = meta.commit_dataset(CommitDataset {
            manifest,
            leaves,
            expiry: u64::MAX,
        })?;
        assert!(check(&mut meta, false)?.is_clean());

        // As if the process died after the leaf batches, before the manifest batch.
        meta.manifests.remove(manifest_cid.to_bytes())?;
        meta.trees.remove(tree.to_bytes())?;
        meta.block_meta.remove(manifest_cid.to_bytes())?;
        let report = check(&mut meta, true)?;
        assert_eq!(report.orphan_leaves, 3);
        assert_eq!(report.unreferenced_blocks, 3);
        assert!(
            check(&mut meta, false)?.is_clean(),
            "the repair left a clean store"
        );
        assert_eq!(meta.counters, Counters::default());
        Ok(())
    }
}
