//! Content routing: a Kademlia DHT of provider records, so that data can be found by CID alone.
//!
//! Built on rust-libp2p's Kademlia (`libp2p-kad`), run in server mode inside the same swarm
//! and on the same connections as block exchange. A provider record says "peer P has the data
//! of key K"; the key is the CID's multihash, as in IPFS and in Logos Storage. [`NetHandle::provide`] stores one locally and announces
//! it to the peers closest to the key; [`NetHandle::find_providers`] walks the DHT towards the
//! key and collects the providers it meets.
//!
//! # Protocol name
//! The DHT speaks IPFS's `/ipfs/kad/1.0.0` ([`KAD_PROTOCOL`]) with the CID's multihash as the
//! key: that is how Logos Storage, Codex's successor, finds providers since it replaced discv5
//! with libp2p Kademlia (its #1522), so the next generation of nodes is one step away. This part
//! is not checked against a live Logos Storage node. A peer enters the routing table only when
//! identify lists the protocol, and this node dials only peers it meets through its own
//! bootstrap, peer book, lookups or `/connect`; an IPFS node that connected to it would share
//! routing, which costs it nothing but a few table entries. Codex v0.2.5 itself runs a discv5
//! variant over UDP ([`crate::network::codex_dht`]); a Codex peer never lists this protocol in identify,
//! so it never enters this routing table and no Kademlia stream is ever opened to it.
//!
//! # Records, expiry and re-announcement
//! Like Codex: a provider record lives [`DhtConfig::provider_record_ttl`] (24 h) on the peers
//! that store it, and a node re-announces each key it provides every
//! [`DhtConfig::provider_republish_interval`] (30 min), at most
//! [`DhtConfig::announce_concurrency`] (10) announcements at a time. [`NetHandle::stop_providing`]
//! only stops our own answers and re-announcements: peers that stored the record keep handing
//! it out until it expires, so a lookup may still name us for up to one TTL.
//!
//! # Bounds
//! Lookups end after [`DhtConfig::lookup_timeout`] at the latest, returning what they found.
//! The record store (`provider_records.rs`) caps our keys and the records held for others separately; the
//! routing table is Kademlia's (256 buckets of 20); the peer book ([`peer_book`]) keeps at most
//! 256 peers.
//!
//! # Joining
//! At start the bootstrap peers ([`BootstrapPeer`]) and the peers saved in the peer book go into
//! the routing table and a Kademlia bootstrap runs. A node with neither is the first node of a
//! network. Peers found later get in through identify: those listing [`KAD_PROTOCOL`] have their
//! listen addresses added to the routing table and the peer book.
//!
//! [`NetHandle::provide`]: crate::network::net::NetHandle::provide
//! [`NetHandle::find_providers`]: crate::network::net::NetHandle::find_providers
//! [`NetHandle::stop_providing`]: crate::network::net::NetHandle::stop_providing

pub(crate) mod addrs;
mod bootstrap;
mod coordinator;
mod lookup;
pub mod peer_book;
pub(crate) mod provider_records;
mod routing;

use std::time::Duration;

use libp2p::{kad, Multiaddr, PeerId, StreamProtocol};

pub use bootstrap::{BootstrapError, BootstrapPeer};
pub(crate) use coordinator::Dht;
pub use routing::{RoutingNode, RoutingTable};

/// The Kademlia protocol id of this node's DHT, IPFS's (see the module doc).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");

/// Settings of the DHT. Every default is set in [`DhtConfig::default`].
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Longest a lookup (and a first announcement) may take; it then ends with what it found.
    /// Default 10 s: Codex gives its lookups a minute, but its downloader asks again every 3 s
    /// anyway, and a caller waiting on a CID nobody has should hear "not found" quickly.
    pub lookup_timeout: Duration,
    /// Time one peer gets to answer one DHT request. Default 5 s, so that a dead peer costs a
    /// lookup half its time at most (three requests run in parallel).
    pub request_timeout: Duration,
    /// How long peers keep a provider record they were sent. Default 24 h, as Codex.
    pub provider_record_ttl: Duration,
    /// How often each key we provide is announced again. Default 30 min, as Codex; must be
    /// well below the TTL or records lapse between announcements.
    pub provider_republish_interval: Duration,
    /// Announcements running at once when re-announcing. Default 10, as Codex's provide
    /// workers. A round over N keys takes about N / 10 lookups' time; when it outlasts the
    /// interval, the next round starts as soon as it ends.
    pub announce_concurrency: usize,
    /// Keys this node may provide at once; [`NetHandle::provide`] fails beyond. Default 16384
    /// (8192 datasets: Codex announces each manifest CID and its tree CID).
    ///
    /// [`NetHandle::provide`]: crate::network::net::NetHandle::provide
    pub max_provided_keys: usize,
    /// Provider records kept for other peers, over all keys. Default 65536 (a few hundred
    /// bytes each, so about 20 MiB at most).
    pub max_stored_provider_records: usize,
    /// Providers kept and returned per key. Default 20, as Codex.
    pub max_providers_per_key: usize,
    /// Dial addresses other peers give us whatever their scope. Default false: only addresses
    /// of this node's own scope or wider (a node with only public addresses dials no private
    /// or loopback address a stranger names).
    pub dial_any_scope: bool,
    /// Provider records kept for one other peer, over all keys. Default 1024: a peer cannot
    /// fill the store alone.
    pub max_records_per_provider: usize,
    /// A lookup stops early once it has this many providers. Default 20.
    pub enough_providers: usize,
    /// How often the routing table is refreshed with a Kademlia bootstrap; with an empty table
    /// the bootstrap and saved peers are tried again instead. Default 5 min.
    pub bootstrap_interval: Duration,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            lookup_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(5),
            provider_record_ttl: Duration::from_secs(24 * 60 * 60),
            provider_republish_interval: Duration::from_secs(30 * 60),
            announce_concurrency: 10,
            max_provided_keys: 16 * 1024,
            max_stored_provider_records: 64 * 1024,
            max_providers_per_key: 20,
            max_records_per_provider: 1024,
            dial_any_scope: false,
            enough_providers: 20,
            bootstrap_interval: Duration::from_secs(5 * 60),
        }
    }
}

