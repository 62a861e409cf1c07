//! The fetch actor: one per dataset being fetched from peers. It keeps a bounded window of the
//! dataset's missing leaves wanted at the block exchange, and stores what arrives the way an
//! upload stores its blocks: bytes written and synced first, then the records (a leaf record
//! each, the proof's tree nodes, quota moved from the dataset's reservation), so a power cut
//! never leaves a record pointing at bytes that were not on disk. Progress is published on a
//! watch channel; readers streaming the dataset ask for the leaves they need next ([`Need`]),
//! which go to the front of the window.
//!
//! A block from a peer to disk, by file names: `net/reader.rs` (frames) → `exchange/receive.rs`
//! (checks) → `fetch/mod.rs` (this file: batching) → `fetch/store.rs` (write, sync, record) →
//! `block_store.rs` / `segments/` (bytes) and `meta_store/fetching.rs` (records).
//!
//! It stops when the dataset is complete, when a block cannot be had (the status says why),
//! or on [`CancelFetch`] (its dataset deleted or expired); the registry (`registry.rs`) forgets it then.

mod bitmap;
mod registry;
mod store;
pub(crate) mod stream;
pub(crate) mod window;

use std::{
    collections::{HashMap, VecDeque},
    time::Instant,
};

use actix::{
    Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message,
    MessageResult, StreamHandler, WrapFuture,
};
use bytes::Bytes;
use cid::Cid;
use tokio::sync::{mpsc, watch};

use bitmap::Bitmap;
pub use registry::{Fetches, StartFetch};
pub(crate) use registry::{LastFailure, NeedLeaves, RunningFetches};
use window::Window;

use crate::{
    error::{Error, FetchFailure},
    format::{blockexc::BlockAddress, manifest::Manifest, merkle::CodexProof},
    meta_reader::MissingLeaves,
    network::exchange::{BlockExchange, Delivery, Unwant, Want},
    repo::Repo,
};

/// Leaf indexes looked up per query for the next missing ones.
const SCAN: u64 = 1024;
/// Most blocks kept for readers ([`Recent`]) however large the window grows: 16 MiB, what a
/// reader streaming at loopback speed takes from here.
const RECENT: usize = 256;

/// Where a fetch stands; published on its watch channel.
#[derive(Debug, Clone)]
pub enum FetchStatus {
    /// Running: `stored` of `total` blocks are here.
    Running {
        /// Blocks stored locally.
        stored: u64,
        /// Blocks in the dataset.
        total: u64,
    },
    /// Every block is stored: the dataset is complete.
    Complete {
        /// Blocks in the dataset.
        total: u64,
    },
    /// The fetch stopped before the end; the blocks it stored stay (a later fetch resumes)
    /// unless its dataset went.
    Failed {
        /// Why.
        reason: FetchFailure,
    },
}

/// Fetch these leaves first (a reader is waiting for them).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Need {
    /// Leaf indexes.
    pub indexes: Vec<u64>,
}

/// The bytes of leaves `index`, `index + 1`, … (at most `max`, stopping at the first one not
/// held) that this fetch stored a moment ago: a reader streaming the dataset takes them from
/// here instead of reading them back and hashing them again, many per message.
#[derive(Debug, Message)]
#[rtype(result = "Vec<Bytes>")]
pub struct Recent {
    /// The first leaf index.
    pub index: u64,
    /// The most leaves wanted.
    pub max: usize,
}

/// Stop fetching: the dataset is being deleted, or expired.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CancelFetch {
    /// Why, as the fetch's status will say.
    pub reason: FetchFailure,
}

/// What one fetch needs to run.
pub(crate) struct FetchSetup {
    pub(crate) repo: Repo,
    pub(crate) exchange: Addr<BlockExchange>,
    pub(crate) manifest_cid: Cid,
    pub(crate) manifest: Manifest,
    pub(crate) stored: u64,
    /// Blocks kept wanted at once: at least `window_min`, at most `window` ([`Window`]).
    pub(crate) window: usize,
    pub(crate) window_min: usize,
    pub(crate) expiry: u64,
    pub(crate) status: watch::Sender<FetchStatus>,
    /// The leaf to fetch from first: where a reader starts, or `None` for a random leaf.
    pub(crate) from: Option<u64>,
}

