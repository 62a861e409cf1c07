//! Provider lookups in progress.
//!
//! A lookup has two phases sharing one deadline. First the `GET_PROVIDERS` walk collects
//! provider ids. Kademlia hands out ids only, so then each provider's addresses are taken from
//! the routing table and the peer book, and for a provider found in neither (say its record
//! names a dead address and our walk could not reach it), a `FIND_NODE` walk towards its id
//! asks the peers near it, which know it from identify.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::kad::{self, QueryId, RecordKey};
use libp2p::{Multiaddr, PeerId};
use tokio::sync::oneshot;

use crate::network::net::dht::peer_book::PeerBook;
use crate::network::net::dht::provider_records::ProviderStore;
use crate::network::net::dht::{addrs, routing, DhtStats};
use crate::network::net::{NetError, Providers};

type Kad = kad::Behaviour<ProviderStore>;

/// Lookups running at once. Each one is a Kademlia query with its own buffers; callers that
/// go past this many (Codex runs 10 lookup workers) are told to come back later.
pub(crate) const MAX_LOOKUPS: usize = 128;

/// One `find_providers` in progress.
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

/// The lookups in progress, by the id of their `GET_PROVIDERS` query.
pub(crate) struct Lookups {
    local: PeerId,
    /// Providers kept per lookup.
    max_providers: usize,
    /// A lookup stops searching once it has this many.
    enough: usize,
    running: HashMap<QueryId, Lookup>,
    /// Address walks: their query, and the lookup and provider they serve.
    walks: HashMap<QueryId, (QueryId, PeerId)>,
    /// Narrowest scope of provider addresses taken from other peers ([`addrs::usable`]).
    pub(crate) min_scope: addrs::Scope,
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

impl Lookups {
    pub(crate) fn new(local: PeerId, max_providers: usize, enough: usize) -> Self {
        Lookups {
            local,
            max_providers: max_providers.max(1),
            enough: enough.max(1),
            running: HashMap::new(),
            walks: HashMap::new(),
            min_scope: addrs::Scope::Public,
        }
    }

    /// Starts looking for providers of `key`, answering `reply` by `deadline` at the latest.
    pub(crate) fn start(
        &mut self,
        kad: &mut Kad,
        key: RecordKey,
        deadline: Instant,
        reply: oneshot::Sender<Result<Providers, NetError>>,
    ) {
        if self.running.len() >= MAX_LOOKUPS {
            let _ = reply.send(Err(NetError::TooManyLookups(MAX_LOOKUPS)));
            return;
        }
        let id = kad.get_providers(key);
        let lookup = Lookup {
            found: Vec::new(),
            addrs: HashMap::new(),
            deadline,
            searching: true,
            resolving: 0,
            timed_out: false,
            reply,
        };
        self.running.insert(id, lookup);
    }

    /// Takes in a `GET_PROVIDERS` result; on the last one, moves on to the addresses.
    pub(crate) fn on_providers(
        &mut self,
        kad: &mut Kad,
        book: &PeerBook,
        stats: &mut DhtStats,
        id: QueryId,
        result: kad::GetProvidersResult,
        last: bool,
    ) {
        let Some(lookup) = self.running.get_mut(&id) else {
            return; // already answered at its deadline
        };
        match result {
            Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) => {
                for p in providers {
                    if p != self.local
                        && !lookup.found.contains(&p)
                        && lookup.found.len() < self.max_providers
                    {
                        lookup.found.push(p);
                    }
                }
                if lookup.found.len() >= self.enough {
                    if let Some(mut q) = kad.query_mut(&id) {
                        q.finish(); // its final event arrives next, with `last` set
                    }
                }
            }
            Ok(kad::GetProvidersOk::FinishedWithNoAdditionalRecord { .. }) => {}
            Err(kad::GetProvidersError::Timeout { .. }) => lookup.timed_out = true,
        }
        if !last {
            return;
        }
        lookup.searching = false;
        let now = Instant::now();
        for p in lookup.found.clone() {
            let known = known_addrs(kad, book, &p);
            if known.is_empty() && now < lookup.deadline {
                let walk = kad.get_closest_peers(p);
                self.walks.insert(walk, (id, p));
                lookup.resolving += 1;
            } else {
                lookup.addrs.insert(p, known);
            }
        }
        if lookup.resolving == 0 {
            self.answer(kad, book, stats, id);
        }
    }

    /// Takes in the end of an address walk, if it is one of ours.
    pub(crate) fn on_walk_done(
        &mut self,
        kad: &mut Kad,
        book: &PeerBook,
        stats: &mut DhtStats,
        walk: QueryId,
        result: kad::GetClosestPeersResult,
    ) {
        let Some((id, peer)) = self.walks.remove(&walk) else {
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
        let mut found = known_addrs(kad, book, &peer);
        for a in addrs::usable(told, peer, self.min_scope) {
            if !found.contains(&a) {
                found.push(a);
            }
        }
        let Some(lookup) = self.running.get_mut(&id) else {
            return;
        };
        lookup.addrs.insert(peer, found);
        lookup.resolving -= 1;
        lookup.timed_out |= timed_out;
        if lookup.resolving == 0 && !lookup.searching {
            self.answer(kad, book, stats, id);
        }
    }

    /// Answers every lookup past its deadline with what it has, and stops its queries.
    pub(crate) fn expire(
        &mut self,
        kad: &mut Kad,
        book: &PeerBook,
        stats: &mut DhtStats,
        now: Instant,
    ) {
        let late: Vec<QueryId> = self
            .running
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            let walks: Vec<QueryId> = self
                .walks
                .iter()
                .filter(|(_, (l, _))| *l == id)
                .map(|(w, _)| *w)
                .collect();
            for q in walks.into_iter().chain([id]) {
                self.walks.remove(&q);
                if let Some(mut query) = kad.query_mut(&q) {
                    query.finish();
                }
            }
            if let Some(l) = self.running.get_mut(&id) {
                l.timed_out = true;
            }
            self.answer(kad, book, stats, id);
        }
    }

    /// Replies to lookup `id` with every provider found and the addresses known for each.
    fn answer(&mut self, kad: &mut Kad, book: &PeerBook, stats: &mut DhtStats, id: QueryId) {
        let Some(mut lookup) = self.running.remove(&id) else {
            return;
        };
        let providers: Providers = lookup
            .found
            .iter()
            .map(|p| {
                let addrs = lookup
                    .addrs
                    .remove(p)
                    .unwrap_or_else(|| known_addrs(kad, book, p));
                (*p, addrs)
            })
            .collect();
        if providers.is_empty() {
            stats.lookups_empty += 1;
        }
        if lookup.timed_out {
            stats.lookups_timed_out += 1;
        }
        stats.providers_found += providers.len() as u64;
        let _ = lookup.reply.send(Ok(providers));
    }
}
