//! Tests of what a hostile peer cannot get through decoding: lists longer than Codex sends,
//! addresses no Codex block can have, a genuine leaf under another codec.

use super::tests::{dataset, leaf_delivery, manifest_block};
use super::*;
use crate::format::cid::{cid_from_digest, sha256, BLOCK_CODEC, MANIFEST_CODEC};

#[test]
fn a_genuine_leaf_under_another_codec_is_not_authentic() {
    let good = leaf_delivery(1);
    assert!(good.is_authentic());
    let digest = digest_of(&good.cid).expect("sha2-256");
    // Same bytes, same digest, same proof: only the codec differs.
    let raw = BlockDelivery {
        cid: cid_from_digest(MANIFEST_CODEC, &digest),
        ..good
    };
    assert!(!raw.is_authentic(), "a leaf must be a codex-block");
}

#[test]
fn lists_longer_than_codex_sends_are_refused() {
    let (cid, _) = manifest_block();
    let entry = WantEntry::new(BlockAddress::Cid(cid), WantType::Have);
    let message = |n: usize| Message {
        wantlist: Wantlist {
            entries: vec![entry.clone(); n],
            full: false,
        },
        ..Message::default()
    };
    let at_limit = message(MAX_MESSAGE_ENTRIES).encode();
    assert_eq!(
        Message::decode(Bytes::from(at_limit))
            .map(|m| m.wantlist.entries.len())
            .ok(),
        Some(MAX_MESSAGE_ENTRIES)
    );
    let over = message(MAX_MESSAGE_ENTRIES + 1).encode();
    assert!(matches!(
        Message::decode(Bytes::from(over)),
        Err(WireError::TooMany { count: 1025, .. })
    ));
    let presences = Message {
        presences: vec![BlockPresence::have(BlockAddress::Cid(cid)); MAX_MESSAGE_ENTRIES + 1],
        ..Message::default()
    };
    assert!(matches!(
        Message::decode(Bytes::from(presences.encode())),
        Err(WireError::TooMany { .. })
    ));
}

#[test]
fn addresses_no_codex_block_can_have_are_refused() {
    use cid::multihash::Multihash;
    // An identity-hash CID: a few bytes, free to forge by the thousand.
    let identity = Cid::new_v1(
        BLOCK_CODEC,
        Multihash::<64>::wrap(0x00, b"x").expect("fits"),
    );
    let raw_codec = cid_from_digest(0x55, &sha256(b"x"));
    let block_as_tree = cid_from_digest(BLOCK_CODEC, &sha256(b"x"));
    let refuse = |address: BlockAddress| {
        let m = Message {
            wantlist: Wantlist {
                entries: vec![WantEntry::new(address, WantType::Block)],
                full: false,
            },
            ..Message::default()
        };
        matches!(
            Message::decode(Bytes::from(m.encode())),
            Err(WireError::NotCodex(_))
        )
    };
    assert!(refuse(BlockAddress::Cid(identity)));
    assert!(refuse(BlockAddress::Cid(raw_codec)));
    assert!(refuse(BlockAddress::Leaf {
        tree: block_as_tree,
        index: 0
    }));
    let (_, _, tree) = dataset();
    assert!(!refuse(BlockAddress::Leaf { tree, index: 0 }));
}