/// The fetch actor; see the module docs.
pub struct Fetch {
    setup: FetchSetup,
    /// Given to the exchange: deliveries for our wants.
    sink: mpsc::Sender<Delivery>,
    /// Taken in `started` to become this actor's stream.
    deliveries: Option<mpsc::Receiver<Delivery>>,
    /// Where the scan for missing leaves started: where a reader starts when a stream started
    /// the fetch (so the blocks it reads next arrive first and are taken from `recent`), else a
    /// random leaf, so that downloaders of the same dataset hold different blocks early and can
    /// serve each other.
    start_at: u64,
    /// Leaves scanned so far, from `start_at` on, wrapping around.
    scanned: u64,
    /// Missing leaves found by the last scan, in order.
    candidates: VecDeque<u64>,
    /// A scan for missing leaves is running.
    scanning: bool,
    /// Leaves readers wait for.
    urgent: VecDeque<u64>,
    /// Leaves wanted at the exchange, with when.
    in_flight: HashMap<u64, Instant>,
    /// How many leaves to keep wanted at once, from the measured rate and latency.
    window: Window,
    /// Every leaf this fetch ever wanted, one bit each (40 KiB for 20 GiB of 64 KiB blocks): a
    /// want ends in a delivery or in the fetch's failure, so no leaf is wanted twice, whichever
    /// way it came (in order, for a reader, or both).
    wanted: Bitmap,
    /// Received, verified, waiting to be written.
    received: Vec<(u64, Cid, Bytes, CodexProof)>,
    /// A write batch is running.
    writing: bool,
    /// Blocks stored so far.
    stored: u64,
    /// The last blocks stored, for readers streaming the dataset ([`Recent`]); at most the
    /// window's worth, and at most [`RECENT`] (a reader that keeps up finds every block here;
    /// one that falls behind reads the rest back from the store), so memory stays bounded.
    recent: VecDeque<(u64, Bytes)>,
}

