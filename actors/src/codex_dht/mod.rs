//! Codex's DHT: the discv5 variant (codex-dht) that Codex nodes find each other and each
//! other's data with, spoken over UDP.
//!
//! # What it is
//! discv5 v5.1 packets and handshake, unchanged, carrying Codex's own records and messages:
//! - [`packet`]: framing and header masking; [`crypto`]: ECDH, HKDF, AES-GCM and Codex's
//!   id-signature; [`session`]: session keys, challenges, replay windows; [`codec`]: the
//!   handshake that ties them together.
//! - [`message`]: PING, PONG, FINDNODE, NODES, TALKREQ/RESP, ADD_PROVIDER, GET_PROVIDERS,
//!   PROVIDERS, FINDNODE_FAST, as protobuf ([`protobuf`]); [`record`]: signed peer records.
//! - [`node_id`]: node ids (keccak256 of the peer id) and distances; [`routing`]: the routing
//!   table; [`providers`]: the provider store.
//! - [`rate_limit`]: per-source packet rate limits.
//!
//! The wire format follows codex-dht at the revision Codex v0.2.5 pins (f6eef1a); the tests
//! use discv5's published vectors where Codex left discv5 unchanged and codex-dht's own
//! vectors where it did not, and a live Codex v0.2.5 node.
//!
//! # What the live node showed, beyond the sources
//! - `/spr` (and `/debug/info`'s `spr`) is a record with the UDP address only; the TCP
//!   addresses are in a second record, the provider record, which is what ADD_PROVIDER
//!   carries and GET_PROVIDERS returns.
//! - The record Codex's DHT itself hands out (FINDNODE distance 0, handshakes) has the same
//!   address as `/spr` but a sequence number 2 higher, and PONG reports that one: Codex
//!   re-signs its record twice at start (`updateAnnounceRecord`, `updateDhtRecord`).
//! - `/debug/info` prints node ids as numbers, without leading zero digits.
//! - Codex's own lookups leave Codex out: once it knows other nodes, it sends the provider
//!   records of its uploads to them and keeps none itself, so GET_PROVIDERS to the uploader
//!   finds nothing. With no other node it keeps them.
//! - PONG's address family byte is Nim's enum ordinal: IPv4 = 1, IPv6 = 0.
//! - Codex hands out in NODES only nodes that answered it (`seen`), and only adds a node to
//!   its table from a handshake whose record names the address the packet came from.

pub mod codec;
pub mod crypto;
pub mod error;
pub mod message;
pub mod node_id;
pub mod packet;
pub mod protobuf;
pub mod providers;
pub mod rate_limit;
pub mod record;
pub mod routing;
pub mod session;

pub use error::{DhtError, MessageError, PacketError, RecordError};
pub use message::{Body, Message, RequestId};
pub use node_id::NodeId;
pub use record::Spr;
pub use routing::Entry as RoutingEntry;

/// Hex to bytes, for test vectors.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
