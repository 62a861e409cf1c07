//! Pure Codex formats: CIDs and codecs, the manifest's protobuf encoding, the Merkle tree and its
//! proofs, and the block-exchange messages. No actors and no I/O here, so everything can be
//! unit-tested against the Codex vectors.

pub mod blockexc;
pub mod cid;
pub mod manifest;
pub mod merkle;
