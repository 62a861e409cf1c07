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
//! - [`node_id`]: node ids (keccak256 of the peer id) and distances.
//!
//! The wire format follows codex-dht at the revision Codex v0.2.5 pins (f6eef1a); the tests
//! use discv5's published vectors where Codex left discv5 unchanged and codex-dht's own
//! vectors where it did not.

pub mod codec;
pub mod crypto;
pub mod error;
pub mod message;
pub mod node_id;
pub mod packet;
pub mod protobuf;
pub mod record;
pub mod session;

pub use error::{DhtError, MessageError, PacketError, RecordError};
pub use message::{Body, Message, RequestId};
pub use node_id::NodeId;
pub use record::Spr;

/// Hex to bytes, for test vectors.
#[cfg(test)]
pub(crate) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
