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

impl Message {
    /// The frame of this message (its varint length, then the message) as pieces whose
    /// concatenation is exactly `encode_length_delimited_to_vec`: every block's bytes are a
    /// piece of their own, shared with the block and not copied; the rest is encoded between
    /// them. Serving wrote a 1.3-3 MiB copy of every delivery message before handing it to the
    /// muxer, which copies it again (3 % of a seeder's CPU, see benches/README.md).
    pub fn frame_pieces(mut self) -> Vec<Bytes> {
        use prost::encoding::{bytes, encode_key, encode_varint, message, WireType};
        use prost::Message as _;
        let len = self.encoded_len();
        let payload = std::mem::take(&mut self.payload);
        let wantlist = self.wantlist.take();
        let mut pieces = Vec::with_capacity(2 * payload.len() + 1);
        let mut buf = Vec::with_capacity(256);
        encode_varint(len as u64, &mut buf);
        // Fields in tag order, as prost writes them: 1, then 3, then the rest (4 to 7).
        if let Some(w) = &wantlist {
            message::encode(1, w, &mut buf);
        }
        for d in &payload {
            encode_key(3, WireType::LengthDelimited, &mut buf);
            encode_varint(d.encoded_len() as u64, &mut buf);
            if let Some(cid) = &d.cid {
                bytes::encode(1, cid, &mut buf);
            }
            if let Some(data) = &d.data {
                encode_key(2, WireType::LengthDelimited, &mut buf);
                encode_varint(data.len() as u64, &mut buf);
                pieces.push(Bytes::from(std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(1024),
                )));
                pieces.push(data.clone());
            }
            if let Some(address) = &d.address {
                message::encode(3, address, &mut buf);
            }
            if let Some(proof) = &d.proof {
                bytes::encode(4, proof, &mut buf);
            }
        }
        self.encode_raw(&mut buf);
        pieces.push(Bytes::from(buf));
        pieces.retain(|p| !p.is_empty());
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(i: u64) -> BlockAddress {
        BlockAddress {
            leaf: Some(1),
            tree_cid: Some(vec![7; 36]),
            index: Some(i),
            cid: None,
        }
    }

    /// The pieces make the very bytes prost writes, whatever fields are set.
    #[test]
    fn frame_pieces_are_the_length_delimited_encoding() {
        let delivery = |i: u64, data: &[u8], proof: Option<Vec<u8>>| BlockDelivery {
            cid: Some(vec![i as u8; 36]),
            data: Some(Bytes::copy_from_slice(data)),
            address: Some(address(i)),
            proof,
        };
        let messages = [
            Message::default(),
            Message {
                wantlist: Some(Wantlist {
                    entries: vec![Entry {
                        address: Some(address(3)),
                        priority: Some(0),
                        cancel: Some(0),
                        want_type: Some(0),
                        send_dont_have: Some(0),
                    }],
                    full: Some(0),
                }),
                payload: vec![
                    delivery(0, &[1; 70_000], Some(vec![9; 300])),
                    delivery(1, b"", None),
                    BlockDelivery {
                        data: None,
                        ..delivery(2, b"x", None)
                    },
                ],
                block_presences: vec![BlockPresence {
                    address: Some(address(5)),
                    r#type: Some(0),
                    price: Some(vec![0; 32]),
                }],
                pending_bytes: Some(0),
                account: Some(AccountMessage { address: None }),
                payment: None,
            },
        ];
        for m in messages {
            let whole = prost::Message::encode_length_delimited_to_vec(&m);
            let joined: Vec<u8> = m.frame_pieces().concat();
            assert_eq!(joined, whole);
        }
    }
}
