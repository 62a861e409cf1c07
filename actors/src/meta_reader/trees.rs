//! A metadata reader's cache of the Merkle tree nodes it has looked up for proofs.
//!
//! Serving a dataset asks for the proof of every leaf, and each proof climbs the whole tree:
//! the nodes near the root are in every proof, so without a cache each delivery message read
//! them from fjall again (a point read each: memtable skiplist, then tables). A tree is named
//! by its root, so a node of it never changes: whatever the reader once read from disk stays
//! right for as long as any dataset uses that tree, and again after it is deleted and stored
//! anew. What a delete must not do is leave memory behind forever or let a proof be built for
//! a tree that is gone; both hold because the cache is bounded (least recently used trees go
//! first) and is only consulted after the message's snapshot showed the tree's leaf count,
//! which a removal deletes with the nodes. The leaf count itself is part of the key, so a
//! tree stored again under another count (only a manifest lying about it could do that, see
//! `BeginFetch`) never sees nodes cached for the old one.
//!
//! The cache is filled lazily, a chunk of a level at a time, from the reads a proof makes, so a tree
//! still being fetched (whose nodes arrive with its leaves) is cached as far as it is held and
//! a node not on disk yet is simply read again next time. Level 0 (the leaves' digests) is not
//! kept here: a message's leaves come from one range scan of their records, which gives the
//! neighbours' digests too.
//!
//! Each reader thread owns its cache (no locks: readers never wait for each other), so the
//! node's memory for it is at most [`TREE_CACHE_BYTES`] times the number of reader threads.

use cid::Cid;

use crate::format::{cid::Digest, merkle};

/// Bytes of node digests (plus their presence bits) one reader thread keeps. The levels above
/// the leaves of a 1 GiB dataset (16 384 blocks of 64 KiB) are 16 383 digests, about 512 KiB,
/// so this holds the trees of 8 such datasets, or the upper levels of one of 8 GiB and more.
pub const TREE_CACHE_BYTES: usize = 4 << 20;

/// Cached levels of the trees a reader served last, the most recently used first.
pub(crate) struct TreeCache {
    budget: usize,
    used: usize,
    trees: Vec<CachedTree>,
}

/// The levels of one tree kept in memory: `levels[k]` is level `first + k` (1 = just above
/// the leaves), up to the level below the root (a proof never needs the root itself).
pub(crate) struct CachedTree {
    tree: Cid,
    nleaves: u64,
    first: usize,
    levels: Vec<Level>,
    bytes: usize,
}

/// One level: every node's slot, and which slots were filled.
struct Level {
    nodes: Vec<Digest>,
    have: Vec<u64>,
}

impl Level {
    fn new(len: usize) -> Self {
        Self {
            nodes: vec![merkle::ZERO; len],
            have: vec![0; len.div_ceil(64)],
        }
    }

    fn bytes(len: usize) -> usize {
        len.saturating_mul(size_of::<Digest>())
            .saturating_add(len.div_ceil(64) * size_of::<u64>())
    }

    fn get(&self, i: usize) -> Option<Digest> {
        let filled = self.have.get(i / 64)? & (1 << (i % 64)) != 0;
        filled.then(|| self.nodes.get(i).copied()).flatten()
    }

    fn set(&mut self, i: usize, digest: Digest) {
        if let (Some(slot), Some(bits)) = (self.nodes.get_mut(i), self.have.get_mut(i / 64)) {
            *slot = digest;
            *bits |= 1 << (i % 64);
        }
    }
}

impl CachedTree {
    /// Room for as many levels of a tree of `nleaves` leaves as `budget` allows, from the
    /// root down: the levels near the root are the small ones that every proof crosses.
    fn new(tree: Cid, nleaves: u64, budget: usize) -> Self {
        let top = merkle::depth(nleaves); // the root's level, never asked for
        let mut first = top;
        let mut bytes: usize = 0;
        while first > 1 {
            let len = usize::try_from(merkle::layer_len(nleaves, first - 1)).unwrap_or(usize::MAX);
            let more = Level::bytes(len);
            if bytes.saturating_add(more) > budget {
                break;
            }
            bytes += more;
            first -= 1;
        }
        let levels = (first..top)
            .map(|level| Level::new(merkle::layer_len(nleaves, level) as usize))
            .collect();
        Self {
            tree,
            nleaves,
            first,
            levels,
            bytes,
        }
    }

