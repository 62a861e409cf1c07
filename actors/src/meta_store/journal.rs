//! The journal syncer: makes committed metadata durable, off the metadata actor's thread.
//!
//! The metadata actor commits batches to fjall's journal without waiting for the disk and
//! counts them. [`SyncMeta`] fsyncs the journal unless every batch committed before it is
//! already durable: concurrent uploads and deletes share one fsync (group commit), and the
//! writer keeps applying messages while the disk works.
//!
//! Why this is enough: fjall appends every batch to one journal in commit order, fsyncs a
//! journal before rotating to the next one, and keeps a journal until its data is in synced
//! tables. So a persist after batch N makes batches 1..=N durable.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use actix::{Actor, Handler, Message, SyncContext};
use fjall::{Database, PersistMode};

use crate::error::Result;

/// Make every metadata batch committed before this message durable.
#[derive(Debug, Message)]
#[rtype(result = "Result<()>")]
pub struct SyncMeta;

/// The journal syncer; see the module docs. One thread.
pub struct Journal {
    db: Database,
    /// Batches committed by the metadata actor (it increments after each commit).
    committed: Arc<AtomicU64>,
    /// The count at the start of the last successful persist: all of those are durable.
    durable: u64,
}

impl Journal {
    /// A syncer for `db`, reading the metadata actor's commit count; `durable` is that count
    /// at the last persist before the node started (taken by the caller, not when this actor's
    /// thread happens to start, by which time unsynced commits may already be counted).
    pub(crate) fn new(db: Database, committed: Arc<AtomicU64>, durable: u64) -> Self {
        Self {
            db,
            committed,
            durable,
        }
    }

    fn sync(&mut self) -> Result<()> {
        // Read before persisting: every batch counted here is in the journal already.
        let target = self.committed.load(Ordering::Acquire);
        if target <= self.durable {
            return Ok(());
        }
        self.db.persist(PersistMode::SyncAll)?;
        self.durable = target;
        Ok(())
    }
}

impl Actor for Journal {
    type Context = SyncContext<Self>;
}

impl Handler<SyncMeta> for Journal {
    type Result = Result<()>;
    fn handle(&mut self, _: SyncMeta, _: &mut Self::Context) -> Self::Result {
        self.sync()
    }
}
