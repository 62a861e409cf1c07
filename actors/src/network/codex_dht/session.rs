//! Session state: the keys agreed with each peer, the WHOAREYOU challenges we issued, and the
//! packets we sent that may still be answered by a WHOAREYOU. Everything is bounded and
//! expires.
//!
//! A session is keyed by node id *and* socket address, as in codex-dht: the same node seen
//! from another address must handshake again. When a new handshake replaces a session, the
//! old read key is kept as a fallback, because packets sealed with it may still be in flight
//! (codex-dht keeps two read keys for the same reason).
//!
//! Replay protection: an ordinary message is accepted once per nonce; each session remembers
//! the last [`REPLAY_WINDOW`] nonces it accepted. A handshake answers exactly one challenge,
//! which is removed when used, so a replayed handshake finds none.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use libp2p::identity::secp256k1;

use super::crypto::{KEY_LEN, NONCE_LEN};
use super::node_id::NodeId;

/// Nonces remembered per session for replay detection. Nonces are random, so a window this
/// size holds the last seconds of traffic of even a busy peer.
pub const REPLAY_WINDOW: usize = 128;

/// Who a session or challenge is with.
pub type PeerKey = (NodeId, SocketAddr);

/// The keys of one session.
#[derive(Clone)]
pub struct Session {
    /// Seals what we send.
    pub write: [u8; KEY_LEN],
    /// Opens what the peer sends.
    pub read: [u8; KEY_LEN],
    /// The read key of the session this one replaced.
    pub previous_read: Option<[u8; KEY_LEN]>,
    seen: VecDeque<[u8; NONCE_LEN]>,
    last_used: u64,
}

impl Session {
    /// Records `nonce`; false if it was already accepted (a replay).
    pub fn accept_nonce(&mut self, nonce: &[u8; NONCE_LEN]) -> bool {
        if self.seen.contains(nonce) {
            return false;
        }
        if self.seen.len() == REPLAY_WINDOW {
            self.seen.pop_front();
        }
        self.seen.push_back(*nonce);
        true
    }
}

/// Sessions, least recently used evicted beyond the capacity.
pub struct Sessions {
    map: HashMap<PeerKey, Session>,
    capacity: usize,
    clock: u64,
}

impl Sessions {
    /// An empty cache for at most `capacity` sessions (at least 1).
    pub fn new(capacity: usize) -> Self {
        Sessions {
            map: HashMap::new(),
            capacity: capacity.max(1),
            clock: 0,
        }
    }

