//! The Codex Merkle tree (`CodexTree`) root over sha2-256 block digests.
//!
//! Leaves are the raw block digests. Each layer compresses pairs with
//! `sha256(left ‖ right ‖ key)`; an odd last node is compressed with 32 zero bytes and the
//! layer's "odd" key. The leaf layer is always compressed, so even a one-leaf tree's root is a
//! hash and never the leaf itself.

use sha2::{Digest as _, Sha256};

use crate::format::cid::Digest;

const KEY_NONE: u8 = 0x00;
const KEY_BOTTOM_LAYER: u8 = 0x01;
const KEY_ODD: u8 = 0x02;
const KEY_ODD_AND_BOTTOM_LAYER: u8 = 0x03;
const ZERO: Digest = [0u8; 32];

/// `sha256(left ‖ right ‖ key)`: Codex's keyed two-to-one compression.
pub fn compress(left: &Digest, right: &Digest, key: u8) -> Digest {
    let mut h = Sha256::new();
    h.update(left);
    h.update(right);
    h.update([key]);
    h.finalize().into()
}

fn next_layer(layer: &[Digest], bottom: bool) -> Vec<Digest> {
    let (pair_key, odd_key) = if bottom {
        (KEY_BOTTOM_LAYER, KEY_ODD_AND_BOTTOM_LAYER)
    } else {
        (KEY_NONE, KEY_ODD)
    };
    layer
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => compress(l, r, pair_key),
            // The lone last node of an odd layer (chunks(2) never yields an empty slice).
            [l, ..] => compress(l, &ZERO, odd_key),
            [] => ZERO,
        })
        .collect()
}

/// The root of the tree over `leaves`, or `None` when there are no leaves (Codex: "Empty leaves").
pub fn root(leaves: &[Digest]) -> Option<Digest> {
    if leaves.is_empty() {
        return None;
    }
    let mut layer = next_layer(leaves, true);
    while layer.len() > 1 {
        layer = next_layer(&layer, false);
    }
    layer.first().copied()
}

#[cfg(test)]
mod tests {
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
}
