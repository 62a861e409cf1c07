//! Builds the swarm: TCP + Noise + yamux/mplex, circuit relay v2 (client, and server with
//! `--relay-service`), DCUtR, AutoNAT, UPnP, the behaviours block exchange needs, and the
//! Kademlia DHT.

use std::time::Duration;

use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{OrTransport, Transport as _};
use libp2p::core::upgrade;
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{autonat, dcutr, identify, kad, noise, ping, relay, tcp, upnp, Swarm};

use std::sync::{atomic::AtomicU64, Arc};

use crate::network::net::dht::{self, provider_records::ProviderStore};
use crate::network::net::inbound::Inbound;
use crate::network::net::ip_limits::IpLimits;
use crate::network::net::muxer::Yamux;
use crate::network::net::traffic::Unclaimed;
use crate::network::net::{NatConfig, NetConfig, NetError, RelayLimits};

/// The protocol version string in our identify message, the one nim-libp2p sends too.
const IDENTIFY_PROTOCOL_VERSION: &str = "ipfs/0.1.0";

/// mplex substreams per connection. Codex uses one block-exchange stream each way plus identify;
/// the limit only stops a peer from opening hundreds (nim allows 200 inbound).
const MPLEX_MAX_STREAMS: usize = 16;

/// Frames mplex buffers per substream before it stops reading the connection (backpressure, not
/// reset: a reset would lose a block exchange message). nim sends frames of up to 1 MiB, so
/// this bounds a connection's buffers at 16 × 4 MiB however its peer behaves.
const MPLEX_MAX_BUFFERED_FRAMES: usize = 4;

/// yamux substreams per connection (its default of 512 × a 256 KiB window each is 128 MiB a
/// connection; see [`super::muxer`] for the window they share).
const YAMUX_MAX_STREAMS: usize = 32;

/// Size of the mplex frames we send. rust-libp2p defaults to 8 KiB, which cuts a 1.3 MiB
/// delivery into ~170 frames; nim accepts up to 1 MiB per frame.
const MPLEX_SEND_FRAME: usize = 256 * 1024;

/// Bytes read from a TCP socket at once. Noise's framing (asynchronous-codec) asks its socket
/// for 8 KiB at a time, so without a buffer under it every 64 KiB Noise frame took eight `recv`
/// calls: 131,072 per GiB received (counted with `strace -c`: 133,255 `recvfrom` for a 1 GiB
/// fetch, 17,170 with this buffer). One buffer per TCP connection, and connections
/// (in handshake too) are bounded by `--max-peers`.
const TCP_READ_BUFFER: usize = 64 * 1024;

/// Block-exchange connections may come in pairs (each side dialling the other at once), and a
/// relayed one may stand beside them while a hole punch replaces it; more are refused.
const MAX_CONNECTIONS_PER_PEER: u32 = 3;

/// Time allowed for a dial and its handshakes. Without it a dial to an address that drops
/// packets (a home router's public address) would wait for the kernel's SYN retries (minutes),
/// and an AutoNAT dial-back would hold its prober that long.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How often each connection is pinged, and how long an answer may take: a connection whose
/// path died silently (a home router restarted with another address, a NAT mapping expired)
/// would otherwise look alive until something is written on it, and a relay reservation held
/// over it would be a dead end for everyone dialling us through the relay. rust-libp2p reports
/// the second failure in a row, so a dead connection is closed within 2 × (10 s + 15 s).
const PING_INTERVAL: Duration = Duration::from_secs(10);
/// See [`PING_INTERVAL`].
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// The behaviours, polled together by the swarm.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Refuses connections beyond `--max-peers`, and inbound ones beyond their share.
    pub limits: connection_limits::Behaviour,
    /// Refuses inbound connections beyond a few per remote IP.
    pub ip_limits: IpLimits,
    /// Codex runs identify on every connection and needs an answer.
    pub identify: identify::Behaviour,
    /// Outbound streams for `/codex/blockexc/1.0.0`.
    pub stream: libp2p_stream::Behaviour,
    /// Inbound streams for `/codex/blockexc/1.0.0` ([`Inbound`]: none dropped in a burst).
    pub inbound: Inbound,
    /// The provider DHT ([`dht`]).
    pub kad: kad::Behaviour<ProviderStore>,
    /// Reservations on relays and relayed connections (circuit relay v2 client).
    pub relay_client: relay::client::Behaviour,
    /// Relaying for others (`--relay-service`).
    pub relay: Toggle<relay::Behaviour>,
    /// Hole punching over a relayed connection.
    pub dcutr: dcutr::Behaviour,
    /// Whether peers can dial us back (and answering their probes).
    pub autonat: autonat::Behaviour,
    /// Port mapping on the router (`--nat any|upnp|pmp`).
    pub upnp: Toggle<upnp::tokio::Behaviour>,
    /// Liveness: a connection whose pings fail twice in a row is closed ([`PING_INTERVAL`]).
    pub ping: ping::Behaviour,
}

