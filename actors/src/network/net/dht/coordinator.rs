//! The DHT's state inside the driver task: lookups ([`Lookups`]) and announcements waiting for
//! Kademlia, the paced re-announcement of our keys, the routing-table refresh, and the peer
//! book.
//!
//! The driver calls in with the Kademlia behaviour for every command, Kademlia event and
//! identify result, and once a second through [`Dht::tick`], which enforces deadlines (a query
//! stuck on a dial the OS has not given up yet must still answer in time) and runs the timers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::kad::{self, QueryId, RecordKey};
use libp2p::{identify, Multiaddr, PeerId};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::network::net::dht::lookup::{Lookups, MAX_LOOKUPS};
use crate::network::net::dht::peer_book::{self, PeerBook};
use crate::network::net::dht::provider_records::ProviderStore;
use crate::network::net::dht::routing::{self, RoutingNode, RoutingTable};
use crate::network::net::dht::{addrs, BootstrapPeer, DhtConfig, DhtStats, KAD_PROTOCOL};
use crate::network::net::{spr, NetError, Providers};

/// Wait after an address change before announcing again, so that a burst of changes makes
/// one round.
const REPUBLISH_AFTER_CHANGE: Duration = Duration::from_secs(2);

type Kad = kad::Behaviour<ProviderStore>;

/// How often a changed peer book is written out. A crash loses at most this much news.
const SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// How often expired records of other peers are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// How often one unreachable bootstrap peer is said in the log: every lookup dials it again.
const WARN_BOOTSTRAP_EVERY: Duration = Duration::from_secs(60);

/// The DHT side of the driver; see the module doc.
pub(crate) struct Dht {
    config: DhtConfig,
    key: Keypair,
    local: PeerId,
    bootstrap: Vec<BootstrapPeer>,
    book: PeerBook,
    /// Scopes of this node's own addresses ([`Dht::own_address`]).
    own_scopes: std::collections::BTreeSet<addrs::Scope>,
    book_path: Option<PathBuf>,
    /// The peer book write in flight; one at a time, as they share a temporary file.
    saving: Option<JoinHandle<()>>,
    lookups: Lookups,
    /// First announcements whose caller waits, with their deadline.
    provides: HashMap<QueryId, (Instant, oneshot::Sender<Result<(), NetError>>)>,
    /// Re-announcements running.
    announcing: HashSet<QueryId>,
    /// Keys waiting for their re-announcement in this round.
    republish: VecDeque<RecordKey>,
    next_republish: Instant,
    next_bootstrap: Instant,
    next_save: Instant,
    next_sweep: Instant,
    /// When each unreachable bootstrap peer was last said in the log.
    bootstrap_warned: HashMap<PeerId, Instant>,
    stats: DhtStats,
}

