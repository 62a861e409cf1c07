//! Helpers for tests that run whole engines (`Node`) on loopback: start one with its network
//! listening on 127.0.0.1, upload, connect, and read a stream to the end.

#![allow(dead_code)] // each test file uses its own subset

use bytes::Bytes;
use codex_actors::{ByteStream, Cid, Config, Error, Multiaddr, NetworkConfig, Node, UploadOptions};
use futures_util::StreamExt;

/// A node on `dir` whose network listens on a free 127.0.0.1 port, configured further by `tune`.
pub async fn start(
    dir: &std::path::Path,
    tune: impl FnOnce(NetworkConfig) -> NetworkConfig,
) -> Result<Node, Error> {
    let mut network = NetworkConfig::new(dir);
    let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0"
        .parse()
        .map_err(|_| Error::Unavailable)?;
    network.net = network.net.listen_on(listen);
    Node::start_with_network(Config::new(dir), tune(network)).await
}

/// Stores `bytes` as one dataset; its manifest CID.
pub async fn upload(node: &Node, bytes: &[u8]) -> Result<Cid, Error> {
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::copy_from_slice(bytes))]);
    node.store(body, UploadOptions::default()).await
}

/// Dials `to` from `from` at its listen addresses.
pub async fn connect(from: &Node, to: &Node) -> Result<(), Error> {
    let to = to.network()?;
    from.network()?
        .connect(to.peer_id(), to.listen_addrs().await?)
        .await
}

/// `node`'s first listen address with its peer id, as `--bootstrap-node` takes it.
pub async fn address_of(node: &Node) -> Result<String, Error> {
    let network = node.network()?;
    let addr = network.listen_addrs().await?.remove(0);
    let peer = network.peer_id();
    Ok(format!("{addr}/p2p/{peer}"))
}

/// Every byte of `stream`, or its first error.
pub async fn collect(mut stream: ByteStream) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece?);
    }
    Ok(out)
}
