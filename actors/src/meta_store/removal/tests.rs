//! Tests of bounded removal: deletes, expiry steps, start-up repair and adoption.

use std::collections::HashMap;

use super::*;
use crate::{
    format::{
        cid::{block_cid, digest_of},
        merkle,
    },
    meta_store::{test_dataset::store_numbered, CommitDataset, Keyspaces, NewBlock, PutBlocks},
    records::Counters,
    repair,
};

const BLOCKS: u64 = 10;

/// A store holding one dataset of ten distinct blocks; removals run 3 records at a time.
fn dataset(dir: &std::path::Path) -> Result<(MetaStore, Cid)> {
    let ks = Keyspaces::open(dir, 8 << 20)?;
    let mut meta = MetaStore::new(ks, u64::MAX, Default::default(), 3)?;
    let (cid, _) = store_numbered(&mut meta, BLOCKS)?;
    Ok((meta, cid))
}

#[test]
fn a_dataset_goes_in_bounded_steps() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut meta, cid) = dataset(dir.path())?;
    let mut step = meta.delete_dataset(cid)?;
    assert!(
        !meta.ks.manifests.contains_key(cid.to_bytes())?,
        "gone at once"
    );
    let mut steps = 0;
    let mut freed = step.freed.removed;
    while let Some(tree) = step.tree {
        step = meta.drop_tree(tree)?;
        freed += step.freed.removed;
        steps += 1;
    }
    // 10 leaves three at a time (4 steps), then the 5 + 3 + 2 + 1 nodes above them and the
    // leaf count, three at a time (4 steps, and a fifth that finds none left).
    assert_eq!(steps, 9);
    assert_eq!(freed.blocks, BLOCKS + 1, "every block and the manifest");
    assert_eq!(meta.counters, Counters::default());
    assert!(meta.ks.leaves.is_empty()? && meta.ks.tree_nodes.is_empty()?);
    assert!(meta.ks.deleting.is_empty()?);
    Ok(())
}

/// A crash after the manifest went and one step of leaves: the start-up check finishes it.
#[test]
fn a_removal_cut_short_is_finished_at_start_up() -> Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let (mut meta, cid) = dataset(dir.path())?;
        let first = meta.delete_dataset(cid)?;
        meta.drop_tree(first.tree.expect("a tree to drop"))?;
        meta.ks.db.persist(fjall::PersistMode::SyncAll)?;
    } // the process dies here
    let ks = Keyspaces::open(dir.path(), 8 << 20)?;
    let mut meta = MetaStore::new(ks, u64::MAX, Default::default(), 3)?;
    let lengths = HashMap::from([(0, BLOCKS * 70_000)]);
    let (report, live) = repair::run(&mut meta, &lengths)?;
    assert_eq!(report.orphan_leaves, BLOCKS - 3, "{report:?}");
    assert!(report.is_consistent(), "{report:?}");
    assert!(live.is_empty(), "no bytes live");
    assert_eq!(meta.counters, Counters::default());
    assert!(meta.ks.leaves.is_empty()? && meta.ks.deleting.is_empty()?);
    assert!(meta.ks.tree_nodes.is_empty()?);
    Ok(())
}

/// The same content uploaded again while its removal is under way keeps every leaf.
#[test]
fn a_new_commit_adopts_a_tree_being_removed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut meta, cid) = dataset(dir.path())?;
    let step = meta.delete_dataset(cid)?;
    let tree = step.tree.expect("a tree to drop");
    meta.drop_tree(tree)?; // leaves 0..3 gone, 3..10 still referenced
                           // The upload pins its blocks first (as PutBlocks does), then commits.
                           // The manifest an upload of the same content builds (from a store of its own).
    let dir2 = tempfile::tempdir()?;
    let (again, _) = dataset(dir2.path())?;
    let cids: Vec<Cid> = (0..BLOCKS).map(|i| block_cid(&i.to_le_bytes())).collect();
    let blocks = cids
        .iter()
        .map(|cid| NewBlock {
            cid: *cid,
            size: 65536,
            location: Some(Location {
                segment: 1,
                offset: 0,
                len: 65536,
                checksum: None,
            }),
        })
        .collect();
    meta.put_blocks(&PutBlocks { blocks, expiry: 1 })?;
    let manifest_bytes = again.ks.manifests.iter().next().expect("one").value()?;
    let manifest = Manifest::decode(&manifest_bytes).expect("manifest");
    let leaves: Vec<_> = cids.iter().filter_map(digest_of).collect();
    let mut layers = merkle::layers(&leaves).expect("leaves").into_iter();
    let leaves = layers.next().expect("leaf layer");
    let recommitted = meta.commit_dataset(CommitDataset {
        manifest,
        leaves,
        nodes: layers.collect(),
        expiry: u64::MAX,
    })?;
    assert_eq!(recommitted, cid);
    assert!(meta.drop_tree(tree)?.tree.is_none(), "the removal ended");
    assert_eq!(meta.ks.leaves.len()?, BLOCKS as usize);
    for cid in &cids {
        let m = meta.meta(&HashMap::new(), cid)?.expect("kept");
        assert_eq!((m.ref_count, m.pins), (1, 0), "one reference each");
    }
    Ok(())
}