impl Fetch {
    pub(crate) fn new(setup: FetchSetup) -> Self {
        let (sink, deliveries) = mpsc::channel(setup.window.max(1) * 2);
        let stored = setup.stored;
        let setup_total = setup.manifest.blocks_count();
        let total = setup_total.max(1);
        let from = setup.from;
        let window = Window::new(setup.window_min, setup.window);
        let seed = std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            setup.manifest_cid.to_bytes(),
        );
        Self {
            setup,
            sink,
            deliveries: Some(deliveries),
            start_at: from.map_or(seed % total, |f| f.min(total - 1)),
            scanned: 0,
            candidates: VecDeque::new(),
            scanning: false,
            urgent: VecDeque::new(),
            in_flight: HashMap::new(),
            window,
            wanted: Bitmap::new(setup_total),
            received: Vec::new(),
            writing: false,
            stored,
            recent: VecDeque::new(),
        }
    }

    fn address(&self, index: u64) -> BlockAddress {
        BlockAddress::Leaf {
            tree: self.setup.manifest.tree_cid,
            index,
        }
    }

    fn total(&self) -> u64 {
        self.setup.manifest.blocks_count()
    }

    /// Wants more leaves: the ones readers wait for at once (they are few: a reader's read
    /// ahead), then candidates while the window has room.
    fn refill(&mut self, ctx: &mut Context<Self>) {
        let mut wanted = Vec::new();
        let now = Instant::now();
        while let Some(next) = self.urgent.pop_front() {
            if self.wanted.insert(next) {
                self.in_flight.insert(next, now);
                wanted.push(self.address(next));
            }
        }
        let room = self
            .window
            .size()
            .saturating_sub(self.in_flight.len() + self.received.len());
        let mut taken = 0;
        while taken < room {
            let Some(next) = self.candidates.pop_front() else {
                break;
            };
            if self.wanted.insert(next) {
                self.in_flight.insert(next, now);
                wanted.push(self.address(next));
                taken += 1;
            }
        }
        if !wanted.is_empty() {
            let want = Want {
                addresses: wanted,
                sink: self.sink.clone(),
            };
            let exchange = self.setup.exchange.clone();
            ctx.spawn(
                async move { exchange.send(want).await }
                    .into_actor(self)
                    .map(|sent, act, ctx| {
                        if sent.is_err() {
                            act.fail(FetchFailure::Stopped, ctx);
                        }
                    }),
            );
        }
        if self.candidates.is_empty() && !self.scanning && self.scanned < self.total() {
            self.scan(ctx);
        }
    }

    /// Finds the next missing leaves in order (some may be stored already: shared blocks, a
    /// resumed fetch, a reader's urgent leaves).
    fn scan(&mut self, ctx: &mut Context<Self>) {
        self.scanning = true;
        let total = self.total();
        let start = (self.start_at + self.scanned) % total;
        // Up to the end of the dataset; the next scan wraps around to its start.
        let count = SCAN.min(total - self.scanned).min(total - start);
        self.scanned += count;
        let reader = self.setup.repo.reader.clone();
        let tree = self.setup.manifest.tree_cid;
        ctx.spawn(
            async move { reader.send(MissingLeaves { tree, start, count }).await }
                .into_actor(self)
                .map(|found, act, ctx| {
                    act.scanning = false;
                    match found {
                        Ok(Ok(missing)) => {
                            let skip = |i: &u64| act.wanted.contains(*i);
                            act.candidates
                                .extend(missing.into_iter().filter(|i| !skip(i)));
                            act.refill(ctx);
                        }
                        Ok(Err(e)) => act.fail(FetchFailure::Store(Box::new(e)), ctx),
                        Err(_) => act.fail(FetchFailure::Stopped, ctx),
                    }
                }),
        );
    }

    /// Writes what was received, if no write is running (one batch at a time keeps the order
    /// of syncs and records simple).
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.received.is_empty() {
            return;
        }
        self.writing = true;
        let batch = std::mem::take(&mut self.received);
        let job = store::Job {
            repo: self.setup.repo.clone(),
            manifest: self.setup.manifest_cid,
            expiry: self.setup.expiry,
            blocks: batch,
        };
        let started = Instant::now();
        ctx.spawn(job.run().into_actor(self).map(move |result, act, ctx| {
            act.writing = false;
            // The batch kept its places in the window while it was written.
            act.window.held(started.elapsed());
            match result {
                Ok(outcome) => {
                    act.stored = outcome.stored;
                    let exchange = act.setup.exchange.clone();
                    exchange.do_send(crate::network::exchange::Resolve::Addresses(
                        outcome
                            .blocks
                            .iter()
                            .map(|(i, _)| act.address(*i))
                            .collect(),
                    ));
                    act.recent.extend(outcome.blocks);
                    // Refused leaves were never recorded: want them again, first.
                    for index in outcome.refused {
                        act.wanted.remove(index);
                        act.urgent.push_back(index);
                    }
                    while act.recent.len() > act.window.size().min(RECENT) {
                        act.recent.pop_front();
                    }
                    if outcome.completed {
                        act.complete(ctx);
                        return;
                    }
                    act.publish();
                    act.refill(ctx);
                    act.flush(ctx);
                }
                // The dataset's record went (deleted or expired) while the batch was on its
                // way: its removal, not a failure of the fetch.
                Err(Error::NotFound(cid)) if cid == act.setup.manifest_cid => {
                    act.fail(FetchFailure::Removed, ctx);
                }
                Err(e) => act.fail(FetchFailure::Store(Box::new(e)), ctx),
            }
        }));
    }

    fn publish(&self) {
        let _ = self.setup.status.send(FetchStatus::Running {
            stored: self.stored,
            total: self.total(),
        });
    }

    fn complete(&mut self, ctx: &mut Context<Self>) {
        let total = self.total();
        tracing::info!(cid = %crate::cid_text(&self.setup.manifest_cid), blocks = total,
            window = self.window.largest(), "dataset fetched");
        self.setup
            .exchange
            .do_send(crate::network::exchange::Resolve::Tree(
                self.setup.manifest.tree_cid,
            ));
        let _ = self.setup.status.send(FetchStatus::Complete { total });
        ctx.stop();
    }

    fn fail(&mut self, reason: FetchFailure, ctx: &mut Context<Self>) {
        tracing::warn!(cid = %crate::cid_text(&self.setup.manifest_cid), %reason, "fetch stopped");
        let _ = self.setup.status.send(FetchStatus::Failed { reason });
        ctx.stop();
    }
}

