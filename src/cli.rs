//! Command-line flags, named as Codex names them.

use std::{net::IpAddr, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use codex_actors::network::net::{NatMode, RelayLimits};
use codex_actors::{Config, Multiaddr, NetworkConfig, DEFAULT_QUOTA_BYTES, DEFAULT_SEGMENT_BYTES};

use crate::HttpConfig;

/// A Codex-compatible storage node. Without a command it serves the REST data API; `upload`
/// and `download` talk to a running node.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// A client command; none runs the node.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of the node.
    #[command(flatten)]
    pub serve: Args,
}

/// Client commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload a file to a running node; prints the manifest CID on stdout.
    Upload {
        /// The file to upload.
        file: PathBuf,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_API)]
        api: String,
        /// Filename to record in the manifest (changes the CID).
        #[arg(long)]
        filename: Option<String>,
        /// MIME type to record in the manifest (changes the CID).
        #[arg(long)]
        mime: Option<String>,
    },
    /// Download a dataset from a running node.
    Download {
        /// The manifest CID.
        cid: String,
        /// Output file; stdout when absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Fetch what the node lacks from its peers (`network/stream`) instead of reading only
        /// its local store.
        #[arg(long)]
        network: bool,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_API)]
        api: String,
    },
    /// Ask a running node to connect to a peer.
    Connect {
        /// The peer's id (`16Uiu2…`).
        peer: String,
        /// The peer's multiaddresses; repeatable or comma-separated. Without any, the node
        /// tries the addresses it knows for the peer.
        #[arg(long, value_delimiter = ',')]
        addrs: Vec<String>,
        /// The node's API base URL.
        #[arg(long, default_value = DEFAULT_API)]
        api: String,
    },
}

/// Where the client commands look for a node.
pub const DEFAULT_API: &str = "http://127.0.0.1:8080";

/// The smallest `--segment-bytes` the engine accepts.
const MIN_SEGMENT_BYTES: u64 = 1024 * 1024; /* 1 MiB */

