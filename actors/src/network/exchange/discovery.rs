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
//!
//! When Codex's DHT runs beside our Kademlia (issue 19), both happen in both: the keys are
//! announced there too (as `NodeId::from_cid`, re-announced every
//! [`CODEX_REANNOUNCE_INTERVAL`] as Codex does), and a lookup asks both at once, each dialling
//! what it finds as soon as it answers, so the slower one never holds back the faster.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use actix::{ActorFutureExt, AsyncContext, Context, WrapFuture};
use cid::Cid;
use libp2p::{multiaddr::Protocol, Multiaddr, PeerId};

use super::BlockExchange;
use crate::format::blockexc::BlockAddress;
use crate::network::codex_dht::{CodexDht, NodeId};
use crate::network::net::Providers;

/// Addresses a provider record of ours carries, at most (what the stores of others keep).
const MAX_RECORD_ADDRS: usize = 8;
/// A key is looked up again at most this often while its wants starve.
const LOOKUP_COOLDOWN: Duration = Duration::from_secs(5);
/// Lookups running at once.
const MAX_LOOKUPS: usize = 4;
/// Providers dialled per lookup.
const DIALS_PER_LOOKUP: usize = 8;
/// How often every dataset is announced again in Codex's DHT (Codex's advertiser does so every
/// 30 minutes; its records live 24 h). Our Kademlia re-announces on its own.
pub(super) const CODEX_REANNOUNCE_INTERVAL: Duration = Duration::from_secs(30 * 60);

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
    /// Codex's DHT has known a node that answered: announcements there reach someone. Until
    /// then they wait, and all go out at once when it first does.
    codex_joined: bool,
    /// A check of Codex's routing table for [`Discovery::codex_joined`] is running.
    codex_checking: bool,
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
        match &self.codex_dht {
            Some(dht) if self.discovery.codex_joined => {
                ctx.spawn(actix::fut::wrap_future(codex_provide(
                    dht.clone(),
                    vec![manifest, tree],
                )));
            }
            // Announced with everything else once the check finds a node.
            Some(_) => self.check_codex_joined(ctx),
            None => {}
        }
    }

    /// Until Codex's DHT knows a node that answered, checks whether it does now, and then
    /// announces everything provided so far: datasets found at start-up are announced while
    /// the bootstrap is still under way, and an announcement sent to nobody would only be
    /// repeated 30 minutes later.
    pub(super) fn check_codex_joined(&mut self, ctx: &mut Context<Self>) {
        if self.discovery.codex_joined || self.discovery.codex_checking {
            return;
        }
        let Some(dht) = self.codex_dht.clone() else {
            return;
        };
        self.discovery.codex_checking = true;
        ctx.spawn(
            async move { dht.routing_table().await }
                .into_actor(self)
                .map(|table, act, ctx| {
                    act.discovery.codex_checking = false;
                    if table.is_ok_and(|t| t.iter().any(|e| e.verified)) {
                        act.discovery.codex_joined = true;
                        act.reannounce_codex(ctx);
                    }
                }),
        );
    }

    /// Announces every provided key in Codex's DHT again.
    pub(super) fn reannounce_codex(&mut self, ctx: &mut Context<Self>) {
        let Some(dht) = self
            .codex_dht
            .as_ref()
            .filter(|_| self.discovery.codex_joined)
        else {
            return;
        };
        let mut keys: Vec<Cid> = self.discovery.provided.keys().copied().collect();
        keys.extend(self.discovery.provided.values().copied());
        keys.sort_unstable_by_key(Cid::to_bytes);
        keys.dedup();
        ctx.spawn(actix::fut::wrap_future(codex_provide(dht.clone(), keys)));
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
        let net = self.net.clone();
        self.spawn_lookup(
            key,
            async move { net.find_providers(key).await.map_err(|e| e.to_string()) },
            ctx,
        );
        if let Some(dht) = self.codex_dht.clone() {
            self.spawn_lookup(key, codex_providers(dht, key), ctx);
        }
    }

    /// Runs one DHT's lookup of `key` and dials the providers it finds.
    fn spawn_lookup(
        &mut self,
        key: Cid,
        found: impl std::future::Future<Output = Result<Providers, String>> + 'static,
        ctx: &mut Context<Self>,
    ) {
        self.discovery.running += 1;
        let us = self.net.peer_id();
        ctx.spawn(found.into_actor(self).map(move |found, act, ctx| {
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
                    *peer != us
                        && !act.peers.contains_key(peer)
                        && !act.discovery.dialling.contains(peer)
                })
                .take(DIALS_PER_LOOKUP)
                .collect();
            for (peer, addrs) in fresh {
                act.dial(peer, addrs, ctx);
            }
        }));
    }

    /// Codex's DHT records follow the addresses the node announces (AutoNAT, relays): the
    /// provider record carries the direct ones, or the relayed ones of a node that has no
    /// direct address; the DHT record's UDP address moves to a new public IP. When either
    /// changed, every key is announced again, so the records others keep name where we are now.
    pub(super) fn readdress_codex(&mut self, addrs: Vec<Multiaddr>, ctx: &mut Context<Self>) {
        let Some(dht) = self.codex_dht.clone() else {
            return;
        };
        let relayed = |a: &Multiaddr| a.iter().any(|p| matches!(p, Protocol::P2pCircuit));
        let ip = |a: &Multiaddr| match a.iter().next() {
            Some(Protocol::Ip4(ip)) if !ip.is_unspecified() => Some(ip),
            _ => None,
        };
        // AutoNAT confirms addresses with our own `/p2p/` at the end; a record names them
        // without it, once each.
        let mut addrs: Vec<Multiaddr> = addrs
            .into_iter()
            .map(|mut a| {
                if matches!(a.iter().last(), Some(Protocol::P2p(_))) && !relayed(&a) {
                    a.pop();
                }
                a
            })
            .collect();
        let mut seen = HashSet::new();
        addrs.retain(|a| seen.insert(a.clone()));
        let direct: Vec<Multiaddr> = addrs.iter().filter(|a| !relayed(a)).cloned().collect();
        let current = dht.local_record().udp_addr().map(|a| *a.ip());
        // The record's IP stays while it is still announced; a node on several interfaces
        // must not flip between them.
        let udp_ip = match current {
            Some(held) if direct.iter().any(|a| ip(a) == Some(held)) => None,
            _ => direct.iter().find_map(ip),
        };
        let mut provider = if direct.is_empty() { addrs } else { direct };
        provider.truncate(MAX_RECORD_ADDRS);
        ctx.spawn(
            async move { dht.readdress(udp_ip, provider).await }
                .into_actor(self)
                .map(|changed, act, ctx| match changed {
                    Ok(true) => {
                        tracing::info!("our addresses changed: Codex DHT records signed anew");
                        act.reannounce_codex(ctx);
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "could not sign Codex DHT records with our new addresses"),
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

/// Announces `keys` in Codex's DHT, one after the other (each goes to the 16 nodes closest to
/// it, found by a lookup).
async fn codex_provide(dht: CodexDht, keys: Vec<Cid>) {
    for key in keys {
        match dht.provide(NodeId::from_cid(&key)).await {
            Ok(n) => {
                tracing::debug!(key = %crate::cid_text(&key), nodes = n, "announced in the Codex DHT")
            }
            Err(e) => {
                tracing::debug!(key = %crate::cid_text(&key), error = %e, "could not announce in the Codex DHT")
            }
        }
    }
}

/// Providers of `key` in Codex's DHT: the peer of each record with the TCP addresses it names
/// (a Codex provider record carries its block-exchange addresses).
async fn codex_providers(dht: CodexDht, key: Cid) -> Result<Providers, String> {
    let records = dht
        .get_providers(NodeId::from_cid(&key))
        .await
        .map_err(|e| e.to_string())?;
    Ok(records
        .into_iter()
        .map(|r| (r.peer_id(), r.tcp_addrs()))
        .filter(|(_, addrs)| !addrs.is_empty())
        .collect())
}
