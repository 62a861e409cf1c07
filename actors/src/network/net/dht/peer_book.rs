//! The peers this node has met on the DHT, kept across restarts so that a node rejoins the
//! network without its bootstrap peers.
//!
//! In memory it is a map from peer id to addresses, the time the peer was last seen and how
//! many times it was seen (once per identify), bounded at [`MAX_PEERS`]. When full, the peer
//! seen the fewest times goes first (the oldest among those), and bootstrap peers never: a
//! stranger who makes 256 identities and connects each once replaces only its own kind, not
//! the peers this node has met again and again. On disk it is one small text file, most
//! recently seen first, one peer a line (the sighting count is optional, for files written
//! before it existed):
//!
//! ```text
//! # codex-node peers v1
//! 16Uiu2HAm… 1767225600 12 /ip4/10.0.0.7/tcp/8070 /ip6/fd00::7/tcp/8070
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

use crate::network::net::dht::addrs::{self, MAX_ADDRS_PER_PEER};
use crate::network::net::identity;

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
    /// How many times it was seen (capped).
    pub sightings: u32,
}

/// One peer in the book.
#[derive(Debug, Default)]
struct Entry {
    addrs: Vec<Multiaddr>,
    seen: u64,
    sightings: u32,
}

/// Sightings counted at most (a peer seen this often is as good as any).
const MAX_SIGHTINGS: u32 = 1000;

/// Remembered peers; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct PeerBook {
    peers: HashMap<PeerId, Entry>,
    /// Never evicted (bootstrap peers).
    pinned: std::collections::HashSet<PeerId>,
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
        self.saw_times(peer, addrs, seen, 1);
    }

    fn saw_times(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, seen: u64, times: u32) {
        let entry = self.peers.entry(peer).or_default();
        if !addrs.is_empty() {
            entry.addrs = addrs;
        }
        entry.seen = entry.seen.max(seen);
        entry.sightings = entry.sightings.saturating_add(times).min(MAX_SIGHTINGS);
        self.dirty = true;
        if self.peers.len() > MAX_PEERS {
            // The least proven peer goes (never the one just seen, never a pinned one).
            let weakest = self
                .peers
                .iter()
                .filter(|(p, _)| **p != peer && !self.pinned.contains(*p))
                .min_by_key(|(_, e)| (e.sightings, e.seen))
                .map(|(p, _)| *p);
            if let Some(p) = weakest {
                self.peers.remove(&p);
            }
        }
    }

    /// Keeps `peer` in the book whatever comes (a bootstrap peer).
    pub(crate) fn pin(&mut self, peer: PeerId) {
        self.pinned.insert(peer);
    }

    /// Known addresses of `peer` (empty when unknown).
    pub(crate) fn addrs(&self, peer: &PeerId) -> Vec<Multiaddr> {
        self.peers
            .get(peer)
            .map(|e| e.addrs.clone())
            .unwrap_or_default()
    }

    /// Every peer with addresses, most recently seen first.
    pub(crate) fn peers(&self) -> Vec<KnownPeer> {
        let mut all: Vec<_> = self
            .peers
            .iter()
            .filter(|(_, e)| !e.addrs.is_empty())
            .map(|(p, e)| KnownPeer {
                peer: *p,
                addrs: e.addrs.clone(),
                seen: e.seen,
                sightings: e.sightings,
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
                Some(p) => book.saw_times(p.peer, p.addrs, p.seen, p.sightings),
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
        out.push_str(&format!("{} {} {}", p.peer, p.seen, p.sightings));
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
    let mut words = words.peekable();
    // Files written before the count existed go straight on to the addresses.
    let sightings = match words.peek().and_then(|w| w.parse::<u32>().ok()) {
        Some(n) => {
            words.next();
            n.clamp(1, MAX_SIGHTINGS)
        }
        None => 1,
    };
    let listed = words.filter_map(|w| w.parse::<Multiaddr>().ok());
    // Saved addresses passed the filter once; loopback ones were kept only for same-host peers.
    let addrs: Vec<_> = listed
        .filter_map(|a| addrs::tcp_dialable(&a, Some(peer)))
        .take(MAX_ADDRS_PER_PEER)
        .collect();
    (!addrs.is_empty()).then_some(KnownPeer {
        peer,
        addrs,
        seen,
        sightings,
    })
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
                seen: 5,
                sightings: 1,
            }]
        );
    }

    #[test]
    fn a_flood_of_new_identities_does_not_flush_proven_or_pinned_peers() {
        let mut book = PeerBook::default();
        let (proven, boot) = (PeerId::random(), PeerId::random());
        book.pin(boot);
        book.saw(boot, vec![ma("/ip4/10.0.0.1/tcp/1")], 0);
        for t in 0..5 {
            book.saw(proven, vec![ma("/ip4/10.0.0.2/tcp/2")], t);
        }
        // 1000 identities, each seen once, each newer than both.
        for i in 0..1000u64 {
            book.saw(PeerId::random(), vec![ma("/ip4/10.6.6.6/tcp/6")], 100 + i);
        }
        assert_eq!(book.peers().len(), MAX_PEERS);
        assert!(!book.addrs(&proven).is_empty(), "seen five times: kept");
        assert!(!book.addrs(&boot).is_empty(), "pinned: kept");
        // The count survives a save and a load.
        let text = encode(&book.peers());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("peers");
        save(&path, &text).expect("saved");
        let again = PeerBook::load(&path).expect("loads");
        let p = again.peers().into_iter().find(|p| p.peer == proven);
        assert_eq!(p.map(|p| p.sightings), Some(5));
    }
}
