//! Finding data by CID (issue 12): which datasets this node announces in the DHT, and looking up
//! providers of what a fetch wants when no connected peer has it.
//!
//! As Codex's advertiser does, the node provides the manifest CID and the tree CID of every
//! dataset it holds, and of a dataset it is fetching as soon as it has the manifest (it answers
//! want-haves for the blocks it already has, so other downloaders can use it); block CIDs are
//! never announced. The network component re-announces periodically; a dataset deleted or
//! expired is no longer provided.
//!
//! As Codex's discovery engine does, a want that no connected peer can serve leads to a lookup
//! of providers of its key (the manifest CID for a standalone block, the tree CID for a leaf), at
//! most once per [`LOOKUP_COOLDOWN`] per key and [`MAX_LOOKUPS`] at a time; the providers found
//! are dialled, and a new connection gets the whole want list.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};
use cid::Cid;
use libp2p::PeerId;

use super::BlockExchange;
use crate::format::blockexc::BlockAddress;

/// A key is looked up again at most this often while its wants starve.
const LOOKUP_COOLDOWN: Duration = Duration::from_secs(5);
/// Lookups running at once.
const MAX_LOOKUPS: usize = 4;
/// Providers dialled per lookup.
const DIALS_PER_LOOKUP: usize = 8;

/// What this node announces and looks up.
#[derive(Debug, Default)]
pub(super) struct Discovery {
    /// Datasets announced: manifest CID → tree CID.
    provided: HashMap<Cid, Cid>,
    /// When each key was last looked up.
    looked_up: HashMap<Cid, Instant>,
    /// Lookups running.
    running: usize,
    /// Peers being dialled because of a lookup (not dialled twice at once).
    dialling: HashSet<PeerId>,
}

/// The key under which the holders of `address` announce themselves.
fn key_of(address: &BlockAddress) -> Cid {
    match address {
        BlockAddress::Cid(cid) => *cid,
        BlockAddress::Leaf { tree, .. } => *tree,
    }
}

impl BlockExchange {
    /// Announces a dataset (stored, or being fetched) under its manifest and tree CIDs.
    pub(super) fn provide(&mut self, manifest: Cid, tree: Cid, ctx: &mut Context<Self>) {
        if self.discovery.provided.insert(manifest, tree) == Some(tree) {
            return;
        }
        let net = self.net.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            for key in [manifest, tree] {
                if let Err(e) = net.provide(key).await {
                    tracing::debug!(key = %crate::cid_text(&key), error = %e, "could not announce");
                }
            }
        }));
    }

    /// Stops announcing a dataset; its tree too unless another announced manifest shares it.
    pub(super) fn unprovide(&mut self, manifest: Cid, ctx: &mut Context<Self>) {
        let Some(tree) = self.discovery.provided.remove(&manifest) else {
            return;
        };
        let tree_used = self.discovery.provided.values().any(|t| *t == tree);
        let net = self.net.clone();
        ctx.spawn(actix::fut::wrap_future(async move {
            let _ = net.stop_providing(manifest).await;
            if !tree_used {
                let _ = net.stop_providing(tree).await;
            }
        }));
    }

    /// Looks up providers for wants that no connected peer can serve.
    pub(super) fn discover(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let mut keys: Vec<Cid> = Vec::new();
        for (address, pending) in &self.pending {
            if pending.is_requested() {
                continue;
            }
            if self.peers.values().any(|p| p.has.contains(address)) {
                continue;
            }
            let key = key_of(address);
            if keys.contains(&key) {
                continue;
            }
            let fresh = self
                .discovery
                .looked_up
                .get(&key)
                .is_none_or(|at| now.duration_since(*at) >= LOOKUP_COOLDOWN);
            if fresh {
                keys.push(key);
            }
        }
        for key in keys {
            if self.discovery.running >= MAX_LOOKUPS {
                break;
            }
            self.lookup(key, ctx);
        }
        // Forget keys nobody waits for any more, so the map stays as small as the wants.
        let wanted: HashSet<Cid> = self.pending.keys().map(key_of).collect();
        self.discovery.looked_up.retain(|k, _| wanted.contains(k));
    }

    fn lookup(&mut self, key: Cid, ctx: &mut Context<Self>) {
        self.discovery.looked_up.insert(key, Instant::now());
        self.discovery.running += 1;
        let net = self.net.clone();
        ctx.spawn(
            async move { net.find_providers(key).await }
                .into_actor(self)
                .map(move |found, act, ctx| {
                    act.discovery.running -= 1;
                    let providers = match found {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::debug!(key = %crate::cid_text(&key), error = %e, "lookup failed");
                            return;
                        }
                    };
                    tracing::debug!(key = %crate::cid_text(&key), providers = providers.len(), "providers found");
                    let fresh: Vec<_> = providers
                        .into_iter()
                        .filter(|(peer, _)| {
                            !act.peers.contains_key(peer) && !act.discovery.dialling.contains(peer)
                        })
                        .take(DIALS_PER_LOOKUP)
                        .collect();
                    for (peer, addrs) in fresh {
                        act.dial(peer, addrs, ctx);
                    }
                }),
        );
    }

    fn dial(&mut self, peer: PeerId, addrs: Vec<libp2p::Multiaddr>, ctx: &mut Context<Self>) {
        self.discovery.dialling.insert(peer);
        let net = self.net.clone();
        ctx.spawn(
            async move { net.dial(peer, addrs).await }
                .into_actor(self)
                .map(move |dialled, act, _| {
                    act.discovery.dialling.remove(&peer);
                    if let Err(e) = dialled {
                        tracing::debug!(%peer, error = %e, "could not dial a provider");
                    }
                }),
        );
    }
}
