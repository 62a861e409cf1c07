//! The network component's settings: [`NetConfig`], every default in [`NetConfig::new`].

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use libp2p::Multiaddr;

use super::dht::DhtConfig;

/// Default largest frame accepted from a peer: 4 MiB. Codex sends at most 20 blocks per delivery
/// message, about 1.3 MiB with 64 KiB blocks and their proofs, and want or presence batches of at
/// most 1024 entries (under 100 KiB). Codex itself would accept 100 MiB, but each frame being read
/// is held in memory, so the limit is kept at three times the largest real message.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 4 << 20;

/// Settings of the network component. Every default is set in [`NetConfig::new`].
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Where the secp256k1 key lives (created on first start).
    pub key_path: PathBuf,
    /// Addresses to listen on, e.g. `/ip4/127.0.0.1/tcp/0`. Default: none (dial only).
    pub listen_addrs: Vec<Multiaddr>,
    /// Most established connections at once (Codex's `--max-peers`). Default 160, as Codex.
    pub max_peers: u32,
    /// Most of them that peers may open to us; the rest stay for the connections this node
    /// dials (providers, `/connect`, bootstrap). Default 120.
    pub max_inbound_peers: u32,
    /// Most inbound connections from one IP address, pending or established. Default 8.
    pub max_inbound_per_ip: usize,
    /// Largest frame read or written. Default [`DEFAULT_MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// Bytes of frames being read or waiting in the event queue, over all streams. Default
    /// 64 MiB. At least one frame always fits.
    pub max_inflight_frame_bytes: usize,
    /// Inbound block-exchange streams a peer may have open at once. Default 4 (Codex opens one).
    pub max_inbound_streams_per_peer: usize,
    /// Messages queued per peer before [`NetHandle::send`](crate::network::net::NetHandle::send) refuses more. Default 64.
    pub peer_queue_len: usize,
    /// Events buffered for the consumer. Default 256.
    pub event_queue_len: usize,
    /// The identify agent string. Default `codex-node/<crate version>`.
    pub agent_version: String,
    /// How long a connection with no open stream is kept. Default 10 min: Codex opens streams
    /// only when it has something to say, so a short timeout would keep dropping its peers.
    pub idle_timeout: Duration,
    /// Time allowed to read one frame once its length arrived, on top of its length at
    /// [`NetConfig::min_frame_rate`]. Default 10 s.
    pub frame_timeout: Duration,
    /// Slowest rate (bytes per second) at which a frame's body may arrive. Default 64 KiB/s:
    /// a 1.3 MiB delivery gets 30 s, a 4 MiB frame 74 s.
    pub min_frame_rate: u64,
    /// Bytes of frames being read or queued that one peer may hold, over all its streams.
    /// Default two frames ([`NetConfig::max_frame_bytes`] × 2), so that a few identities
    /// cannot take the whole [`NetConfig::max_inflight_frame_bytes`].
    pub max_peer_frame_bytes: usize,
    /// An inbound block-exchange stream on which no frame starts for this long is closed.
    /// Default 10 min, as the connection idle timeout.
    pub stream_idle_timeout: Duration,
    /// Peers to join the DHT through, as `/ip4/…/tcp/…/p2p/<peerId>` or `spr:` text with a
    /// TCP address ([`BootstrapPeer::parse`](crate::network::net::BootstrapPeer::parse)); checked at start. Default: none, which makes
    /// this node the first of a network unless the peer store knows others.
    pub bootstrap: Vec<String>,
    /// The peer store file (e.g. `<data-dir>/peers`): DHT peers met, saved every 30 s when
    /// changed and at shutdown, loaded at start like bootstrap peers. Default: none (nothing
    /// is remembered).
    pub peer_store: Option<PathBuf>,
    /// Addresses put in our provider records and identify. Default: none, meaning the bound
    /// listen addresses (loopback ones only when there is nothing else).
    pub announce_addrs: Vec<Multiaddr>,
    /// DHT settings.
    pub dht: DhtConfig,
    /// Reachability: port mapping, relays, AutoNAT. Default: no port mapping, no relay
    /// service ([`NatConfig::default`]).
    pub nat: NatConfig,
}

impl NetConfig {
    /// Defaults for everything but the key path.
    pub fn new(key_path: impl Into<PathBuf>) -> Self {
        NetConfig {
            key_path: key_path.into(),
            listen_addrs: Vec::new(),
            max_peers: 160,
            max_inbound_peers: 120,
            max_inbound_per_ip: 8,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            max_inflight_frame_bytes: 64 << 20, /* 64 MiB */
            max_inbound_streams_per_peer: 4,
            peer_queue_len: 64,
            event_queue_len: 256,
            agent_version: format!("codex-node/{}", env!("CARGO_PKG_VERSION")),
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(10),
            min_frame_rate: 64 * 1024,
            max_peer_frame_bytes: 2 * DEFAULT_MAX_FRAME_BYTES,
            stream_idle_timeout: Duration::from_secs(600),
            bootstrap: Vec::new(),
            peer_store: None,
            announce_addrs: Vec::new(),
            dht: DhtConfig::default(),
            nat: NatConfig::default(),
        }
    }

