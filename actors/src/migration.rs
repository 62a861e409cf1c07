//! Upgrading a repository written by an earlier version of this node, at open, before the
//! start-up check.
//!
//! Format 1 kept block locations in their own `block_index` keyspace, written by the block
//! store, and stored no tree nodes. Format 2 keeps the location in the block's record (one
//! writer for all metadata) and the tree's upper levels for Merkle proofs. The upgrade rewrites
//! every block record with its location, computes the nodes of every stored tree, records the
//! format, syncs, and only then drops the old keyspace: a crash at any point before the format
//! record is durable leaves format 1 intact, and the upgrade simply runs again.
//!
//! Format 3 gives every location the checksum of the bytes written there, which local reads
//! check instead of hashing again. Blocks stored before have none (reading every block at open
//! would make an upgrade as slow as the disk): format 2 records are rewritten with an empty
//! checksum, and those blocks are still checked against their CID until compaction copies
//! them. A crash before the format record is durable leaves a mix that the upgrade, run
//! again, finishes: a format 3 record does not decode as format 2 nor the other way round.

use cid::Cid;

use crate::{
    error::{Error, Result},
    format::{cid::digest_of, merkle},
    meta_store::Keyspaces,
    records::{self, BlockMeta, BlockMetaV1, BlockMetaV2, LeafRecord, Location, LocationV2},
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
    if format == Some(2) {
        add_checksum_field(ks)?;
        tracing::info!("repository upgraded to format {}", records::FORMAT_VERSION);
        set_format(ks)?;
        return Ok(true);
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
                    Some(v) => Some(records::decode::<LocationV2>(&v)?.into()),
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

/// Rewrites every format 2 block record as format 3 (a location without a checksum).
fn add_checksum_field(ks: &Keyspaces) -> Result<()> {
    let mut batch = ks.db.batch();
    for guard in ks.block_meta.iter() {
        let (key, value) = guard.into_inner()?;
        if records::decode::<BlockMeta>(&value).is_ok() {
            continue; // rewritten by an upgrade that crashed later, or a manifest's record
        }
        let meta = BlockMeta::from(records::decode::<BlockMetaV2>(&value)?);
        batch.insert(&ks.block_meta, key, records::encode(&meta)?);
        if batch.len() >= BATCH {
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

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use futures_util::StreamExt;

    use super::*;
    use crate::{Config, Node, UploadOptions};

    /// Rewrites a repository's block records the way format 2 wrote them (no checksums) and
    /// marks it format 2: the repository an older node left behind.
    fn downgrade_to_format_2(dir: &std::path::Path) -> Result<usize> {
        let ks = Keyspaces::open(dir, 1 << 20)?;
        let mut batch = ks.db.batch();
        let mut located = 0;
        for guard in ks.block_meta.iter() {
            let (key, value) = guard.into_inner()?;
            let meta: BlockMeta = records::decode(&value)?;
            located += usize::from(meta.location.is_some_and(|l| l.checksum.is_some()));
            let old = BlockMetaV2 {
                expiry: meta.expiry,
                size: meta.size,
                ref_count: meta.ref_count,
                pins: meta.pins,
                location: meta.location.map(|l| LocationV2 {
                    segment: l.segment,
                    offset: l.offset,
                    len: l.len,
                }),
            };
            batch.insert(&ks.block_meta, key, records::encode(&old)?);
        }
        batch.insert(&ks.counters, records::FORMAT_KEY, records::encode(&2u32)?);
        batch.commit()?;
        ks.db.persist(fjall::PersistMode::SyncAll)?;
        Ok(located)
    }

    async fn read_all(node: &Node, cid: Cid) -> Result<Vec<u8>> {
        let (_, mut stream) = node.retrieve(cid).await?;
        let mut out = Vec::new();
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    /// A format 2 repository opens as format 3: its blocks are read (checked against their
    /// CIDs, having no checksum), new blocks get checksums, and both kinds are served.
    #[test]
    fn a_format_2_repository_is_upgraded_at_open() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let old: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let new: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let path = dir.path().to_path_buf();
        let old_cid = actix::System::new().block_on(async {
            let node = Node::start(Config::new(&path)).await?;
            let body =
                futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(old.clone()))]);
            let cid = node.store(body, UploadOptions::default()).await?;
            node.shutdown().await?;
            Ok::<_, Error>(cid)
        })?;
        assert_eq!(
            downgrade_to_format_2(dir.path())?,
            5,
            "5 blocks had checksums"
        );
        actix::System::new().block_on(async {
            let node = Node::start(Config::new(&path)).await?;
            assert!(
                read_all(&node, old_cid).await? == old,
                "old blocks are served"
            );
            let body =
                futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(new.clone()))]);
            let new_cid = node.store(body, UploadOptions::default()).await?;
            assert!(
                read_all(&node, new_cid).await? == new,
                "new blocks are served"
            );
            node.shutdown().await
        })?;
        let ks = Keyspaces::open(dir.path(), 1 << 20)?;
        let format: u32 = records::decode(
            &ks.counters
                .get(records::FORMAT_KEY)?
                .ok_or(Error::Config("no format".into()))?,
        )?;
        assert_eq!(format, records::FORMAT_VERSION);
        let (mut with, mut without) = (0, 0);
        for guard in ks.block_meta.iter() {
            let meta: BlockMeta = records::decode(&guard.into_inner()?.1)?;
            match meta.location.map(|l| l.checksum) {
                Some(Some(_)) => with += 1,
                Some(None) => without += 1,
                None => {}
            }
        }
        assert_eq!(
            (with, without),
            (4, 5),
            "new blocks have checksums, old ones none"
        );
        Ok(())
    }
}
