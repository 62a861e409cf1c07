//! What the metadata actor writes to fjall: keyspace names, key layouts and bincode records.
//!
//! | keyspace      | key                                  | value                          |
//! |---------------|--------------------------------------|--------------------------------|
//! | `block_meta`  | block CID bytes                      | [`BlockMeta`] (with location)  |
//! | `leaves`      | tree CID bytes ‖ index (u64 BE)      | [`LeafRecord`]                 |
//! | `tree_nodes`  | tree CID ‖ level (u8) ‖ index (u64 BE) | 32-byte digest               |
//! | `manifests`   | manifest CID bytes                   | manifest protobuf (Codex)      |
//! | `trees`       | tree CID bytes                       | manifests using it (u64)       |
//! | `deleting`    | tree CID bytes                       | [`Deleting`]                   |
//! | `fetching`    | manifest CID bytes                   | [`Fetching`]                   |
//! | `counters`    | `repo`, `format`                     | [`Counters`], format version   |
//!
//! Big-endian indexes keep a dataset's leaves (and each tree level) in order for range scans.
//! Manifests keep their Codex protobuf bytes because those bytes are what the manifest CID
//! hashes. `tree_nodes` holds the levels above the leaves, so a leaf's Merkle proof is a few
//! point reads; a dataset fetched from peers also keeps there the leaf-level siblings its
//! proofs carried (level 0), so each leaf it holds can be proved before it holds them all.
//! A dataset being fetched has a `fetching` record (its manifest, progress and the quota it
//! reserved) instead of a `manifests` one until its last block is stored; it counts as a user
//! of its tree from the start, so its leaves are never mistaken for leftovers. Block bytes themselves live in segment files (`segments/`); a block's
//! [`BlockMeta::location`] says where, so one record (and one batch) covers both.

use bincode::{config, Decode, Encode};
use cid::Cid;

use crate::error::Result;

/// Keyspace of per-block metadata.
pub(crate) const BLOCK_META: &str = "block_meta";
/// Keyspace of `(treeCid, index) → block` records.
pub(crate) const LEAVES: &str = "leaves";
/// Keyspace of the Merkle tree levels above the leaves.
pub(crate) const TREE_NODES: &str = "tree_nodes";
/// Keyspace of manifest blocks.
pub(crate) const MANIFESTS: &str = "manifests";
/// Keyspace of `tree CID → number of manifests using it`.
pub(crate) const TREES: &str = "trees";
/// Keyspace of trees whose leaves are being removed, step by step.
pub(crate) const DELETING: &str = "deleting";
/// Keyspace of datasets being fetched from peers.
pub(crate) const FETCHING: &str = "fetching";
/// Keyspace of repository-wide counters.
pub(crate) const COUNTERS: &str = "counters";
/// The key of [`Counters`] in [`COUNTERS`].
pub(crate) const COUNTERS_KEY: &[u8] = b"repo";
/// The key of the record format version in [`COUNTERS`].
pub(crate) const FORMAT_KEY: &[u8] = b"format";
/// The record format this code writes. 1: block locations in a separate `block_index`
/// keyspace (migrated at open); 2: locations inside [`BlockMeta`]; 3: a location carries the
/// checksum of the bytes written there (format 2 locations are upgraded without one).
pub(crate) const FORMAT_VERSION: u32 = 3;

/// Where one block's bytes are in the segment files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct Location {
    /// Segment file number.
    pub segment: u32,
    /// Offset of the block's data (after the record header).
    pub offset: u64,
    /// Length of the data.
    pub len: u32,
    /// CRC-32 of the bytes as written (`crc32fast`, which runs on the CPU's carry-less
    /// multiply): a local read checks this instead of hashing with SHA-256 again, at a
    /// fraction of the cost, and still catches bytes gone bad on disk. `None` for blocks
    /// written before format 3, which are checked against their CID as before.
    pub checksum: Option<u32>,
}

/// [`Location`] as formats 1 and 2 wrote it (no checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct LocationV2 {
    pub segment: u32,
    pub offset: u64,
    pub len: u32,
}

impl From<LocationV2> for Location {
    fn from(old: LocationV2) -> Self {
        Self {
            segment: old.segment,
            offset: old.offset,
            len: old.len,
            checksum: None,
        }
    }
}

impl Location {
    /// The offset just past the data.
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

/// Codex's `BlockMetadata` plus where the bytes are: when a block expires, its size, how many
/// leaf records use it, and how many uploads in progress hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct BlockMeta {
    /// Unix seconds after which an unreferenced block may be removed; `u64::MAX` = never.
    pub expiry: u64,
    /// Stored size in bytes (the padded block).
    pub size: u64,
    /// Leaf records pointing at the block.
    pub ref_count: u64,
    /// Uploads in progress that hold the block (one per occurrence). Kept on disk rather than
    /// in memory so memory stays flat; reset by the start-up check, when no upload runs.
    pub pins: u64,
    /// Where a data block's bytes are; `None` for a manifest (its bytes are in `manifests`).
    pub location: Option<Location>,
}

impl BlockMeta {
    /// True when neither a dataset nor an upload in progress needs the block.
    pub fn unused(&self) -> bool {
        self.ref_count == 0 && self.pins == 0
    }
}

