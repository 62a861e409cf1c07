//! The Codex manifest and its protobuf encoding (libp2p minprotobuf, reproduced with prost).
//!
//! Every integer is written even when zero, which is why the prost fields are proto2
//! `optional`: prost skips zero-valued proto3 scalars, Codex does not. Field order follows the
//! tags, matching Codex byte for byte (checked against the vectors below).

use cid::Cid;
use prost::Message as _;

use crate::format::cid::{
    cid_from_digest, digest_of, sha256, BLOCK_CODEC, LEGACY_MANIFEST_CID_V1, MANIFEST_CID_V1,
    MANIFEST_CODEC, ROOT_CODEC, SHA2_256,
};

/// The one block size of Codex datasets (64 KiB): every leaf is exactly this long, the last one
/// zero-padded.
pub const CODEX_BLOCK_SIZE: u32 = 64 * 1024;

/// A dataset's description: what a manifest CID names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Root of the Merkle tree over the block digests (`codex-root`).
    pub tree_cid: Cid,
    /// Exact byte count of the original upload (the last block is padded beyond it).
    pub dataset_size: u64,
    /// Block size in bytes (65 536 for everything this node writes).
    pub block_size: u32,
    /// Codec of the data blocks (`codex-block`).
    pub codec: u64,
    /// Hash codec of the blocks (`sha2-256`).
    pub hcodec: u64,
    /// CID version of the blocks as the manifest's field 6 holds it: Codex's enum ordinal,
    /// [`MANIFEST_CID_V1`] (2) for CIDv1. A manifest this node stored before it matched Codex
    /// holds [`LEGACY_MANIFEST_CID_V1`] (1); it is kept as read so its bytes, and so its CID,
    /// do not change.
    pub version: u64,
    /// The filename given at upload, if any.
    pub filename: Option<String>,
    /// The MIME type given at upload, if any.
    pub mimetype: Option<String>,
}

