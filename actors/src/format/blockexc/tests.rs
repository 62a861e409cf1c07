//! Tests of the block-exchange messages. The "Nim" byte strings are hand-built field by field
//! the way nim-libp2p's minprotobuf writes them (every field written, defaults included), and
//! the interop test in `tests/net_codex.rs` checks the same shapes against a live Codex node.

use super::*;
use crate::format::cid::{cid_from_digest, sha256, BLOCK_CODEC, MANIFEST_CODEC, ROOT_CODEC};
use crate::format::merkle::layers;

/// The tail minprotobuf appends to every message: `pendingBytes = 0` and the empty
/// account (6) and payment (7) submessages, each holding one empty bytes field.
const NIM_TAIL: [u8; 10] = [0x28, 0x00, 0x32, 0x02, 0x0a, 0x00, 0x3a, 0x02, 0x0a, 0x00];
/// The empty want list Codex writes into messages that carry no wants (`full = 0`).
const NIM_EMPTY_WANTLIST: [u8; 4] = [0x0a, 0x02, 0x10, 0x00];

/// A length-delimited field: its one-byte key, a varint length, the bytes.
fn lp(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    prost::encoding::encode_varint(body.len() as u64, &mut v);
    v.extend_from_slice(body);
    v
}

pub(super) fn manifest_block() -> (Cid, Bytes) {
    let data = Bytes::from_static(b"pretend this is a manifest");
    (cid_from_digest(MANIFEST_CODEC, &sha256(&data)), data)
}

fn nim_cid_address(cid: &Cid) -> Vec<u8> {
    [vec![0x08, 0x00], lp(0x22, &cid.to_bytes())].concat()
}

fn nim_leaf_address(tree: &Cid, index: u8) -> Vec<u8> {
    [
        vec![0x08, 0x01],
        lp(0x12, &tree.to_bytes()),
        vec![0x18, index],
    ]
    .concat()
}

/// Three data blocks, their tree, and the tree CID.
pub(super) fn dataset() -> (Vec<Bytes>, Vec<Vec<[u8; 32]>>, Cid) {
    let blocks: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i; 100])).collect();
    let leaves: Vec<[u8; 32]> = blocks.iter().map(|b| sha256(b)).collect();
    let all = layers(&leaves).expect("leaves");
    let root = all.last().and_then(|l| l.first()).copied().expect("root");
    (blocks, all, cid_from_digest(ROOT_CODEC, &root))
}

pub(super) fn leaf_delivery(index: u64) -> BlockDelivery {
    let (blocks, all, tree) = dataset();
    let data = blocks[index as usize].clone();
    BlockDelivery {
        cid: cid_from_digest(BLOCK_CODEC, &sha256(&data)),
        data,
        address: BlockAddress::Leaf { tree, index },
        proof: CodexProof::from_layers(&all, index),
    }
}

#[test]
fn a_nim_presence_message_with_all_its_defaults_decodes() {
    let (cid, _) = manifest_block();
    let presence = [
        lp(0x0a, &nim_cid_address(&cid)),
        vec![0x10, 0x00],
        lp(0x1a, &ZERO_PRICE),
    ]
    .concat();
    let frame = [
        NIM_EMPTY_WANTLIST.to_vec(),
        lp(0x22, &presence),
        NIM_TAIL.to_vec(),
    ]
    .concat();
    let msg = Message::decode(Bytes::from(frame)).expect("Codex's bytes decode");
    assert_eq!(msg.wantlist, Wantlist::default());
    assert!(msg.deliveries.is_empty());
    assert_eq!(
        msg.presences,
        vec![BlockPresence::have(BlockAddress::Cid(cid))]
    );
}

