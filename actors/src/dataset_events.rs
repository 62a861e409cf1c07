//! What happens to datasets, said by one voice: the repository's sequences (`repo.rs`) are the
//! only senders of [`DatasetEvent`]s (an upload committed, a fetch begun, a delete, an expiry
//! step), and whoever serves datasets to others, the network room, subscribes. Before, uploads,
//! maintenance and three places in the node handle each told the exchange by hand, and only the
//! node's delete remembered to stop a fetch first: expiry removed a dataset under its running
//! fetch.

use std::sync::{Arc, OnceLock};

use actix::{Message, Recipient};
use cid::Cid;

/// Why a dataset went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedBy {
    /// A user's delete.
    Delete,
    /// Its lifetime ran out (a maintenance step, or [`crate::Node::expire`]).
    Expiry,
}

/// Something that happened to a dataset. Sent with `send` and awaited: a subscriber has acted on
/// it when the sequence that sent it goes on.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum DatasetEvent {
    /// Committed by an upload (durably), or begun by a fetch: its blocks can be served, and it
    /// can be announced.
    Stored {
        /// The manifest CID.
        manifest: Cid,
        /// Its tree CID.
        tree: Cid,
    },
    /// Removed. A delete tells this before its first step, so that a fetch of the dataset
    /// stops before anything of it goes; an expiry step decides inside the metadata actor and
    /// tells it once the step is durable (a fetch that stores into the removed dataset meanwhile
    /// is refused, and stops for the same reason).
    Removed {
        /// The manifest CID.
        manifest: Cid,
        /// Delete or expiry.
        by: RemovedBy,
    },
}

/// The one subscriber, set once the network room runs. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct Subscriber(Arc<OnceLock<Recipient<DatasetEvent>>>);

impl Subscriber {
    /// Subscribes `to`; a second subscription is refused (there is one network room).
    pub(crate) fn set(&self, to: Recipient<DatasetEvent>) -> bool {
        self.0.set(to).is_ok()
    }

    /// Tells the subscriber, if any, and waits until it has handled the event. A subscriber
    /// that stopped (the network shut down) is no error: nobody is left to serve the dataset.
    pub(crate) async fn tell(&self, event: DatasetEvent) {
        if let Some(to) = self.0.get() {
            let _ = to.send(event).await;
        }
    }
}
