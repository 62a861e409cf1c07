//! Pure Codex formats: CIDs and codecs, the manifest's protobuf encoding and the Merkle tree.
//! No actors and no I/O here, so everything can be unit-tested against the Codex vectors.

pub mod cid;
pub mod manifest;
pub mod merkle;