#[test]
fn a_nim_want_list_decodes_and_ours_encodes_it_byte_for_byte() {
    let (_, _, tree) = dataset();
    let entry = [
        lp(0x0a, &nim_leaf_address(&tree, 3)),
        vec![0x10, 0x00, 0x18, 0x00, 0x20, 0x01, 0x28, 0x00],
    ]
    .concat();
    let wantlist = [lp(0x0a, &entry), vec![0x10, 0x01]].concat();
    let nim = [lp(0x0a, &wantlist), NIM_TAIL.to_vec()].concat();

    let msg = Message::decode(Bytes::from(nim.clone())).expect("decodes");
    let want = WantEntry::new(BlockAddress::Leaf { tree, index: 3 }, WantType::Have);
    assert_eq!(msg.wantlist.entries, vec![want]);
    assert!(msg.wantlist.full);
    // We leave out the dormant tail; everything before it is what Nim writes.
    let ours = msg.encode();
    assert_eq!(ours, nim[..nim.len() - NIM_TAIL.len()]);
}

#[test]
fn a_nim_leaf_delivery_decodes_and_its_proof_checks_out() {
    let d = leaf_delivery(2);
    let proof = d.proof.clone().expect("proof").encode();
    let BlockAddress::Leaf { tree, .. } = &d.address else {
        unreachable!()
    };
    let mut delivery = [lp(0x0a, &d.cid.to_bytes()), lp(0x12, &d.data)].concat();
    delivery.extend(lp(0x1a, &nim_leaf_address(tree, 2)));
    delivery.extend(lp(0x22, &proof));
    let frame = [
        NIM_EMPTY_WANTLIST.to_vec(),
        lp(0x1a, &delivery),
        NIM_TAIL.to_vec(),
    ]
    .concat();
    let msg = Message::decode(Bytes::from(frame)).expect("decodes");
    assert_eq!(msg.deliveries, vec![d.clone()]);
    assert!(msg.deliveries[0].is_authentic());
}

#[test]
fn authenticity_needs_the_right_proof_index_and_tree() {
    for i in 0..3 {
        assert!(leaf_delivery(i).is_authentic(), "leaf {i}");
    }
    let mut no_proof = leaf_delivery(1);
    no_proof.proof = None;
    assert!(!no_proof.is_authentic());
    let mut other_index = leaf_delivery(1);
    other_index.address = BlockAddress::Leaf {
        tree: match other_index.address {
            BlockAddress::Leaf { tree, .. } => tree,
            BlockAddress::Cid(c) => c,
        },
        index: 0,
    };
    assert!(!other_index.is_authentic(), "proof is for leaf 1");
    let mut other_tree = leaf_delivery(1);
    other_tree.address = BlockAddress::Leaf {
        tree: cid_from_digest(ROOT_CODEC, &sha256(b"another tree")),
        index: 1,
    };
    assert!(
        !other_tree.is_authentic(),
        "a well-formed proof for another root"
    );
    let (cid, data) = manifest_block();
    let standalone = BlockDelivery {
        cid,
        data,
        address: BlockAddress::Cid(cid),
        proof: None,
    };
    assert!(standalone.is_authentic());
    let mut mismatched = standalone.clone();
    mismatched.address = BlockAddress::Cid(cid_from_digest(MANIFEST_CODEC, &sha256(b"x")));
    assert!(!mismatched.is_authentic());
}

#[test]
fn every_message_kind_round_trips() {
    let (cid, data) = manifest_block();
    let (_, _, tree) = dataset();
    let msg = Message {
        wantlist: Wantlist {
            entries: vec![
                WantEntry::new(BlockAddress::Cid(cid), WantType::Block),
                WantEntry {
                    address: BlockAddress::Leaf { tree, index: 7 },
                    priority: -3,
                    cancel: true,
                    want_type: WantType::Have,
                    send_dont_have: true,
                },
            ],
            full: false,
        },
        deliveries: vec![
            leaf_delivery(0),
            BlockDelivery {
                cid,
                data,
                address: BlockAddress::Cid(cid),
                proof: None,
            },
        ],
        presences: vec![
            BlockPresence::have(BlockAddress::Leaf { tree, index: 1 }),
            BlockPresence {
                address: BlockAddress::Cid(cid),
                presence: PresenceType::DontHave,
                price: vec![1, 2],
            },
        ],
    };
    let back = Message::decode(Bytes::from(msg.encode())).expect("round trip");
    assert_eq!(back, msg);
    assert_eq!(
        Message::decode(Bytes::from(Message::default().encode())),
        Ok(Message::default())
    );
}

