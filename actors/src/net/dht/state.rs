//! The DHT's state inside the driver task: lookups and announcements waiting for Kademlia,
//! the paced re-announcement of our keys, the routing-table refresh, and the peer book.
//!
//! The driver calls in with the Kademlia behaviour for every command, Kademlia event and
//! identify result, and once a second through [`Dht::tick`], which enforces deadlines (a query
//! stuck on a dial the OS has not given up yet must still answer in time) and runs the timers.
//!
//! A provider lookup has two phases. First the `GET_PROVIDERS` walk collects provider ids.
//! Kademlia hands out ids only, so then each provider's addresses are taken from the routing
//! table and the peer book, and for a provider found in neither, a `FIND_NODE` walk towards its
//! id asks the peers near it. Both phases share the one deadline.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::kad::{self, QueryId, RecordKey};
use libp2p::{identify, Multiaddr, PeerId};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::net::dht::peer_book::{self, PeerBook};
use crate::net::dht::routing::{self, RoutingNode, RoutingTable};
use crate::net::dht::store::ProviderStore;
use crate::net::dht::{addrs, BootstrapPeer, DhtConfig, DhtStats, KAD_PROTOCOL};
use crate::net::{spr, NetError, Providers};

type Kad = kad::Behaviour<ProviderStore>;

/// How often a changed peer book is written out. A crash loses at most this much news.
const SAVE_INTERVAL: Duration = Duration::from_secs(30);
/// How often expired records of other peers are dropped.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A `find_providers` in progress.
struct Lookup {
    /// Providers in the order they were found.
    found: Vec<PeerId>,
    /// Addresses settled so far.
    addrs: HashMap<PeerId, Vec<Multiaddr>>,
    deadline: Instant,
    /// The `GET_PROVIDERS` walk is still running.
    searching: bool,
    /// `FIND_NODE` walks for provider addresses still running.
    resolving: usize,
    /// Some part ran out of time (Kademlia's query timeout or our deadline).
    timed_out: bool,
    reply: oneshot::Sender<Result<Providers, NetError>>,
}

/// The DHT side of the driver; see the module doc.
pub(crate) struct Dht {
    config: DhtConfig,
    key: Keypair,
    local: PeerId,
    bootstrap: Vec<BootstrapPeer>,
    book: PeerBook,
    book_path: Option<PathBuf>,
    /// The peer book write in flight; one at a time, as they share a temporary file.
    saving: Option<JoinHandle<()>>,
    lookups: HashMap<QueryId, Lookup>,
    /// Address walks: their query and the lookup and provider they serve.
    resolving: HashMap<QueryId, (QueryId, PeerId)>,
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
    stats: DhtStats,
}