impl Dht {
    /// Parses the bootstrap peers and loads the peer book.
    ///
    /// # Errors
    /// [`NetError::Bootstrap`] naming the first unusable bootstrap text.
    pub(crate) fn new(
        config: DhtConfig,
        key: Keypair,
        bootstrap: &[String],
        book_path: Option<PathBuf>,
    ) -> Result<Self, NetError> {
        let bootstrap = BootstrapPeer::parse_all(bootstrap).map_err(NetError::Bootstrap)?;
        let mut book = match &book_path {
            None => PeerBook::default(),
            Some(path) => PeerBook::load(path).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "peer store unreadable; starting without it");
                PeerBook::default()
            }),
        };
        for b in &bootstrap {
            book.pin(b.peer);
        }
        let now = Instant::now();
        let local = key.public().to_peer_id();
        Ok(Dht {
            local,
            key,
            bootstrap,
            book,
            own_scopes: std::collections::BTreeSet::new(),
            book_path,
            saving: None,
            lookups: Lookups::new(local, config.max_providers_per_key, config.enough_providers),
            provides: HashMap::new(),
            announcing: HashSet::new(),
            republish: VecDeque::new(),
            next_republish: now + config.provider_republish_interval,
            next_bootstrap: now + config.bootstrap_interval,
            next_save: now + SAVE_INTERVAL,
            next_sweep: now + SWEEP_INTERVAL,
            bootstrap_warned: HashMap::new(),
            config,
            stats: DhtStats::default(),
        })
    }

    /// Puts the bootstrap and saved peers in the routing table; returns how many there were.
    fn add_known_peers(&self, kad: &mut Kad) -> usize {
        let saved = self.book.peers();
        let all = self
            .bootstrap
            .iter()
            .map(|b| (b.peer, &b.addrs))
            .chain(saved.iter().map(|p| (p.peer, &p.addrs)))
            .filter(|(p, _)| *p != self.local);
        let mut n = 0;
        for (peer, addrs) in all {
            for a in addrs {
                kad.add_address(&peer, a.clone());
            }
            n += 1;
        }
        n
    }

    /// Joins the network through the bootstrap and saved peers, if there are any.
    pub(crate) fn join(&mut self, kad: &mut Kad) {
        if self.add_known_peers(kad) == 0 {
            tracing::info!("no bootstrap peer and no saved peer: this is the first node of a DHT network; others join through it");
            return;
        }
        tracing::info!(
            bootstrap = self.bootstrap.len(),
            saved = self.book.peers().len(),
            "joining the DHT"
        );
        let _ = kad.bootstrap(); // cannot fail: the table was just filled
    }

    pub(crate) fn find_providers(
        &mut self,
        kad: &mut Kad,
        key: RecordKey,
        reply: oneshot::Sender<Result<Providers, NetError>>,
    ) {
        self.stats.lookups += 1;
        let deadline = Instant::now() + self.config.lookup_timeout;
        self.lookups.start(kad, key, deadline, reply);
    }

    pub(crate) fn provide(
        &mut self,
        kad: &mut Kad,
        key: RecordKey,
        reply: oneshot::Sender<Result<(), NetError>>,
    ) {
        if self.provides.len() >= MAX_LOOKUPS {
            // The record is not even stored: the caller must try again.
            let _ = reply.send(Err(NetError::TooManyLookups(MAX_LOOKUPS)));
            return;
        }
        match kad.start_providing(key) {
            Ok(id) => {
                self.stats.provides += 1;
                let deadline = Instant::now() + self.config.lookup_timeout;
                self.provides.insert(id, (deadline, reply));
            }
            Err(_) => {
                let _ = reply.send(Err(NetError::TooManyProvidedKeys(
                    self.config.max_provided_keys,
                )));
            }
        }
    }

    /// Stops answering for and re-announcing `key`. Records other peers hold live on until they
    /// expire.
    pub(crate) fn stop_providing(&mut self, kad: &mut Kad, key: &RecordKey) {
        kad.stop_providing(key);
    }

    /// Learns one of this node's own addresses: addresses peers give us are dialled down to the
    /// narrowest scope among ours (a node on a LAN dials LAN peers, one on loopback dials
    /// loopback ones), or any scope when [`DhtConfig::dial_any_scope`] says so.
    pub(crate) fn own_address(&mut self, addr: &Multiaddr) {
        let scope = addrs::scope_of(addr);
        if addrs::is_unspecified(addr) {
            return;
        }
        self.own_scopes.insert(scope);
        // Loopback counts only for a node that has nothing else (a node listening on every
        // interface has a loopback address too, and must not dial strangers' loopback).
        let narrowest = self
            .own_scopes
            .iter()
            .copied()
            .find(|s| *s != addrs::Scope::Loopback)
            .unwrap_or(addrs::Scope::Loopback);
        self.lookups.min_scope = if self.config.dial_any_scope {
            addrs::Scope::Loopback
        } else {
            narrowest
        };
    }

    /// Feeds what a peer told identify to the routing table and the peer book, if it is on
    /// our DHT. Its loopback addresses count only if it reached us over loopback too.
    pub(crate) fn on_identify(&mut self, kad: &mut Kad, peer: PeerId, info: &identify::Info) {
        if !info.protocols.contains(&KAD_PROTOCOL) {
            return; // a Codex node, or any peer without our DHT
        }
        // A peer that reached us over loopback is on this host: its loopback addresses work.
        let min_scope = if addrs::is_loopback(&info.observed_addr) {
            addrs::Scope::Loopback
        } else {
            self.lookups.min_scope
        };
        let listen = addrs::usable(info.listen_addrs.iter().cloned(), peer, min_scope);
        for a in &listen {
            kad.add_address(&peer, a.clone());
        }
        self.book.saw(peer, listen, peer_book::now_secs());
    }

    pub(crate) fn on_dial(&mut self) {
        self.stats.dials += 1;
    }

    /// A dial failed. One to a bootstrap peer is said in the log, at most once a minute for
    /// each: Kademlia keeps the peer in its table and every lookup dials it again, so a node
    /// whose way in is refused (a bootstrap node full, or at its cap of inbound connections
    /// per address) would otherwise fail every lookup without a word of why.
    pub(crate) fn on_dial_failed(
        &mut self,
        peer: Option<PeerId>,
        error: &impl std::fmt::Display,
        now: Instant,
    ) {
        self.stats.dial_failures += 1;
        let Some(peer) = peer.filter(|p| self.bootstrap.iter().any(|b| b.peer == *p)) else {
            return;
        };
        if self
            .bootstrap_warned
            .get(&peer)
            .is_some_and(|at| now.duration_since(*at) < WARN_BOOTSTRAP_EVERY)
        {
            return;
        }
        self.bootstrap_warned.insert(peer, now);
        tracing::warn!(%peer, %error, "bootstrap peer unreachable: lookups through it fail until it answers (it may be down, or refusing this address: a node takes at most --max-inbound-per-ip inbound connections from one address, 8 by default)");
    }

    pub(crate) fn on_event(&mut self, kad: &mut Kad, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        match result {
            kad::QueryResult::GetProviders(r) => {
                let (book, stats) = (&self.book, &mut self.stats);
                self.lookups
                    .on_providers(kad, book, stats, id, r, step.last);
            }
            kad::QueryResult::GetClosestPeers(r) if step.last => {
                let (book, stats) = (&self.book, &mut self.stats);
                self.lookups.on_walk_done(kad, book, stats, id, r);
            }
            kad::QueryResult::StartProviding(r) if step.last => {
                match r {
                    Ok(_) => self.stats.announcements += 1,
                    Err(_) => self.stats.announcements_failed += 1,
                }
                self.announcing.remove(&id);
                if let Some((_, reply)) = self.provides.remove(&id) {
                    let _ = reply.send(Ok(()));
                }
            }
            kad::QueryResult::Bootstrap(r) if step.last => {
                tracing::debug!(
                    ok = r.is_ok(),
                    peers = routing::size(kad),
                    "DHT bootstrap done"
                );
            }
            _ => {}
        }
    }

    /// Deadlines, refresh, re-announcement, sweeping and saving; called about once a second.
    pub(crate) fn tick(&mut self, kad: &mut Kad, now: Instant) {
        self.enforce_deadlines(kad, now);
        if now >= self.next_bootstrap {
            self.next_bootstrap = now + self.config.bootstrap_interval;
            // Everyone we knew went away: try the configured and saved peers again.
            if routing::size(kad) == 0 {
                self.add_known_peers(kad);
            }
            let _ = kad.bootstrap(); // fails only with an empty table: nothing to refresh
        }
        self.reannounce(kad, now);
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_INTERVAL;
            kad.store_mut().sweep(now);
        }
        if now >= self.next_save && self.saving.as_ref().is_none_or(JoinHandle::is_finished) {
            self.next_save = now + SAVE_INTERVAL;
            self.saving = self.start_save();
        }
    }

    fn enforce_deadlines(&mut self, kad: &mut Kad, now: Instant) {
        self.lookups.expire(kad, &self.book, &mut self.stats, now);
        // The record is stored and will be announced again; the caller need not wait longer.
        let late: Vec<QueryId> = self
            .provides
            .iter()
            .filter(|(_, (d, _))| *d <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some((_, reply)) = self.provides.remove(&id) {
                let _ = reply.send(Ok(()));
            }
        }
    }

    /// Our addresses changed (a relay reservation, a confirmed public address): provider
    /// records carry them, so every key is announced again soon. Changes that come in a burst
    /// make one round.
    pub(crate) fn republish_soon(&mut self) {
        let soon = Instant::now() + REPUBLISH_AFTER_CHANGE;
        self.next_republish = self.next_republish.min(soon);
    }

    /// Starts a new round of re-announcements when one is due, and keeps
    /// [`DhtConfig::announce_concurrency`] of them running.
    fn reannounce(&mut self, kad: &mut Kad, now: Instant) {
        if now >= self.next_republish && self.republish.is_empty() {
            self.next_republish = now + self.config.provider_republish_interval;
            self.republish = kad.store_mut().own_keys().collect();
        }
        while self.announcing.len() < self.config.announce_concurrency.max(1) {
            let Some(key) = self.republish.pop_front() else {
                break;
            };
            if !kad.store_mut().provides(&key) {
                continue; // stopped since the round began
            }
            if let Ok(id) = kad.start_providing(key) {
                self.announcing.insert(id);
            }
        }
    }

    /// Writes the peer book in the background if it changed.
    fn start_save(&mut self) -> Option<JoinHandle<()>> {
        let path = self.book_path.clone()?;
        let text = self.book.take_changes()?;
        Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = peer_book::save(&path, &text) {
                tracing::warn!(path = %path.display(), error = %e, "cannot save the peer store");
            }
        }))
    }

    /// Saves the peer book once more before the network stops.
    pub(crate) async fn save_on_exit(&mut self) {
        if let Some(running) = self.saving.take() {
            let _ = running.await;
        }
        if let Some(last) = self.start_save() {
            let _ = last.await;
        }
    }

    /// The routing table; the local node's record is our SPR over `announced`.
    pub(crate) fn routing_table(&self, kad: &mut Kad, announced: Vec<Multiaddr>) -> RoutingTable {
        let local = RoutingNode {
            node_id: routing::node_id(self.local),
            peer_id: self.local,
            address: announced.first().cloned(),
            record: spr::encode(&self.key, announced).ok(),
            seen: true,
        };
        routing::snapshot(kad, local)
    }

    pub(crate) fn stats(&self, kad: &mut Kad) -> DhtStats {
        let store = kad.store_mut();
        let (own, foreign) = (store.own_keys().count(), store.foreign_records());
        let refused = store.refused();
        DhtStats {
            routing_table_peers: routing::size(kad) as u64,
            provided_keys: own as u64,
            stored_provider_records: foreign as u64,
            refused_provider_records: refused,
            ..self.stats
        }
    }
}