#[test]
fn an_empty_block_still_carries_its_data_field() {
    let empty = Bytes::new();
    let cid = cid_from_digest(BLOCK_CODEC, &sha256(&empty));
    let msg = Message {
        deliveries: vec![BlockDelivery {
            cid,
            data: empty,
            address: BlockAddress::Cid(cid),
            proof: None,
        }],
        ..Message::default()
    };
    let pb = wire::Message::decode(msg.encode().as_slice()).expect("prost");
    assert_eq!(pb.payload[0].data.as_deref(), Some(&[][..]));
    let bytes = msg.encode();
    let field1 = lp(0x0a, &cid.to_bytes());
    let at = bytes
        .windows(field1.len())
        .position(|w| w == field1.as_slice())
        .expect("cid field");
    assert_eq!(&bytes[at + field1.len()..][..2], &[0x12, 0x00]);
    assert_eq!(Message::decode(Bytes::from(bytes)), Ok(msg));
}

fn refuses(pb: wire::Message) -> WireError {
    Message::decode(Bytes::from(pb.encode_to_vec())).expect_err("must be refused")
}

fn one_entry(e: wire::Entry) -> wire::Message {
    wire::Message {
        wantlist: Some(wire::Wantlist {
            entries: vec![e],
            full: None,
        }),
        ..Default::default()
    }
}

#[test]
fn values_nim_would_crash_on_are_refused() {
    let (cid, _) = manifest_block();
    let good = entry_to_wire(&WantEntry::new(BlockAddress::Cid(cid), WantType::Have));
    let mut e = good.clone();
    e.want_type = Some(2);
    assert_eq!(
        refuses(one_entry(e)),
        WireError::OutOfRange {
            field: "Entry.wantType",
            value: 2
        }
    );
    let mut e = good.clone();
    e.cancel = Some(7);
    assert!(matches!(
        refuses(one_entry(e)),
        WireError::OutOfRange { .. }
    ));
    let mut presence = presence_to_wire(&BlockPresence::have(BlockAddress::Cid(cid)));
    presence.r#type = Some(2);
    let pb = wire::Message {
        block_presences: vec![presence],
        ..Default::default()
    };
    assert!(matches!(refuses(pb), WireError::OutOfRange { .. }));
    let mut e = good.clone();
    e.address = Some(wire::BlockAddress {
        leaf: Some(1),
        tree_cid: Some(cid.to_bytes()),
        index: Some(u64::MAX),
        cid: None,
    });
    assert!(matches!(refuses(one_entry(e)), WireError::Address(_)));
}

#[test]
fn malformed_addresses_are_refused() {
    let (cid, _) = manifest_block();
    let addr = |leaf, tree: Option<Vec<u8>>, index, c: Option<Vec<u8>>| wire::Entry {
        address: Some(wire::BlockAddress {
            leaf,
            tree_cid: tree,
            index,
            cid: c,
        }),
        ..Default::default()
    };
    let b = cid.to_bytes();
    let cases = [
        (
            addr(Some(1), Some(b.clone()), Some(0), Some(b.clone())),
            "mixed leaf",
        ),
        (
            addr(Some(0), Some(b.clone()), None, Some(b.clone())),
            "mixed cid",
        ),
        (addr(Some(0), None, None, None), "no cid"),
        (addr(Some(1), None, Some(1), None), "no tree"),
        (addr(None, None, None, Some(vec![1, 2, 3])), "not a cid"),
        (
            addr(None, None, None, Some([b.clone(), vec![0]].concat())),
            "trailing byte",
        ),
    ];
    for (entry, what) in cases {
        let err = refuses(one_entry(entry));
        assert!(
            matches!(
                err,
                WireError::Address(_) | WireError::Missing(_) | WireError::Cid(_)
            ),
            "{what}: {err:?}"
        );
    }
    let no_address = wire::Entry::default();
    assert_eq!(
        refuses(one_entry(no_address)),
        WireError::Missing("address")
    );
}

