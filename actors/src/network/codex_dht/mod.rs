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
//! - [`service`]: the UDP task and [`CodexDht`], its cheap-to-clone handle.
//!
//! The wire format follows codex-dht at the revision Codex v0.2.5 pins (f6eef1a); the tests
//! use discv5's published vectors where Codex left discv5 unchanged and codex-dht's own
//! vectors where it did not, and `actors/tests/codex_dht_live.rs` runs it against a live
//! Codex v0.2.5 node.
//!
//! # Using it
//! [`CodexDht::start`] binds the UDP port and spawns the service task on the current tokio
//! runtime (an actix `System` is one); the returned handle is cheap to clone and every method
//! is async and returns [`DhtError`]: [`CodexDht::bootstrap`] from a Codex `spr:` record,
//! [`CodexDht::ping`], [`CodexDht::find_node`], [`CodexDht::lookup`],
//! [`CodexDht::add_provider`] / [`CodexDht::provide`], [`CodexDht::get_providers`],
//! [`CodexDht::refresh`] (upkeep, to call every few minutes), [`CodexDht::routing_table`],
//! [`CodexDht::stats`], [`CodexDht::shutdown`]. Content keys are
//! [`NodeId::from_cid`].
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
pub mod config;
pub mod crypto;
pub mod error;
mod handle;
mod lookup;
pub mod message;
pub mod node_id;
pub mod packet;
pub mod protobuf;
pub mod providers;
pub mod rate_limit;
pub mod record;
pub mod routing;
pub mod service;
pub mod session;
mod stats;

pub use config::DhtConfig;
pub use error::{DhtError, MessageError, PacketError, RecordError};
pub use handle::{CodexDht, Pong};
pub use message::{Body, Message, RequestId};
pub use node_id::NodeId;
pub use record::Spr;
pub use routing::Entry as RoutingEntry;
pub use stats::DhtStats;

/// Hex to bytes, for test vectors.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
