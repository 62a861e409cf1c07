//! Prometheus metrics, served at `GET /metrics` on the API listener.
//!
//! Counters and histograms go through the `metrics` facade into one process-wide Prometheus
//! recorder. Repository gauges are not mirrored anywhere: they are read from the metadata actor
//! (their only owner) each time `/metrics` is rendered.

use std::{sync::OnceLock, time::Duration};

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

/// The text exposition, with the repository gauges appended.
pub(crate) fn render(space: &codex_actors::Space) -> String {
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
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
        ));
    }
    out
}
