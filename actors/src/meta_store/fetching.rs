//! Datasets fetched from peers, as the metadata actor records them.
//!
//! [`BeginFetch`] stores the manifest as a *partial* dataset (a `fetching` record), counts it as
//! a user of its tree, and reserves the quota the missing blocks need, or refuses the whole
//! dataset up front when they cannot fit. [`StoreFetched`] records blocks as they arrive (the
//! caller wrote and synced their bytes first): a leaf record each, the tree nodes their proofs
//! show, and the quota moved from reserved to used. With the last leaf the dataset becomes
//! complete: its manifest moves to `manifests`, the leftover reservation is released, and from
//! then on it is indistinguishable from an uploaded one. A partial dataset is removed like any
//! other ([`super::DeleteDataset`], expiry), which also releases its reservation.

use std::collections::{HashMap, HashSet};

use actix::{Handler, Message};
use cid::Cid;

use super::MetaStore;
use crate::{
    error::{Error, Result},
    format::{
        cid::{digest_of, BLOCK_CODEC},
        manifest::{cid_of_encoded, Manifest},
        merkle::CodexProof,
    },
    records::{self, BlockMeta, Fetching, LeafRecord, Location},
};

/// Begin (or resume) fetching the dataset whose manifest bytes are given. Replies with its
/// progress; refuses with [`Error::QuotaExceeded`] when its missing blocks cannot fit.
#[derive(Debug, Message)]
#[rtype(result = "Result<FetchProgress>")]
pub struct BeginFetch {
    /// The manifest's protobuf bytes, as received (their hash is the manifest CID).
    pub manifest: Vec<u8>,
    /// Expiry of the dataset until it is complete and used (unix seconds); raised on resume.
    pub expiry: u64,
}

/// Progress of a dataset being fetched (or just completed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchProgress {
    /// Blocks stored locally.
    pub stored: u64,
    /// Blocks in the dataset.
    pub total: u64,
    /// True once every block is stored (the dataset is then an ordinary local dataset).
    pub complete: bool,
}

/// Record blocks of a dataset being fetched, whose bytes the block store has written and
/// synced (or found already stored).
#[derive(Debug, Message)]
#[rtype(result = "Result<Fetched>")]
pub struct StoreFetched {
    /// The dataset's manifest CID.
    pub manifest: Cid,
    /// The blocks.
    pub blocks: Vec<FetchedBlock>,
    /// Expiry for new blocks (unix seconds).
    pub expiry: u64,
}

/// One verified block of a [`StoreFetched`].
#[derive(Debug, Clone)]
pub struct FetchedBlock {
    /// Its leaf index in the dataset.
    pub index: u64,
    /// Its CID.
    pub cid: Cid,
    /// Its size in bytes.
    pub size: u64,
    /// Where the block store wrote it; `None` when it was already stored.
    pub location: Option<Location>,
    /// Its Merkle proof, checked against the tree.
    pub proof: CodexProof,
}

/// The reply of [`StoreFetched`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Progress after this message.
    pub stored: u64,
    /// Blocks in the dataset.
    pub total: u64,
    /// The dataset became complete with this message.
    pub completed: bool,
    /// Copies written for blocks that turned out to be stored already: release them.
    pub garbage: Vec<Location>,
    /// Leaf indexes given without a location whose block is not stored (removed meanwhile):
    /// write their bytes and send them again.
    pub missing: Vec<u64>,
    /// Leaf indexes refused (not a `codex-block` CID): nothing was recorded for them, so the
    /// fetch must ask for them again rather than wait for them forever.
    pub refused: Vec<u64>,
}

impl MetaStore {
    fn fetching(&self, cid: &Cid) -> Result<Option<Fetching>> {
        match self.ks.fetching.get(cid.to_bytes())? {
            Some(v) => Ok(Some(records::decode(&v)?)),
            None => Ok(None),
        }
    }

