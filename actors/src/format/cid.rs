//! Codex CIDs: CIDv1, sha2-256 multihashes, and the codex multicodecs.
//!
//! Text is always multibase base58btc (`z…`) because that is what a Codex node prints and what
//! users paste back; the `cid` crate's own `Display` would print base32.

use cid::{multibase::Base, multihash::Multihash, Cid, Version};
use sha2::{Digest as _, Sha256};

/// Why CID text was refused. `format` keeps its own errors so that it depends on nothing else
/// in the engine; the engine's `Error` takes these in through `From`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidError {
    /// The text is not a CID at all (bad multibase, bad varint, truncated, too long).
    #[error("Incorrect Cid")]
    Invalid(String),
    /// A well-formed CID this node can never hold (CIDv0, a foreign codec or hash).
    #[error("Unsupported Cid")]
    Unsupported(String),
}

/// `codex-manifest`: the CID codec of a manifest block.
pub const MANIFEST_CODEC: u64 = 0xCD01;
/// `codex-block`: the CID codec of a data block, and the manifest's `codec` field.
pub const BLOCK_CODEC: u64 = 0xCD02;
/// `codex-root`: the CID codec of a dataset's Merkle root (`treeCid`).
pub const ROOT_CODEC: u64 = 0xCD03;
/// `sha2-256`, the only hash Codex uses for blocks, trees and manifests.
pub const SHA2_256: u64 = 0x12;
/// CIDv1 as Codex writes it in the manifest's `version` field: the ordinal of nim-libp2p's
/// `CidVersion` enum (`CIDvIncorrect` = 0, `CIDv0` = 1, `CIDv1` = 2, `CIDv2` = 3), not the
/// version number. Checked against a live Codex node (v0.2.5).
pub const MANIFEST_CID_V1: u64 = 2;
/// What this node wrote for CIDv1 before it matched Codex (the plain version number). Still
/// decoded, so manifests stored then keep being served under the CIDs they were given.
pub const LEGACY_MANIFEST_CID_V1: u64 = 1;

/// Longest CID text we try to parse. A Codex CID is 53 characters; anything far longer is junk
/// and is refused before any decoding work.
pub const MAX_CID_TEXT: usize = 256;

/// A raw sha2-256 digest: a Merkle leaf, or the payload of a CID's multihash.
pub type Digest = [u8; 32];

/// sha2-256 of `data` (uses the CPU's SHA extensions when present).
pub fn sha256(data: &[u8]) -> Digest {
    Sha256::digest(data).into()
}

/// The CIDv1 with `codec` over a sha2-256 `digest`.
pub fn cid_from_digest(codec: u64, digest: &Digest) -> Cid {
    #[expect(
        clippy::expect_used,
        reason = "a 32-byte digest always fits a 64-byte multihash"
    )]
    let mh = Multihash::<64>::wrap(SHA2_256, digest).expect("32 bytes fit in 64");
    Cid::new_v1(codec, mh)
}

/// The `codex-block` CID of a (padded) data block.
pub fn block_cid(block: &[u8]) -> Cid {
    cid_from_digest(BLOCK_CODEC, &sha256(block))
}

/// The sha2-256 digest carried by a Codex CID, or `None` for any other hash.
pub fn digest_of(cid: &Cid) -> Option<Digest> {
    let mh = cid.hash();
    if mh.code() != SHA2_256 {
        return None;
    }
    mh.digest().try_into().ok()
}

/// True when `data` hashes to the digest in `cid` (the check made on every block read).
pub fn verify(cid: &Cid, data: &[u8]) -> bool {
    digest_of(cid).is_some_and(|d| d == sha256(data))
}

/// The base58btc text of a CID, as Codex prints it.
pub fn cid_text(cid: &Cid) -> String {
    // Encoding to base58btc cannot fail for a CIDv1; the fallback only guards the CIDv0 case.
    cid.to_string_of_base(Base::Base58Btc)
        .unwrap_or_else(|_| cid.to_string())
}

/// Parses CID text the way the REST API accepts it: any multibase, CIDv1, a codex codec and a
/// 32-byte sha2-256 multihash.
///
/// # Errors
/// [`CidError::Invalid`] for text that is not a CID, [`CidError::Unsupported`] for a CID this node
/// can never hold (CIDv0, foreign codec or hash).
pub fn parse_cid(text: &str) -> Result<Cid, CidError> {
    if text.is_empty() || text.len() > MAX_CID_TEXT {
        return Err(CidError::Invalid(truncate(text)));
    }
    let cid = Cid::try_from(text).map_err(|_| CidError::Invalid(truncate(text)))?;
    let codex_codec = (MANIFEST_CODEC..=0xCD06).contains(&cid.codec());
    if cid.version() != Version::V1 || !codex_codec || digest_of(&cid).is_none() {
        return Err(CidError::Unsupported(truncate(text)));
    }
    Ok(cid)
}

fn truncate(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Codex's own test value: "some file contents" zero-padded to one 64 KiB block.
    const BLOCK_CID: &str = "zDxWB8ED98hxJ51XwYaoQAwMdskCcmTaPR6Ce2wq88bjvjXRYuR9";

    #[test]
    fn padded_block_gives_the_codex_block_cid() {
        let mut block = vec![0u8; 65536];
        block[..18].copy_from_slice(b"some file contents");
        let cid = block_cid(&block);
        assert_eq!(cid_text(&cid), BLOCK_CID);
        assert_eq!(
            cid.to_bytes().len(),
            38,
            "CIDv1 + 3-byte codec + 34-byte multihash"
        );
        assert!(verify(&cid, &block));
        block[0] ^= 1;
        assert!(!verify(&cid, &block));
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_text() {
        let cid = parse_cid(BLOCK_CID).expect("valid");
        assert_eq!(cid_text(&cid), BLOCK_CID);
        assert!(matches!(parse_cid(""), Err(CidError::Invalid(_))));
        assert!(matches!(parse_cid("zzzz"), Err(CidError::Invalid(_))));
        assert!(matches!(
            parse_cid(&BLOCK_CID[..30]),
            Err(CidError::Invalid(_))
        ));
        assert!(matches!(
            parse_cid(&"z".repeat(10_000)),
            Err(CidError::Invalid(_))
        ));
        // A CIDv0 (dag-pb) and a CIDv1 raw-codec CID are valid CIDs this node cannot hold.
        let v0 = "QmdfTbBqBPQ7VNxZEYEj14VmRuZBkqFbiwReogJgS1zR1n";
        assert!(matches!(parse_cid(v0), Err(CidError::Unsupported(_))));
        let raw = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
        assert!(matches!(parse_cid(raw), Err(CidError::Unsupported(_))));
    }

    #[test]
    fn other_multibases_are_accepted() {
        let cid = parse_cid(BLOCK_CID).expect("valid");
        let b32 = cid.to_string();
        assert!(b32.starts_with('b'));
        assert_eq!(parse_cid(&b32).expect("base32 parses"), cid);
    }
}
