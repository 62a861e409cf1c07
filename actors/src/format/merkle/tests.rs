//! Tests of the Codex Merkle tree and its proofs.

use super::*;
use crate::format::cid::{cid_from_digest, cid_text, sha256, ROOT_CODEC};

fn leaf(n: u8) -> Digest {
    sha256(&[n])
}

#[test]
fn one_leaf_is_hashed_with_the_zero_sibling_and_odd_bottom_key() {
    let mut block = vec![0u8; 65536];
    block[..18].copy_from_slice(b"some file contents");
    let l = sha256(&block);
    let r = root(&[l]).expect("one leaf");
    assert_eq!(r, compress(&l, &ZERO, 0x03));
    assert_eq!(
        cid_text(&cid_from_digest(ROOT_CODEC, &r)),
        "zDzSvJTezk7bJNQqFq8k1iHXY84psNuUfZVusA5bBQQUSuyzDSVL"
    );
}

#[test]
fn layers_follow_the_codex_keys() {
    let (a, b, c) = (leaf(1), leaf(2), leaf(3));
    let ab = compress(&a, &b, KEY_BOTTOM_LAYER);
    assert_eq!(
        root(&[a, b]),
        Some(ab),
        "two leaves: one bottom pair, no odd node"
    );
    let c0 = compress(&c, &ZERO, KEY_ODD_AND_BOTTOM_LAYER);
    assert_eq!(root(&[a, b, c]), Some(compress(&ab, &c0, KEY_NONE)));
    let d = leaf(4);
    let e = leaf(5);
    let cd = compress(&c, &d, KEY_BOTTOM_LAYER);
    let e0 = compress(&e, &ZERO, KEY_ODD_AND_BOTTOM_LAYER);
    let abcd = compress(&ab, &cd, KEY_NONE);
    let e00 = compress(&e0, &ZERO, KEY_ODD);
    assert_eq!(
        root(&[a, b, c, d, e]),
        Some(compress(&abcd, &e00, KEY_NONE))
    );
}

#[test]
fn no_leaves_has_no_root() {
    assert_eq!(root(&[]), None);
}

#[test]
fn depth_and_layers_match_the_tree() {
    assert_eq!(depth(0), 0);
    assert_eq!(depth(1), 1, "a single leaf is still compressed once");
    assert_eq!(depth(2), 1);
    assert_eq!(depth(3), 2);
    assert_eq!(depth(4), 2);
    assert_eq!(depth(5), 3);
    for n in 1..=40u8 {
        let leaves: Vec<Digest> = (0..n).map(leaf).collect();
        let all = layers(&leaves).expect("leaves");
        assert_eq!(all.len(), depth(u64::from(n)) + 1, "{n} leaves");
        for (level, layer) in all.iter().enumerate() {
            assert_eq!(layer.len() as u64, layer_len(u64::from(n), level));
        }
        assert_eq!(
            all.last().map(Vec::as_slice),
            Some(&[root(&leaves).expect("root")][..])
        );
    }
    assert_eq!(layers(&[]), None);
}

#[test]
fn the_nodes_a_proof_shows_are_the_trees_own() {
    for n in 1..=33u64 {
        let leaves: Vec<Digest> = (0..n).map(|i| sha256(&i.to_le_bytes())).collect();
        let layers = layers(&leaves).expect("leaves");
        for i in 0..n {
            let proof = CodexProof::from_layers(&layers, i).expect("a leaf");
            let nodes = proof.nodes(&leaves[i as usize]).expect("fits");
            for node in &nodes {
                assert_eq!(
                    layers[node.level as usize][node.index as usize], node.digest,
                    "n={n} i={i} {node:?}"
                );
            }
            let top = nodes.last().expect("a root");
            assert_eq!((top.level as usize, top.index), (layers.len() - 1, 0));
        }
    }
}

