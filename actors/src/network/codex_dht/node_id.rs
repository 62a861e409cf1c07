//! Node ids and distances in Codex's DHT.
//!
//! A node id is 256 bits. Codex derives it from the libp2p peer id, not from the public key
//! as Ethereum's discv5 does: keccak256 of the peer id's multihash bytes (codex-dht `node.nim`
//! `toNodeId`). A content key is the same hash over a CID's binary form (nim-codex
//! `discovery.nim` `toNodeId`), so keys and node ids live in one space and the nodes closest
//! to a key by XOR are the ones that keep its providers.

use std::fmt;

use libp2p::PeerId;
use sha3::{Digest, Keccak256};

use crate::Cid;

/// Length of a node id in bytes.
pub const NODE_ID_LEN: usize = 32;

/// A 256-bit node id or content key, big-endian (byte 0 is the most significant).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub [u8; NODE_ID_LEN]);

impl NodeId {
    /// The node id of a peer: keccak256 of its multihash bytes.
    pub fn from_peer_id(peer: &PeerId) -> Self {
        Self::keccak(&peer.to_bytes())
    }

    /// The DHT key of a CID: keccak256 of its binary form. Codex announces manifest CIDs and
    /// tree CIDs under these keys.
    pub fn from_cid(cid: &Cid) -> Self {
        Self::keccak(&cid.to_bytes())
    }

    /// keccak256 of `bytes` (the original Keccak padding, not SHA3-256).
    pub fn keccak(bytes: &[u8]) -> Self {
        NodeId(Keccak256::digest(bytes).into())
    }

    /// Reads 32 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; NODE_ID_LEN]>::try_from(bytes).ok().map(NodeId)
    }

    /// The id's bytes, big-endian.
    pub fn as_bytes(&self) -> &[u8; NODE_ID_LEN] {
        &self.0
    }

    /// XOR distance to `other`; comparing two distances as byte arrays compares them as
    /// 256-bit numbers because both are big-endian.
    pub fn distance(&self, other: &NodeId) -> [u8; NODE_ID_LEN] {
        let mut d = [0u8; NODE_ID_LEN];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        d
    }

    /// Logarithmic distance: 256 minus the leading zero bits of the XOR distance, so 0 for
    /// the same id and 256 when the first bit differs. Codex answers FINDNODE distance 0 with
    /// its own record, which is why this is "log2 + 1" rather than log2.
    pub fn log_distance(&self, other: &NodeId) -> u16 {
        let mut zeros = 0u16;
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            let x = a ^ b;
            if x == 0 {
                zeros += 8;
            } else {
                zeros += x.leading_zeros() as u16;
                break;
            }
        }
        256 - zeros
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

impl fmt::Display for NodeId {
    /// Full lowercase hex, all 64 digits. (Codex's `/debug/info` drops leading zeros.)
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// How many log distances one FINDNODE asks for during a lookup (codex-dht
/// `LookupRequestLimit`).
pub const LOOKUP_DISTANCES: usize = 3;

/// The distances a lookup for `target` asks `peer` for: the log distance between them, then
/// its neighbours above and below, alternating, within 1..=256 (codex-dht `lookupDistances`).
/// Asking for three buckets at once makes one round trip return nodes even when the exact
/// bucket is empty.
pub fn lookup_distances(target: &NodeId, peer: &NodeId) -> Vec<u16> {
    let td = target.log_distance(peer);
    let mut out = vec![td];
    let mut i = 1u16;
    // At most 256 steps: after that both directions are out of range.
    while out.len() < LOOKUP_DISTANCES && i <= 256 {
        if u32::from(td) + u32::from(i) < 256 {
            out.push(td + i);
        }
        if out.len() < LOOKUP_DISTANCES && i < td {
            out.push(td - i);
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex: &str) -> NodeId {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        NodeId::from_slice(&bytes).unwrap()
    }

    #[test]
    fn node_id_of_a_live_codex_peer() {
        // Taken from a Codex v0.2.5 node's /debug/info: `peerId` and `table.localNode.nodeId`
        // (which Codex prints without its leading zero digit).
        let peer: PeerId = "16Uiu2HAmMvfzztg1MgpX7T4RFFgdrzA1kurjda8PhTr5CWKXqfdK"
            .parse()
            .unwrap();
        assert_eq!(
            NodeId::from_peer_id(&peer).to_string(),
            "0ed55352f898e09d57ee2bd11c6967b1eec1bca47e7df2467bd034324a4a9303"
        );
    }

    #[test]
    fn log_distance_counts_from_the_top_bit() {
        let zero = NodeId([0; 32]);
        assert_eq!(zero.log_distance(&zero), 0);
        let mut top = [0u8; 32];
        top[0] = 0x80;
        assert_eq!(zero.log_distance(&NodeId(top)), 256);
        let mut last = [0u8; 32];
        last[31] = 1;
        assert_eq!(zero.log_distance(&NodeId(last)), 1);
        let a = id("aaaa8419e9f49d0083561b48287df592939a8d19947d8c0ef88f2a4856a69fbb");
        let b = id("bbbb9d047f0488c0b5a93c1c3f2d8bafc7c8ff337024a55434a0d0555de64db9");
        assert_eq!(a.log_distance(&b), 253);
    }

    #[test]
    fn lookup_distances_alternate_and_stay_in_range() {
        let zero = NodeId([0; 32]);
        let mut far = [0u8; 32];
        far[0] = 0x80;
        assert_eq!(lookup_distances(&zero, &NodeId(far)), vec![256, 255, 254]);
        let mut mid = [0u8; 32];
        mid[16] = 0x80; // log distance 128
        assert_eq!(lookup_distances(&zero, &NodeId(mid)), vec![128, 129, 127]);
        let mut near = [0u8; 32];
        near[31] = 1;
        assert_eq!(lookup_distances(&zero, &NodeId(near)), vec![1, 2, 3]);
    }

    #[test]
    fn keccak_is_not_sha3() {
        // keccak256("") as Ethereum uses it.
        assert_eq!(
            NodeId::keccak(b"").to_string(),
            "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
        );
    }
}
