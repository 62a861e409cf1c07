//! The Codex Merkle tree (`CodexTree`) over sha2-256 block digests, and its proofs (`CodexProof`).
//!
//! Leaves are the raw block digests. Each layer compresses pairs with
//! `sha256(left ‖ right ‖ key)`; an odd last node is compressed with 32 zero bytes and the
//! layer's "odd" key. The leaf layer is always compressed, so even a one-leaf tree's root is a
//! hash and never the leaf itself.
//!
//! A proof lists the sibling of each node on the way from a leaf to the root, bottom-up, with the
//! zero digest where a node has no sibling (the lone last node of an odd layer). [`verify`]
//! recomputes the root and compares it: Codex's block exchange only checks that its verify did
//! not *fail*, so a well-formed proof for the wrong root passes there; here it does not.

use prost::Message as _;
use sha2::{Digest as _, Sha256};

use crate::format::cid::{Digest, SHA2_256};

const KEY_NONE: u8 = 0x00;
const KEY_BOTTOM_LAYER: u8 = 0x01;
const KEY_ODD: u8 = 0x02;
const KEY_ODD_AND_BOTTOM_LAYER: u8 = 0x03;
/// The stand-in for a missing sibling, in the tree and in proof paths.
pub const ZERO: Digest = [0u8; 32];

/// Longest proof path accepted from a peer. A tree of `n` leaves has a path of
/// `ceil(log2 n)` nodes (1 for one leaf); 64 covers any leaf count a `u64` can hold, so a longer
/// path can only be garbage and is refused before anything is hashed.
pub const MAX_PROOF_PATH: usize = 64;

/// `sha256(left ‖ right ‖ key)`: Codex's keyed two-to-one compression.
pub fn compress(left: &Digest, right: &Digest, key: u8) -> Digest {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.update([key]);
    h.finalize().into()
}

fn next_layer(layer: &[Digest], bottom: bool) -> Vec<Digest> {
    let (pair_key, odd_key) = if bottom {
        (KEY_BOTTOM_LAYER, KEY_ODD_AND_BOTTOM_LAYER)
    } else {
        (KEY_NONE, KEY_ODD)
    };
    layer
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => compress(l, r, pair_key),
            // The lone last node of an odd layer (chunks(2) never yields an empty slice).
            [l, ..] => compress(l, &ZERO, odd_key),
            [] => ZERO,
        })
        .collect()
}

/// The root of the tree over `leaves`, or `None` when there are no leaves (Codex: "Empty leaves").
pub fn root(leaves: &[Digest]) -> Option<Digest> {
    if leaves.is_empty() {
        return None;
    }
    let mut layer = next_layer(leaves, true);
    while layer.len() > 1 {
        layer = next_layer(&layer, false);
    }
    layer.first().copied()
}

/// Every layer of the tree, leaves first and the one-node root layer last, or `None` without
/// leaves. A tree of `n` leaves has `depth(n) + 1` layers; layer `i` has `layer_len(n, i)` nodes.
pub fn layers(leaves: &[Digest]) -> Option<Vec<Vec<Digest>>> {
    layers_of(leaves.to_vec())
}

/// [`layers`], taking the leaves by value so a large list is moved into the first layer.
pub fn layers_of(leaves: Vec<Digest>) -> Option<Vec<Vec<Digest>>> {
    if leaves.is_empty() {
        return None;
    }
    let bottom = next_layer(&leaves, true);
    let mut all = vec![leaves, bottom];
    while let Some(top) = all.last().filter(|l| l.len() > 1) {
        let up = next_layer(top, false);
        all.push(up);
    }
    Some(all)
}

/// The number of compression levels above the leaves, which is also a proof's path length:
/// 1 for a single leaf (its root is still a hash), `ceil(log2 n)` otherwise. 0 for no leaves.
pub fn depth(nleaves: u64) -> usize {
    let mut m = nleaves;
    let mut d = 0;
    while m > 0 {
        m = m.div_ceil(2);
        d += 1;
        if m == 1 {
            break;
        }
    }
    d
}