#[test]
fn every_proof_of_trees_up_to_40_leaves_verifies_and_tampering_fails() {
    for n in 1..=40u8 {
        let leaves: Vec<Digest> = (0..n).map(leaf).collect();
        let all = layers(&leaves).expect("leaves");
        let r = root(&leaves).expect("root");
        let wrong_root = compress(&r, &r, 0);
        for (i, l) in leaves.iter().enumerate() {
            let i = i as u64;
            let proof = CodexProof::from_layers(&all, i).expect("leaf exists");
            assert_eq!(proof.path.len(), depth(u64::from(n)));
            assert!(verify(&proof, l, &r), "{n} leaves, leaf {i}");
            // The same proof survives its wire encoding.
            let decoded = CodexProof::decode(&proof.encode()).expect("decodes");
            assert_eq!(decoded, proof);

            assert!(!verify(&proof, &leaf(200), &r), "wrong leaf");
            assert!(!verify(&proof, l, &wrong_root), "wrong root");
            let mut truncated = proof.clone();
            truncated.path.pop();
            assert!(!verify(&truncated, l, &r), "truncated path");
            let mut longer = proof.clone();
            longer.path.push(ZERO);
            assert!(!verify(&longer, l, &r), "extra path node");
            if n > 1 {
                let mut moved = proof.clone();
                moved.index = (i + 1) % u64::from(n);
                assert!(!verify(&moved, l, &r), "wrong index");
                let mut flipped = proof.clone();
                flipped.path[0][0] ^= 1;
                assert!(!verify(&flipped, l, &r), "tampered sibling");
            }
            let mut other_codec = proof.clone();
            other_codec.mcodec = 0x13;
            assert!(!verify(&other_codec, l, &r), "sha2-512 is not our tree");
        }
        assert_eq!(CodexProof::from_layers(&all, u64::from(n)), None);
    }
}

#[test]
fn lookup_proofs_equal_layer_proofs_and_pass_errors_through() {
    let leaves: Vec<Digest> = (0..13).map(leaf).collect();
    let all = layers(&leaves).expect("leaves");
    for i in 0..13 {
        let looked_up: Result<_, ()> = CodexProof::from_lookup(13, i, |level, j| {
            assert!(j < layer_len(13, level), "asked only for existing nodes");
            Ok(all[level][j as usize])
        });
        assert_eq!(looked_up, Ok(CodexProof::from_layers(&all, i)));
    }
    let failed = CodexProof::from_lookup(13, 3, |_, _| Err("disk"));
    assert_eq!(failed, Err("disk"));
    let none: Result<_, ()> = CodexProof::from_lookup(13, 13, |_, _| Ok(ZERO));
    assert_eq!(none, Ok(None));
}

#[test]
fn the_encoding_matches_codex_field_for_field() {
    let proof = CodexProof {
        mcodec: SHA2_256,
        index: 0,
        nleaves: 1,
        path: vec![ZERO],
    };
    let mut expected = vec![0x08, 0x12, 0x10, 0x00, 0x18, 0x01, 0x22, 0x22, 0x0a, 0x20];
    expected.extend_from_slice(&ZERO);
    assert_eq!(
        proof.encode(),
        expected,
        "index 0 is written, as minprotobuf does"
    );
}

#[test]
fn garbage_proofs_are_refused() {
    assert!(matches!(
        CodexProof::decode(&[0xff, 0xff]),
        Err(ProofError::Protobuf(_))
    ));
    assert_eq!(CodexProof::decode(&[]), Err(ProofError::Codec(0)));
    let ok = CodexProof {
        mcodec: SHA2_256,
        index: 2,
        nleaves: 3,
        path: vec![leaf(1), leaf(2)],
    };
    let mut bad = ok.clone();
    bad.index = 3;
    assert_eq!(
        CodexProof::decode(&bad.encode()),
        Err(ProofError::Index {
            index: 3,
            nleaves: 3
        })
    );
    let mut long = ok.clone();
    long.path = vec![ZERO; MAX_PROOF_PATH + 1];
    assert_eq!(
        CodexProof::decode(&long.encode()),
        Err(ProofError::PathTooLong(MAX_PROOF_PATH + 1))
    );
    // A 31-byte node: hand-built, since the typed proof cannot hold one.
    let mut short_node = PbProof::decode(ok.encode().as_slice()).expect("own encoding");
    short_node.path[1].node = Some(vec![7; 31]);
    assert_eq!(
        CodexProof::decode(&short_node.encode_to_vec()),
        Err(ProofError::NodeLength(31))
    );
}