    fn level(&self, level: usize) -> Option<&Level> {
        self.levels.get(level.checked_sub(self.first)?)
    }

    /// Node `i` of `level`, if it is cached.
    pub(crate) fn node(&self, level: usize, i: u64) -> Option<Digest> {
        self.level(level)?.get(usize::try_from(i).ok()?)
    }

    /// True when `level` is kept here.
    pub(crate) fn keeps(&self, level: usize) -> bool {
        self.level(level).is_some()
    }

    /// Keeps node `i` of `level` (read from disk), if its level is cached.
    pub(crate) fn keep(&mut self, level: usize, i: u64, digest: Digest) {
        let (Some(k), Ok(i)) = (level.checked_sub(self.first), usize::try_from(i)) else {
            return;
        };
        if let Some(l) = self.levels.get_mut(k) {
            l.set(i, digest);
        }
    }

    /// The lowest level kept (levels below it are read from disk every time).
    #[cfg(test)]
    pub(crate) fn first_level(&self) -> usize {
        self.first
    }
}

impl TreeCache {
    /// An empty cache of at most `budget` bytes.
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            used: 0,
            trees: Vec::new(),
        }
    }

    /// The cached levels of `tree` with `nleaves` leaves (made the most recently used; room
    /// made for them if they were not cached, evicting the least recently used trees).
    pub(crate) fn tree(&mut self, tree: &Cid, nleaves: u64) -> &mut CachedTree {
        let found = self
            .trees
            .iter()
            .position(|t| t.tree == *tree && t.nleaves == nleaves);
        let entry = match found {
            Some(at) => self.trees.remove(at),
            None => {
                let entry = CachedTree::new(*tree, nleaves, self.budget);
                while self.used + entry.bytes > self.budget {
                    let Some(old) = self.trees.pop() else { break };
                    self.used -= old.bytes;
                }
                self.used += entry.bytes;
                entry
            }
        };
        self.trees.insert(0, entry);
        &mut self.trees[0]
    }

    /// Bytes held now (never above the budget).
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// Trees held now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.trees.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cid::{cid_from_digest, sha256, ROOT_CODEC};

    fn tree(n: u64) -> Cid {
        cid_from_digest(ROOT_CODEC, &sha256(&n.to_le_bytes()))
    }

    /// However many trees of whatever size pass through, the cache stays within its budget,
    /// keeps the most recently used and drops the least recently used first.
    #[test]
    fn the_cache_stays_within_its_bound() {
        let budget = 64 * 1024;
        let mut cache = TreeCache::new(budget);
        for n in [1u64, 2, 3, 100, 1000, 5000, 100_000, u64::MAX, 7, 1000] {
            let t = cache.tree(&tree(n), n);
            t.keep(t.first_level(), 0, [n as u8; 32]);
            assert!(cache.used() <= budget, "{} after {n}", cache.used());
        }
        // 1000 leaves: 500 + 250 + … below the root, about 32 KiB: two such trees fit.
        let mut cache = TreeCache::new(budget);
        cache.tree(&tree(1), 1000);
        cache.tree(&tree(2), 1000);
        cache.tree(&tree(3), 1000);
        assert_eq!(cache.len(), 2, "the least recently used went");
        assert!(cache.trees.iter().all(|t| t.tree != tree(1)));
    }

    /// A tree larger than the budget keeps the levels near its root; what is kept reads back,
    /// what is not kept is not invented.
    #[test]
    fn a_large_tree_keeps_its_top_levels() {
        let mut cache = TreeCache::new(4096);
        let t = cache.tree(&tree(9), 1 << 20);
        assert!(t.first_level() > 10, "{}", t.first_level());
        assert!(
            !t.keeps(1) && t.keeps(19) && !t.keeps(20),
            "the root is never asked for"
        );
        assert_eq!(t.node(19, 1), None);
        t.keep(19, 1, [7; 32]);
        t.keep(1, 5, [8; 32]);
        assert_eq!(t.node(19, 1), Some([7; 32]));
        assert_eq!((t.node(19, 0), t.node(1, 5)), (None, None));
        // Another leaf count is another tree (its nodes are not those of the first).
        assert_eq!(cache.tree(&tree(9), 1 << 19).node(19, 1), None);
    }
}