/// Counters of the DHT, for metrics. Totals since start, except the last three, which are
/// current sizes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Provider lookups asked for.
    pub lookups: u64,
    /// Lookups that found no provider.
    pub lookups_empty: u64,
    /// Lookups cut short by [`DhtConfig::lookup_timeout`].
    pub lookups_timed_out: u64,
    /// Providers returned, over all lookups.
    pub providers_found: u64,
    /// Keys we started providing.
    pub provides: u64,
    /// Announcements of our records finished (first ones and re-announcements).
    pub announcements: u64,
    /// Announcements that timed out.
    pub announcements_failed: u64,
    /// Outgoing connection attempts, by the DHT or by [`NetHandle::dial`].
    ///
    /// [`NetHandle::dial`]: crate::network::net::NetHandle::dial
    pub dials: u64,
    /// Outgoing connection attempts that failed.
    pub dial_failures: u64,
    /// Peers in the routing table now.
    pub routing_table_peers: u64,
    /// Keys we provide now.
    pub provided_keys: u64,
    /// Provider records held for other peers now.
    pub stored_provider_records: u64,
    /// Provider records from other peers refused: a key that is no CID, or a provider, host or
    /// key over its quota.
    pub refused_provider_records: u64,
}

/// The DHT key of a CID: its multihash (so a CID of any codec over the same bytes is one key,
/// as in IPFS and Logos Storage).
pub(crate) fn record_key(cid: &crate::Cid) -> kad::RecordKey {
    kad::RecordKey::new(&cid.hash().to_bytes())
}

/// The Kademlia behaviour for `local`, configured from `config`.
pub(crate) fn behaviour(
    local: PeerId,
    config: &DhtConfig,
) -> kad::Behaviour<provider_records::ProviderStore> {
    let mut k = kad::Config::new(KAD_PROTOCOL);
    k.set_query_timeout(config.lookup_timeout)
        .set_substreams_timeout(config.request_timeout)
        .set_provider_record_ttl(Some(config.provider_record_ttl))
        // Re-announcement is paced by `Dht` instead: libp2p would start every key's
        // announcement at the same moment.
        .set_provider_publication_interval(None)
        // No value records: nothing to replicate or cache.
        .set_replication_interval(None)
        .set_publication_interval(None)
        .set_caching(kad::Caching::Disabled)
        // `Dht` refreshes on its own timer, and only when it knows a peer; libp2p's timer would
        // log a warning every period on the first node of a network.
        .set_periodic_bootstrap_interval(None);
    let limits = provider_records::StoreLimits {
        max_own_keys: config.max_provided_keys.max(1),
        max_foreign_records: config.max_stored_provider_records.max(1),
        max_per_key: config.max_providers_per_key.max(1),
        max_per_provider: config.max_records_per_provider.max(1),
    };
    let mut b = kad::Behaviour::with_config(
        local,
        provider_records::ProviderStore::new(local, limits),
        k,
    );
    // Server mode from the start: every node of this network answers DHT requests. libp2p
    // would wait for a confirmed external address, which a node on a LAN never gets.
    b.set_mode(Some(kad::Mode::Server));
    b
}

/// Addresses to announce, picked from the bound listen addresses when none are configured:
/// the non-loopback ones, or the loopback ones if that is all there is (a test or a single
/// host). Unspecified and non-TCP addresses are never announced.
pub(crate) fn announce_from_listen(listen: &[Multiaddr]) -> Vec<Multiaddr> {
    let usable: Vec<_> = listen
        .iter()
        .filter_map(|a| addrs::tcp_dialable(a, None))
        .filter(|a| a.ip_addr().is_some_and(|ip| !ip.is_unspecified()))
        .collect();
    let remote: Vec<_> = usable
        .iter()
        .filter(|a| !addrs::is_loopback(a))
        .cloned()
        .collect();
    if remote.is_empty() {
        usable
    } else {
        remote
    }
}
