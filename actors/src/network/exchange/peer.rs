//! What the block-exchange actor knows about one connected peer: what it has told us it holds,
//! what we asked it for, and what it asked us for.

use std::{
    collections::{HashSet, VecDeque},
    time::Instant,
};

use libp2p::PeerId;

use super::BlockExchange;
use crate::format::blockexc::BlockAddress;
use crate::network::fetch::window::Window;

/// One connected peer.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Addresses it said it has (presences), among those we want now (an address no longer
    /// wanted is forgotten). Cleared when it stops answering our requests, so it is asked again
    /// before it is trusted again.
    pub(crate) has: HashSet<BlockAddress>,
    /// Addresses we asked it to send (wantBlock) and have not received yet.
    pub(crate) requested: HashSet<BlockAddress>,
    /// Addresses we asked it for and no longer wait for (delivered by someone, timed out or
    /// cancelled): a late delivery of one of these is a harmless duplicate, not a protocol
    /// breach. Bounded: the oldest are forgotten first.
    pub(crate) recent: Recent,
    /// When it last delivered something we asked for, or when we started waiting on it.
    pub(crate) active_at: Instant,
    /// Addresses it asked us to send (wantBlock), in the order asked, not yet served.
    pub(crate) wants: WantQueue,
    /// Addresses it wants that we do not hold yet: served when they arrive (Codex's
    /// `resolveBlocks`), not looked up again before that.
    pub(crate) waiting: HashSet<BlockAddress>,
    /// Want-haves waiting for their presence lookup, with whether DontHave was asked for.
    pub(crate) have_queue: Vec<(BlockAddress, bool)>,
    /// A presence lookup for it is running (one at a time).
    pub(crate) have_lookup: bool,
    /// Serve tasks running for it (a few at a time per peer, so at most that many delivery
    /// messages per peer are in memory).
    pub(crate) serving: usize,
    /// Its identify agent, when known (logs and `/debug/info`).
    pub(crate) agent: Option<String>,
    /// Blocks we sent it.
    pub(crate) blocks_sent: u64,
    /// Blocks it sent us that passed every check.
    pub(crate) blocks_received: u64,
    /// Requests it answered in time, and requests that expired at it, since it was last
    /// judged ([`super::deadlines`]).
    pub(crate) honoured: u64,
    pub(crate) missed: u64,
    /// Until when its Have presences are ignored.
    pub(crate) distrusted_until: Option<Instant>,
    /// How many requests its measured rate × latency calls for (never below its share, never
    /// above [`super::ExchangeConfig::request_window_max`]: `wants.rs` applies both).
    pub(crate) window: Window,
}

/// Blocks exchanged with one connected peer (part of [`super::ExchangeStats`]): shows which
/// peers a download came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStats {
    /// The peer.
    pub peer: PeerId,
    /// Its identify agent, when known (`Codex` for a Codex node).
    pub agent: Option<String>,
    /// Blocks we sent it.
    pub blocks_sent: u64,
    /// Blocks it sent us that passed every check.
    pub blocks_received: u64,
    /// Blocks that may be asked of it at once now: its share of
    /// [`super::ExchangeConfig::max_requests_per_peer`], or what its measured delivery rate ×
    /// latency calls for when that is more, up to [`super::ExchangeConfig::request_window_max`].
    pub request_window: u64,
}

/// Addresses remembered in [`Peer::recent`].
const RECENT: usize = 4096;
/// Trees remembered in [`Recent`]: a late leaf of a tree we asked this peer about is a duplicate
/// even once its own address has been forgotten (Codex answers a long want list slowly).
const RECENT_TREES: usize = 64;

/// What a peer was asked for and is no longer waited on: recent addresses, and the trees asked
/// about. O(1) lookups, bounded size.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    set: HashSet<BlockAddress>,
    order: VecDeque<BlockAddress>,
    trees: VecDeque<cid::Cid>,
}

