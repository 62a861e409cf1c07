//! The maintenance actor: every `maintenance_interval` it asks the metadata actor to expire up
//! to `maintenance_batch` block records, resuming where the previous pass stopped and starting
//! over once it reaches the end (Codex's BlockMaintainer, without its #1291 and #508 bugs: the
//! metadata actor never removes what a live dataset needs, and a zero TTL never expires).
//! After each pass it runs one compaction step: the block store copies the live blocks of a
//! mostly-dead segment file and the metadata actor points the index at the copies.
//!
//! It owns only its cursor. Stops with the actix system.

use std::time::Duration;

use actix::{Actor, ActorFutureExt, Addr, AsyncContext, Context, WrapFuture};

use crate::{
    block_store::{BlockStore, CompactStep},
    error::Result,
    meta_store::{ExpireBlocks, Expired, MetaStore, Relocate},
    node::unix_now,
};

/// The maintenance actor; see the module docs.
pub struct Maintenance {
    meta: Addr<MetaStore>,
    blocks: Addr<BlockStore>,
    interval: Duration,
    batch: usize,
    /// Key after which the next pass resumes.
    cursor: Option<Vec<u8>>,
    /// A pass is in flight; a slow pass is not overlapped by the next tick.
    busy: bool,
}

impl Maintenance {
    /// A maintainer sending passes of `batch` records to `meta`, and compaction steps to
    /// `blocks`, every `interval`.
    pub fn new(
        meta: Addr<MetaStore>,
        blocks: Addr<BlockStore>,
        interval: Duration,
        batch: usize,
    ) -> Self {
        Self {
            meta,
            blocks,
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
        let (meta, blocks) = (self.meta.clone(), self.blocks.clone());
        ctx.spawn(
            pass(meta, blocks, msg)
                .into_actor(self)
                .map(|result, act, _| {
                    act.busy = false;
                    match result {
                        Ok((expired, moved)) => {
                            if expired.removed.blocks > 0 {
                                tracing::info!(
                                    datasets = expired.datasets,
                                    blocks = expired.removed.blocks,
                                    bytes = expired.removed.bytes,
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
                }),
        );
    }
}

/// One expiry step, then one compaction step.
async fn pass(
    meta: Addr<MetaStore>,
    blocks: Addr<BlockStore>,
    msg: ExpireBlocks,
) -> Result<(Expired, u64)> {
    let expired = meta.send(msg).await??;
    let moved = match blocks.send(CompactStep).await?? {
        Some(moves) => meta.send(Relocate { moves }).await??,
        None => 0,
    };
    Ok((expired, moved))
}

impl Actor for Maintenance {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.tick(ctx));
    }
}