impl Actor for Fetch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(rx) = self.deliveries.take() {
            ctx.add_stream(futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|d| (d, rx))
            }));
        }
        self.publish();
        self.refill(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // Whatever is still wanted goes back to nobody.
        let addresses: Vec<BlockAddress> =
            self.in_flight.keys().map(|i| self.address(*i)).collect();
        if !addresses.is_empty() {
            self.setup.exchange.do_send(Unwant {
                addresses,
                sink: self.sink.clone(),
            });
        }
    }
}

impl StreamHandler<Delivery> for Fetch {
    fn handle(&mut self, delivery: Delivery, ctx: &mut Self::Context) {
        match delivery {
            Delivery::Block {
                address: BlockAddress::Leaf { index, .. },
                cid,
                data,
                proof: Some(proof),
            } => {
                if let Some(asked) = self.in_flight.remove(&index) {
                    self.window.delivered(Instant::now(), asked.elapsed());
                    self.received.push((index, cid, data, proof));
                }
            }
            Delivery::Failed {
                address,
                relay_limit: None,
            } => self.fail(FetchFailure::NoPeer(address), ctx),
            Delivery::Failed {
                address,
                relay_limit: Some(reason),
            } => {
                let address = Box::new(address);
                self.fail(FetchFailure::RelayLimit { address, reason }, ctx)
            }
            // Not ours or already had: nothing to do.
            Delivery::Block { .. } => {}
        }
        // Whatever arrived while a write ran goes in the next one: batches grow with the rate,
        // one segment sync and one metadata batch each.
        self.flush(ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {}
}

impl Handler<Need> for Fetch {
    type Result = ();
    fn handle(&mut self, msg: Need, ctx: &mut Self::Context) {
        for i in msg.indexes {
            if i < self.total() && !self.wanted.contains(i) && !self.urgent.contains(&i) {
                self.urgent.push_back(i);
            }
        }
        self.refill(ctx);
    }
}

impl Handler<Recent> for Fetch {
    type Result = MessageResult<Recent>;
    fn handle(&mut self, msg: Recent, _: &mut Self::Context) -> Self::Result {
        // The ring is in storing order, not leaf order: place what falls in the range, then
        // take the run that starts at `index`.
        let max = msg.max.min(self.recent.len());
        let mut slots: Vec<Option<Bytes>> = vec![None; max];
        for (i, bytes) in &self.recent {
            if let Some(slot) = i
                .checked_sub(msg.index)
                .and_then(|k| usize::try_from(k).ok())
                .and_then(|k| slots.get_mut(k))
            {
                *slot = Some(bytes.clone());
            }
        }
        MessageResult(slots.into_iter().map_while(|b| b).collect())
    }
}

impl Handler<CancelFetch> for Fetch {
    type Result = ();
    fn handle(&mut self, msg: CancelFetch, ctx: &mut Self::Context) {
        tracing::info!(cid = %crate::cid_text(&self.setup.manifest_cid), reason = %msg.reason, "fetch stopped");
        let _ = self
            .setup
            .status
            .send(FetchStatus::Failed { reason: msg.reason });
        ctx.stop();
    }
}
