//! Property tests (bounded fuzzing) of the parsers and the Merkle tree: no input makes them
//! panic, and what they accept round-trips. CI runs the default 256 cases per property; a longer
//! run: `PROPTEST_CASES=200000 cargo test --release -p codex-actors --test formats_props`.

use codex_actors::format::{
    cid::{cid_from_digest, cid_text, parse_cid, sha256, MANIFEST_CODEC},
    manifest::Manifest,
    merkle::{compress, root},
};
use proptest::prelude::*;

proptest! {
    #[test]
    fn cid_parsing_never_panics(text in ".{0,300}") {
        let _ = parse_cid(&text);
    }

    #[test]
    fn cid_parsing_never_panics_on_base58_lookalikes(text in "z[1-9A-HJ-NP-Za-km-z]{0,80}") {
        if let Ok(cid) = parse_cid(&text) {
            prop_assert_eq!(cid.version(), cid::Version::V1);
            prop_assert!((MANIFEST_CODEC..=0xCD06).contains(&cid.codec()));
        }
    }

    #[test]
    fn codex_cids_round_trip_through_text(digest in any::<[u8; 32]>(), codec in MANIFEST_CODEC..=0xCD06u64) {
        let cid = cid_from_digest(codec, &digest);
        prop_assert_eq!(parse_cid(&cid_text(&cid)).ok(), Some(cid));
    }

    #[test]
    fn manifest_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Manifest::decode(&bytes);
    }

    #[test]
    fn manifests_round_trip(
        digest in any::<[u8; 32]>(),
        size in 1u64..u64::MAX / 2,
        filename in proptest::option::of("[a-zA-Z0-9._-]{1,40}"),
        mimetype in proptest::option::of("[a-z]{1,10}/[a-z0-9.+-]{1,20}"),
    ) {
        let m = Manifest::new(cid_from_digest(0xCD03, &digest), size, 65536, filename, mimetype);
        let bytes = m.encode();
        prop_assert_eq!(Manifest::decode(&bytes), Ok(m.clone()));
        prop_assert_eq!(cid_text(&m.cid()).chars().next(), Some('z'));
    }

    #[test]
    fn mutated_manifests_never_panic(
        digest in any::<[u8; 32]>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = Manifest::new(cid_from_digest(0xCD03, &digest), 12345, 65536, Some("a.bin".into()), None).encode();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        let _ = Manifest::decode(&bytes);
    }

    #[test]
    fn every_leaf_and_the_leaf_count_change_the_root(
        seeds in proptest::collection::vec(any::<u16>(), 1..40),
        pick in any::<usize>(),
    ) {
        let leaves: Vec<[u8; 32]> = seeds.iter().enumerate().map(|(i, s)| sha256(&[(i as u32).to_le_bytes().as_slice(), &s.to_le_bytes()].concat())).collect();
        let r = root(&leaves).expect("non-empty");
        prop_assert_eq!(root(&leaves), Some(r), "deterministic");
        let mut changed = leaves.clone();
        let i = pick % changed.len();
        changed[i][0] ^= 1;
        prop_assert_ne!(root(&changed), Some(r));
        let mut longer = leaves.clone();
        longer.push([0u8; 32]);
        prop_assert_ne!(root(&longer), Some(r), "a zero leaf is not the zero padding");
        if leaves.len() == 1 {
            prop_assert_eq!(r, compress(&leaves[0], &[0u8; 32], 0x03));
        }
    }
}