/// Flags of the node (Codex's names, plus `--segment-bytes`).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Repository directory (created if missing).
    #[arg(long, default_value = "codex-data")]
    pub data_dir: PathBuf,
    /// Address the REST API listens on.
    #[arg(long, default_value = "127.0.0.1")]
    pub api_bindaddr: IpAddr,
    /// Port of the REST API; 0 picks a free one (logged at start-up).
    #[arg(long, short = 'p', default_value_t = 8080)]
    pub api_port: u16,
    /// Storage quota in bytes.
    #[arg(long, short = 'q', default_value_t = DEFAULT_QUOTA_BYTES)]
    pub storage_quota: u64,
    /// Block time-to-live in seconds; 0 means blocks never expire.
    #[arg(long, short = 't', default_value_t = 30 * 24 * 60 * 60)]
    pub block_ttl: u64,
    /// Seconds between two block-maintenance (expiry) passes.
    #[arg(long = "block-mi", default_value_t = 600)]
    pub block_maintenance_interval: u64,
    /// Block records looked at per maintenance pass.
    #[arg(long = "block-mn", default_value_t = 1000)]
    pub block_maintenance_number: usize,
    /// Size in bytes at which block bytes go to a new segment file (at least 1 MiB). Smaller
    /// segments let compaction give back the space of deleted data sooner; tests use 1 MiB so
    /// that compaction runs on little data.
    #[arg(long, default_value_t = DEFAULT_SEGMENT_BYTES,
          value_parser = clap::value_parser!(u64).range(MIN_SEGMENT_BYTES..))]
    pub segment_bytes: u64,
    /// Largest total size of a request's headers in bytes (431 beyond).
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_header_bytes: usize,
    /// Largest upload body in bytes (413 beyond); the quota applies as well.
    #[arg(long, default_value_t = u64::MAX)]
    pub max_upload_bytes: u64,
    /// Multiaddresses the peer-to-peer network listens on (TCP), repeatable or comma-separated.
    /// Default: every interface, port 8070, so other nodes can reach this one; the REST API
    /// stays on loopback.
    #[arg(long, value_delimiter = ',', default_value = DEFAULT_LISTEN)]
    pub listen_addrs: Vec<Multiaddr>,
    /// Addresses to announce to peers instead of the listen addresses (e.g. a public address
    /// behind NAT), repeatable or comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub announce_addrs: Vec<Multiaddr>,
    /// Port mapping and the announced address, as Codex: `any` (map the p2p port on the router
    /// with UPnP IGD if there is one), `none`, `upnp`, `pmp` (rust-libp2p has no NAT-PMP: maps
    /// with UPnP IGD instead, and says so in the log) or `extip:IP` (announce IP with the listen
    /// port: the port is forwarded by hand). Reachability (AutoNAT), relays and hole punching
    /// run whatever this says.
    #[arg(long, default_value = "any", value_parser = parse_nat)]
    pub nat: NatMode,
    /// Relay connections for nodes behind NAT (circuit relay v2). Meant for a node with a
    /// public address; the limits below bound what it spends.
    #[arg(long)]
    pub relay_service: bool,
    /// With `--relay-service`: most nodes holding a reservation at once.
    #[arg(long, default_value_t = RelayLimits::default().max_reservations)]
    pub relay_max_reservations: usize,
    /// With `--relay-service`: most circuits relayed at once.
    #[arg(long, default_value_t = RelayLimits::default().max_circuits)]
    pub relay_max_circuits: usize,
    /// With `--relay-service`: bytes one circuit may carry (both ways) before it is ended.
    #[arg(long, default_value_t = RelayLimits::default().max_circuit_bytes)]
    pub relay_max_circuit_bytes: u64,
    /// With `--relay-service`: seconds one circuit may last.
    #[arg(long, default_value_t = RelayLimits::default().max_circuit_duration.as_secs())]
    pub relay_max_circuit_secs: u64,
    /// Most peers connected at once.
    #[arg(long, default_value_t = 160)]
    pub max_peers: u32,
    /// Most of those that peers may open to this node; the rest stay for the connections it
    /// dials (providers, `/connect`). Default: three quarters of `--max-peers`.
    #[arg(long)]
    pub max_inbound_peers: Option<u32>,
    /// Most inbound connections from one IP address.
    #[arg(long, default_value_t = 8)]
    pub max_inbound_per_ip: usize,
    /// Bytes of frames being read or queued, over all peers.
    #[arg(long, default_value_t = 64 << 20)]
    pub frame_budget: usize,
    /// Bytes of frames being read or queued that one peer may hold (at least one frame, 4 MiB).
    #[arg(long, default_value_t = 8 << 20)]
    pub peer_frame_budget: usize,
    /// Slowest rate, in bytes per second, at which a peer may send a frame once its length is
    /// announced (on top of 10 s).
    #[arg(long, default_value_t = 64 * 1024)]
    pub min_frame_rate: u64,
    /// Seconds a block asked of a peer may take once the peer stops delivering, before it is
    /// asked of another and counts against the peer.
    #[arg(long, default_value_t = 10)]
    pub peer_request_timeout: u64,
    /// Blocks one peer may ask of this node at once (its want list); more are ignored.
    #[arg(long, default_value_t = 4096)]
    pub max_peer_wants: usize,
    /// Peers whose blocks are read for sending at once.
    #[arg(long, default_value_t = 10)]
    pub serve_tasks: usize,
    /// Fewest blocks (64 KiB each) a fetch keeps asked for at once; it starts there and grows
    /// with the measured rate × round trip.
    #[arg(long, default_value_t = 256)]
    pub fetch_window_min: usize,
    /// Most blocks (64 KiB each) a fetch keeps asked for at once: the memory one fetch may hold
    /// for blocks on their way and waiting to be written (64 MiB by default).
    #[arg(long, default_value_t = 1024)]
    pub fetch_window_max: usize,
    /// Provider records kept for one other peer in the DHT.
    #[arg(long, default_value_t = 1024)]
    pub max_provider_records_per_peer: usize,
    /// Dial addresses other peers give (provider records, identify) whatever their scope.
    /// Without it, a node whose addresses are public dials no private or loopback address a
    /// stranger names, and a node on a LAN no loopback one.
    #[arg(long)]
    pub dial_any_scope: bool,
    /// The secp256k1 identity key file (libp2p protobuf encoding), created on first start with
    /// mode 0600. Default: `<data-dir>/key`.
    #[arg(long)]
    pub net_privkey: Option<PathBuf>,
    /// A node to join the network through: a multiaddress ending in `/p2p/<peerId>`, or an
    /// `spr:` record: a Codex node's (its UDP DHT address, as its `/spr` gives) joins Codex's
    /// DHT, one with a TCP address our Kademlia. Repeatable. Without one, this node is the
    /// first of a network.
    #[arg(long)]
    pub bootstrap_node: Vec<String>,
    /// UDP port of Codex's DHT, through which Codex nodes and this one find each other's data;
    /// 0 picks a free one (shown at `/debug/info`).
    #[arg(long, default_value_t = 8090)]
    pub disc_port: u16,
    /// IP address Codex's DHT binds. Default: the first specific IPv4 address of
    /// `--listen-addrs`, else every interface.
    #[arg(long)]
    pub listen_ip: Option<IpAddr>,
    /// Run without the peer-to-peer network: a single local store.
    #[arg(long)]
    pub no_network: bool,
    /// The origin (`http://host[:port]`) of a web app of your own that may use the API from its
    /// pages, with CORS answers; repeatable. Requests from any other web page are refused.
    #[arg(long, value_name = "ORIGIN", value_parser = crate::guard::parse_origin)]
    pub api_cors_origin: Vec<String>,
    /// A host name under which clients reach the API (a reverse proxy's, or the machine's name
    /// when bound to every interface), accepted on any port; repeatable. Without it only
    /// the loopback addresses, localhost and the bound address are.
    #[arg(long, value_name = "NAME", value_parser = crate::guard::parse_host_name)]
    pub api_allowed_host: Vec<String>,
    /// Do not serve the dashboard at `/` (it is then a 404).
    #[arg(long)]
    pub no_dashboard: bool,
}

