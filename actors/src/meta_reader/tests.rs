//! Proofs served with the tree cache: the same as the tree's own, whatever the cache holds,
//! and right again for a dataset deleted and stored anew.

use super::*;
use crate::{
    format::{
        blockexc::BlockAddress,
        cid::{block_cid, digest_of, Digest},
        merkle::{self, CodexProof},
    },
    meta_store::{test_dataset::store_numbered, MetaStore},
};

/// Leaves of the test dataset: not a power of two, so odd layers and lone nodes show up.
const LEAVES: u64 = 300;

/// The tree of the test dataset's blocks, as `merkle::layers` builds it.
fn layers() -> Vec<Vec<Digest>> {
    let digests: Vec<Digest> = (0..LEAVES)
        .filter_map(|i| digest_of(&block_cid(&i.to_le_bytes())))
        .collect();
    merkle::layers(&digests).expect("leaves")
}

fn store_and_reader(dir: &std::path::Path) -> Result<(MetaStore, MetaReader, Cid, Cid)> {
    let ks = Keyspaces::open(dir, 8 << 20)?;
    let mut meta = MetaStore::new(ks.clone(), u64::MAX, Default::default(), 64)?;
    let (manifest, tree) = store_numbered(&mut meta, LEAVES)?;
    Ok((meta, MetaReader::new(ks, u64::MAX), manifest, tree))
}

/// Asks `reader` for `indexes` of `tree` and checks every proof against the tree's own.
fn check_served(reader: &mut MetaReader, tree: Cid, indexes: &[u64]) -> Result<()> {
    let layers = layers();
    let addresses: Vec<BlockAddress> = indexes
        .iter()
        .map(|&index| BlockAddress::Leaf { tree, index })
        .collect();
    let found = reader.find_blocks_at(&addresses)?;
    for (index, source) in indexes.iter().zip(found) {
        let source = source.expect("a stored leaf is found");
        assert_eq!(source.cid, block_cid(&index.to_le_bytes()), "leaf {index}");
        let expected = CodexProof::from_layers(&layers, *index).expect("a leaf");
        assert_eq!(source.proof.as_ref(), Some(&expected), "leaf {index}");
    }
    Ok(())
}

/// Whatever the cache holds (nothing, only the top levels, the whole tree; cold or warm),
/// and however the leaves are asked for (runs, scattered, repeated), the proofs are the tree's.
#[test]
fn proofs_with_the_cache_are_the_trees() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_meta, mut reader, _, tree) = store_and_reader(dir.path())?;
    for budget in [0, 1024, 4096, TREE_CACHE_BYTES] {
        reader.trees = trees::TreeCache::new(budget);
        for _pass in 0..2 {
            for start in (0..LEAVES).step_by(48) {
                let run: Vec<u64> = (start..(start + 48).min(LEAVES)).collect();
                check_served(&mut reader, tree, &run)?;
            }
            check_served(&mut reader, tree, &[299, 0, 150, 7, 298, 7])?;
        }
        assert!(reader.trees.used() <= budget);
    }
    Ok(())
}

/// A dataset deleted while its tree is cached is no longer served; stored again, it is
/// served with the right proofs.
#[test]
fn a_deleted_dataset_stored_again_is_served_right() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut meta, mut reader, manifest, tree) = store_and_reader(dir.path())?;
    let all: Vec<u64> = (0..LEAVES).collect();
    check_served(&mut reader, tree, &all)?;
    assert_eq!(reader.trees.len(), 1, "the tree is cached");

    let mut step = meta.delete_dataset(manifest)?;
    while let Some(tree) = step.tree {
        step = meta.drop_tree(tree)?;
    }
    let asked: Vec<BlockAddress> = [0, 1, 299]
        .into_iter()
        .map(|index| BlockAddress::Leaf { tree, index })
        .collect();
    let found = reader.find_blocks_at(&asked)?;
    assert!(found.iter().all(Option::is_none), "nothing served");

    let (again, same_tree) = store_numbered(&mut meta, LEAVES)?;
    assert_eq!((again, same_tree), (manifest, tree));
    check_served(&mut reader, tree, &all)?;
    check_served(&mut reader, tree, &[5, 4, 280])?;
    Ok(())
}
