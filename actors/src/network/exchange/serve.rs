//! The responder half of the exchange: presences for wantHave, deliveries for wantBlock, and
//! Codex's `resolveBlocks` (a block stored later is sent to the peers still waiting for it).

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};
use libp2p::PeerId;

use super::{
    BlockExchange, Resolve, MAX_DELIVERY_BLOCKS, MAX_LIST_ENTRIES, OWN_AGENT_PREFIX,
    OWN_DELIVERY_BLOCKS,
};
use crate::{
    block_store::ReadBlocks,
    error::Error,
    format::blockexc::{
        BlockAddress, BlockDelivery, BlockPresence, Message as Wire, PresenceType, WantType,
        Wantlist,
    },
    meta_reader::{FindBlocksAt, HasAddresses, SourceBytes},
    repo::Repo,
};

/// Delivery messages being prepared or written per peer at once: one is read while the other
/// is written.
const SERVES_PER_PEER: usize = 2;
/// Presence lookups running at once over all peers: the metadata readers they use also serve
/// local downloads and the blocks this node sends, so many identities flooding want-haves
/// must not take them all.
const MAX_HAVE_LOOKUPS: usize = 2;
/// Blocks in delivery messages being written at once, over all peers (48 of Codex's 20-block
/// messages, about 60 MiB): what bounds the memory of serving once reads no longer wait for
/// writes. Counted in blocks, so that larger messages to our own nodes hold no more.
const MAX_WRITING_BLOCKS: usize = 48 * MAX_DELIVERY_BLOCKS;

impl BlockExchange {
    pub(super) fn on_wantlist(
        &mut self,
        peer: PeerId,
        wantlist: Wantlist,
        ctx: &mut Context<Self>,
    ) {
        let limit = self.config.max_peer_wants;
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        let mut over = 0;
        let mut asked_have = false;
        for entry in wantlist.entries {
            if entry.cancel {
                state.cancel_want(&entry.address);
                continue;
            }
            match entry.want_type {
                WantType::Have => {
                    // Presences are looked up one batch per peer at a time; what queues up
                    // meanwhile is bounded like its block wants.
                    if state.have_queue.len() < limit {
                        state.have_queue.push((entry.address, entry.send_dont_have));
                        asked_have = true;
                    } else {
                        over += 1;
                    }
                }
                WantType::Block => {
                    if !state.add_want(entry.address, limit) {
                        over += 1;
                    }
                }
            }
        }
        if over > 0 {
            self.stats.shed_entries += over;
            if self.warn_limit.allow() {
                tracing::warn!(%peer, over, limit, "peer asks more than allowed; ignored the rest");
            }
        }
        if asked_have {
            self.answer_haves(peer, ctx);
        }
        self.serve(peer, ctx);
    }

    /// Replies Have for what this node holds; DontHave only where the peer asked for it (Codex
    /// never does, and reads every presence as Have). One lookup per peer runs at a time, of at
    /// most [`MAX_LIST_ENTRIES`] addresses, and [`MAX_HAVE_LOOKUPS`] over all peers, so peers
    /// that flood want-haves wait on themselves and not the metadata readers that local
    /// downloads share.
    fn answer_haves(&mut self, peer: PeerId, ctx: &mut Context<Self>) {
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.have_lookup || state.have_queue.is_empty() || self.have_lookups >= MAX_HAVE_LOOKUPS
        {
            return;
        }
        let take = state.have_queue.len().min(MAX_LIST_ENTRIES);
        let (addresses, dont_have_wanted): (Vec<BlockAddress>, Vec<bool>) =
            state.have_queue.drain(..take).unzip();
        state.have_lookup = true;
        self.have_lookups += 1;
        let (reader, net) = (self.repo.reader.clone(), self.net.clone());
        let task = async move {
            let Ok(Ok(held)) = reader
                .send(HasAddresses {
                    addresses: addresses.clone(),
                })
                .await
            else {
                return;
            };
            let presences: Vec<BlockPresence> = addresses
                .into_iter()
                .zip(held)
                .zip(dont_have_wanted)
                .filter_map(|((address, held), dont_have)| match (held, dont_have) {
                    (true, _) => Some(BlockPresence::have(address)),
                    (false, true) => Some(BlockPresence {
                        presence: PresenceType::DontHave,
                        ..BlockPresence::have(address)
                    }),
                    (false, false) => None,
                })
                .collect();
            if !presences.is_empty() {
                let message = Wire {
                    presences,
                    ..Wire::default()
                };
                // Written before the next lookup starts: a peer that does not read its
                // presences gets no more of them.
                let _ = net.send_written(peer, message).await;
            }
        };
        ctx.spawn(task.into_actor(self).map(move |(), act, ctx| {
            act.have_lookups -= 1;
            if let Some(state) = act.peers.get_mut(&peer) {
                state.have_lookup = false;
            }
            // The next peer waiting gets the slot first, then this one again.
            let waiting: Vec<PeerId> = act
                .peers
                .iter()
                .filter(|(p, s)| **p != peer && !s.have_lookup && !s.have_queue.is_empty())
                .map(|(p, _)| *p)
                .collect();
            for other in waiting.into_iter().chain([peer]) {
                act.answer_haves(other, ctx);
            }
        }));
    }

