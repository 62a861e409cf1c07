//! The metadata readers' queries for block exchange and fetching: what a peer may ask for
//! (blocks by address, with Merkle proofs for leaves), which leaves a fetch still lacks, and
//! the datasets being fetched.

use actix::{Handler, Message};
use bytes::Bytes;
use cid::Cid;
use fjall::{Readable, Snapshot};

use super::{block_meta, proofs::LeafRuns, MetaReader};
use crate::{
    error::{Error, Result},
    format::{
        blockexc::BlockAddress,
        cid::{BLOCK_CODEC, MANIFEST_CODEC},
        manifest::Manifest,
        merkle::CodexProof,
    },
    meta_store::FetchProgress,
    records::{self, Fetching, Location},
};

/// Where to find the blocks a peer asks for, those this node holds (one snapshot for all).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Option<BlockSource>>>")]
pub struct FindBlocksAt {
    /// The addresses asked for.
    pub addresses: Vec<BlockAddress>,
}

/// A block this node can serve.
#[derive(Debug, Clone)]
pub struct BlockSource {
    /// The block's CID.
    pub cid: Cid,
    /// Where its bytes are: in a segment, or (a manifest) right here.
    pub bytes: SourceBytes,
    /// The Merkle proof, for a leaf address.
    pub proof: Option<CodexProof>,
}

/// Where a served block's bytes come from.
#[derive(Debug, Clone)]
pub enum SourceBytes {
    /// In the block store.
    Stored(Location),
    /// A manifest's bytes, read with its record.
    Inline(Bytes),
}

/// Which of these addresses this node can serve.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<bool>>")]
pub struct HasAddresses {
    /// The addresses.
    pub addresses: Vec<BlockAddress>,
}

/// A manifest stored locally, complete or being fetched.
#[derive(Debug, Message)]
#[rtype(result = "Result<Option<LocalManifest>>")]
pub struct FindManifest {
    /// The manifest CID.
    pub cid: Cid,
}

/// A manifest this node holds, with its bytes and how much of its dataset is here.
#[derive(Debug, Clone)]
pub struct LocalManifest {
    /// The decoded manifest.
    pub manifest: Manifest,
    /// Its protobuf bytes (what its CID hashes).
    pub bytes: Bytes,
    /// How much of the dataset is stored.
    pub progress: FetchProgress,
}

/// Leaf indexes in `start..start+count` of a tree that have no leaf record yet.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<u64>>")]
pub struct MissingLeaves {
    /// The tree.
    pub tree: Cid,
    /// First index.
    pub start: u64,
    /// Number of indexes.
    pub count: u64,
}

/// Every dataset being fetched, with its progress.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<(Cid, FetchProgress)>>")]
pub struct ListFetches;

impl MetaReader {
    /// [`FindBlocksAt`]'s answer, from one snapshot.
    pub(super) fn find_blocks_at(
        &mut self,
        addresses: &[BlockAddress],
    ) -> Result<Vec<Option<BlockSource>>> {
        let snap = self.ks.db.snapshot();
        let mut leaves = LeafRuns::scan(&snap, &self.ks, addresses)?;
        addresses
            .iter()
            .map(|a| self.find_block(&snap, a, &mut leaves))
            .collect()
    }

    fn find_block(
        &mut self,
        snap: &Snapshot,
        address: &BlockAddress,
        leaves: &mut LeafRuns,
    ) -> Result<Option<BlockSource>> {
        match address {
            BlockAddress::Cid(cid) if cid.codec() == MANIFEST_CODEC => {
                let Some(found) = manifest_bytes(snap, &self.ks, cid)? else {
                    return Ok(None);
                };
                Ok(Some(BlockSource {
                    cid: *cid,
                    bytes: SourceBytes::Inline(found.0),
                    proof: None,
                }))
            }
            BlockAddress::Cid(cid) => {
                let location = block_meta(snap, &self.ks, cid)?.and_then(|m| m.location);
                Ok(location.map(|l| BlockSource {
                    cid: *cid,
                    bytes: SourceBytes::Stored(l),
                    proof: None,
                }))
            }
            BlockAddress::Leaf { tree, index } => {
                let Some(cid) = leaves.leaf(snap, &self.ks, tree, *index)? else {
                    return Ok(None);
                };
                let Some(location) = block_meta(snap, &self.ks, &cid)?.and_then(|m| m.location)
                else {
                    return Ok(None);
                };
                let proof = leaves.proof(snap, &self.ks, &mut self.trees, tree, *index)?;
                Ok(Some(BlockSource {
                    cid,
                    bytes: SourceBytes::Stored(location),
                    proof: Some(proof),
                }))
            }
        }
    }

