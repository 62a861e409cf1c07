//! What the metadata actor writes to fjall: keyspace names, key layouts and bincode records.
//!
//! | keyspace      | key                              | value                      |
//! |---------------|----------------------------------|----------------------------|
//! | `block_meta`  | block CID bytes                  | [`BlockMeta`]              |
//! | `leaves`      | tree CID bytes ‖ index (u64 BE)  | [`LeafRecord`]             |
//! | `manifests`   | manifest CID bytes               | manifest protobuf (Codex)  |
//! | `trees`       | tree CID bytes                   | manifests using it (u64)   |
//! | `counters`    | `repo`                           | [`Counters`]               |
//!
//! Big-endian indexes keep a dataset's leaves in order for range scans. Manifests keep their
//! Codex protobuf bytes because those bytes are what the manifest CID hashes.

use bincode::{config, Decode, Encode};
use cid::Cid;

use crate::error::Result;

/// Keyspace of per-block metadata.
pub const BLOCK_META: &str = "block_meta";
/// Keyspace of `(treeCid, index) → block` records.
pub const LEAVES: &str = "leaves";
/// Keyspace of manifest blocks.
pub const MANIFESTS: &str = "manifests";
/// Keyspace of `tree CID → number of manifests using it`.
pub const TREES: &str = "trees";
/// Keyspace of repository-wide counters.
pub const COUNTERS: &str = "counters";
/// The single key in [`COUNTERS`].
pub const COUNTERS_KEY: &[u8] = b"repo";

/// Codex's `BlockMetadata`: when a block expires, its size, and how many leaf records use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub struct BlockMeta {
    /// Unix seconds after which an unreferenced block may be removed; `u64::MAX` = never.
    pub expiry: u64,
    /// Stored size in bytes (the padded block).
    pub size: u64,
    /// Leaf records pointing at the block.
    pub ref_count: u64,
    /// Uploads in progress that hold the block (one per occurrence). Kept on disk rather than
    /// in memory so memory stays flat; reset by the start-up check, when no upload runs.
    pub pins: u64,
}

impl BlockMeta {
    /// True when neither a dataset nor an upload in progress needs the block.
    pub fn unused(&self) -> bool {
        self.ref_count == 0 && self.pins == 0
    }
}

/// Codex's `LeafMetadata` without the proof (this node serves no proofs; see the README).
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub struct LeafRecord {
    /// Binary CID of the block at this index.
    pub block_cid: Vec<u8>,
}

/// Codex's `/meta/total` and `/meta/quota/used`, kept in one record so one batch updates both.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub struct Counters {
    /// Blocks stored, data blocks and manifests alike.
    pub total_blocks: u64,
    /// Bytes of stored blocks.
    pub quota_used: u64,
    /// Bytes reserved (always 0 here: reservations belong to the marketplace).
    pub quota_reserved: u64,
}

/// Options of every metadata keyspace. Small memtables keep memory flat however large an
/// upload is: a 4 GiB upload writes about 200 000 small records.
pub fn keyspace_options() -> fjall::KeyspaceCreateOptions {
    fjall::KeyspaceCreateOptions::default().max_memtable_size(4 * 1024 * 1024 /* 4 MiB */)
}

/// Encodes a record with bincode 2's standard (varint) configuration.
pub fn encode<T: Encode>(value: &T) -> Result<Vec<u8>> {
    Ok(bincode::encode_to_vec(value, config::standard())?)
}

/// Decodes a record written by [`encode`].
pub fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T> {
    Ok(bincode::decode_from_slice(bytes, config::standard())?.0)
}

/// The key of leaf `index` of the tree `tree`.
pub fn leaf_key(tree: &Cid, index: u64) -> Vec<u8> {
    let mut key = tree.to_bytes();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cid::block_cid;

    #[test]
    fn records_round_trip() {
        let m = BlockMeta {
            expiry: u64::MAX,
            size: 65536,
            ref_count: 3,
            pins: 1,
        };
        assert_eq!(
            decode::<BlockMeta>(&encode(&m).expect("enc")).expect("dec"),
            m
        );
        let c = Counters {
            total_blocks: 2,
            quota_used: 65592,
            quota_reserved: 0,
        };
        assert_eq!(
            decode::<Counters>(&encode(&c).expect("enc")).expect("dec"),
            c
        );
        let l = LeafRecord {
            block_cid: block_cid(b"x").to_bytes(),
        };
        assert_eq!(
            decode::<LeafRecord>(&encode(&l).expect("enc")).expect("dec"),
            l
        );
        assert!(decode::<BlockMeta>(&[0xff]).is_err());
    }

    #[test]
    fn leaf_keys_sort_by_index() {
        let tree = block_cid(b"tree");
        assert!(leaf_key(&tree, 1) < leaf_key(&tree, 2));
        assert!(leaf_key(&tree, 255) < leaf_key(&tree, 256));
    }
}