    fn begin_fetch(&mut self, msg: BeginFetch) -> Result<FetchProgress> {
        let cid = cid_of_encoded(&msg.manifest);
        let manifest = Manifest::decode(&msg.manifest).map_err(|e| Error::BadManifest {
            cid,
            reason: e.to_string(),
        })?;
        let total = manifest.blocks_count();
        if self.ks.manifests.contains_key(cid.to_bytes())? {
            return Ok(FetchProgress {
                stored: total,
                total,
                complete: true,
            });
        }
        let mut batch = self.ks.db.batch();
        let mut counters = self.counters;
        let manifest_meta = self.meta(&HashMap::new(), &cid)?;
        if let Some(record) = self.fetching(&cid)? {
            // A resume: the dataset lives on; only its expiry moves.
            if let Some(mut m) = manifest_meta {
                m.expiry = m.expiry.max(msg.expiry);
                batch.insert(&self.ks.block_meta, cid.to_bytes(), records::encode(&m)?);
            }
            self.commit(batch, HashMap::new(), counters)?;
            return Ok(FetchProgress {
                stored: record.stored,
                total,
                complete: false,
            });
        }
        let tree = manifest.tree_cid;
        // A tree held here has its leaf count, which every proof served for it depends on. A
        // manifest from a peer that names the same tree with another size is a lie: refused,
        // and the count is never overwritten.
        let held = self
            .ks
            .tree_nodes
            .get(records::leaf_count_key(&tree))?
            .and_then(|v| records::leaf_count(&v));
        if held.is_some_and(|count| count != total) {
            return Err(Error::BadManifest {
                cid,
                reason: format!(
                    "its tree is held here with {} leaves, not {total}",
                    held.unwrap_or_default()
                ),
            });
        }
        let stored = (self.ks.leaves.prefix(tree.to_bytes()).count() as u64).min(total);
        let reserve = (total - stored).saturating_mul(u64::from(manifest.block_size));
        let size = msg.manifest.len() as u64;
        let needed = size.saturating_add(reserve);
        self.check_quota(&counters, needed)?;
        let mut pending = HashMap::new();
        if manifest_meta.is_none() {
            self.take_quota(&mut counters, size)?;
            let meta = BlockMeta {
                expiry: msg.expiry,
                size,
                ref_count: 0,
                pins: 0,
                location: None,
            };
            pending.insert(cid, Some(meta));
        }
        // The partial dataset uses its tree from now on; a removal of the tree that is under
        // way is adopted (the leaves it has not reached are kept).
        let users = self.tree_users(&tree)? + 1;
        batch.insert(&self.ks.trees, tree.to_bytes(), records::encode(&users)?);
        if held.is_none() {
            let count = total.to_be_bytes().to_vec();
            batch.insert(&self.ks.tree_nodes, records::leaf_count_key(&tree), count);
        }
        batch.remove(&self.ks.deleting, tree.to_bytes());
        let complete = stored == total;
        if complete {
            batch.insert(&self.ks.manifests, cid.to_bytes(), msg.manifest);
        } else {
            counters.quota_reserved += reserve;
            let record = Fetching {
                manifest: msg.manifest,
                stored,
                reserved: reserve,
            };
            batch.insert(&self.ks.fetching, cid.to_bytes(), records::encode(&record)?);
        }
        self.commit(batch, pending, counters)?;
        Ok(FetchProgress {
            stored,
            total,
            complete,
        })
    }

