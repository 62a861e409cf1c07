//! A dataset for the metadata tests: `n` distinct blocks named by their index, stored and
//! committed as an upload would (the blocks' bytes are never read, only their records).

use cid::Cid;

use super::{CommitDataset, MetaStore, NewBlock, PutBlocks};
use crate::{
    error::Result,
    format::{
        cid::{block_cid, cid_from_digest, digest_of, ROOT_CODEC},
        manifest::Manifest,
        merkle,
    },
    records::Location,
};

/// The CID of test block `i`.
pub(crate) fn numbered_block(i: u64) -> Cid {
    block_cid(&i.to_le_bytes())
}

/// Stores blocks `0..n` (64 KiB each, at made-up locations) and commits the dataset of them,
/// kept forever; returns its manifest CID and its tree CID. `n` must be 2 or more.
pub(crate) fn store_numbered(meta: &mut MetaStore, n: u64) -> Result<(Cid, Cid)> {
    let cids: Vec<Cid> = (0..n).map(numbered_block).collect();
    let blocks = (0..n)
        .zip(&cids)
        .map(|(i, cid)| NewBlock {
            cid: *cid,
            size: 65536,
            location: Some(Location {
                segment: 0,
                offset: i * 70_000,
                len: 65536,
                checksum: None,
            }),
        })
        .collect();
    meta.put_blocks(&PutBlocks { blocks, expiry: 1 })?;
    let digests: Vec<_> = cids.iter().filter_map(digest_of).collect();
    let mut layers = merkle::layers(&digests).expect("n > 1").into_iter();
    let leaves = layers.next().expect("leaf layer");
    let nodes: Vec<_> = layers.collect();
    let root = *nodes
        .last()
        .and_then(|l| l.first())
        .expect("a root above n > 1 leaves");
    let tree = cid_from_digest(ROOT_CODEC, &root);
    let manifest = Manifest::new(tree, n * 65536, 65536, None, None);
    let cid = meta.commit_dataset(CommitDataset {
        manifest,
        leaves,
        nodes,
        expiry: u64::MAX,
    })?;
    Ok((cid, tree))
}
