//! A snapshot of the routing table in the shape of Codex's `/debug/info` `table` object:
//! `{localNode, nodes: [{nodeId, peerId, record, address, seen}]}`.
//!
//! What each field holds here, against Codex's discv5 table:
//! - `nodeId`: the node's Kademlia key, hex. libp2p-kad uses the SHA-256 of the peer id's
//!   bytes where codex-dht uses keccak256, so the values differ from Codex's for the same peer;
//!   both are the 256-bit position the XOR distance is measured from.
//! - `peerId`: the libp2p peer id, the same as Codex's.
//! - `record`: our own SPR for the local node. Other peers do not send us signed records
//!   (identify without signed records), so theirs is `None`.
//! - `address`: the first known address (TCP; Codex shows the UDP discovery address).
//! - `seen`: whether the peer is connected now (codex-dht: whether it answered lately).

use libp2p::kad::{self, KBucketKey};
use libp2p::{Multiaddr, PeerId};

use crate::network::net::dht::addrs;
use crate::network::net::dht::provider_records::ProviderStore;

/// One node of the routing table; see the module doc for each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingNode {
    /// The Kademlia key, as 64 hex digits.
    pub node_id: String,
    /// The peer.
    pub peer_id: PeerId,
    /// Its signed peer record as `spr:` text, known for the local node only.
    pub record: Option<String>,
    /// Its first known address.
    pub address: Option<Multiaddr>,
    /// Connected now.
    pub seen: bool,
}

/// The routing table, as Codex's `/debug/info` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingTable {
    /// This node.
    pub local_node: RoutingNode,
    /// Every peer in the table, nearest buckets first.
    pub nodes: Vec<RoutingNode>,
}

/// The Kademlia key of `peer`, hex.
pub(crate) fn node_id(peer: PeerId) -> String {
    hex(KBucketKey::from(peer).hashed_bytes())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}"); // writing to a String cannot fail
        s
    })
}

/// Reads the table out of `kad`; `local` describes this node.
pub(crate) fn snapshot(
    kad: &mut kad::Behaviour<ProviderStore>,
    local: RoutingNode,
) -> RoutingTable {
    let mut nodes = Vec::new();
    for bucket in kad.kbuckets() {
        for entry in bucket.iter() {
            let peer = *entry.node.key.preimage();
            nodes.push(RoutingNode {
                node_id: node_id(peer),
                peer_id: peer,
                record: None,
                address: entry
                    .node
                    .value
                    .iter()
                    .find_map(|a| addrs::tcp_dialable(a, Some(peer))),
                seen: entry.status == kad::NodeStatus::Connected,
            });
        }
    }
    RoutingTable {
        local_node: local,
        nodes,
    }
}

/// Addresses the routing table holds for `peer`, without their `/p2p` suffix.
pub(crate) fn table_addrs(
    kad: &mut kad::Behaviour<ProviderStore>,
    peer: &PeerId,
) -> Vec<Multiaddr> {
    let Some(bucket) = kad.kbucket(*peer) else {
        return Vec::new(); // our own id
    };
    let found = bucket
        .iter()
        .find(|e| e.node.key.preimage() == peer)
        .map(|e| {
            e.node
                .value
                .iter()
                .filter_map(|a| addrs::tcp_dialable(a, Some(*peer)))
                .collect()
        });
    found.unwrap_or_default()
}

/// Peers in the routing table.
pub(crate) fn size(kad: &mut kad::Behaviour<ProviderStore>) -> usize {
    kad.kbuckets().map(|b| b.num_entries()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_the_sha256_kademlia_keys_in_hex() {
        let peer = PeerId::random();
        let id = node_id(peer);
        assert_eq!(id.len(), 64);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(id, node_id(peer));
        assert_ne!(id, node_id(PeerId::random()));
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