    /// Starts a serve task for `peer` if it wants something, fewer than
    /// [`SERVES_PER_PEER`] run for it and the number of tasks allows: up to
    /// [`MAX_DELIVERY_BLOCKS`] blocks ([`OWN_DELIVERY_BLOCKS`] to our own nodes) read and sent
    /// in one message, which must be written before its task ends (bounded memory: while one
    /// message is written, the next is read).
    pub(super) fn serve(&mut self, peer: PeerId, ctx: &mut Context<Self>) {
        if self.serving >= self.config.serve_tasks || self.writing >= MAX_WRITING_BLOCKS {
            return;
        }
        let Some(state) = self.peers.get_mut(&peer) else {
            return;
        };
        if state.serving >= SERVES_PER_PEER || state.wants.is_empty() {
            return;
        }
        // A peer counts as ours only once identify said so; until then it gets Codex's size.
        let own = state
            .agent
            .as_deref()
            .is_some_and(|a| a.starts_with(OWN_AGENT_PREFIX));
        let most = if own {
            OWN_DELIVERY_BLOCKS
        } else {
            MAX_DELIVERY_BLOCKS
        };
        let batch = state.wants.take(most);
        state.serving += 1;
        self.serving += 1;
        let repo = self.repo.clone();
        let read = async move { read_blocks(&repo, batch).await };
        ctx.spawn(
            read.into_actor(self)
                .map(move |(deliveries, missing), act, ctx| {
                    // The read is done: the slot goes to the next peer while this message is
                    // written, so peers that read slowly (or never) cannot hold every slot.
                    act.serving -= 1;
                    if let Some(state) = act.peers.get_mut(&peer) {
                        state.waiting.extend(missing);
                    }
                    act.write_delivery(peer, deliveries, ctx);
                    act.serve_all(ctx);
                }),
        );
    }

    /// Writes one delivery message to `peer`; its per-peer slot is held until it is written.
    fn write_delivery(
        &mut self,
        peer: PeerId,
        deliveries: Vec<BlockDelivery>,
        ctx: &mut Context<Self>,
    ) {
        // Counted against the serving bound until written, whether or not the write succeeds.
        let written = deliveries.len();
        let sent = written;
        self.writing += written;
        let net = self.net.clone();
        let write = async move {
            if sent == 0 {
                return 0;
            }
            let message = Wire {
                deliveries,
                ..Wire::default()
            };
            match net.send_written(peer, message).await {
                Ok(()) => sent,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "could not deliver blocks");
                    0
                }
            }
        };
        ctx.spawn(write.into_actor(self).map(move |sent, act, ctx| {
            act.writing -= written;
            act.stats.blocks_sent += sent as u64;
            if let Some(state) = act.peers.get_mut(&peer) {
                state.serving -= 1;
                state.blocks_sent += sent as u64;
            }
            act.serve_all(ctx);
        }));
    }

    /// Gives every peer with wants a chance to be served (tasks are limited).
    pub(super) fn serve_all(&mut self, ctx: &mut Context<Self>) {
        let ready: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, s)| s.serving < SERVES_PER_PEER && !s.wants.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for peer in ready {
            self.serve(peer, ctx);
        }
    }

    /// Blocks just stored: peers waiting for them get them.
    pub(super) fn resolve(&mut self, msg: Resolve, ctx: &mut Context<Self>) {
        for state in self.peers.values_mut() {
            if state.waiting.is_empty() {
                continue;
            }
            let arrived: Vec<BlockAddress> = match &msg {
                Resolve::Addresses(list) => list
                    .iter()
                    .filter(|a| state.waiting.contains(*a))
                    .cloned()
                    .collect(),
                Resolve::Tree(tree) => state
                    .waiting
                    .iter()
                    .filter(|a| matches!(a, BlockAddress::Leaf { tree: t, .. } if t == tree))
                    .cloned()
                    .collect(),
            };
            for address in arrived {
                state.waiting.remove(&address);
                state.wants.push(address, true);
            }
        }
        self.serve_all(ctx);
    }
}

/// Reads what this node holds of `batch` (one metadata snapshot for the lookup, then one
/// `ReadBlocks` on the reader pool for all stored bytes: neighbours in a segment come from one
/// aligned read around the page cache, each block verified), proofs for leaves; returns the
/// deliveries and the addresses it does not hold.
async fn read_blocks(
    repo: &Repo,
    batch: Vec<BlockAddress>,
) -> (Vec<BlockDelivery>, Vec<BlockAddress>) {
    let sources = match repo
        .reader
        .send(FindBlocksAt {
            addresses: batch.clone(),
        })
        .await
    {
        Ok(Ok(sources)) => sources,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "cannot look blocks up for a peer");
            return (Vec::new(), batch);
        }
        Err(_) => return (Vec::new(), batch),
    };
    let stored: Vec<_> = sources
        .iter()
        .flatten()
        .filter_map(|s| match s.bytes {
            SourceBytes::Stored(location) => Some((s.cid, location)),
            SourceBytes::Inline(_) => None,
        })
        .collect();
    let mut read = if stored.is_empty() {
        Vec::new()
    } else {
        match repo.block_reads.send(ReadBlocks { blocks: stored }).await {
            Ok(read) => read,
            Err(_) => return (Vec::new(), batch),
        }
    }
    .into_iter();
    let mut deliveries = Vec::new();
    let mut missing = Vec::new();
    for (address, source) in batch.into_iter().zip(sources) {
        let Some(source) = source else {
            missing.push(address);
            continue;
        };
        let data = match source.bytes {
            SourceBytes::Inline(data) => data,
            SourceBytes::Stored(_) => match read.next() {
                Some(Ok(data)) => data,
                // Moved by compaction since the lookup: the peer's next request finds it.
                Some(Err(Error::NotFound(_))) | None => {
                    missing.push(address);
                    continue;
                }
                Some(Err(e)) => {
                    tracing::warn!(?address, error = %e, "cannot serve a block");
                    missing.push(address);
                    continue;
                }
            },
        };
        deliveries.push(BlockDelivery {
            cid: source.cid,
            data,
            address,
            proof: source.proof,
        });
    }
    (deliveries, missing)
}
