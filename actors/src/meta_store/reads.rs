//! The metadata actor's reads: manifests, leaf records, existence and the manifest listing.
//! They go through the same mailbox as writes, so a read never sees half of a message's
//! changes.

use actix::{Handler, Message};
use cid::Cid;

use super::MetaStore;
use crate::{
    error::{Error, Result},
    format::manifest::Manifest,
    records::{self, LeafRecord},
};

/// The encoded manifest stored under a CID.
#[derive(Debug, Message)]
#[rtype(result = "Result<Manifest>")]
pub struct GetManifest {
    /// A manifest CID.
    pub cid: Cid,
}

/// Block CIDs of leaves `start..start+count` of a tree.
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<Cid>>")]
pub struct GetLeaves {
    /// The dataset's tree CID.
    pub tree: Cid,
    /// First leaf index.
    pub start: u64,
    /// Number of leaves.
    pub count: u64,
}

/// True when a block or manifest is stored under the CID.
#[derive(Debug, Message)]
#[rtype(result = "Result<bool>")]
pub struct HasBlock {
    /// The CID to look up.
    pub cid: Cid,
}

/// Every stored manifest, each decoded on its own so that one bad record hides nothing else
/// (Codex stops listing at the first).
#[derive(Debug, Message)]
#[rtype(result = "Result<Vec<(Cid, Result<Manifest>)>>")]
pub struct ListManifests;

impl MetaStore {
    fn get_manifest(&self, cid: Cid) -> Result<Manifest> {
        match self.manifests.get(cid.to_bytes())? {
            Some(bytes) => Manifest::decode(&bytes).map_err(|e| Error::BadManifest {
                cid,
                reason: e.to_string(),
            }),
            None if self.block_meta.contains_key(cid.to_bytes())? => Err(Error::NotAManifest(cid)),
            None => Err(Error::NotFound(cid)),
        }
    }

    fn get_leaves(&self, msg: GetLeaves) -> Result<Vec<Cid>> {
        let mut out = Vec::with_capacity(msg.count as usize);
        let start = records::leaf_key(&msg.tree, msg.start);
        let end = records::leaf_key(&msg.tree, msg.start.saturating_add(msg.count));
        for (expected, guard) in (msg.start..).zip(self.leaves.range(start..end)) {
            let (key, value) = guard.into_inner()?;
            let index = key
                .len()
                .checked_sub(8)
                .and_then(|at| key.get(at..))
                .and_then(|b| <[u8; 8]>::try_from(b).ok());
            if index.map(u64::from_be_bytes) != Some(expected) {
                break; // a hole: reported below as the first missing leaf
            }
            let leaf: LeafRecord = records::decode(&value)?;
            let cid = Cid::try_from(leaf.block_cid.as_slice()).map_err(|_| Error::BadManifest {
                cid: msg.tree,
                reason: format!("leaf {expected} is not a CID"),
            })?;
            out.push(cid);
        }
        if (out.len() as u64) < msg.count {
            return Err(Error::NotFound(msg.tree));
        }
        Ok(out)
    }
}

impl Handler<GetManifest> for MetaStore {
    type Result = Result<Manifest>;
    fn handle(&mut self, msg: GetManifest, _: &mut Self::Context) -> Self::Result {
        self.get_manifest(msg.cid)
    }
}

impl Handler<GetLeaves> for MetaStore {
    type Result = Result<Vec<Cid>>;
    fn handle(&mut self, msg: GetLeaves, _: &mut Self::Context) -> Self::Result {
        self.get_leaves(msg)
    }
}

impl Handler<HasBlock> for MetaStore {
    type Result = Result<bool>;
    fn handle(&mut self, msg: HasBlock, _: &mut Self::Context) -> Self::Result {
        let key = msg.cid.to_bytes();
        Ok(self.block_meta.contains_key(&key)? || self.manifests.contains_key(&key)?)
    }
}

impl Handler<ListManifests> for MetaStore {
    type Result = Result<Vec<(Cid, Result<Manifest>)>>;
    fn handle(&mut self, _: ListManifests, _: &mut Self::Context) -> Self::Result {
        let mut out = Vec::new();
        for guard in self.manifests.iter() {
            let (key, value) = guard.into_inner()?;
            let Ok(cid) = Cid::try_from(key.as_ref()) else {
                continue;
            };
            let manifest = Manifest::decode(&value).map_err(|e| Error::BadManifest {
                cid,
                reason: e.to_string(),
            });
            out.push((cid, manifest));
        }
        Ok(out)
    }
}
