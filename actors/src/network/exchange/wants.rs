//! The downloader half of the exchange: pending wants, who has what, who was asked for what,
//! timeouts and retries. The checks every received block passes are `receive.rs`.

use std::{collections::HashMap, time::Instant};

use actix::Context;
use libp2p::PeerId;
use tokio::sync::mpsc;

use super::{peer::Peer, BlockExchange, Delivery, MAX_LIST_ENTRIES};
use crate::format::blockexc::{
    BlockAddress, BlockPresence, Message as Wire, PresenceType, WantEntry, WantType, Wantlist,
};

/// Fewest requests a holder may have outstanding, whatever its share (1 MiB of 64 KiB blocks
/// in flight keeps a peer busy).
pub(super) const MIN_SHARE: usize = 16;

/// Refreshes (one every [`super::ExchangeConfig::refresh_interval`]) left to a want whose
/// holder a relay cut off at its limit: time for a provider lookup to find another holder.
const RELAY_LIMIT_RETRIES: u32 = 10;

/// A block some fetch wants.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Where it goes once received (usually one fetch).
    pub(super) sinks: Vec<mpsc::Sender<Delivery>>,
    /// The peers asked for it now, with when: one, or two for a manifest (a lone holder that
    /// claims it and never sends it must not hold up a fetch's start).
    pub(super) requested: Vec<(PeerId, Instant)>,
    /// Refreshes and timeouts it may still go through before it fails.
    pub(super) retries_left: u32,
    /// When every peer was last asked whether it has it.
    asked_at: Instant,
    /// Set when a peer that held it was lost because a relay ended its circuit at a limit:
    /// the relay's words, given to the fetch if no one else delivers.
    lost_to_relay_limit: Option<String>,
}

impl Pending {
    /// True while some peer is asked for it.
    pub(super) fn is_requested(&self) -> bool {
        !self.requested.is_empty()
    }

    pub(super) fn asked_of(&self, peer: PeerId) -> bool {
        self.requested.iter().any(|(p, _)| *p == peer)
    }

    /// How many peers this address should be asked of at once.
    fn holders_wanted(address: &BlockAddress) -> usize {
        match address {
            BlockAddress::Cid(_) => 2,
            BlockAddress::Leaf { .. } => 1,
        }
    }
}

impl BlockExchange {
    pub(super) fn want(
        &mut self,
        addresses: Vec<BlockAddress>,
        sink: mpsc::Sender<Delivery>,
        ctx: &mut Context<Self>,
    ) {
        let mut fresh = Vec::new();
        for address in addresses {
            match self.pending.get_mut(&address) {
                Some(p) => {
                    if !p.sinks.iter().any(|s| s.same_channel(&sink)) {
                        p.sinks.push(sink.clone());
                    }
                }
                None => {
                    self.pending.insert(
                        address.clone(),
                        Pending {
                            sinks: vec![sink.clone()],
                            requested: Vec::new(),
                            retries_left: self.config.retries,
                            asked_at: Instant::now(),
                            lost_to_relay_limit: None,
                        },
                    );
                    fresh.push(address);
                }
            }
        }
        let wanted = self.pending.len() as u64;
        self.stats.most_pending = self.stats.most_pending.max(wanted);
        self.request(fresh, ctx);
        self.discover(ctx);
    }

    /// Peers that already said they have a block get the request at once; everyone is asked
    /// about the rest.
    fn request(&mut self, addresses: Vec<BlockAddress>, ctx: &mut Context<Self>) {
        for address in &addresses {
            self.assign(address);
        }
        let unknown: Vec<BlockAddress> = addresses
            .into_iter()
            .filter(|a| self.pending.get(a).is_some_and(|p| !p.is_requested()))
            .collect();
        self.ask_everyone(unknown, ctx);
        self.flush_requests(ctx);
    }

    pub(super) fn unwant(
        &mut self,
        addresses: &[BlockAddress],
        sink: &mpsc::Sender<Delivery>,
        ctx: &mut Context<Self>,
    ) {
        let mut cancels: HashMap<PeerId, Vec<BlockAddress>> = HashMap::new();
        for address in addresses {
            let Some(p) = self.pending.get_mut(address) else {
                continue;
            };
            p.sinks.retain(|s| !s.same_channel(sink));
            if !p.sinks.is_empty() {
                continue;
            }
            self.forget(address);
            let asked = self.pending.remove(address).map(|p| p.requested);
            for (peer, _) in asked.into_iter().flatten() {
                if let Some(state) = self.peers.get_mut(&peer) {
                    state.settle(address);
                }
                cancels.entry(peer).or_default().push(address.clone());
            }
        }
        self.send_cancels(cancels, ctx);
        self.refill(ctx);
    }