    fn has(&self, snap: &Snapshot, address: &BlockAddress) -> Result<bool> {
        Ok(match address {
            BlockAddress::Cid(cid) if cid.codec() == MANIFEST_CODEC => {
                manifest_bytes(snap, &self.ks, cid)?.is_some()
            }
            BlockAddress::Cid(cid) => {
                cid.codec() == BLOCK_CODEC
                    && block_meta(snap, &self.ks, cid)?.is_some_and(|m| m.location.is_some())
            }
            BlockAddress::Leaf { tree, index } => {
                snap.contains_key(&self.ks.leaves, records::leaf_key(tree, *index))?
            }
        })
    }

    fn find_manifest(&self, cid: &Cid) -> Result<Option<LocalManifest>> {
        let snap = self.ks.db.snapshot();
        let Some((bytes, fetching)) = manifest_bytes(&snap, &self.ks, cid)? else {
            return Ok(None);
        };
        let manifest = Manifest::decode(&bytes).map_err(|e| Error::BadManifest {
            cid: *cid,
            reason: e.to_string(),
        })?;
        let total = manifest.blocks_count();
        let progress = match fetching {
            Some(record) => FetchProgress {
                stored: record.stored,
                total,
                complete: false,
            },
            None => FetchProgress {
                stored: total,
                total,
                complete: true,
            },
        };
        Ok(Some(LocalManifest {
            manifest,
            bytes,
            progress,
        }))
    }
}

/// A manifest's bytes, and its fetch record when it is still being fetched.
fn manifest_bytes(
    snap: &Snapshot,
    ks: &crate::meta_store::Keyspaces,
    cid: &Cid,
) -> Result<Option<(Bytes, Option<Fetching>)>> {
    if let Some(v) = snap.get(&ks.manifests, cid.to_bytes())? {
        return Ok(Some((Bytes::copy_from_slice(&v), None)));
    }
    match snap.get(&ks.fetching, cid.to_bytes())? {
        Some(v) => {
            let record: Fetching = records::decode(&v)?;
            Ok(Some((Bytes::from(record.manifest.clone()), Some(record))))
        }
        None => Ok(None),
    }
}

impl Handler<FindBlocksAt> for MetaReader {
    type Result = Result<Vec<Option<BlockSource>>>;
    fn handle(&mut self, msg: FindBlocksAt, _: &mut Self::Context) -> Self::Result {
        self.find_blocks_at(&msg.addresses)
    }
}

impl Handler<HasAddresses> for MetaReader {
    type Result = Result<Vec<bool>>;
    fn handle(&mut self, msg: HasAddresses, _: &mut Self::Context) -> Self::Result {
        let snap = self.ks.db.snapshot();
        msg.addresses.iter().map(|a| self.has(&snap, a)).collect()
    }
}

impl Handler<FindManifest> for MetaReader {
    type Result = Result<Option<LocalManifest>>;
    fn handle(&mut self, msg: FindManifest, _: &mut Self::Context) -> Self::Result {
        self.find_manifest(&msg.cid)
    }
}

impl Handler<MissingLeaves> for MetaReader {
    type Result = Result<Vec<u64>>;
    fn handle(&mut self, msg: MissingLeaves, _: &mut Self::Context) -> Self::Result {
        let snap = self.ks.db.snapshot();
        let start = records::leaf_key(&msg.tree, msg.start);
        let end = records::leaf_key(&msg.tree, msg.start.saturating_add(msg.count));
        let mut present = snap
            .range(&self.ks.leaves, start..end)
            .filter_map(|g| g.key().ok())
            .filter_map(|k| records::key_index(&k))
            .peekable();
        let mut missing = Vec::new();
        for i in msg.start..msg.start.saturating_add(msg.count) {
            if present.peek() == Some(&i) {
                present.next();
            } else {
                missing.push(i);
            }
        }
        Ok(missing)
    }
}

impl Handler<ListFetches> for MetaReader {
    type Result = Result<Vec<(Cid, FetchProgress)>>;
    fn handle(&mut self, _: ListFetches, _: &mut Self::Context) -> Self::Result {
        let snap = self.ks.db.snapshot();
        let mut out = Vec::new();
        for guard in snap.iter(&self.ks.fetching) {
            let (key, value) = guard.into_inner()?;
            let (Ok(cid), Ok(record)) = (
                Cid::try_from(key.as_ref()),
                records::decode::<Fetching>(&value),
            ) else {
                continue;
            };
            let total = Manifest::decode(&record.manifest).map_or(0, |m| m.blocks_count());
            let progress = FetchProgress {
                stored: record.stored,
                total,
                complete: false,
            };
            out.push((cid, progress));
        }
        Ok(out)
    }
}