    /// Adds a bootstrap peer (multiaddr with `/p2p/<peerId>`, or `spr:` text). Default: none.
    #[must_use]
    pub fn bootstrap_peer(mut self, text: impl Into<String>) -> Self {
        self.bootstrap.push(text.into());
        self
    }

    /// Sets the peer store file. Default: none.
    #[must_use]
    pub fn peer_store(mut self, path: impl Into<PathBuf>) -> Self {
        self.peer_store = Some(path.into());
        self
    }

    /// Adds a listen address. Default: none.
    #[must_use]
    pub fn listen_on(mut self, addr: Multiaddr) -> Self {
        self.listen_addrs.push(addr);
        self
    }

    /// Sets the connection limit, and the inbound share to three quarters of it. Default =
    /// 160.
    #[must_use]
    pub fn max_peers(mut self, n: u32) -> Self {
        self.max_peers = n;
        self.max_inbound_peers = n - n / 4;
        self
    }

    /// Sets the largest frame. Default = 4 MiB.
    #[must_use]
    pub fn max_frame_bytes(mut self, n: usize) -> Self {
        self.max_frame_bytes = n;
        self
    }
}

/// What `--nat` asks for, with Codex's values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatMode {
    /// Try to map a port on the router (UPnP IGD; rust-libp2p has no NAT-PMP).
    Any,
    /// No port mapping: AutoNAT, relays and hole punching only.
    None,
    /// Map a port with UPnP IGD.
    Upnp,
    /// NAT-PMP, which rust-libp2p does not offer: mapped with UPnP IGD instead (most routers
    /// that speak NAT-PMP speak UPnP IGD too), and said so in the log at start.
    Pmp,
    /// Announce this IP with the listen port(s): the router forwards the port by hand.
    ExtIp(IpAddr),
}

impl NatMode {
    /// Whether the UPnP behaviour runs.
    pub fn maps_ports(&self) -> bool {
        matches!(self, NatMode::Any | NatMode::Upnp | NatMode::Pmp)
    }
}

impl std::str::FromStr for NatMode {
    type Err = String;

    /// `any`, `none`, `upnp`, `pmp` or `extip:IP` (case-insensitive keywords, as Codex).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        match lower.as_str() {
            "any" => Ok(NatMode::Any),
            "none" => Ok(NatMode::None),
            "upnp" => Ok(NatMode::Upnp),
            "pmp" => Ok(NatMode::Pmp),
            _ => match lower.strip_prefix("extip:") {
                Some(ip) => ip
                    .parse()
                    .map(NatMode::ExtIp)
                    .map_err(|_| format!("extip:{ip} is not an IP address")),
                None => Err(format!(
                    "{s}: expected any, none, upnp, pmp or extip:<IP address>"
                )),
            },
        }
    }
}

/// The limits of the relay this node runs for others (`--relay-service`). Every default fits
/// a relayed fetch of a 16 MiB dataset with room to spare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayLimits {
    /// Peers that may hold a reservation at once. Default 128.
    pub max_reservations: usize,
    /// Circuits relayed at once. Default 16.
    pub max_circuits: usize,
    /// Bytes one circuit may carry, both ways together, before the relay ends it. Default
    /// 64 MiB.
    pub max_circuit_bytes: u64,
    /// How long one circuit may last. Default 10 min.
    pub max_circuit_duration: Duration,
}

impl Default for RelayLimits {
    fn default() -> Self {
        RelayLimits {
            max_reservations: 128,
            max_circuits: 16,
            max_circuit_bytes: 64 << 20, /* 64 MiB */
            max_circuit_duration: Duration::from_secs(600),
        }
    }
}

/// Reachability settings: port mapping, relays, AutoNAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatConfig {
    /// Port mapping and announced address (`--nat`). Default [`NatMode::None`]: an embedder or
    /// test never talks to a router unless asked (the binary's default is `any`, as Codex's).
    pub mode: NatMode,
    /// Run a relay for others with these limits. Default: none.
    pub relay_service: Option<RelayLimits>,
    /// Relays a private node holds reservations on. Default 2.
    pub max_reservations: usize,
    /// Wait after start before AutoNAT's first probe (peers must be connected first).
    /// Default 5 s.
    pub autonat_boot_delay: Duration,
    /// Time between AutoNAT probes until it is sure. Default 30 s.
    pub autonat_retry_interval: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            mode: NatMode::None,
            relay_service: None,
            max_reservations: 2,
            autonat_boot_delay: Duration::from_secs(5),
            autonat_retry_interval: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nat_takes_codex_values() {
        assert_eq!("any".parse(), Ok(NatMode::Any));
        assert_eq!("NONE".parse(), Ok(NatMode::None));
        assert_eq!("upnp".parse(), Ok(NatMode::Upnp));
        assert_eq!("pmp".parse(), Ok(NatMode::Pmp));
        assert_eq!(
            "extip:203.0.113.7".parse(),
            Ok(NatMode::ExtIp("203.0.113.7".parse().expect("ip")))
        );
        assert!("extip:nowhere".parse::<NatMode>().is_err());
        assert!("stun".parse::<NatMode>().is_err());
        assert!(NatMode::Pmp.maps_ports() && !NatMode::None.maps_ports());
        assert!(!NatMode::ExtIp("203.0.113.7".parse().expect("ip")).maps_ports());
    }
}