/// The number of nodes in layer `level` (0 = leaves) of a tree with `nleaves` leaves.
pub fn layer_len(nleaves: u64, level: usize) -> u64 {
    (0..level).fold(nleaves, |m, _| m.div_ceil(2))
}

/// One node of a tree: `level` 0 is the leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeNode {
    /// The layer, from 0 (leaves) up.
    pub level: u8,
    /// The position in that layer.
    pub index: u64,
    /// The node's value.
    pub digest: Digest,
}

/// `CodexProof`: the path from one leaf to the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodexProof {
    /// The hash multicodec (0x12, sha2-256, for every Codex tree).
    pub mcodec: u64,
    /// The leaf's position, from 0.
    pub index: u64,
    /// The number of leaves in the tree.
    pub nleaves: u64,
    /// The siblings from the leaf layer up; [`ZERO`] where a node has none.
    pub path: Vec<Digest>,
}

/// Why proof bytes from a peer were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// Not valid protobuf, or a field of the wrong wire type.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    /// A hash other than sha2-256.
    #[error("unsupported hash codec {0:#x}")]
    Codec(u64),
    /// The index is not below the leaf count, or the count is zero.
    #[error("leaf {index} does not exist in a tree of {nleaves} leaves")]
    Index {
        /// The claimed leaf index.
        index: u64,
        /// The claimed leaf count.
        nleaves: u64,
    },
    /// More path nodes than any tree can have.
    #[error("proof path of {0} nodes is too long")]
    PathTooLong(usize),
    /// A path node that is not a 32-byte digest.
    #[error("proof path node of {0} bytes, expected 32")]
    NodeLength(usize),
}

impl CodexProof {
    /// The proof of leaf `index` from a tree's [`layers`], or `None` when it has no such leaf.
    pub fn from_layers(layers: &[Vec<Digest>], index: u64) -> Option<Self> {
        let nleaves = layers.first().map_or(0, |l| l.len() as u64);
        let found: Result<Option<Self>, ()> = Self::from_lookup(nleaves, index, |level, i| {
            let node = layers
                .get(level)
                .and_then(|l| l.get(usize::try_from(i).ok()?));
            node.copied().ok_or(())
        });
        found.ok().flatten()
    }

    /// The proof of leaf `index` in a tree of `nleaves` leaves, asking `node(level, i)` for the
    /// sibling nodes it needs (level 0 = leaves), so the layers can live on disk. Only existing
    /// positions are asked for (`i < layer_len(nleaves, level)`); absent siblings become [`ZERO`].
    ///
    /// Returns `Ok(None)` when `index` is not a leaf of the tree.
    ///
    /// # Errors
    /// Whatever `node` fails with.
    pub fn from_lookup<E>(
        nleaves: u64,
        index: u64,
        mut node: impl FnMut(usize, u64) -> Result<Digest, E>,
    ) -> Result<Option<Self>, E> {
        if index >= nleaves {
            return Ok(None);
        }
        let (mut k, mut m) = (index, nleaves);
        let mut path = Vec::with_capacity(depth(nleaves));
        for level in 0..depth(nleaves) {
            let sibling = k ^ 1;
            path.push(if sibling < m {
                node(level, sibling)?
            } else {
                ZERO
            });
            k >>= 1;
            m = m.div_ceil(2);
        }
        Ok(Some(CodexProof {
            mcodec: SHA2_256,
            index,
            nleaves,
            path,
        }))
    }

    /// The root this proof leads to from `leaf`, or `None` when the proof cannot belong to any
    /// sha2-256 tree (wrong codec, index out of range, path length not the tree's depth).
    pub fn reconstruct_root(&self, leaf: &Digest) -> Option<Digest> {
        self.nodes(leaf)?.last().map(|n| n.digest)
    }