fn mplex_config() -> libp2p_mplex::Config {
    let mut c = libp2p_mplex::Config::new();
    c.set_max_num_streams(MPLEX_MAX_STREAMS)
        .set_max_buffer_size(MPLEX_MAX_BUFFERED_FRAMES)
        .set_max_buffer_behaviour(libp2p_mplex::MaxBufferBehaviour::Block)
        .set_split_send_size(MPLEX_SEND_FRAME);
    c
}

fn relay_server(key: &Keypair, limits: &RelayLimits) -> relay::Behaviour {
    let config = relay::Config {
        max_reservations: limits.max_reservations,
        max_circuits: limits.max_circuits,
        max_circuit_bytes: limits.max_circuit_bytes,
        max_circuit_duration: limits.max_circuit_duration,
        ..relay::Config::default()
    };
    relay::Behaviour::new(key.public().to_peer_id(), config)
}

fn autonat_config(nat: &NatConfig) -> autonat::Config {
    autonat::Config {
        boot_delay: nat.autonat_boot_delay,
        retry_interval: nat.autonat_retry_interval,
        // Dial-backs to private ranges are allowed: a LAN of nodes (or a test bed) has no
        // global address, and a prober only dials the IP it saw the asking peer come from.
        only_global_ips: false,
        ..autonat::Config::default()
    }
}

/// The swarm for `key` and `config`, not yet listening, and the counters its transport fills.
pub(crate) fn build(
    key: Keypair,
    config: &NetConfig,
    refused: Arc<AtomicU64>,
    inbound: Inbound,
) -> Result<(Swarm<Behaviour>, Unclaimed), NetError> {
    let local = key.public().to_peer_id();
    // Inbound connections get at most their share, so that strangers who connect first never
    // leave this node unable to dial providers or answer `/connect`.
    let inbound_cap = config.max_inbound_peers.min(config.max_peers);
    let limits = ConnectionLimits::default()
        .with_max_established(Some(config.max_peers))
        .with_max_established_incoming(Some(inbound_cap))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(config.max_peers));
    // No signed peer record: rust-libp2p's identify would sign it with the legacy domain, and a
    // record nim cannot verify makes it drop the whole connection. Address changes (a relay
    // reservation, a confirmed public address) are pushed at once, so that peers and their
    // DHT tables follow.
    let identify = identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
        .with_agent_version(config.agent_version.clone())
        .with_push_listen_addr_updates(true);
    let kad = dht::behaviour(local, &config.dht);

    // Relayed connections get the same Noise and muxers as TCP ones. Every connection's
    // streams are counted ([`Unclaimed`]).
    let noise = noise::Config::new(&key).map_err(|e| NetError::Listen(e.to_string()))?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .map(|socket, _| futures::io::BufReader::with_capacity(TCP_READ_BUFFER, socket));
    let (relay_transport, relay_client) = relay::client::new(local);
    let unclaimed = Unclaimed::default();
    let counting = unclaimed.clone();
    let transport = OrTransport::new(relay_transport, tcp)
        .upgrade(upgrade::Version::V1Lazy)
        .authenticate(noise)
        // yamux first for our own peers; Codex refuses it and settles on mplex.
        .multiplex(upgrade::SelectUpgrade::new(
            Yamux::new(YAMUX_MAX_STREAMS),
            mplex_config(),
        ))
        .timeout(DIAL_TIMEOUT)
        .map(move |(peer, muxer), endpoint| {
            (
                peer,
                counting.wrap(peer, &endpoint, StreamMuxerBox::new(muxer)),
            )
        })
        .boxed();

    let nat = &config.nat;
    if nat.mode == crate::network::net::NatMode::Pmp {
        tracing::warn!("rust-libp2p has no NAT-PMP: --nat pmp maps the port with UPnP IGD");
    }
    let behaviour = Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        ip_limits: IpLimits::new(config.max_inbound_per_ip, refused),
        identify: identify::Behaviour::new(identify),
        stream: libp2p_stream::Behaviour::new(),
        inbound,
        kad,
        relay_client,
        relay: Toggle::from(nat.relay_service.as_ref().map(|l| relay_server(&key, l))),
        dcutr: dcutr::Behaviour::new(local),
        autonat: autonat::Behaviour::new(local, autonat_config(nat)),
        upnp: Toggle::from(nat.mode.maps_ports().then(upnp::tokio::Behaviour::default)),
        ping: ping::Behaviour::new(
            ping::Config::new()
                .with_interval(PING_INTERVAL)
                .with_timeout(PING_TIMEOUT),
        ),
    };
    let swarm_config = libp2p::swarm::Config::with_tokio_executor()
        .with_idle_connection_timeout(config.idle_timeout);
    let swarm = Swarm::new(transport, behaviour, local, swarm_config);
    Ok((swarm, unclaimed))
}