#[test]
fn bad_deliveries_and_prices_are_refused() {
    let mut d = delivery_to_wire(&leaf_delivery(0));
    d.data = Some(Bytes::from_static(b"not the block"));
    let pb = wire::Message {
        payload: vec![d],
        ..Default::default()
    };
    assert_eq!(refuses(pb), WireError::DataMismatch);

    let mut d = delivery_to_wire(&leaf_delivery(0));
    d.data = None;
    let pb = wire::Message {
        payload: vec![d],
        ..Default::default()
    };
    assert_eq!(refuses(pb), WireError::Missing("BlockDelivery.data"));

    let mut d = delivery_to_wire(&leaf_delivery(0));
    d.proof = Some(vec![0x08, 0x13]);
    let pb = wire::Message {
        payload: vec![d],
        ..Default::default()
    };
    assert_eq!(refuses(pb), WireError::Proof(ProofError::Codec(0x13)));

    let (cid, _) = manifest_block();
    let mut p = presence_to_wire(&BlockPresence::have(BlockAddress::Cid(cid)));
    p.price = Some(vec![0; 33]);
    let pb = wire::Message {
        block_presences: vec![p],
        ..Default::default()
    };
    assert_eq!(refuses(pb), WireError::Price(33));
}

#[test]
fn garbage_is_refused_not_panicked_on() {
    for junk in [
        &[0xff_u8; 16][..],
        &[0x0a, 0x7f, 0x01],
        &[0x1a, 0x03, 0xff, 0xff, 0xff],
    ] {
        assert!(
            matches!(
                Message::decode(Bytes::copy_from_slice(junk)),
                Err(WireError::Protobuf(_) | WireError::Missing(_) | WireError::Cid(_))
            ),
            "{junk:?}"
        );
    }
}

/// A presence reply captured from Codex v0.2.5 (`tests/net_codex.rs` prints these): Have for a
/// manifest CID, with every default field minprotobuf writes.
const CODEX_PRESENCE_FRAME: &str = "0a02100022500a2a0800222601819a0312206a42e9592f8c8e92cf037d33385f\
4567d421f9f385c8c61e714e02faf668844110001a2000000000000000000000000000000000000000000000000000000000\
00000000280032020a003a020a00";

/// The delivery of that manifest, captured the same way: no proof field for a CID address.
const CODEX_DELIVERY_FRAME: &str = "0a0210001aa9010a2601819a0312206a42e9592f8c8e92cf037d33385f4567\
d421f9f385c8c61e714e02faf668844112530a510a2601839a03122041f4946979ba48e4f9c10138228f2a76ee2ed20537d3\
e37b957817464a3a2b761080800418e80720829a03281230024a186170706c69636174696f6e2f6f637465742d7374726561\
6d1a2a0800222601819a0312206a42e9592f8c8e92cf037d33385f4567d421f9f385c8c61e714e02faf6688441280032020a\
003a020a00";

fn unhex(s: &str) -> Bytes {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect::<Vec<u8>>()
        .into()
}

#[test]
fn frames_captured_from_codex_decode() {
    let presence = Message::decode(unhex(CODEX_PRESENCE_FRAME)).expect("presence frame");
    let [p] = presence.presences.as_slice() else {
        panic!("one presence expected: {presence:?}")
    };
    assert_eq!(p.presence, PresenceType::Have);
    assert_eq!(
        p.price,
        ZERO_PRICE.to_vec(),
        "Codex prices everything at 32 zero bytes"
    );
    let BlockAddress::Cid(manifest_cid) = p.address else {
        panic!("a manifest is a standalone address")
    };
    assert_eq!(manifest_cid.codec(), MANIFEST_CODEC);
    assert!(presence.wantlist == Wantlist::default() && presence.deliveries.is_empty());

    let delivery = Message::decode(unhex(CODEX_DELIVERY_FRAME)).expect("delivery frame");
    let [d] = delivery.deliveries.as_slice() else {
        panic!("one delivery expected")
    };
    assert_eq!(d.cid, manifest_cid);
    assert!(d.is_authentic() && d.proof.is_none());
    let manifest = crate::format::manifest::Manifest::decode(&d.data).expect("a manifest");
    assert_eq!(manifest.dataset_size, 1000);
    assert_eq!(
        manifest.cid(),
        manifest_cid,
        "our encoder gives Codex's bytes back"
    );
}