    /// Stores a new session's keys, keeping the replaced session's read key as a fallback.
    pub fn insert(&mut self, peer: PeerKey, read: [u8; KEY_LEN], write: [u8; KEY_LEN]) {
        self.clock += 1;
        let previous_read = self.map.get(&peer).map(|s| s.read);
        if previous_read.is_none() && self.map.len() >= self.capacity {
            // O(n) only when full, and n is bounded by the capacity.
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(k, _)| *k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(
            peer,
            Session {
                write,
                read,
                previous_read,
                seen: VecDeque::new(),
                last_used: self.clock,
            },
        );
    }

    /// The session with `peer`, marked as used.
    pub fn get_mut(&mut self, peer: &PeerKey) -> Option<&mut Session> {
        self.clock += 1;
        let clock = self.clock;
        let session = self.map.get_mut(peer)?;
        session.last_used = clock;
        Some(session)
    }

    /// Whether there is a session with `peer`.
    pub fn contains(&self, peer: &PeerKey) -> bool {
        self.map.contains_key(peer)
    }

    /// Forgets the session with `peer`.
    pub fn remove(&mut self, peer: &PeerKey) {
        self.map.remove(peer);
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A WHOAREYOU we sent and the handshake we expect in return.
#[derive(Clone)]
pub struct Challenge {
    /// masking-iv ‖ header of our WHOAREYOU: the HKDF salt and part of the signed proof.
    pub data: Vec<u8>,
    /// The peer's key if we knew its record (then it need not send one).
    pub known_key: Option<secp256k1::PublicKey>,
    /// After this the handshake is refused.
    pub expires: Instant,
}

/// Pending challenges: at most one per peer, at most `capacity` in all.
pub struct Challenges {
    map: HashMap<PeerKey, Challenge>,
    capacity: usize,
}

impl Challenges {
    /// An empty table.
    pub fn new(capacity: usize) -> Self {
        Challenges {
            map: HashMap::new(),
            capacity,
        }
    }

    /// Whether a live challenge to `peer` is pending (then no second WHOAREYOU is sent, as in
    /// codex-dht: it would invalidate the first).
    pub fn pending(&self, peer: &PeerKey, now: Instant) -> bool {
        self.map.get(peer).is_some_and(|c| c.expires > now)
    }

    /// Stores a challenge; false when the table is full of live ones.
    pub fn insert(&mut self, peer: PeerKey, challenge: Challenge, now: Instant) -> bool {
        if self.map.len() >= self.capacity {
            self.sweep(now);
            if self.map.len() >= self.capacity {
                return false;
            }
        }
        self.map.insert(peer, challenge);
        true
    }

    /// Removes and returns the live challenge to `peer`: each is answered at most once.
    pub fn take(&mut self, peer: &PeerKey, now: Instant) -> Option<Challenge> {
        self.map.remove(peer).filter(|c| c.expires > now)
    }

    /// Drops expired challenges.
    pub fn sweep(&mut self, now: Instant) {
        self.map.retain(|_, c| c.expires > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn peer(n: u8) -> PeerKey {
        (
            NodeId([n; 32]),
            SocketAddr::from(([127, 0, 0, 1], 9000 + u16::from(n))),
        )
    }

    #[test]
    fn least_recently_used_session_goes_first() {
        let mut s = Sessions::new(2);
        s.insert(peer(1), [1; 16], [1; 16]);
        s.insert(peer(2), [2; 16], [2; 16]);
        assert!(s.get_mut(&peer(1)).is_some());
        s.insert(peer(3), [3; 16], [3; 16]);
        assert!(s.contains(&peer(1)) && s.contains(&peer(3)) && !s.contains(&peer(2)));
        // A new handshake with a known peer keeps the old read key.
        s.insert(peer(1), [9; 16], [9; 16]);
        assert_eq!(s.get_mut(&peer(1)).unwrap().previous_read, Some([1; 16]));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_nonce_is_accepted_once() {
        let mut s = Sessions::new(4);
        s.insert(peer(1), [1; 16], [1; 16]);
        let session = s.get_mut(&peer(1)).unwrap();
        assert!(session.accept_nonce(&[5; 12]));
        assert!(!session.accept_nonce(&[5; 12]));
        for i in 0..REPLAY_WINDOW {
            assert!(session.accept_nonce(&[
                (i % 250) as u8,
                (i / 250) as u8,
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0
            ]));
        }
        // Pushed out of the window: accepted again (the window is a bound, not a promise).
        assert!(session.accept_nonce(&[5; 12]));
    }

    #[test]
    fn challenges_are_single_use_bounded_and_expire() {
        let now = Instant::now();
        let ch = |secs| Challenge {
            data: vec![1],
            known_key: None,
            expires: now + Duration::from_secs(secs),
        };
        let mut c = Challenges::new(2);
        assert!(c.insert(peer(1), ch(1), now));
        assert!(c.pending(&peer(1), now));
        assert!(c.insert(peer(2), ch(0), now));
        assert!(c.insert(peer(3), ch(1), now), "the expired one is swept");
        assert!(!c.insert(peer(4), ch(1), now));
        assert!(c.take(&peer(1), now).is_some());
        assert!(c.take(&peer(1), now).is_none());
        assert!(c.take(&peer(3), now + Duration::from_secs(2)).is_none());
    }
}
