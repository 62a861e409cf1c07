//! What the block-exchange actor knows about one connected peer: what it has told us it holds,
//! what we asked it for, and what it asked us for.

use std::{
    collections::{HashSet, VecDeque},
    time::Instant,
};

use libp2p::PeerId;

use super::BlockExchange;
use crate::format::blockexc::BlockAddress;

/// One connected peer.
#[derive(Debug)]
pub(crate) struct Peer {
    /// Addresses it said it has (presences), among those we want now (an address no longer
    /// wanted is forgotten). Cleared when it stops answering our requests, so it is asked again
    /// before it is trusted again.
    pub(crate) has: HashSet<BlockAddress>,
    /// Addresses we asked it to send (wantBlock) and have not received yet.
    pub(crate) requested: HashSet<BlockAddress>,
    /// Addresses we ever asked it for and no longer wait for (delivered by someone, or timed
    /// out): a late delivery of one of these is a harmless duplicate, not a protocol breach.
    /// Bounded: the oldest are forgotten first.
    pub(crate) recent: VecDeque<BlockAddress>,
    /// When it last delivered something we asked for, or when we started waiting on it.
    pub(crate) active_at: Instant,
    /// Addresses it asked us to send (wantBlock), in the order asked, not yet served.
    pub(crate) wants: VecDeque<BlockAddress>,
    /// The same addresses, for lookups and to ignore repeats.
    pub(crate) wants_set: HashSet<BlockAddress>,
    /// Addresses it wants that we do not hold yet: served when they arrive (Codex's
    /// `resolveBlocks`), not looked up again before that.
    pub(crate) waiting: HashSet<BlockAddress>,
    /// Serve tasks running for it (a few at a time per peer, so at most that many delivery
    /// messages per peer are in memory).
    pub(crate) serving: usize,
    /// Its identify agent, when known (logs and `/debug/info`).
    pub(crate) agent: Option<String>,
    /// Blocks we sent it.
    pub(crate) blocks_sent: u64,
    /// Blocks it sent us that passed every check.
    pub(crate) blocks_received: u64,
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
}

/// Addresses remembered in [`Peer::recent`].
const RECENT: usize = 4096;

impl Peer {
    pub(crate) fn new() -> Self {
        Self {
            has: HashSet::new(),
            requested: HashSet::new(),
            recent: VecDeque::new(),
            active_at: Instant::now(),
            wants: VecDeque::new(),
            wants_set: HashSet::new(),
            waiting: HashSet::new(),
            serving: 0,
            agent: None,
            blocks_sent: 0,
            blocks_received: 0,
        }
    }

    /// Stops waiting for `address` from this peer (delivered, cancelled or timed out).
    pub(crate) fn settle(&mut self, address: &BlockAddress) {
        if self.requested.remove(address) {
            if self.recent.len() >= RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(address.clone());
        }
    }

    /// True when `address` was asked of this peer, now or recently.
    pub(crate) fn was_asked(&self, address: &BlockAddress) -> bool {
        self.requested.contains(address) || self.recent.contains(address)
    }

    /// Adds a want of the peer's; false when it is over `limit` wants.
    pub(crate) fn add_want(&mut self, address: BlockAddress, limit: usize) -> bool {
        if self.wants_set.contains(&address) || self.waiting.contains(&address) {
            return true;
        }
        if self.wants_set.len() + self.waiting.len() >= limit {
            return false;
        }
        self.wants_set.insert(address.clone());
        self.wants.push_back(address);
        true
    }

    /// Removes a want of the peer's (a cancel).
    pub(crate) fn cancel_want(&mut self, address: &BlockAddress) {
        if self.wants_set.remove(address) {
            self.wants.retain(|a| a != address);
        }
        self.waiting.remove(address);
    }
}

impl BlockExchange {
    /// Per-peer counters of the peers connected now, by peer id.
    pub(super) fn peer_stats(&self) -> Vec<PeerStats> {
        let mut list: Vec<PeerStats> = self
            .peers
            .iter()
            .map(|(peer, s)| PeerStats {
                peer: *peer,
                agent: s.agent.clone(),
                blocks_sent: s.blocks_sent,
                blocks_received: s.blocks_received,
            })
            .collect();
        list.sort_by_key(|p| p.peer);
        list
    }
}