/// Why manifest bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Not valid protobuf, or a field of the wrong type.
    #[error("invalid protobuf: {0}")]
    Protobuf(String),
    /// A required header field is missing.
    #[error("missing field {0}")]
    Missing(&'static str),
    /// The tree CID bytes are not a CIDv1 `codex-root` over a sha2-256 digest.
    #[error("invalid tree CID")]
    TreeCid,
    /// Erasure-coded (protected) manifests belong to the marketplace, which this node lacks.
    #[error("protected (erasure-coded) manifests are not supported")]
    Protected,
    /// A block size other than 64 KiB, the only one Codex writes. Taken from a peer, a small
    /// one would turn a dataset that fits the byte quota into billions of leaf records.
    #[error("block size {0}: Codex datasets have 65536-byte blocks")]
    BlockSize(u32),
    /// Field 6 names no CID version a dataset of this node can have (only CIDv1 exists).
    #[error("unsupported CID version field {0}")]
    Version(u64),
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbManifest {
    #[prost(message, optional, tag = "1")]
    header: Option<PbHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PbHeader {
    #[prost(bytes = "vec", optional, tag = "1")]
    tree_cid: Option<Vec<u8>>,
    #[prost(uint32, optional, tag = "2")]
    block_size: Option<u32>,
    #[prost(uint64, optional, tag = "3")]
    dataset_size: Option<u64>,
    #[prost(uint64, optional, tag = "4")]
    codec: Option<u64>,
    #[prost(uint64, optional, tag = "5")]
    hcodec: Option<u64>,
    #[prost(uint64, optional, tag = "6")]
    version: Option<u64>,
    /// ErasureInfo; only its presence matters here.
    #[prost(bytes = "vec", optional, tag = "7")]
    erasure: Option<Vec<u8>>,
    #[prost(string, optional, tag = "8")]
    filename: Option<String>,
    #[prost(string, optional, tag = "9")]
    mimetype: Option<String>,
}

impl Manifest {
    /// A manifest for an unprotected dataset of `codex-block` sha2-256 CIDv1 blocks.
    pub fn new(
        tree_cid: Cid,
        dataset_size: u64,
        block_size: u32,
        filename: Option<String>,
        mimetype: Option<String>,
    ) -> Self {
        Self {
            tree_cid,
            dataset_size,
            block_size,
            codec: BLOCK_CODEC,
            hcodec: SHA2_256,
            version: MANIFEST_CID_V1,
            filename,
            mimetype,
        }
    }

    /// `ceil(dataset_size / block_size)`: the number of leaves of the tree.
    pub fn blocks_count(&self) -> u64 {
        self.dataset_size
            .div_ceil(u64::from(self.block_size.max(1)))
    }

    /// The protobuf bytes, identical to what Codex stores.
    pub fn encode(&self) -> Vec<u8> {
        PbManifest {
            header: Some(PbHeader {
                tree_cid: Some(self.tree_cid.to_bytes()),
                block_size: Some(self.block_size),
                dataset_size: Some(self.dataset_size),
                codec: Some(self.codec),
                hcodec: Some(self.hcodec),
                version: Some(self.version),
                erasure: None,
                filename: self.filename.clone().filter(|s| !s.is_empty()),
                mimetype: self.mimetype.clone().filter(|s| !s.is_empty()),
            }),
        }
        .encode_to_vec()
    }

    /// The manifest's own CID (`codex-manifest` over the sha2-256 of [`Manifest::encode`]).
    pub fn cid(&self) -> Cid {
        cid_of_encoded(&self.encode())
    }

    /// Decodes manifest protobuf bytes.
    ///
    /// # Errors
    /// [`ManifestError`] when the bytes are not a manifest this node can serve.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let pb = PbManifest::decode(bytes).map_err(|e| ManifestError::Protobuf(e.to_string()))?;
        let h = pb.header.ok_or(ManifestError::Missing("header"))?;
        if h.erasure.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(ManifestError::Protected);
        }
        let tree = h.tree_cid.ok_or(ManifestError::Missing("treeCid"))?;
        let tree_cid = Cid::try_from(tree.as_slice()).map_err(|_| ManifestError::TreeCid)?;
        let is_root = tree_cid.version() == cid::Version::V1
            && tree_cid.codec() == ROOT_CODEC
            && digest_of(&tree_cid).is_some();
        if !is_root || tree_cid.encoded_len() != tree.len() {
            return Err(ManifestError::TreeCid);
        }
        let block_size = h.block_size.ok_or(ManifestError::Missing("blockSize"))?;
        if block_size != CODEX_BLOCK_SIZE {
            return Err(ManifestError::BlockSize(block_size));
        }
        Ok(Self {
            tree_cid,
            dataset_size: h
                .dataset_size
                .ok_or(ManifestError::Missing("datasetSize"))?,
            block_size,
            codec: h.codec.ok_or(ManifestError::Missing("codec"))?,
            hcodec: h.hcodec.ok_or(ManifestError::Missing("hcodec"))?,
            version: match h.version.ok_or(ManifestError::Missing("version"))? {
                v @ (MANIFEST_CID_V1 | LEGACY_MANIFEST_CID_V1) => v,
                other => return Err(ManifestError::Version(other)),
            },
            filename: h.filename.filter(|s| !s.is_empty()),
            mimetype: h.mimetype.filter(|s| !s.is_empty()),
        })
    }
}

