//! What the downloader half does with what comes back: a delivery is checked (asked of this
//! peer, the size of a Codex leaf, its proof leading to its tree) before any fetch sees it, and a
//! peer that sends what was not asked, a bad block or a broken frame is counted and dropped.

use std::{collections::HashMap, time::Instant};

use actix::{AsyncContext, Context};
use libp2p::PeerId;

use super::{BlockExchange, Delivery};
use crate::{
    format::blockexc::{BlockAddress, BlockDelivery},
    format::manifest::CODEX_BLOCK_SIZE,
    network::net::Violation,
};

impl BlockExchange {
    pub(super) fn on_delivery(
        &mut self,
        peer: PeerId,
        delivery: BlockDelivery,
        ctx: &mut Context<Self>,
    ) {
        let address = delivery.address.clone();
        let asked_now = self.pending.get(&address).is_some_and(|p| p.asked_of(peer));
        if !asked_now {
            // A block is asked of one peer at a time. One this peer was asked for before is
            // late (it timed out or was cancelled): a harmless duplicate. Anything else was
            // never asked of it.
            if self.peers.get(&peer).is_some_and(|s| s.was_asked(&address)) {
                self.stats.duplicate_blocks += 1;
            } else {
                self.punish(peer, "sent a block it was not asked for", ctx);
            }
            return;
        }
        // Every Codex leaf is one whole 64 KiB block (the last one zero-padded).
        let wrong_size = matches!(address, BlockAddress::Leaf { .. })
            && delivery.data.len() != CODEX_BLOCK_SIZE as usize;
        if wrong_size || !delivery.is_authentic() {
            self.punish(
                peer,
                "sent a block whose proof does not lead to its tree",
                ctx,
            );
            return;
        }
        let Some(pending) = self.pending.remove(&address) else {
            return;
        };
        let took = pending
            .requested
            .iter()
            .find(|(p, _)| *p == peer)
            .map(|(_, at)| at.elapsed());
        if let Some(took) = took {
            self.observe_latency(took);
        }
        self.forget(&address);
        if let Some(state) = self.peers.get_mut(&peer) {
            if let Some(took) = took {
                state.window.delivered(Instant::now(), took);
            }
            state.settle(&address);
            state.active_at = Instant::now();
            state.blocks_received += 1;
            state.honoured += 1;
        }
        // The second holder asked for a manifest need not send it any more.
        let mut cancels: HashMap<PeerId, Vec<BlockAddress>> = HashMap::new();
        for (other, _) in pending.requested.iter().filter(|(p, _)| *p != peer) {
            if let Some(state) = self.peers.get_mut(other) {
                state.settle(&address);
            }
            cancels.entry(*other).or_default().push(address.clone());
        }
        self.send_cancels(cancels, ctx);
        self.stats.blocks_received += 1;
        for sink in pending.sinks {
            let _ = sink.try_send(Delivery::Block {
                address: address.clone(),
                cid: delivery.cid,
                data: delivery.data.clone(),
                proof: delivery.proof.clone(),
            });
        }
    }

    /// A peer broke the protocol, and the network layer reset the stream it came on: whatever
    /// else it was sending us there is lost, so it is disconnected as for a bad block, and what
    /// it was asked for goes to other peers now rather than after the peer timeout. Too many
    /// streams at once is only refused (the streams it has carry on).
    pub(super) fn on_violation(
        &mut self,
        peer: PeerId,
        violation: &Violation,
        ctx: &mut Context<Self>,
    ) {
        self.stats.violations += 1;
        if matches!(violation, Violation::TooManyStreams) {
            if self.warn_limit.allow() {
                tracing::warn!(%peer, %violation, "peer broke the protocol; its stream was refused");
            }
            self.stats.bad_blocks += 1;
            return;
        }
        if self.warn_limit.allow() {
            tracing::warn!(%peer, %violation, "peer broke the protocol; its stream was reset");
        }
        self.punish(peer, "broke the protocol", ctx);
    }

    /// Counts a bad delivery and drops the connection: nothing it sent is stored.
    fn punish(&mut self, peer: PeerId, why: &'static str, ctx: &mut Context<Self>) {
        self.stats.bad_blocks += 1;
        self.disconnect(peer, why, ctx);
    }

    /// Drops the connection to a peer that misbehaves (logged, at a bounded rate).
    pub(super) fn disconnect(&mut self, peer: PeerId, why: &'static str, ctx: &mut Context<Self>) {
        if self.warn_limit.allow() {
            tracing::warn!(%peer, why, "disconnecting a misbehaving peer");
        }
        let net = self.net.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            let _ = net.disconnect(peer).await;
        }));
    }
}
