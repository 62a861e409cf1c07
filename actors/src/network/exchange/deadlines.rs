//! How long a request may take, and how far a peer's word is trusted.
//!
//! A request has two clocks. After a while (a few times the latency deliveries show now,
//! [`BlockExchange::hedge_after`]) it is also asked of a second holder, if there is one: a
//! peer that claims a block and does not send it, or is merely slow, holds nobody up, and an
//! honest slow peer loses nothing by it (its late block counts as a duplicate). Once the peer
//! has delivered nothing for [`super::ExchangeConfig::request_timeout`] (or, however much else
//! it delivers, after [`HARD_LIMIT`] times that) it expires: the peer is told to cancel it, its
//! claim to hold the block is forgotten, and the miss counts against it. A peer whose misses
//! outnumber the requests it honoured is not believed for [`DISTRUST_FOR`]: its Have presences
//! are ignored and nothing is asked of it.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use actix::Context;
use libp2p::PeerId;

use super::{peer::Peer, BlockExchange};
use crate::format::blockexc::BlockAddress;

/// How long a peer whose Haves proved false is not believed.
pub(super) const DISTRUST_FOR: Duration = Duration::from_secs(300);
/// Misses a peer may have before its record is judged at all (a few expiries happen to anyone
/// on a bad link).
const MISSES_FORGIVEN: u64 = 8;
/// Fastest a request is hedged: below this, a second holder would mostly be asked for blocks
/// already on their way.
const HEDGE_MIN: Duration = Duration::from_millis(500);
/// Hedge after this many times the current delivery latency.
const HEDGE_FACTOR: u32 = 4;
/// A request expires after this many request timeouts even at a peer that keeps delivering
/// other blocks.
const HARD_LIMIT: u32 = 6;

impl Peer {
    /// True while its Haves are not believed.
    pub(super) fn is_distrusted(&self, now: Instant) -> bool {
        self.distrusted_until.is_some_and(|until| now < until)
    }

    /// True when its misses outnumber the requests it honoured, beyond the forgiven few.
    fn has_lied(&self) -> bool {
        self.missed > MISSES_FORGIVEN && self.missed > self.honoured
    }
}

impl BlockExchange {
    /// Feeds the latency estimate with one delivery that took `took` since it was asked.
    pub(super) fn observe_latency(&mut self, took: Duration) {
        self.latency = Some(match self.latency {
            None => took,
            // An exponential average over about 16 deliveries.
            Some(avg) => (avg * 15 + took) / 16,
        });
    }

    /// When an outstanding request is also asked of a second holder.
    fn hedge_after(&self) -> Duration {
        let half = self.config.request_timeout / 2;
        self.latency
            .map_or(HEDGE_MIN, |l| l * HEDGE_FACTOR)
            .clamp(HEDGE_MIN, half.max(HEDGE_MIN))
    }

    /// Hedges slow requests and expires overdue ones (run from the tick).
    pub(super) fn check_requests(&mut self, now: Instant, ctx: &mut Context<Self>) {
        let timeout = self.config.request_timeout;
        let hedge = self.hedge_after();
        let mut expired: Vec<(PeerId, BlockAddress)> = Vec::new();
        let mut slow: Vec<BlockAddress> = Vec::new();
        for (address, p) in &self.pending {
            for (peer, at) in &p.requested {
                let waited = now.duration_since(*at);
                // A peer that keeps delivering is only slow (a long queue at it, a narrow
                // link): its requests expire once it stalls, or at the latest after
                // `HARD_LIMIT` timeouts, so that one real block now and then holds nothing.
                let progress = self.peers.get(peer).map_or(*at, |s| s.active_at.max(*at));
                if now.duration_since(progress) > timeout || waited > timeout * HARD_LIMIT {
                    expired.push((*peer, address.clone()));
                } else if waited > hedge && p.requested.len() == 1 {
                    slow.push(address.clone());
                }
            }
        }
        let mut cancels: HashMap<PeerId, Vec<BlockAddress>> = HashMap::new();
        let mut again = Vec::new();
        for (peer, address) in expired {
            if let Some(p) = self.pending.get_mut(&address) {
                p.requested.retain(|(q, _)| *q != peer);
                p.retries_left = p.retries_left.saturating_sub(1);
            }
            self.stats.request_timeouts += 1;
            self.stats.retries += 1;
            if let Some(state) = self.peers.get_mut(&peer) {
                state.settle(&address);
                // Its claim was not honoured in time: ask it again before trusting it again.
                state.has.remove(&address);
                state.missed += 1;
            }
            cancels.entry(peer).or_default().push(address.clone());
            again.push(address);
        }
        self.distrust_liars(now, &mut cancels);
        self.send_cancels(cancels, ctx);
        // In leaf order: the holder reads neighbouring leaves in one go.
        again.sort_unstable();
        for address in &again {
            self.assign(address);
        }
        slow.sort_unstable();
        slow.dedup();
        for address in &slow {
            self.assign_to(address, 2);
        }
        self.flush_requests(ctx);
    }

    /// Stops believing peers whose misses outnumber what they honoured; what they were asked
    /// for goes to others now.
    fn distrust_liars(&mut self, now: Instant, cancels: &mut HashMap<PeerId, Vec<BlockAddress>>) {
        let liars: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| !s.is_distrusted(now) && s.has_lied())
            .map(|(id, _)| *id)
            .collect();
        for peer in liars {
            let Some(state) = self.peers.get_mut(&peer) else {
                continue;
            };
            if self.warn_limit.allow() {
                tracing::warn!(%peer, missed = state.missed, honoured = state.honoured,
                    "peer claims blocks it does not send; not asking it for {DISTRUST_FOR:?}");
            }
            self.stats.distrusted_peers += 1;
            state.distrusted_until = Some(now + DISTRUST_FOR);
            state.missed = 0;
            state.honoured = 0;
            state.has.clear();
            let dropped: Vec<BlockAddress> = state.requested.iter().cloned().collect();
            for address in &dropped {
                state.settle(address);
                if let Some(p) = self.pending.get_mut(address) {
                    p.requested.retain(|(q, _)| *q != peer);
                }
            }
            cancels.entry(peer).or_default().extend(dropped);
        }
    }
}