    fn store_fetched(&mut self, msg: StoreFetched) -> Result<Fetched> {
        let mut record = self
            .fetching(&msg.manifest)?
            .ok_or(Error::NotFound(msg.manifest))?;
        let manifest = Manifest::decode(&record.manifest).map_err(|e| Error::BadManifest {
            cid: msg.manifest,
            reason: e.to_string(),
        })?;
        let tree = manifest.tree_cid;
        let mut out = Fetched {
            total: manifest.blocks_count(),
            ..Fetched::default()
        };
        let mut batch = self.ks.db.batch();
        let mut pending: HashMap<Cid, Option<BlockMeta>> = HashMap::new();
        let mut counters = self.counters;
        let mut leaves_added: HashSet<u64> = HashSet::new();
        let mut garbage: HashSet<Location> = HashSet::new();
        let mut nodes_written: HashSet<(u8, u64)> = HashSet::new();
        for b in &msg.blocks {
            let key = records::leaf_key(&tree, b.index);
            let known = leaves_added.contains(&b.index) || self.ks.leaves.contains_key(&key)?;
            if known || b.index >= out.total {
                garbage.extend(b.location);
                continue;
            }
            if b.cid.codec() != BLOCK_CODEC {
                garbage.extend(b.location);
                out.refused.push(b.index);
                continue;
            }
            let meta = match self.meta(&pending, &b.cid)? {
                Some(mut m) if m.size == b.size => {
                    m.ref_count += 1;
                    garbage.extend(b.location);
                    m
                }
                Some(_) => return Err(Error::Corrupted(b.cid)),
                None => {
                    let Some(location) = b.location else {
                        out.missing.push(b.index);
                        continue;
                    };
                    // New bytes: quota moves from this dataset's reservation to used.
                    let from_reserve = b.size.min(record.reserved);
                    record.reserved -= from_reserve;
                    counters.quota_reserved = counters.quota_reserved.saturating_sub(from_reserve);
                    self.take_quota(&mut counters, b.size)?;
                    BlockMeta {
                        expiry: msg.expiry,
                        size: b.size,
                        ref_count: 1,
                        pins: 0,
                        location: Some(location),
                    }
                }
            };
            pending.insert(b.cid, Some(meta));
            let leaf = LeafRecord {
                block_cid: b.cid.to_bytes(),
            };
            batch.insert(&self.ks.leaves, key, records::encode(&leaf)?);
            leaves_added.insert(b.index);
            let nodes = digest_of(&b.cid).and_then(|d| b.proof.nodes(&d));
            for node in nodes.into_iter().flatten() {
                if nodes_written.insert((node.level, node.index)) {
                    let key = records::node_key(&tree, node.level, node.index);
                    batch.insert(&self.ks.tree_nodes, key, node.digest.to_vec());
                }
            }
        }
        // A copy is garbage unless a record now points at it (a block repeated in the batch
        // is written once and shared by its leaves).
        let kept: HashSet<Location> = pending
            .values()
            .flatten()
            .filter_map(|m| m.location)
            .collect();
        out.garbage = garbage.difference(&kept).copied().collect();
        record.stored += leaves_added.len() as u64;
        out.stored = record.stored;
        if record.stored >= out.total {
            counters.quota_reserved = counters.quota_reserved.saturating_sub(record.reserved);
            batch.remove(&self.ks.fetching, msg.manifest.to_bytes());
            batch.insert(&self.ks.manifests, msg.manifest.to_bytes(), record.manifest);
            out.completed = true;
        } else {
            let value = records::encode(&record)?;
            batch.insert(&self.ks.fetching, msg.manifest.to_bytes(), value);
        }
        self.commit(batch, pending, counters)?;
        Ok(out)
    }
}

impl Handler<BeginFetch> for MetaStore {
    type Result = Result<FetchProgress>;
    fn handle(&mut self, msg: BeginFetch, _: &mut Self::Context) -> Self::Result {
        self.begin_fetch(msg)
    }
}

impl Handler<StoreFetched> for MetaStore {
    type Result = Result<Fetched>;
    fn handle(&mut self, msg: StoreFetched, _: &mut Self::Context) -> Self::Result {
        self.store_fetched(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cid::{cid_from_digest, sha256, ROOT_CODEC};
    use crate::meta_store::Keyspaces;

    fn leaf_count(meta: &MetaStore, tree: &Cid) -> Option<u64> {
        let v = meta
            .ks
            .tree_nodes
            .get(records::leaf_count_key(tree))
            .ok()??;
        records::leaf_count(&v)
    }

    /// A manifest from a peer that names a tree held here with another size must not change
    /// the leaf count every proof of the honest dataset is built from.
    #[test]
    fn a_manifest_lying_about_a_held_tree_is_refused() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let mut meta = MetaStore::new(
            Keyspaces::open(dir.path(), 8 << 20)?,
            u64::MAX,
            Default::default(),
            4096,
        )?;
        let tree = cid_from_digest(ROOT_CODEC, &sha256(b"a tree"));
        let honest = Manifest::new(tree, 10 * 65536, 65536, None, None);
        let progress = meta.begin_fetch(BeginFetch {
            manifest: honest.encode(),
            expiry: 1,
        })?;
        assert_eq!((progress.stored, progress.total), (0, 10));
        let liar = Manifest::new(tree, 3 * 65536, 65536, Some("x".into()), None);
        let refused = meta.begin_fetch(BeginFetch {
            manifest: liar.encode(),
            expiry: 1,
        });
        assert!(
            matches!(refused, Err(Error::BadManifest { .. })),
            "{refused:?}"
        );
        assert_eq!(leaf_count(&meta, &tree), Some(10), "the count is kept");
        assert!(meta.fetching(&liar.cid())?.is_none(), "nothing recorded");
        Ok(())
    }
}