    /// Every tree node this proof shows, given its leaf: at each level the sibling it carries
    /// (where one exists) and the node it computes one level up, ending with the root. A node
    /// that fetched a leaf stores these, so it can prove that leaf (and, once it holds them all,
    /// every leaf) to others. `None` as for [`CodexProof::reconstruct_root`].
    pub fn nodes(&self, leaf: &Digest) -> Option<Vec<TreeNode>> {
        let fits = self.mcodec == SHA2_256
            && self.index < self.nleaves
            && self.path.len() == depth(self.nleaves);
        if !fits {
            return None;
        }
        let mut out = Vec::with_capacity(2 * self.path.len());
        let (mut j, mut m, mut h) = (self.index, self.nleaves, *leaf);
        for (level, sibling) in (0u8..).zip(&self.path) {
            let (pair_key, odd_key) = if level == 0 {
                (KEY_BOTTOM_LAYER, KEY_ODD_AND_BOTTOM_LAYER)
            } else {
                (KEY_NONE, KEY_ODD)
            };
            if (j ^ 1) < m {
                out.push(TreeNode {
                    level,
                    index: j ^ 1,
                    digest: *sibling,
                });
            }
            h = if j & 1 == 1 {
                compress(sibling, &h, pair_key)
            } else if j == m - 1 {
                compress(&h, sibling, odd_key)
            } else {
                compress(&h, sibling, pair_key)
            };
            j >>= 1;
            m = m.div_ceil(2);
            out.push(TreeNode {
                level: level + 1,
                index: j,
                digest: h,
            });
        }
        Some(out)
    }

    /// The protobuf encoding Codex writes (`coders.nim`): `1` mcodec, `2` index, `3` nleaves,
    /// each written even when zero, then one `4 {1: node}` per path node.
    pub fn encode(&self) -> Vec<u8> {
        PbProof {
            mcodec: Some(self.mcodec),
            index: Some(self.index),
            nleaves: Some(self.nleaves),
            path: self
                .path
                .iter()
                .map(|n| PbNode {
                    node: Some(n.to_vec()),
                })
                .collect(),
        }
        .encode_to_vec()
    }

    /// Decodes a proof from a peer. Absent integers read as 0, as in Codex; everything that could
    /// not belong to a sha2-256 tree is refused.
    ///
    /// # Errors
    /// [`ProofError`] names the first thing wrong.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProofError> {
        let pb = PbProof::decode(bytes).map_err(|e| ProofError::Protobuf(e.to_string()))?;
        let mcodec = pb.mcodec.unwrap_or(0);
        if mcodec != SHA2_256 {
            return Err(ProofError::Codec(mcodec));
        }
        let (index, nleaves) = (pb.index.unwrap_or(0), pb.nleaves.unwrap_or(0));
        if index >= nleaves {
            return Err(ProofError::Index { index, nleaves });
        }
        if pb.path.len() > MAX_PROOF_PATH {
            return Err(ProofError::PathTooLong(pb.path.len()));
        }
        let path = pb
            .path
            .into_iter()
            .map(|n| {
                let node = n.node.unwrap_or_default();
                Digest::try_from(node.as_slice()).map_err(|_| ProofError::NodeLength(node.len()))
            })
            .collect::<Result<_, _>>()?;
        Ok(CodexProof {
            mcodec,
            index,
            nleaves,
            path,
        })
    }
}

/// True only when `proof` leads from `leaf` to exactly `root`.
pub fn verify(proof: &CodexProof, leaf: &Digest, root: &Digest) -> bool {
    proof.reconstruct_root(leaf).is_some_and(|r| r == *root)
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbProof {
    #[prost(uint64, optional, tag = "1")]
    mcodec: Option<u64>,
    #[prost(uint64, optional, tag = "2")]
    index: Option<u64>,
    #[prost(uint64, optional, tag = "3")]
    nleaves: Option<u64>,
    #[prost(message, repeated, tag = "4")]
    path: Vec<PbNode>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbNode {
    #[prost(bytes = "vec", optional, tag = "1")]
    node: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests;
