//! The raw protobuf layout, field for field as nim-codex's `message.nim` writes it. Scalars are
//! proto2 `optional` so that a value on the wire can be told from an absent one (and be
//! validated), and so that an explicit zero is sent where Codex needs one.

use bytes::Bytes;

/// One frame of the protocol.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    /// The sender's wants.
    #[prost(message, optional, tag = "1")]
    pub wantlist: Option<Wantlist>,
    /// Blocks (field 2 is unused, a bitswap leftover).
    #[prost(message, repeated, tag = "3")]
    pub payload: Vec<BlockDelivery>,
    /// Have / DontHave answers.
    #[prost(message, repeated, tag = "4")]
    pub block_presences: Vec<BlockPresence>,
    /// Always 0 from Codex.
    #[prost(uint64, optional, tag = "5")]
    pub pending_bytes: Option<u64>,
    /// Payment account (dormant in Codex: sent empty).
    #[prost(message, optional, tag = "6")]
    pub account: Option<AccountMessage>,
    /// Payment state channel update (dormant in Codex: sent empty).
    #[prost(message, optional, tag = "7")]
    pub payment: Option<StateChannelUpdate>,
}

/// A list of wants.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Wantlist {
    /// The entries.
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    /// Whether this is the sender's whole list (bool as varint).
    #[prost(uint64, optional, tag = "2")]
    pub full: Option<u64>,
}

/// One want.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    /// What is wanted.
    #[prost(message, optional, tag = "1")]
    pub address: Option<BlockAddress>,
    /// Always 0 from Codex.
    #[prost(int32, optional, tag = "2")]
    pub priority: Option<i32>,
    /// Revokes an earlier want (bool).
    #[prost(uint64, optional, tag = "3")]
    pub cancel: Option<u64>,
    /// 0 = wantBlock, 1 = wantHave.
    #[prost(uint64, optional, tag = "4")]
    pub want_type: Option<u64>,
    /// Ask for an explicit DontHave (bool; Codex never sets it).
    #[prost(uint64, optional, tag = "5")]
    pub send_dont_have: Option<u64>,
}

/// A standalone CID (field 4) or a leaf of a tree (fields 2 and 3), told apart by field 1.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockAddress {
    /// 1 for a leaf address (bool).
    #[prost(uint64, optional, tag = "1")]
    pub leaf: Option<u64>,
    /// The tree's root CID, binary.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub tree_cid: Option<Vec<u8>>,
    /// The leaf's index.
    #[prost(uint64, optional, tag = "3")]
    pub index: Option<u64>,
    /// The block CID, binary.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub cid: Option<Vec<u8>>,
}

/// One block.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockDelivery {
    /// The block CID, binary.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub cid: Option<Vec<u8>>,
    /// The block bytes; always written, even when empty.
    #[prost(bytes = "bytes", optional, tag = "2")]
    pub data: Option<Bytes>,
    /// The address it answers.
    #[prost(message, optional, tag = "3")]
    pub address: Option<BlockAddress>,
    /// The encoded `CodexProof`, for a leaf address only.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub proof: Option<Vec<u8>>,
}

/// Whether the sender has a block.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockPresence {
    /// The block asked about.
    #[prost(message, optional, tag = "1")]
    pub address: Option<BlockAddress>,
    /// 0 = Have, 1 = DontHave.
    #[prost(uint64, optional, tag = "2")]
    pub r#type: Option<u64>,
    /// UInt256 big-endian.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub price: Option<Vec<u8>>,
}

/// Field 6: an Ethereum address for payments.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AccountMessage {
    /// 20 bytes when set.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub address: Option<Vec<u8>>,
}

/// Field 7: a Nitro signed state as JSON.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StateChannelUpdate {
    /// The JSON bytes.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub update: Option<Vec<u8>>,
}
