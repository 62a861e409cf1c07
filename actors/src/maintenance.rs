//! The maintenance actor: every `maintenance_interval` it asks the metadata actor to expire up
//! to `maintenance_batch` block records, resuming where the previous pass stopped and starting
//! over once it reaches the end (Codex's BlockMaintainer, without its #1291 and #508 bugs: the
//! metadata actor never removes what a live dataset needs, and a zero TTL never expires).
//! Datasets whose manifest expired are removed whole, step by step; every step is synced
//! before the bytes it freed are released. After each pass it runs one compaction step: the
//! block store copies the live blocks of a mostly-dead segment file, the metadata actor points
//! the records at the copies, and once that is durable the old file goes.
//!
//! The datasets it expires are announced by the repository's expiry step (`repo.rs`), like every
//! other dataset event. It owns only its cursor. Stops with the actix system.

use std::time::Duration;

use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};

use crate::{
    clock::unix_now,
    error::Result,
    meta_store::{ExpireBlocks, Expired},
    repo::Repo,
};

/// The maintenance actor; see the module docs.
pub struct Maintenance {
    repo: Repo,
    interval: Duration,
    batch: usize,
    /// Key after which the next pass resumes.
    cursor: Option<Vec<u8>>,
    /// A pass is in flight; a slow pass is not overlapped by the next tick.
    busy: bool,
}

impl Maintenance {
    /// A maintainer running an expiry pass over `batch` records, then a compaction step,
    /// every `interval`.
    pub(crate) fn new(repo: Repo, interval: Duration, batch: usize) -> Self {
        Self {
            repo,
            interval,
            batch,
            cursor: None,
            busy: false,
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let msg = ExpireBlocks {
            now: unix_now(),
            after: self.cursor.take(),
            limit: self.batch,
        };
        let repo = self.repo.clone();
        ctx.spawn(pass(repo, msg).into_actor(self).map(|result, act, _| {
            act.busy = false;
            match result {
                Ok((expired, moved)) => {
                    if expired.freed.removed.blocks > 0 {
                        tracing::info!(
                            datasets = expired.datasets,
                            blocks = expired.freed.removed.blocks,
                            bytes = expired.freed.removed.bytes,
                            "expired blocks removed"
                        );
                    }
                    if moved > 0 {
                        tracing::info!(moved, "compacted a segment");
                    }
                    act.cursor = expired.next;
                }
                Err(e) => tracing::warn!(error = %e, "maintenance pass failed"),
            }
        }));
    }
}

/// One expiry step, then one compaction step.
async fn pass(repo: Repo, msg: ExpireBlocks) -> Result<(Expired, u64)> {
    let expired = repo.expire_step(msg).await?;
    let moved = repo.compact_step().await?.unwrap_or(0);
    Ok((expired, moved))
}

impl Actor for Maintenance {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}