/// `--nat`'s value.
fn parse_nat(text: &str) -> Result<NatMode, String> {
    text.parse()
}

/// Where the peer-to-peer network listens by default.
pub const DEFAULT_LISTEN: &str = "/ip4/0.0.0.0/tcp/8070";

impl Args {
    /// The engine configuration these flags describe.
    pub fn engine_config(&self) -> Config {
        Config {
            quota_max_bytes: self.storage_quota,
            block_ttl: Duration::from_secs(self.block_ttl),
            maintenance_interval: Duration::from_secs(self.block_maintenance_interval.max(1)),
            maintenance_batch: self.block_maintenance_number,
            segment_bytes: self.segment_bytes,
            ..Config::new(&self.data_dir)
        }
    }

    /// The network configuration these flags describe; `None` with `--no-network`.
    pub fn network_config(&self) -> Option<NetworkConfig> {
        if self.no_network {
            return None;
        }
        let mut network = NetworkConfig::new(&self.data_dir);
        if let Some(key) = &self.net_privkey {
            network.net.key_path = key.clone();
        }
        network.net.listen_addrs = self.listen_addrs.clone();
        network.net.announce_addrs = self.announce_addrs.clone();
        network.net = network.net.max_peers(self.max_peers);
        if let Some(n) = self.max_inbound_peers {
            network.net.max_inbound_peers = n;
        }
        network.net.max_inbound_per_ip = self.max_inbound_per_ip;
        network.net.max_inflight_frame_bytes = self.frame_budget;
        network.net.max_peer_frame_bytes = self.peer_frame_budget;
        network.net.min_frame_rate = self.min_frame_rate;
        network.net.dht.max_records_per_provider = self.max_provider_records_per_peer;
        network.net.dht.dial_any_scope = self.dial_any_scope;
        network.exchange.request_timeout = Duration::from_secs(self.peer_request_timeout.max(1));
        network.exchange.max_peer_wants = self.max_peer_wants;
        network.exchange.serve_tasks = self.serve_tasks.max(1);
        network.fetch_window = self.fetch_window_max.max(1);
        network.fetch_window_min = self.fetch_window_min.min(network.fetch_window);
        network.net.bootstrap = self.bootstrap_node.clone();
        network.net.nat.mode = self.nat.clone();
        if self.relay_service {
            network.net.nat.relay_service = Some(RelayLimits {
                max_reservations: self.relay_max_reservations,
                max_circuits: self.relay_max_circuits,
                max_circuit_bytes: self.relay_max_circuit_bytes,
                max_circuit_duration: Duration::from_secs(self.relay_max_circuit_secs.max(1)),
            });
        }
        let disc_ip = self
            .listen_ip
            .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        network.codex_dht = Some(std::net::SocketAddr::new(disc_ip, self.disc_port));
        Some(network)
    }

    /// The HTTP configuration these flags describe.
    pub fn http_config(&self) -> HttpConfig {
        HttpConfig {
            max_upload_bytes: self.max_upload_bytes,
            max_header_bytes: self.max_header_bytes,
            cors_origins: self.api_cors_origin.clone(),
            allowed_hosts: self.api_allowed_host.clone(),
            dashboard: !self.no_dashboard,
            ..HttpConfig::default()
        }
    }
}
