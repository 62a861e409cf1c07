//! Upgrading a repository written by an earlier version of this node, at open, before the
//! start-up check.
//!
//! Format 1 kept block locations in their own `block_index` keyspace, written by the block
//! store, and stored no tree nodes. Format 2 keeps the location in the block's record (one
//! writer for all metadata) and the tree's upper levels for Merkle proofs. The upgrade rewrites
//! every block record with its location, computes the nodes of every stored tree, records the
//! format, syncs, and only then drops the old keyspace: a crash at any point before the format
//! record is durable leaves format 1 intact, and the upgrade simply runs again.

use cid::Cid;

use crate::{
    error::{Error, Result},
    format::{cid::digest_of, merkle},
    meta_store::Keyspaces,
    records::{self, BlockMeta, BlockMetaV1, LeafRecord, Location},
};

/// Format 1's keyspace of `block CID → Location`.
const LEGACY_BLOCK_INDEX: &str = "block_index";
/// Records rewritten per batch.
const BATCH: usize = 4096;

/// Brings the repository to [`records::FORMAT_VERSION`]. Returns true when it upgraded.
pub(crate) fn run(ks: &Keyspaces) -> Result<bool> {
    let format: Option<u32> = match ks.counters.get(records::FORMAT_KEY)? {
        Some(v) => Some(records::decode(&v)?),
        None => None,
    };
    match format {
        Some(v) if v == records::FORMAT_VERSION => return Ok(false),
        Some(v) if v > records::FORMAT_VERSION => {
            return Err(Error::Config(format!(
                "the repository has format {v}, newer than this node understands ({})",
                records::FORMAT_VERSION
            )))
        }
        _ => {}
    }
    let legacy = ks.db.keyspace_exists(LEGACY_BLOCK_INDEX);
    if legacy {
        let index = ks
            .db
            .keyspace(LEGACY_BLOCK_INDEX, records::keyspace_options)?;
        move_locations(ks, &index)?;
        add_tree_nodes(ks)?;
        tracing::info!("repository upgraded to format {}", records::FORMAT_VERSION);
        set_format(ks)?;
        ks.db.delete_keyspace(index)?;
    } else {
        set_format(ks)?;
    }
    Ok(legacy)
}

fn set_format(ks: &Keyspaces) -> Result<()> {
    let version = records::encode(&records::FORMAT_VERSION)?;
    ks.counters.insert(records::FORMAT_KEY, version)?;
    ks.db.persist(fjall::PersistMode::SyncAll)?;
    Ok(())
}

fn move_locations(ks: &Keyspaces, index: &fjall::Keyspace) -> Result<()> {
    let mut batch = ks.db.batch();
    let mut n = 0;
    for guard in ks.block_meta.iter() {
        let (key, value) = guard.into_inner()?;
        let meta = match records::decode::<BlockMeta>(&value) {
            Ok(meta) => meta, // already moved by an upgrade that crashed later
            Err(_) => {
                let old: BlockMetaV1 = records::decode(&value)?;
                let location: Option<Location> = match index.get(&key)? {
                    Some(v) => Some(records::decode(&v)?),
                    None => None,
                };
                BlockMeta {
                    expiry: old.expiry,
                    size: old.size,
                    ref_count: old.ref_count,
                    pins: old.pins,
                    location,
                }
            }
        };
        batch.insert(&ks.block_meta, key, records::encode(&meta)?);
        n += 1;
        if n % BATCH == 0 {
            std::mem::replace(&mut batch, ks.db.batch()).commit()?;
        }
    }
    batch.commit()?;
    Ok(())
}

/// Computes and stores the upper levels of every stored tree from its leaves. Memory is one
/// tree's digests at a time (64 bytes per block).
fn add_tree_nodes(ks: &Keyspaces) -> Result<()> {
    let trees: Vec<Cid> = ks
        .trees
        .iter()
        .filter_map(|g| g.key().ok())
        .filter_map(|k| Cid::try_from(k.as_ref()).ok())
        .collect();
    for tree in trees {
        let mut leaves = Vec::new();
        for guard in ks.leaves.prefix(tree.to_bytes()) {
            let leaf: LeafRecord = records::decode(&guard.value()?)?;
            let digest = Cid::try_from(leaf.block_cid.as_slice())
                .ok()
                .as_ref()
                .and_then(digest_of);
            leaves.extend(digest);
        }
        let Some(layers) = merkle::layers(&leaves) else {
            continue;
        };
        let mut batch = ks.db.batch();
        let count = (leaves.len() as u64).to_be_bytes().to_vec();
        batch.insert(&ks.tree_nodes, records::leaf_count_key(&tree), count);
        for (level, nodes) in (1u8..).zip(layers.iter().skip(1)) {
            for (index, digest) in (0u64..).zip(nodes) {
                let key = records::node_key(&tree, level, index);
                batch.insert(&ks.tree_nodes, key, digest.to_vec());
                if batch.len() >= BATCH {
                    std::mem::replace(&mut batch, ks.db.batch()).commit()?;
                }
            }
        }
        batch.commit()?;
    }
    Ok(())
}
