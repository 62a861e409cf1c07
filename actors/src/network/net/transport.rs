//! Builds the swarm: TCP + Noise + yamux/mplex, the behaviours block exchange needs, and the
//! Kademlia DHT.

use libp2p::connection_limits::{self, ConnectionLimits};
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{identify, kad, noise, tcp, yamux, Swarm, SwarmBuilder};

use std::sync::{atomic::AtomicU64, Arc};

use crate::network::net::dht::{self, provider_records::ProviderStore};
use crate::network::net::inbound::Inbound;
use crate::network::net::ip_limits::IpLimits;
use crate::network::net::{NetConfig, NetError};

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
/// connection).
const YAMUX_MAX_STREAMS: usize = 32;

/// Size of the mplex frames we send. rust-libp2p defaults to 8 KiB, which cuts a 1.3 MiB
/// delivery into ~170 frames; nim accepts up to 1 MiB per frame.
const MPLEX_SEND_FRAME: usize = 256 * 1024;

/// Block-exchange connections may come in pairs (each side dialling the other at once), so a
/// peer may hold two; more are refused.
const MAX_CONNECTIONS_PER_PEER: u32 = 2;

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
}

fn yamux_config() -> yamux::Config {
    let mut c = yamux::Config::default();
    c.set_max_num_streams(YAMUX_MAX_STREAMS);
    c
}

fn mplex_config() -> libp2p_mplex::Config {
    let mut c = libp2p_mplex::Config::new();
    c.set_max_num_streams(MPLEX_MAX_STREAMS)
        .set_max_buffer_size(MPLEX_MAX_BUFFERED_FRAMES)
        .set_max_buffer_behaviour(libp2p_mplex::MaxBufferBehaviour::Block)
        .set_split_send_size(MPLEX_SEND_FRAME);
    c
}

/// The swarm for `key` and `config`, not yet listening.
pub(crate) fn build(
    key: Keypair,
    config: &NetConfig,
    refused: Arc<AtomicU64>,
    inbound: Inbound,
) -> Result<Swarm<Behaviour>, NetError> {
    // Inbound connections get at most their share, so that strangers who connect first never
    // leave this node unable to dial providers or answer `/connect`.
    let inbound_cap = config.max_inbound_peers.min(config.max_peers);
    let limits = ConnectionLimits::default()
        .with_max_established(Some(config.max_peers))
        .with_max_established_incoming(Some(inbound_cap))
        .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER))
        .with_max_pending_incoming(Some(config.max_peers));
    // No signed peer record: rust-libp2p's identify would sign it with the legacy domain, and a
    // record nim cannot verify makes it drop the whole connection.
    let identify = identify::Config::new(IDENTIFY_PROTOCOL_VERSION.into(), key.public())
        .with_agent_version(config.agent_version.clone());
    let idle = config.idle_timeout;
    let kad = dht::behaviour(key.public().to_peer_id(), &config.dht);
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            // yamux first for our own peers; Codex refuses it and settles on mplex.
            (yamux_config, mplex_config),
        )
        .map_err(|e| NetError::Listen(e.to_string()))?
        .with_behaviour(|_| Behaviour {
            limits: connection_limits::Behaviour::new(limits),
            ip_limits: IpLimits::new(config.max_inbound_per_ip, refused),
            identify: identify::Behaviour::new(identify),
            stream: libp2p_stream::Behaviour::new(),
            inbound,
            kad,
        })
        .map_err(|e| NetError::Listen(e.to_string()))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}
