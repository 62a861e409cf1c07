//! A dataset built in a test, as Codex chunks and hashes it: zero-padded 64 KiB blocks, the
//! Merkle tree's layers, the manifest; and the genuine delivery of any of its blocks, proof
//! included. The misbehaving peers of both test suites serve from it:
//! `actors/tests/bad_peer/` directly, `tests/hostile/` through a `#[path]` to this file.

#![allow(dead_code)] // each suite uses its own subset

use bytes::Bytes;
use codex_actors::format::{
    blockexc::{BlockAddress, BlockDelivery},
    cid::{cid_from_digest, sha256, Digest, BLOCK_CODEC, ROOT_CODEC},
    manifest::Manifest,
    merkle::{self, CodexProof},
};
use codex_actors::Cid;

/// 64 KiB, Codex's block size.
pub const BLOCK: usize = 64 * 1024;

/// Errors that may cross tasks.
type Fallible<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A dataset and everything a seeder of it needs.
pub struct Dataset {
    pub data: Vec<u8>,
    pub blocks: Vec<Bytes>,
    pub cids: Vec<Cid>,
    pub layers: Vec<Vec<Digest>>,
    pub tree: Cid,
    pub manifest: Bytes,
    pub manifest_cid: Cid,
}

impl Dataset {
    /// `data` chunked, hashed and described by a manifest (no filename or MIME type).
    pub fn new(data: Vec<u8>) -> Fallible<Self> {
        let blocks: Vec<Bytes> = data
            .chunks(BLOCK)
            .map(|c| {
                let mut b = c.to_vec();
                b.resize(BLOCK, 0);
                Bytes::from(b)
            })
            .collect();
        let digests: Vec<Digest> = blocks.iter().map(|b| sha256(b)).collect();
        let cids = digests
            .iter()
            .map(|d| cid_from_digest(BLOCK_CODEC, d))
            .collect();
        let layers = merkle::layers(&digests).ok_or("no leaves")?;
        let root = layers.last().and_then(|l| l.first()).ok_or("no root")?;
        let tree = cid_from_digest(ROOT_CODEC, root);
        let manifest = Manifest::new(tree, data.len() as u64, BLOCK as u32, None, None);
        Ok(Self {
            data,
            blocks,
            cids,
            layers,
            tree,
            manifest_cid: manifest.cid(),
            manifest: Bytes::from(manifest.encode()),
        })
    }

    /// True when `address` is one of this dataset's.
    pub fn holds(&self, address: &BlockAddress) -> bool {
        match address {
            BlockAddress::Cid(cid) => *cid == self.manifest_cid,
            BlockAddress::Leaf { tree, index } => {
                *tree == self.tree && (*index as usize) < self.blocks.len()
            }
        }
    }

    /// The proof of leaf `index` to the tree's root.
    pub fn proof(&self, index: u64) -> Option<CodexProof> {
        CodexProof::from_layers(&self.layers, index)
    }

    /// The genuine delivery for `address`, if this dataset holds it.
    pub fn delivery(&self, address: &BlockAddress) -> Option<BlockDelivery> {
        match address {
            BlockAddress::Cid(cid) if *cid == self.manifest_cid => Some(BlockDelivery {
                cid: *cid,
                data: self.manifest.clone(),
                address: address.clone(),
                proof: None,
            }),
            BlockAddress::Leaf { tree, index } if *tree == self.tree => {
                let i = usize::try_from(*index).ok()?;
                Some(BlockDelivery {
                    cid: *self.cids.get(i)?,
                    data: self.blocks.get(i)?.clone(),
                    address: address.clone(),
                    proof: self.proof(*index),
                })
            }
            _ => None,
        }
    }
}
