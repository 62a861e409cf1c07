//! Making a dataset visible: [`CommitDataset`] writes its leaf records, refcounts, the Merkle
//! tree's upper levels (so every leaf can be proved to peers), and finally the manifest.

use std::collections::HashMap;

use actix::{Handler, Message};
use cid::Cid;

use super::MetaStore;
use crate::{
    error::{Error, Result},
    format::{
        cid::Digest,
        manifest::{cid_of_encoded, Manifest},
    },
    records::{self, BlockMeta, LeafRecord},
};

/// Make a dataset visible: its leaf records, refcounts and tree nodes in bounded batches, then
/// the manifest and the tree's user count in a final batch. Unpins the leaves. Replies with the
/// manifest CID once committed; the caller sends [`super::SyncMeta`] before acknowledging.
#[derive(Debug, Message)]
#[rtype(result = "Result<Cid>")]
pub struct CommitDataset {
    /// The manifest to store.
    pub manifest: Manifest,
    /// Block digests in tree order (`codex-block` sha2-256 CIDs), all pinned by earlier
    /// [`super::PutBlocks`]. Digests rather than CIDs: a third of the memory for large datasets.
    pub leaves: Vec<Digest>,
    /// The tree's levels above the leaves, bottom up (`merkle::layers` without its first).
    pub nodes: Vec<Vec<Digest>>,
    /// Expiry for the manifest block (unix seconds).
    pub expiry: u64,
}

impl MetaStore {
    pub(crate) fn commit_dataset(&mut self, msg: CommitDataset) -> Result<Cid> {
        let tree = msg.manifest.tree_cid;
        let encoded = msg.manifest.encode();
        let manifest_cid = cid_of_encoded(&encoded);
        let size = encoded.len() as u64;
        let mut counters = self.counters;
        let manifest_meta = match self.meta(&HashMap::new(), &manifest_cid)? {
            Some(mut m) => {
                m.expiry = m.expiry.max(msg.expiry);
                m
            }
            None => {
                // Checked before any leaf is written, so the final batch cannot fail on quota.
                self.take_quota(&mut counters, size)?;
                BlockMeta {
                    expiry: msg.expiry,
                    size,
                    ref_count: 0,
                    pins: 0,
                    location: None,
                }
            }
        };
        // A removal of this very tree may be under way (its manifest was deleted, its leaves
        // are being dropped step by step). Leaves it has not reached yet still hold their
        // references, so they are adopted as they are; the final batch ends that removal.
        // Leaf records and refcounts stay invisible until the final batch adds the manifest and
        // the tree's user count; after a crash in between, the start-up check removes leaves of
        // trees that no manifest uses.
        // Bounded batches, so memory stays flat however large the dataset.
        let per_batch = self.batch_records;
        for (chunk_no, chunk) in msg.leaves.chunks(per_batch).enumerate() {
            let mut batch = self.ks.db.batch();
            let mut pending = HashMap::new();
            let first = (chunk_no * per_batch) as u64;
            for (index, digest) in (first..).zip(chunk) {
                let cid = &Self::block_of(digest);
                let key = records::leaf_key(&tree, index);
                let mut meta = self.meta(&pending, cid)?.ok_or(Error::NotFound(*cid))?;
                meta.pins = meta.pins.saturating_sub(1); // the upload's hold becomes a reference
                let known = self.ks.leaves.contains_key(&key)?;
                if !known {
                    meta.ref_count += 1;
                    let leaf = LeafRecord {
                        block_cid: cid.to_bytes(),
                    };
                    batch.insert(&self.ks.leaves, key, records::encode(&leaf)?);
                }
                pending.insert(*cid, Some(meta));
            }
            self.commit(batch, pending, self.counters)?;
        }
        // The same content stored before (another name for it, or the same upload again)
        // already has its nodes.
        let nodes_known =
            self.tree_users(&tree)? > 0 && !self.ks.deleting.contains_key(tree.to_bytes())?;
        let nodes = if nodes_known { &[][..] } else { &msg.nodes[..] };

        for (level, nodes) in (1u8..).zip(nodes) {
            for (chunk_no, chunk) in nodes.chunks(per_batch).enumerate() {
                let mut batch = self.ks.db.batch();
                let first = (chunk_no * per_batch) as u64;
                for (index, digest) in (first..).zip(chunk) {
                    let key = records::node_key(&tree, level, index);
                    batch.insert(&self.ks.tree_nodes, key, digest.to_vec());
                }
                self.commit(batch, HashMap::new(), self.counters)?;
            }
        }
        let mut batch = self.ks.db.batch();
        if !self.ks.manifests.contains_key(manifest_cid.to_bytes())? {
            let users = self.tree_users(&tree)? + 1;
            batch.insert(&self.ks.trees, tree.to_bytes(), records::encode(&users)?);
        }
        batch.remove(&self.ks.deleting, tree.to_bytes());
        if !nodes_known {
            let count = (msg.leaves.len() as u64).to_be_bytes().to_vec();
            batch.insert(&self.ks.tree_nodes, records::leaf_count_key(&tree), count);
        }
        batch.insert(&self.ks.manifests, manifest_cid.to_bytes(), encoded);
        self.commit(
            batch,
            HashMap::from([(manifest_cid, Some(manifest_meta))]),
            counters,
        )?;
        Ok(manifest_cid)
    }
}

impl Handler<CommitDataset> for MetaStore {
    type Result = Result<Cid>;
    fn handle(&mut self, msg: CommitDataset, _: &mut Self::Context) -> Self::Result {
        self.commit_dataset(msg)
    }
}
