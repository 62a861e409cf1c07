//! The peers this node has met on the DHT, kept across restarts so that a node rejoins the
//! network without its bootstrap peers.
//!
//! In memory it is a map from peer id to addresses and the time the peer was last seen,
//! bounded at [`MAX_PEERS`] (the oldest goes first). On disk it is one small text file,
//! most recently seen first, one peer a line:
//!
//! ```text
//! # codex-node peers v1
//! 16Uiu2HAm… 1767225600 /ip4/10.0.0.7/tcp/8070 /ip6/fd00::7/tcp/8070
//! ```
//!
//! It is a cache: a missing file is an empty book, and a line that does not parse is skipped
//! with a warning rather than stopping the node. Writes replace the file atomically (temporary
//! file, fsync, rename, fsync of the directory), so a crash leaves the old or the new list.

use std::collections::HashMap;
use std::io::{self, Read as _};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::{Multiaddr, PeerId};

use crate::net::dht::addrs::{self, MAX_ADDRS_PER_PEER};
use crate::net::identity;

/// Most peers remembered. Enough to find a live one after a long absence; small enough to
/// rewrite the whole file every time.
pub const MAX_PEERS: usize = 256;

/// Largest file read: [`MAX_PEERS`] lines of up to eight addresses fit well within it.
const MAX_FILE_BYTES: u64 = 256 * 1024;

const HEADER: &str = "# codex-node peers v1";

/// One remembered peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownPeer {
    /// The peer.
    pub peer: PeerId,
    /// Where it listened when last seen.
    pub addrs: Vec<Multiaddr>,
    /// When it was last seen, in seconds since the Unix epoch.
    pub seen: u64,
}

/// Remembered peers; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct PeerBook {
    peers: HashMap<PeerId, (Vec<Multiaddr>, u64)>,
    /// Changed since the last save.
    dirty: bool,
}

/// Seconds since the Unix epoch (0 if the clock is before it, which only costs ordering).
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl PeerBook {
    /// Records that `peer` was seen at `seen` listening on `addrs` (already filtered). An empty
    /// list keeps the addresses known before.
    pub(crate) fn saw(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, seen: u64) {
        let entry = self.peers.entry(peer).or_default();
        if !addrs.is_empty() {
            entry.0 = addrs;
        }
        entry.1 = entry.1.max(seen);
        self.dirty = true;
        if self.peers.len() > MAX_PEERS {
            let oldest = self
                .peers
                .iter()
                .min_by_key(|(_, (_, s))| *s)
                .map(|(p, _)| *p);
            if let Some(p) = oldest {
                self.peers.remove(&p);
            }
        }
    }

    /// Known addresses of `peer` (empty when unknown).
    pub(crate) fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|(a, _)| a.clone())
            .unwrap_or_default()
    }

    /// Every peer with addresses, most recently seen first.
    pub(crate) fn peers(&self) -> Vec<KnownPeer> {
        let mut all: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, (a, _))| !a.is_empty())
            .map(|(p, (a, s))| KnownPeer {
                peer: *p,
                addrs: a.clone(),
                seen: *s,
            })
            .collect();
        all.sort_by(|a, b| b.seen.cmp(&a.seen).then(a.peer.cmp(&b.peer)));
        all
    }

    /// The text to save, or `None` when nothing changed since the last call.
    pub(crate) fn take_changes(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.dirty) {
            return None;
        }
        Some(encode(&self.peers()))
    }

    /// Loads the book saved at `path`; a missing file gives an empty book.
    ///
    /// # Errors
    /// I/O errors other than the file not existing.
    pub(crate) fn load(path: &Path) -> io::Result<Self> {
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PeerBook::default()),
            Err(e) => return Err(e),
        };
        let mut text = String::new();
        file.take(MAX_FILE_BYTES).read_to_string(&mut text)?;
        let mut book = PeerBook::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match decode_line(line) {
                Some(p) => book.saw(p.peer, p.addrs, p.seen),
                None => {
                    tracing::warn!(path = %path.display(), line = n + 1, "peer store: skipping unreadable line")
                }
            }
        }
        book.dirty = false;
        Ok(book)
    }
}