impl Recent {
    fn remember(&mut self, address: &BlockAddress) {
        if let BlockAddress::Leaf { tree, .. } = address {
            if !self.trees.contains(tree) {
                if self.trees.len() >= RECENT_TREES {
                    self.trees.pop_front();
                }
                self.trees.push_back(*tree);
            }
        }
        if self.set.insert(address.clone()) {
            if self.order.len() >= RECENT {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
            self.order.push_back(address.clone());
        }
    }

    fn contains(&self, address: &BlockAddress) -> bool {
        self.set.contains(address)
            || matches!(address, BlockAddress::Leaf { tree, .. } if self.trees.contains(tree))
    }
}

/// The blocks a peer asked us for, in its order: O(1) to add, cancel and take. A cancel only
/// removes the address from the set; its place in the queue is skipped when reached, and the
/// queue is compacted when such holes outnumber the live entries.
#[derive(Debug, Default)]
pub(crate) struct WantQueue {
    set: HashSet<BlockAddress>,
    order: VecDeque<BlockAddress>,
}

impl WantQueue {
    /// Live wants.
    pub(crate) fn len(&self) -> usize {
        self.set.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub(crate) fn contains(&self, address: &BlockAddress) -> bool {
        self.set.contains(address)
    }

    /// Adds `address` at the back (or the front, for blocks that just became available); false
    /// when it was wanted already.
    pub(crate) fn push(&mut self, address: BlockAddress, front: bool) -> bool {
        if !self.set.insert(address.clone()) {
            return false;
        }
        if front {
            self.order.push_front(address);
        } else {
            self.order.push_back(address);
        }
        self.compact();
        true
    }

    /// Removes `address`; false when it was not wanted.
    pub(crate) fn cancel(&mut self, address: &BlockAddress) -> bool {
        let removed = self.set.remove(address);
        self.compact();
        removed
    }

    /// Takes up to `n` wants from the front.
    pub(crate) fn take(&mut self, n: usize) -> Vec<BlockAddress> {
        let mut out = Vec::with_capacity(n.min(self.set.len()));
        while out.len() < n {
            let Some(a) = self.order.pop_front() else {
                break;
            };
            if self.set.remove(&a) {
                out.push(a);
            }
        }
        out
    }

    /// Drops the holes cancels left once they outnumber the live entries (amortised O(1)); a
    /// re-added address may sit twice in the queue, and only its first place counts.
    fn compact(&mut self) {
        if self.order.len() > 2 * self.set.len() + 64 {
            let mut seen = HashSet::with_capacity(self.set.len());
            let set = &self.set;
            self.order
                .retain(|a| set.contains(a) && seen.insert(a.clone()));
        }
    }
}

impl Peer {
    pub(crate) fn new() -> Self {
        Self {
            has: HashSet::new(),
            requested: HashSet::new(),
            recent: Recent::default(),
            active_at: Instant::now(),
            wants: WantQueue::default(),
            waiting: HashSet::new(),
            have_queue: Vec::new(),
            have_lookup: false,
            serving: 0,
            agent: None,
            blocks_sent: 0,
            blocks_received: 0,
            honoured: 0,
            missed: 0,
            distrusted_until: None,
            window: Window::new(super::wants::MIN_SHARE, usize::MAX),
        }
    }

    /// Stops waiting for `address` from this peer (delivered, cancelled or timed out).
    pub(crate) fn settle(&mut self, address: &BlockAddress) {
        if self.requested.remove(address) {
            self.recent.remember(address);
        }
    }

    /// True when `address` was asked of this peer, now or recently.
    pub(crate) fn was_asked(&self, address: &BlockAddress) -> bool {
        self.requested.contains(address) || self.recent.contains(address)
    }

    /// Adds a want of the peer's; false when it is over `limit` wants.
    pub(crate) fn add_want(&mut self, address: BlockAddress, limit: usize) -> bool {
        if self.wants.contains(&address) || self.waiting.contains(&address) {
            return true;
        }
        if self.wants.len() + self.waiting.len() >= limit {
            return false;
        }
        self.wants.push(address, false);
        true
    }

    /// Removes a want of the peer's (a cancel), in O(1).
    pub(crate) fn cancel_want(&mut self, address: &BlockAddress) {
        self.wants.cancel(address);
        self.waiting.remove(address);
    }
}

impl BlockExchange {
    /// Per-peer counters of the peers connected now, by peer id.
    pub(super) fn peer_stats(&self) -> Vec<PeerStats> {
        let share = self.share();
        let mut list: Vec<PeerStats> = self
            .peers
            .iter()
            .map(|(peer, s)| PeerStats {
                peer: *peer,
                agent: s.agent.clone(),
                blocks_sent: s.blocks_sent,
                blocks_received: s.blocks_received,
                request_window: self.room_of(s, share) as u64,
            })
            .collect();
        list.sort_by_key(|p| p.peer);
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::cid::{cid_from_digest, sha256, ROOT_CODEC};

    fn leaf(i: u64) -> BlockAddress {
        BlockAddress::Leaf {
            tree: cid_from_digest(ROOT_CODEC, &sha256(b"t")),
            index: i,
        }
    }

    #[test]
    fn wants_keep_their_order_through_cancels_and_re_adds() {
        let mut q = WantQueue::default();
        for i in 0..10 {
            assert!(q.push(leaf(i), false));
        }
        assert!(!q.push(leaf(3), false), "a repeat is ignored");
        assert!(q.cancel(&leaf(3)) && !q.cancel(&leaf(3)));
        assert!(q.push(leaf(3), false), "wanted again after its cancel");
        assert!(q.push(leaf(42), true), "a resolved block goes first");
        assert_eq!(q.len(), 11);
        let got: Vec<u64> = q
            .take(100)
            .into_iter()
            .filter_map(|a| match a {
                BlockAddress::Leaf { index, .. } => Some(index),
                BlockAddress::Cid(_) => None,
            })
            .collect();
        // A want cancelled and asked again keeps its first place.
        assert_eq!(got, vec![42, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_flood_of_cancels_stays_small_and_fast() {
        let mut q = WantQueue::default();
        for round in 0..50_000u64 {
            q.push(leaf(round % 4096), false);
            q.cancel(&leaf(round % 4096));
        }
        assert!(q.is_empty());
        assert!(
            q.order.len() <= 64 + 1,
            "holes are compacted: {}",
            q.order.len()
        );
    }

    #[test]
    fn late_leaves_of_a_tree_asked_about_are_recognised() {
        let mut p = Peer::new();
        p.requested.insert(leaf(1));
        p.settle(&leaf(1));
        assert!(p.was_asked(&leaf(1)));
        assert!(p.was_asked(&leaf(99_999)), "same tree");
        let other = BlockAddress::Leaf {
            tree: cid_from_digest(ROOT_CODEC, &sha256(b"other")),
            index: 1,
        };
        assert!(!p.was_asked(&other));
    }
}