/// Addresses of `peer` from the routing table and the peer book.
fn known_addrs(kad: &mut Kad, book: &PeerBook, peer: &PeerId) -> Vec<Multiaddr> {
    let mut all = routing::table_addrs(kad, peer);
    for a in book.addrs(peer) {
        if !all.contains(&a) {
            all.push(a);
        }
    }
    all
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
        let book = match &book_path {
            None => PeerBook::default(),
            Some(path) => PeerBook::load(path).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "peer store unreadable; starting without it");
                PeerBook::default()
            }),
        };
        let now = Instant::now();
        Ok(Dht {
            local: key.public().to_peer_id(),
            key,
            bootstrap,
            book,
            book_path,
            saving: None,
            lookups: HashMap::new(),
            resolving: HashMap::new(),
            provides: HashMap::new(),
            announcing: HashSet::new(),
            republish: VecDeque::new(),
            next_republish: now + config.provider_republish_interval,
            next_bootstrap: now + config.bootstrap_interval,
            next_save: now + SAVE_INTERVAL,
            next_sweep: now + SWEEP_INTERVAL,
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
        let id = kad.get_providers(key);
        let lookup = Lookup {
            found: Vec::new(),
            addrs: HashMap::new(),
            deadline: Instant::now() + self.config.lookup_timeout,
            searching: true,
            resolving: 0,
            timed_out: false,
            reply,
        };
        self.lookups.insert(id, lookup);
    }

    pub(crate) fn provide(
        &mut self,
        kad: &mut Kad,
        key: RecordKey,
        reply: oneshot::Sender<Result<(), NetError>>,
    ) {
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

    /// Feeds what a peer told identify to the routing table and the peer book, if it is on
    /// our DHT. Its loopback addresses count only if it reached us over loopback too.
    pub(crate) fn on_identify(&mut self, kad: &mut Kad, peer: PeerId, info: &identify::Info) {
        if !info.protocols.contains(&KAD_PROTOCOL) {
            return; // a Codex node, or any peer without our DHT
        }
        let same_host = addrs::is_loopback(&info.observed_addr);
        let listen = addrs::usable(info.listen_addrs.iter().cloned(), peer, same_host);
        for a in &listen {
            kad.add_address(&peer, a.clone());
        }
        self.book.saw(peer, listen, peer_book::now_secs());
    }

    pub(crate) fn on_dial(&mut self) {
        self.stats.dials += 1;
    }

    pub(crate) fn on_dial_failed(&mut self) {
        self.stats.dial_failures += 1;
    }

    pub(crate) fn on_event(&mut self, kad: &mut Kad, event: kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id, result, step, ..
        } = event
        else {
            return;
        };
        match result {
            kad::QueryResult::GetProviders(r) => self.on_providers(kad, id, r, step.last),
            kad::QueryResult::GetClosestPeers(r) if step.last => self.on_resolved(kad, id, r),
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

    fn on_providers(
        &mut self,
        kad: &mut Kad,
        id: QueryId,
        result: kad::GetProvidersResult,
        last: bool,
    ) {
        let Some(lookup) = self.lookups.get_mut(&id) else {
            return; // already answered at its deadline
        };
        if let Err(kad::GetProvidersError::Timeout { .. }) = result {
            lookup.timed_out = true;
        }
        if let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = result {
            let cap = self.config.max_providers_per_key.max(1);
            for p in providers {
                if p != self.local && !lookup.found.contains(&p) && lookup.found.len() < cap {
                    lookup.found.push(p);
                }
            }
            if lookup.found.len() >= self.config.enough_providers.max(1) {
                if let Some(mut q) = kad.query_mut(&id) {
                    q.finish(); // its final event arrives next, with `last` set
                }
            }
        }
        if !last {
            return;
        }
        lookup.searching = false;
        let now = Instant::now();
        for p in lookup.found.clone() {
            let known = known_addrs(kad, &self.book, &p);
            if known.is_empty() && now < lookup.deadline {
                let walk = kad.get_closest_peers(p);
                self.resolving.insert(walk, (id, p));
                lookup.resolving += 1;
            } else {
                lookup.addrs.insert(p, known);
            }
        }
        if lookup.resolving == 0 {
            self.answer(kad, id);
        }
    }

    fn on_resolved(&mut self, kad: &mut Kad, walk: QueryId, result: kad::GetClosestPeersResult) {
        let Some((id, peer)) = self.resolving.remove(&walk) else {
            return;
        };
        let (peers, timed_out) = match result {
            Ok(ok) => (ok.peers, false),
            Err(kad::GetClosestPeersError::Timeout { peers, .. }) => (peers, true),
        };
        let told = peers
            .into_iter()
            .filter(|info| info.peer_id == peer)
            .flat_map(|info| info.addrs);
        let mut found = known_addrs(kad, &self.book, &peer);
        for a in addrs::usable(told, peer, true) {
            if !found.contains(&a) {
                found.push(a);
            }
        }
        let Some(lookup) = self.lookups.get_mut(&id) else {
            return;
        };
        lookup.addrs.insert(peer, found);
        lookup.resolving -= 1;
        lookup.timed_out |= timed_out;
        if lookup.resolving == 0 && !lookup.searching {
            self.answer(kad, id);
        }
    }

    /// Replies to lookup `id` with every provider found and the addresses known for each.
    fn answer(&mut self, kad: &mut Kad, id: QueryId) {
        let Some(mut lookup) = self.lookups.remove(&id) else {
            return;
        };
        let providers: Providers = lookup
            .found
            .iter()
            .map(|p| {
                let addrs = lookup
                    .addrs
                    .remove(p)
                    .unwrap_or_else(|| known_addrs(kad, &self.book, p));
                (*p, addrs)
            })
            .collect();
        if providers.is_empty() {
            self.stats.lookups_empty += 1;
        }
        if lookup.timed_out {
            self.stats.lookups_timed_out += 1;
        }
        self.stats.providers_found += providers.len() as u64;
        let _ = lookup.reply.send(Ok(providers));
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
        let late: Vec<QueryId> = self
            .lookups
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let walks: Vec<QueryId> = self
                .resolving
                .iter()
                .filter(|(_, (l, _))| *l == id)
                .map(|(w, _)| *w)
                .collect();
            for w in walks.into_iter().chain([id]) {
                self.resolving.remove(&w);
                if let Some(mut q) = kad.query_mut(&w) {
                    q.finish();
                }
            }
            if let Some(l) = self.lookups.get_mut(&id) {
                l.timed_out = true;
            }
            self.answer(kad, id);
        }
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
        DhtStats {
            routing_table_peers: routing::size(kad) as u64,
            provided_keys: own as u64,
            stored_provider_records: foreign as u64,
            ..self.stats
        }
    }
}