/// [`BlockMeta`] as format 2 wrote it (locations without checksums).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct BlockMetaV2 {
    pub expiry: u64,
    pub size: u64,
    pub ref_count: u64,
    pub pins: u64,
    pub location: Option<LocationV2>,
}

impl From<BlockMetaV2> for BlockMeta {
    fn from(old: BlockMetaV2) -> Self {
        Self {
            expiry: old.expiry,
            size: old.size,
            ref_count: old.ref_count,
            pins: old.pins,
            location: old.location.map(Location::from),
        }
    }
}

/// [`BlockMeta`] as format 1 wrote it (before locations moved into it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Encode, Decode)]
pub(crate) struct BlockMetaV1 {
    pub expiry: u64,
    pub size: u64,
    pub ref_count: u64,
    pub pins: u64,
}

/// Codex's `LeafMetadata`; the proof is not stored per leaf but computed from `tree_nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct LeafRecord {
    /// Binary CID of the block at this index.
    pub block_cid: Vec<u8>,
}

/// Progress of a tree's removal (the manifest is already gone): leaves from `next_leaf` on are
/// still to be dropped, then the tree's nodes. A crash in between is finished at start-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Deleting {
    /// First leaf index not yet removed.
    pub next_leaf: u64,
    /// All leaves are gone; the tree nodes are being removed.
    pub leaves_done: bool,
}

/// A dataset being fetched from peers.
#[derive(Debug, Clone, PartialEq, Eq, Encode, Decode)]
pub(crate) struct Fetching {
    /// The manifest's protobuf bytes (what its CID hashes).
    pub manifest: Vec<u8>,
    /// Leaves stored so far (leaf records of the tree).
    pub stored: u64,
    /// Quota still reserved for the blocks not stored yet (released when they arrive, or when
    /// the fetch completes, is cancelled or expires).
    pub reserved: u64,
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
pub(crate) fn keyspace_options() -> fjall::KeyspaceCreateOptions {
    fjall::KeyspaceCreateOptions::default().max_memtable_size(4 * 1024 * 1024 /* 4 MiB */)
}

/// Encodes a record with bincode 2's standard (varint) configuration.
pub(crate) fn encode<T: Encode>(value: &T) -> Result<Vec<u8>> {
    Ok(bincode::encode_to_vec(value, config::standard())?)
}

/// Decodes a record written by [`encode`].
pub(crate) fn decode<T: Decode<()>>(bytes: &[u8]) -> Result<T> {
    Ok(bincode::decode_from_slice(bytes, config::standard())?.0)
}

/// The key of leaf `index` of the tree `tree`.
pub(crate) fn leaf_key(tree: &Cid, index: u64) -> Vec<u8> {
    let mut key = tree.to_bytes();
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The key of node `index` on `level` (1 = just above the leaves) of the tree `tree`.
pub(crate) fn node_key(tree: &Cid, level: u8, index: u64) -> Vec<u8> {
    let mut key = tree.to_bytes();
    key.push(level);
    key.extend_from_slice(&index.to_be_bytes());
    key
}

/// The `tree_nodes` key holding a tree's leaf count (a Merkle proof needs it): the level no
/// tree reaches.
pub(crate) fn leaf_count_key(tree: &Cid) -> Vec<u8> {
    node_key(tree, u8::MAX, 0)
}

/// The leaf count stored under [`leaf_count_key`] (big-endian `u64`; `None` for anything else).
pub(crate) fn leaf_count(value: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(value).ok().map(u64::from_be_bytes)
}

/// The index at the end of a leaf or node key.
pub(crate) fn key_index(key: &[u8]) -> Option<u64> {
    let at = key.len().checked_sub(8)?;
    Some(u64::from_be_bytes(key.get(at..)?.try_into().ok()?))
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
            location: Some(Location {
                segment: 7,
                offset: 1 << 33,
                len: 65536,
                checksum: None,
            }),
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
    fn format_1_records_do_not_decode_as_format_2() {
        let old = BlockMetaV1 {
            expiry: 5,
            size: 65536,
            ref_count: 1,
            pins: 0,
        };
        let bytes = encode(&old).expect("enc");
        assert!(
            decode::<BlockMeta>(&bytes).is_err(),
            "migration must see it"
        );
        assert_eq!(decode::<BlockMetaV1>(&bytes).expect("dec"), old);
    }

    #[test]
    fn format_2_records_do_not_decode_as_format_3() {
        let old = BlockMetaV2 {
            expiry: 5,
            size: 65536,
            ref_count: 1,
            pins: 0,
            location: Some(LocationV2 {
                segment: 7,
                offset: 4096,
                len: 65536,
            }),
        };
        let bytes = encode(&old).expect("enc");
        assert!(
            decode::<BlockMeta>(&bytes).is_err(),
            "migration must see it"
        );
        let new = BlockMeta::from(decode::<BlockMetaV2>(&bytes).expect("dec"));
        assert_eq!(
            new.location.map(|l| (l.segment, l.checksum)),
            Some((7, None))
        );
    }

    #[test]
    fn keys_sort_by_index() {
        let tree = block_cid(b"tree");
        assert!(leaf_key(&tree, 1) < leaf_key(&tree, 2));
        assert!(leaf_key(&tree, 255) < leaf_key(&tree, 256));
        assert!(node_key(&tree, 1, 300) < node_key(&tree, 2, 0));
        assert_eq!(key_index(&node_key(&tree, 3, 77)), Some(77));
    }
}
