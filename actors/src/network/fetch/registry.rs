//! The registry of running fetches: at most one fetch per dataset, a bounded number at once.
//! `POST /network`, `network/stream` and a resumed fetch all join the same one. It is also the
//! network room's subscriber to the repository's dataset events: it passes "stored" and
//! "removed" on to the exchange (which serves and announces), and a removal, by delete or by
//! expiry, cancels the dataset's fetch.

use std::collections::{HashMap, VecDeque};

use actix::{Actor, Addr, Context, Handler, Message, MessageResult};
use cid::Cid;
use tokio::sync::watch;

use super::{CancelFetch, Fetch, FetchSetup, FetchStatus, Need};
use crate::{
    dataset_events::{DatasetEvent, RemovedBy},
    error::{Error, FetchFailure, Result},
    format::manifest::Manifest,
    network::exchange::{BlockExchange, DatasetRemoved, DatasetStored},
    repo::Repo,
};

/// Start fetching a dataset whose partial record exists (or join the fetch running for it).
/// Replies with its status channel.
#[derive(Debug, Message)]
#[rtype(result = "Result<(watch::Receiver<FetchStatus>, Addr<Fetch>)>")]
pub struct StartFetch {
    /// The manifest CID.
    pub manifest_cid: Cid,
    /// The manifest.
    pub manifest: Manifest,
    /// Blocks already stored.
    pub stored: u64,
    /// Expiry for the blocks it stores.
    pub expiry: u64,
    /// The leaf to start from (a reader's first), or `None` for a random one. Ignored when a
    /// fetch of the dataset runs already.
    pub from: Option<u64>,
}

/// Ask the running fetch of a dataset for these leaves first (if one runs).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub(crate) struct NeedLeaves {
    pub(crate) manifest_cid: Cid,
    pub(crate) indexes: Vec<u64>,
}

/// The status of every running fetch.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(Cid, FetchStatus)>")]
pub(crate) struct RunningFetches;

/// Why the last fetch of a dataset failed, if it did and no fetch of it runs now.
#[derive(Debug, Message)]
#[rtype(result = "Option<FetchFailure>")]
pub(crate) struct LastFailure {
    pub(crate) manifest_cid: Cid,
}

/// Failed fetches whose reason is kept for [`LastFailure`]: the newest ones.
const KEPT_FAILURES: usize = 64;

/// The registry actor; see the module docs.
pub struct Fetches {
    repo: Repo,
    exchange: Addr<BlockExchange>,
    /// Blocks each fetch keeps wanted at once: at most `window`, at least `window_min`.
    window: usize,
    window_min: usize,
    /// Most fetches at once.
    max: usize,
    running: HashMap<Cid, (Addr<Fetch>, watch::Receiver<FetchStatus>)>,
    /// Fetches that failed, oldest first, so that whoever started one in the background
    /// (`POST /network`) can learn why it stopped.
    failed: VecDeque<(Cid, FetchFailure)>,
}

impl Fetches {
    pub(crate) fn new(
        repo: Repo,
        exchange: Addr<BlockExchange>,
        (window_min, window): (usize, usize),
        max: usize,
    ) -> Self {
        Self {
            repo,
            exchange,
            window,
            window_min,
            max,
            running: HashMap::new(),
            failed: VecDeque::new(),
        }
    }

    /// Forgets fetches that ended, keeping the reason of those that failed.
    fn prune(&mut self) {
        let mut failed = Vec::new();
        self.running.retain(|cid, (addr, status)| {
            let status = status.borrow();
            match &*status {
                FetchStatus::Running { .. } if addr.connected() => true,
                FetchStatus::Failed { reason } => {
                    failed.push((*cid, reason.clone()));
                    false
                }
                _ => false,
            }
        });
        for (cid, reason) in failed {
            self.failed.retain(|(c, _)| *c != cid);
            if self.failed.len() >= KEPT_FAILURES {
                self.failed.pop_front();
            }
            self.failed.push_back((cid, reason));
        }
    }
}

impl Actor for Fetches {
    type Context = Context<Self>;
}

impl Handler<StartFetch> for Fetches {
    type Result = Result<(watch::Receiver<FetchStatus>, Addr<Fetch>)>;
    fn handle(&mut self, msg: StartFetch, _: &mut Self::Context) -> Self::Result {
        self.prune();
        if let Some((addr, status)) = self.running.get(&msg.manifest_cid) {
            return Ok((status.clone(), addr.clone()));
        }
        if self.running.len() >= self.max {
            return Err(Error::TooManyFetches { running: self.max });
        }
        self.failed.retain(|(c, _)| *c != msg.manifest_cid);
        let total = msg.manifest.blocks_count();
        let (tx, rx) = watch::channel(FetchStatus::Running {
            stored: msg.stored,
            total,
        });
        let fetch = Fetch::new(FetchSetup {
            repo: self.repo.clone(),
            exchange: self.exchange.clone(),
            manifest_cid: msg.manifest_cid,
            manifest: msg.manifest,
            stored: msg.stored,
            window: self.window,
            window_min: self.window_min,
            expiry: msg.expiry,
            status: tx,
            from: msg.from,
        })
        .start();
        self.running
            .insert(msg.manifest_cid, (fetch.clone(), rx.clone()));
        Ok((rx, fetch))
    }
}

impl Handler<NeedLeaves> for Fetches {
    type Result = ();
    fn handle(&mut self, msg: NeedLeaves, _: &mut Self::Context) {
        if let Some((addr, _)) = self.running.get(&msg.manifest_cid) {
            addr.do_send(Need {
                indexes: msg.indexes,
            });
        }
    }
}

impl Handler<DatasetEvent> for Fetches {
    type Result = ();
    fn handle(&mut self, event: DatasetEvent, _: &mut Self::Context) {
        match event {
            DatasetEvent::Stored { manifest, tree } => {
                self.exchange.do_send(DatasetStored { manifest, tree });
            }
            DatasetEvent::Removed { manifest, by } => {
                if let Some((addr, _)) = self.running.remove(&manifest) {
                    let reason = match by {
                        RemovedBy::Delete => FetchFailure::Deleted,
                        RemovedBy::Expiry => FetchFailure::Expired,
                    };
                    addr.do_send(CancelFetch { reason });
                }
                self.exchange.do_send(DatasetRemoved { manifest });
            }
        }
    }
}

impl Handler<RunningFetches> for Fetches {
    type Result = MessageResult<RunningFetches>;
    fn handle(&mut self, _: RunningFetches, _: &mut Self::Context) -> Self::Result {
        self.prune();
        MessageResult(
            self.running
                .iter()
                .map(|(cid, (_, status))| (*cid, status.borrow().clone()))
                .collect(),
        )
    }
}

impl Handler<LastFailure> for Fetches {
    type Result = Option<FetchFailure>;
    fn handle(&mut self, msg: LastFailure, _: &mut Self::Context) -> Self::Result {
        self.prune();
        if self.running.contains_key(&msg.manifest_cid) {
            return None;
        }
        self.failed
            .iter()
            .find(|(c, _)| *c == msg.manifest_cid)
            .map(|(_, reason)| reason.clone())
    }
}