/// The file text for `peers`, as [`PeerBook::take_changes`] returns it.
fn encode(peers: &[KnownPeer]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for p in peers.iter().take(MAX_PEERS) {
        out.push_str(&format!("{} {}", p.peer, p.seen));
        for a in &p.addrs {
            out.push(' ');
            out.push_str(&a.to_string());
        }
        out.push('\n');
    }
    out
}

fn decode_line(line: &str) -> Option<KnownPeer> {
    let mut words = line.split_ascii_whitespace();
    let peer: PeerId = words.next()?.parse().ok()?;
    let seen: u64 = words.next()?.parse().ok()?;
    let listed = words.filter_map(|w| w.parse::<Multiaddr>().ok());
    // Saved addresses passed the filter once; loopback ones were kept only for same-host peers.
    let addrs: Vec<_> = listed
        .filter_map(|a| addrs::tcp_dialable(&a, Some(peer)))
        .take(MAX_ADDRS_PER_PEER)
        .collect();
    (!addrs.is_empty()).then_some(KnownPeer { peer, addrs, seen })
}

/// Writes `text` to `path` atomically. Blocking: run it off the async threads.
///
/// # Errors
/// Any I/O error; the old file is then left as it was.
pub(crate) fn save(path: &Path, text: &str) -> io::Result<()> {
    identity::write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ma(s: &str) -> Multiaddr {
        s.parse().expect("multiaddr")
    }

    #[test]
    fn the_book_round_trips_through_its_file_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("peers");
        let mut book = PeerBook::load(&path).expect("missing file is empty");
        assert!(book.peers().is_empty() && book.take_changes().is_none());
        let (old, new) = (PeerId::random(), PeerId::random());
        book.saw(old, vec![ma("/ip4/10.0.0.1/tcp/1")], 100);
        book.saw(
            new,
            vec![ma("/ip4/10.0.0.2/tcp/2"), ma("/ip6/::1/tcp/3")],
            200,
        );
        book.saw(PeerId::random(), vec![], 300); // no address: not saved
        let text = book.take_changes().expect("changed");
        assert!(book.take_changes().is_none());
        save(&path, &text).expect("saved");
        let again = PeerBook::load(&path).expect("loads");
        assert_eq!(again.peers(), book.peers());
        assert_eq!(again.peers()[0].peer, new);
        assert_eq!(again.addrs(&old), vec![ma("/ip4/10.0.0.1/tcp/1")]);
    }

    #[test]
    fn the_book_is_bounded_and_skips_bad_lines() {
        let mut book = PeerBook::default();
        let first = PeerId::random();
        book.saw(first, vec![ma("/ip4/10.0.0.1/tcp/1")], 0);
        for i in 1..=MAX_PEERS as u64 {
            book.saw(PeerId::random(), vec![ma("/ip4/10.0.0.1/tcp/1")], i);
        }
        assert_eq!(book.peers().len(), MAX_PEERS);
        assert!(book.addrs(&first).is_empty(), "the oldest peer went first");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("peers");
        let good = PeerId::random();
        let text = format!(
            "{HEADER}\nnot a peer 12\n{good} 5 /ip4/10.0.0.9/tcp/9 /ip4/10.0.0.9/udp/9 junk\n{} x /ip4/1.1.1.1/tcp/1\n",
            PeerId::random()
        );
        std::fs::write(&path, text).expect("write");
        let book = PeerBook::load(&path).expect("loads what it can");
        assert_eq!(
            book.peers(),
            vec![KnownPeer {
                peer: good,
                addrs: vec![ma("/ip4/10.0.0.9/tcp/9")],
                seen: 5
            }]
        );
    }
}
