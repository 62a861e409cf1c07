//! Prometheus metrics, served at `GET /metrics` on the API listener.
//!
//! Counters and histograms go through the `metrics` facade into one process-wide Prometheus
//! recorder. Repository gauges and the block exchange's counters are not mirrored anywhere:
//! they are read from the metadata actor and the exchange actor (their only owners) each time
//! `/metrics` is rendered. The exchange's names are Codex's (`codex_block_exchange_…`, counters
//! ending in `_total` as nim-metrics writes them) where Codex has the counter.

use std::{fmt::Write as _, sync::OnceLock, time::Duration};

use codex_actors::ExchangeStats;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process (several servers in one test binary share it).
pub(crate) fn init() {
    HANDLE.get_or_init(|| {
        let buckets = [
            0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        PrometheusBuilder::new()
            .set_buckets(&buckets)
            .ok()
            .and_then(|b| b.install_recorder().ok())
    });
}

/// An upload of `bytes` completed in `elapsed`.
pub(crate) fn upload_done(bytes: u64, elapsed: Duration) {
    metrics::counter!("codex_api_uploads_total").increment(1);
    metrics::counter!("codex_api_upload_bytes_total").increment(bytes);
    metrics::histogram!("codex_api_upload_duration_seconds").record(elapsed.as_secs_f64());
}

/// A download stream reached its end.
pub(crate) fn download_done(bytes: u64) {
    metrics::counter!("codex_api_downloads_total").increment(1);
    metrics::counter!("codex_api_download_bytes_total").increment(bytes);
}

/// The text exposition, with the repository gauges and the exchange's counters appended.
pub(crate) fn render(space: &codex_actors::Space, exchange: Option<&ExchangeStats>) -> String {
    let mut out = HANDLE
        .get()
        .and_then(Option::as_ref)
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    for (name, help, value) in [
        (
            "codex_repostore_blocks",
            "Blocks stored",
            space.total_blocks,
        ),
        (
            "codex_repostore_bytes_used",
            "Bytes used by stored blocks",
            space.quota_used_bytes,
        ),
        (
            "codex_repostore_bytes_reserved",
            "Bytes reserved",
            space.quota_reserved_bytes,
        ),
        (
            "codex_repostore_bytes_max",
            "Storage quota in bytes",
            space.quota_max_bytes,
        ),
    ] {
        sample(&mut out, name, "gauge", help, value);
    }
    if let Some(s) = exchange {
        for (name, kind, help, value) in exchange_samples(s) {
            sample(&mut out, name, kind, help, value);
        }
    }
    out
}

/// The block exchange's counters and gauges: (name, type, help, value).
fn exchange_samples(s: &ExchangeStats) -> [(&'static str, &'static str, &'static str, u64); 17] {
    const C: &str = "counter";
    [
        (
            "codex_block_exchange_blocks_sent_total",
            C,
            "Blocks sent to peers",
            s.blocks_sent,
        ),
        (
            "codex_block_exchange_blocks_received_total",
            C,
            "Blocks received and verified",
            s.blocks_received,
        ),
        (
            "codex_block_exchange_spurious_blocks_received_total",
            C,
            "Duplicate blocks received",
            s.duplicate_blocks,
        ),
        (
            "codex_block_exchange_bad_blocks_received_total",
            C,
            "Bad deliveries and frames refused",
            s.bad_blocks,
        ),
        (
            "codex_block_exchange_protocol_violations_total",
            C,
            "Frames the network layer refused",
            s.violations,
        ),
        (
            "codex_block_exchange_shed_entries_total",
            C,
            "Want entries from peers ignored over their limits",
            s.shed_entries,
        ),
        (
            "codex_block_exchange_request_timeouts_total",
            C,
            "Block requests a peer did not answer in time",
            s.request_timeouts,
        ),
        (
            "codex_block_exchange_distrusted_peers_total",
            C,
            "Peers whose Have presences went unhonoured, no longer asked",
            s.distrusted_peers,
        ),
        (
            "codex_block_exchange_slow_peers_total",
            C,
            "Peers disconnected for not reading what they asked for",
            s.slow_peers,
        ),
        (
            "codex_network_refused_connections_total",
            C,
            "Inbound connections refused by the per-address cap",
            s.refused_connections,
        ),
        (
            "codex_block_exchange_retries_total",
            C,
            "Block requests given to another peer",
            s.retries,
        ),
        (
            "codex_block_exchange_peer_timeouts_total",
            C,
            "Peers that stopped answering",
            s.peer_timeouts,
        ),
        (
            "codex_block_exchange_requests_failed_total",
            C,
            "Block requests that failed for good",
            s.failed_wants,
        ),
        (
            "codex_block_exchange_want_lists_sent_total",
            C,
            "Want lists sent",
            s.want_lists_sent,
        ),
        (
            "codex_block_exchange_want_lists_received_total",
            C,
            "Want lists received",
            s.want_lists_received,
        ),
        (
            "codex_block_exchange_peers",
            "gauge",
            "Peers connected",
            s.peers,
        ),
        (
            "codex_block_exchange_pending_blocks",
            "gauge",
            "Blocks wanted from peers now",
            s.pending,
        ),
    ]
}

fn sample(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
    );
}