/// The `codex-manifest` CID of already-encoded manifest bytes.
pub fn cid_of_encoded(bytes: &[u8]) -> Cid {
    cid_from_digest(MANIFEST_CODEC, &sha256(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cid::{cid_text, parse_cid};

    fn manifest(tree: &str, size: u64, filename: Option<&str>, mime: Option<&str>) -> Manifest {
        let tree = parse_cid(tree).expect("tree cid");
        Manifest::new(
            tree,
            size,
            65536,
            filename.map(Into::into),
            mime.map(Into::into),
        )
    }

    /// The shared vectors (manifest CIDs taken from a live Codex node), not copies by hand.
    const VECTORS: &str = include_str!("../../../tests/data/codex-vectors.json");

    #[test]
    fn encodes_the_codex_vectors_byte_for_byte() {
        let doc: serde_json::Value = serde_json::from_str(VECTORS).expect("vectors parse");
        let vectors = doc["vectors"].as_array().expect("vector list");
        assert!(vectors.len() >= 8, "vector file is incomplete");
        for v in vectors {
            let text = |k: &str| v[k].as_str().map(str::to_owned);
            let m = Manifest::new(
                parse_cid(&text("treeCid").expect("treeCid")).expect("tree cid"),
                v["bytes"].as_u64().expect("bytes"),
                65536,
                text("filename"),
                text("mimetype"),
            );
            let bytes = m.encode();
            let want = text("manifestCid").expect("manifestCid");
            assert_eq!(
                Some(bytes.len() as u64),
                v["manifestBytes"].as_u64(),
                "{want}"
            );
            assert_eq!(cid_text(&m.cid()), want, "{}", v["input"]);
            assert_eq!(Manifest::decode(&bytes).expect("round trip"), m);
        }
    }

    #[test]
    fn cid_v1_is_written_as_codex_enum_ordinal_two() {
        let tree = "zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL";
        let bytes = manifest(tree, 18, None, None).encode();
        let pb = PbManifest::decode(bytes.as_slice()).expect("decodes");
        assert_eq!(pb.header.and_then(|h| h.version), Some(2));
    }

    #[test]
    fn legacy_manifests_keep_their_bytes_and_cid() {
        // What this node wrote before matching Codex: version 1 for CIDv1.
        let tree = "zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL";
        let mut legacy = manifest(tree, 18, None, None);
        legacy.version = LEGACY_MANIFEST_CID_V1;
        let bytes = legacy.encode();
        assert_eq!(
            cid_text(&cid_of_encoded(&bytes)),
            "zDvZRwzmC3Q7e7NLkfsPmtgSCfectUc1ssn5xK2rzC9yRz1yeZuK",
            "the CID this node used to give"
        );
        let decoded = Manifest::decode(&bytes).expect("legacy manifests still decode");
        assert_eq!(
            decoded.encode(),
            bytes,
            "re-encoding keeps the stored bytes"
        );
        for bad in [0, 3, 7] {
            let mut m = legacy.clone();
            m.version = bad;
            assert_eq!(
                Manifest::decode(&m.encode()),
                Err(ManifestError::Version(bad))
            );
        }
    }

    #[test]
    fn block_count_rounds_up() {
        let tree = "zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL";
        assert_eq!(manifest(tree, 1, None, None).blocks_count(), 1);
        assert_eq!(manifest(tree, 65536, None, None).blocks_count(), 1);
        assert_eq!(manifest(tree, 65537, None, None).blocks_count(), 2);
    }

    #[test]
    fn block_sizes_other_than_64_kib_and_foreign_trees_are_refused() {
        let tree = "zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL";
        let good = manifest(tree, 5, None, None);
        assert!(Manifest::decode(&good.encode()).is_ok());
        for size in [0, 1, 4096, 65535, 65537, 1 << 20] {
            let m = Manifest {
                block_size: size,
                ..good.clone()
            };
            assert_eq!(
                Manifest::decode(&m.encode()),
                Err(ManifestError::BlockSize(size))
            );
        }
        let block_tree = Manifest {
            tree_cid: cid_from_digest(BLOCK_CODEC, &sha256(b"x")),
            ..good
        };
        assert_eq!(
            Manifest::decode(&block_tree.encode()),
            Err(ManifestError::TreeCid)
        );
    }

    #[test]
    fn garbage_and_protected_manifests_are_refused() {
        assert!(Manifest::decode(&[0xff, 0xff, 0xff]).is_err());
        assert_eq!(Manifest::decode(&[]), Err(ManifestError::Missing("header")));
        let tree = "zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL";
        let mut pb =
            PbManifest::decode(manifest(tree, 5, None, None).encode().as_slice()).expect("decodes");
        if let Some(h) = pb.header.as_mut() {
            h.erasure = Some(vec![8, 1]);
        }
        assert_eq!(
            Manifest::decode(&pb.encode_to_vec()),
            Err(ManifestError::Protected)
        );
    }
}