    /// Sends every pending address to a newly connected peer as wantHave (Codex's join flow).
    pub(super) fn send_wantlist(&mut self, peer: PeerId, ctx: &mut Context<Self>) {
        let addresses: Vec<BlockAddress> = self.pending.keys().cloned().collect();
        for (i, chunk) in addresses.chunks(MAX_LIST_ENTRIES).enumerate() {
            let entries = chunk
                .iter()
                .map(|a| WantEntry::new(a.clone(), WantType::Have))
                .collect();
            self.send_entries(peer, entries, i == 0, ctx);
        }
    }

    fn ask_everyone(&mut self, addresses: Vec<BlockAddress>, ctx: &mut Context<Self>) {
        if addresses.is_empty() {
            return;
        }
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for chunk in addresses.chunks(MAX_LIST_ENTRIES) {
            for peer in &peers {
                let entries = chunk
                    .iter()
                    .map(|a| WantEntry::new(a.clone(), WantType::Have))
                    .collect();
                self.send_entries(*peer, entries, false, ctx);
            }
        }
    }

    /// Tells each peer to stop working on these requests (Codex keeps serving a want until it
    /// is cancelled, and its late blocks would only be dropped here).
    pub(super) fn send_cancels(
        &mut self,
        cancels: HashMap<PeerId, Vec<BlockAddress>>,
        ctx: &mut Context<Self>,
    ) {
        for (peer, list) in cancels {
            for chunk in list.chunks(MAX_LIST_ENTRIES) {
                let entries = chunk
                    .iter()
                    .map(|a| WantEntry {
                        cancel: true,
                        ..WantEntry::new(a.clone(), WantType::Block)
                    })
                    .collect();
                self.send_entries(peer, entries, false, ctx);
            }
        }
    }

    pub(super) fn send_entries(
        &mut self,
        peer: PeerId,
        entries: Vec<WantEntry>,
        full: bool,
        ctx: &mut Context<Self>,
    ) {
        self.stats.want_lists_sent += 1;
        let message = Wire {
            wantlist: Wantlist { entries, full },
            ..Wire::default()
        };
        self.send(ctx, peer, message);
    }

