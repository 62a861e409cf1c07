//! Settings of the DHT service; every default is set in [`DhtConfig::new`].

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::Multiaddr;

use super::providers::ProviderLimits;
use super::rate_limit::RateLimits;
use super::routing::IpLimits;

/// Settings of [`CodexDht`](super::CodexDht).
#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// Our identity: the same secp256k1 key as the libp2p node, so that our node id follows
    /// from our peer id as Codex expects.
    pub keypair: Keypair,
    /// UDP address to bind. Default `0.0.0.0:8090`, Codex's `--disc-port` default; port 0
    /// picks a free one.
    pub bind: SocketAddr,
    /// The IPv4 address our record announces. Default: the bound address if it is specific,
    /// else 127.0.0.1 (a node that wants to be reached from elsewhere must say where, as
    /// Codex's `--nat=extip:` does).
    pub announce_ip: Option<Ipv4Addr>,
    /// Addresses added to our DHT record after the UDP one. Default none: Codex's `/spr` holds
    /// only the UDP address.
    pub extra_record_addrs: Vec<Multiaddr>,
    /// Addresses of our provider record: where block exchange reaches us (TCP). Default none,
    /// and then [`CodexDht::provide`](super::CodexDht::provide) announces the DHT record.
    pub provider_addrs: Vec<Multiaddr>,
    /// How long one request may wait for its answer, handshake included. Default 1 s, as
    /// codex-dht.
    pub request_timeout: Duration,
    /// How long a WHOAREYOU challenge and a sent packet wait for the handshake. Default 1 s
    /// (codex-dht uses 500 ms; loaded CI machines are slower).
    pub handshake_timeout: Duration,
    /// Requests a lookup keeps in flight. Default 3 (Kademlia's α, as codex-dht).
    pub alpha: usize,
    /// Sessions kept. Default 1024.
    pub max_sessions: usize,
    /// Requests in flight at once, over all callers. Default 1024.
    pub max_in_flight: usize,
    /// Per-IP quotas of the routing table. Default 2 per bucket, 10 in all (loopback exempt).
    pub ip_limits: IpLimits,
    /// Bounds of the provider store. Default: 20 per key, 24 h.
    pub providers: ProviderLimits,
    /// Per-source packet rate limit.
    pub rate: RateLimits,
}

impl DhtConfig {
    /// Defaults for `keypair`.
    pub fn new(keypair: Keypair) -> Self {
        DhtConfig {
            keypair,
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8090)),
            announce_ip: None,
            extra_record_addrs: Vec::new(),
            provider_addrs: Vec::new(),
            request_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(1),
            alpha: 3,
            max_sessions: 1024,
            max_in_flight: 1024,
            ip_limits: IpLimits {
                per_bucket: 2,
                per_table: 10,
            },
            providers: ProviderLimits::default(),
            rate: RateLimits::default(),
        }
    }

    /// Binds to `addr`. Default `0.0.0.0:8090`.
    #[must_use]
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// Announces `ip` in our record. Default: see [`DhtConfig::announce_ip`].
    #[must_use]
    pub fn announce_ip(mut self, ip: Ipv4Addr) -> Self {
        self.announce_ip = Some(ip);
        self
    }

    /// The addresses of our provider record. Default none.
    #[must_use]
    pub fn provider_addrs(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.provider_addrs = addrs;
        self
    }

    /// Extra addresses in our DHT record. Default none.
    #[must_use]
    pub fn extra_record_addrs(mut self, addrs: Vec<Multiaddr>) -> Self {
        self.extra_record_addrs = addrs;
        self
    }
}
