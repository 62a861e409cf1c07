//! The callers waiting on dials. A dial counts as a success only once the new connection's
//! peer identified itself as speaking block exchange (or kept the connection for
//! [`IDENTIFY_WAIT`] without identifying): a peer that drops the connection at once, because its
//! slots are full, or that does not speak block exchange is no success.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use tokio::sync::oneshot;

use crate::network::net::NetError;

/// How long a dial waits for the new connection's identify before calling it a success.
const IDENTIFY_WAIT: Duration = Duration::from_secs(5);

/// Where a dial's outcome goes.
pub(super) type DialReply = oneshot::Sender<Result<(), NetError>>;

/// Callers waiting for their dial, by peer.
#[derive(Default)]
pub(super) struct Dials {
    /// Dials under way, their connection not up yet.
    dialling: HashMap<PeerId, Vec<DialReply>>,
    /// Dials whose connection is up, waiting for the peer's identify since the instant given.
    identifying: HashMap<PeerId, (Instant, Vec<DialReply>)>,
}

impl Dials {
    /// A dial to `peer` started, or was under way already: `reply` hears how it ends.
    pub(super) fn wait(&mut self, peer: PeerId, reply: DialReply) {
        self.dialling.entry(peer).or_default().push(reply);
    }

    /// A connection to `peer` is up: its callers hear of it once the peer identified itself.
    pub(super) fn connected(&mut self, peer: PeerId) {
        if let Some(waiters) = self.dialling.remove(&peer) {
            let entry = self
                .identifying
                .entry(peer)
                .or_insert_with(|| (Instant::now(), Vec::new()));
            entry.1.extend(waiters);
        }
    }

    /// True while a dial to `peer` waits for its identify.
    pub(super) fn is_identifying(&self, peer: &PeerId) -> bool {
        self.identifying.contains_key(peer)
    }

    /// Peers whose identify did not come within [`IDENTIFY_WAIT`] of their connection.
    pub(super) fn late(&self, now: Instant) -> Vec<PeerId> {
        self.identifying
            .iter()
            .filter(|(_, (at, _))| now.duration_since(*at) > IDENTIFY_WAIT)
            .map(|(p, _)| *p)
            .collect()
    }

    /// Tells every caller waiting on a dial to `peer` how it ended.
    pub(super) fn finish(&mut self, peer: PeerId, result: &Result<(), NetError>) {
        let waiting = self.identifying.remove(&peer).map(|(_, w)| w);
        let dialled = self.dialling.remove(&peer);
        for waiter in waiting.into_iter().chain(dialled).flatten() {
            let _ = waiter.send(result.clone());
        }
    }
}