    pub(super) fn on_presence(&mut self, peer: PeerId, presence: BlockPresence) {
        if !self.pending.contains_key(&presence.address) {
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        match presence.presence {
            // A peer whose Haves proved false is not believed for a while.
            PresenceType::Have if state.is_distrusted(Instant::now()) => {}
            PresenceType::Have => {
                state.has.insert(presence.address.clone());
                self.assign(&presence.address);
            }
            PresenceType::DontHave => {
                state.has.remove(&presence.address);
            }
        }
    }

    /// The most requests one peer may have outstanding: the per-peer limit shared out among
    /// the peers that hold something we want, so that whoever answers a round of presences
    /// first does not take every request while others could serve part of them. Half of it
    /// while a single holder is known: another one's answer may be a moment behind.
    pub(super) fn share(&self) -> usize {
        let max = self.config.max_requests_per_peer;
        let holders = self.peers.values().filter(|s| !s.has.is_empty()).count();
        (max / holders.max(2)).max(MIN_SHARE).min(max)
    }

    /// The most requests `peer` may have outstanding: its `share`, or more when its measured
    /// rate × latency calls for it (a long, fast link), up to
    /// [`super::ExchangeConfig::request_window_max`].
    pub(super) fn room_of(&self, peer: &Peer, share: usize) -> usize {
        let ceiling = self.config.request_window_max.max(share);
        peer.window.size().clamp(share, ceiling)
    }

    /// Forgets who has `address` (it is no longer wanted), so `has` holds only wanted blocks.
    pub(super) fn forget(&mut self, address: &BlockAddress) {
        for state in self.peers.values_mut() {
            state.has.remove(address);
        }
    }

    /// Asks the least loaded peer known to have `address` for it, if it is not asked of anyone
    /// yet and some holder has room for another request.
    pub(super) fn assign(&mut self, address: &BlockAddress) {
        self.assign_to(address, Pending::holders_wanted(address));
    }

    /// [`BlockExchange::assign`], until `wanted` holders are asked (a hedge asks one more).
    pub(super) fn assign_to(&mut self, address: &BlockAddress, wanted: usize) {
        let share = self.share();
        loop {
            let Some(p) = self.pending.get(address) else {
                return;
            };
            if p.requested.len() >= wanted {
                return;
            }
            let best = self
                .peers
                .iter()
                .filter(|(id, s)| {
                    s.has.contains(address)
                        && s.requested.len() < self.room_of(s, share)
                        && !p.asked_of(**id)
                })
                .min_by_key(|(_, s)| s.requested.len())
                .map(|(id, _)| *id);
            let Some(peer) = best else {
                return;
            };
            let now = Instant::now();
            if let (Some(p), Some(state)) =
                (self.pending.get_mut(address), self.peers.get_mut(&peer))
            {
                if state.requested.is_empty() {
                    state.active_at = now; // its silence is timed from now
                }
                state.requested.insert(address.clone());
                p.requested.push((peer, now));
                self.outbox.entry(peer).or_default().push(address.clone());
            }
        }
    }

    /// Sends the wantBlock lists gathered by [`BlockExchange::assign`].
    pub(super) fn flush_requests(&mut self, ctx: &mut Context<Self>) {
        for (peer, list) in std::mem::take(&mut self.outbox) {
            for chunk in list.chunks(MAX_LIST_ENTRIES) {
                let entries = chunk
                    .iter()
                    .map(|a| WantEntry::new(a.clone(), WantType::Block))
                    .collect();
                self.send_entries(peer, entries, false, ctx);
            }
        }
    }

    /// Gives wants waiting for room to the peers that have some now.
    pub(super) fn refill(&mut self, ctx: &mut Context<Self>) {
        let share = self.share();
        if self
            .peers
            .values()
            .all(|s| s.requested.len() >= self.room_of(s, share))
        {
            return;
        }
        let mut waiting: Vec<BlockAddress> = self
            .pending
            .iter()
            .filter(|(a, p)| p.requested.len() < Pending::holders_wanted(a))
            .map(|(a, _)| a.clone())
            .collect();
        // In leaf order, not the map's: the holder reads neighbouring leaves in one go.
        waiting.sort_unstable();
        for address in &waiting {
            self.assign(address);
        }
        self.flush_requests(ctx);
    }

    /// Forgets a peer that went away; what it was asked for goes to others.
    /// `relay_limit` is set when a relay ended the peer's connection at its limit: what the
    /// peer held or was asked for then fails soon (after [`RELAY_LIMIT_RETRIES`] refreshes)
    /// with that reason, unless another peer delivers it. The node does not dial the peer
    /// through a relay again for a while, so waiting out every retry would only delay the
    /// error.
    pub(super) fn drop_peer(&mut self, peer: PeerId, relay_limit: Option<&str>) {
        let Some(state) = self.peers.remove(&peer) else {
            return;
        };
        for address in &state.requested {
            if let Some(p) = self.pending.get_mut(address) {
                p.requested.retain(|(p, _)| *p != peer);
                self.stats.retries += 1;
            }
        }
        let Some(reason) = relay_limit else {
            return;
        };
        for address in state.requested.iter().chain(&state.has) {
            if let Some(p) = self.pending.get_mut(address) {
                p.retries_left = p.retries_left.min(RELAY_LIMIT_RETRIES);
                p.lost_to_relay_limit = Some(reason.to_owned());
            }
        }
    }

    /// Runs twice a second: peer timeouts, refreshes of wants nobody has, failed wants.
    pub(super) fn tick(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        self.check_requests(now, ctx);
        let timeout = self.config.peer_timeout;
        let silent: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| !s.requested.is_empty() && now.duration_since(s.active_at) > timeout)
            .map(|(id, _)| *id)
            .collect();
        for peer in silent {
            let Some(state) = self.peers.get_mut(&peer) else {
                continue;
            };
            tracing::info!(%peer, requests = state.requested.len(), "peer timed out; asking others");
            self.stats.peer_timeouts += 1;
            state.has.clear();
            let dropped: Vec<BlockAddress> = state.requested.iter().cloned().collect();
            for address in &dropped {
                state.settle(address);
            }
            for address in &dropped {
                if let Some(p) = self.pending.get_mut(address) {
                    p.requested.retain(|(p, _)| *p != peer);
                    p.retries_left = p.retries_left.saturating_sub(1);
                    self.stats.retries += 1;
                }
            }
            // Codex keeps serving a want until it is cancelled.
            self.send_cancels(HashMap::from([(peer, dropped)]), ctx);
        }
        // Wants nobody is asked for: ask everyone again, at most every refresh interval; a want
        // that runs out of retries fails.
        let refresh = self.config.refresh_interval;
        let mut again = Vec::new();
        let mut failed = Vec::new();
        for (address, p) in &mut self.pending {
            if p.is_requested() || now.duration_since(p.asked_at) < refresh {
                continue;
            }
            if p.retries_left == 0 {
                failed.push(address.clone());
                continue;
            }
            p.retries_left -= 1;
            p.asked_at = now;
            again.push(address.clone());
        }
        for address in failed {
            if let Some(p) = self.pending.remove(&address) {
                self.forget(&address);
                tracing::debug!(?address, "want failed: no peer delivered it");
                self.stats.failed_wants += 1;
                for sink in p.sinks {
                    let _ = sink.try_send(Delivery::Failed {
                        address: address.clone(),
                        relay_limit: p.lost_to_relay_limit.clone(),
                    });
                }
            }
        }
        self.request(again, ctx);
        self.serve_all(ctx);
        self.discover(ctx);
    }
}
