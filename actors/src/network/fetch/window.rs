//! How many blocks to keep asked for at once: a window sized from measurement, so that a long,
//! fast link stays full, and a short or slow one stays at the configured floor.
//!
//! A link of rate R and round trip T holds R × T bytes in flight (its bandwidth-delay
//! product). Fewer blocks asked at once than that leave it idle part of every round trip; many
//! more only queue at the peer. A [`Window`] watches deliveries: the lowest latency from asking
//! for a block to receiving it (the round trip plus the serving time, without the queueing that
//! more requests would add), how long delivered blocks keep their place afterwards (a fetch's
//! write), and the highest delivery rate over recent periods of at least one latency. It sizes
//! the window to [`GAIN`] × rate × (latency + hold), plus [`HEADROOM`], between a floor and a
//! ceiling from the configuration. From the floor, a window that limits the rate roughly doubles
//! every period, as the rate it allows grows with it (TCP's slow start, in blocks); once the
//! link is the limit, the rate stops growing and so does the window.
//!
//! The ceiling is what bounds memory: whatever a peer does (delivering in bursts, answering
//! fast, then stalling), the window never exceeds it; measurement only decides how much of the
//! configured memory a fetch uses. Both ends are plain configuration
//! ([`crate::NetworkConfig::fetch_window_min`], [`crate::NetworkConfig::fetch_window`]).
//!
//! The exchange sizes what it asks of each peer with a window too (`exchange/wants.rs`), with no
//! write time, between the peer's share and
//! [`crate::network::exchange::ExchangeConfig::request_window_max`].

use std::time::{Duration, Instant};

/// Blocks in flight per block the link can carry in one latency: twice the
/// bandwidth-delay product, so the window never limits a link whose rate it measured, and grows
/// while it does limit it.
const GAIN: f64 = 2.0;
/// Blocks added on top: a peer serves blocks in messages of up to
/// [`crate::network::exchange::OWN_DELIVERY_BLOCKS`] (one of our nodes; Codex sends 20), so the
/// window always covers one more.
const HEADROOM: usize = crate::network::exchange::OWN_DELIVERY_BLOCKS;
/// Shortest period over which a delivery rate is measured: on loopback, where latencies are a
/// fraction of a millisecond, shorter periods catch the bursts of 20-block messages and of
/// write batches, whose rate the link never sustains.
const MIN_PERIOD: Duration = Duration::from_millis(100);
/// Rate samples kept: the window follows the best of the last few periods, so a pause (a slow
/// write, a peer's hiccup) does not shrink it at once.
const RATE_SAMPLES: usize = 8;

/// A window of requests sized from measurement; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    floor: usize,
    ceiling: usize,
    size: usize,
    /// The largest size reached (for the logs).
    largest: usize,
    /// Lowest latency from asking to receiving seen so far.
    min_latency: Option<Duration>,
    /// How long a delivered block keeps its place in the window after it arrives, smoothed.
    hold: Duration,
    /// Start of the current rate period, and blocks delivered in it.
    period_start: Option<Instant>,
    period_blocks: u32,
    /// Recent rates, in blocks per second (a ring).
    rates: [f64; RATE_SAMPLES],
    next_rate: usize,
}

impl Window {
    /// A window that starts at `floor` and never exceeds `ceiling` (at least 1; a floor above
    /// the ceiling is lowered to it).
    pub(crate) fn new(floor: usize, ceiling: usize) -> Self {
        let ceiling = ceiling.max(1);
        let floor = floor.clamp(1, ceiling);
        Self {
            floor,
            ceiling,
            size: floor,
            largest: floor,
            min_latency: None,
            hold: Duration::ZERO,
            period_start: None,
            period_blocks: 0,
            rates: [0.0; RATE_SAMPLES],
            next_rate: 0,
        }
    }

    /// Blocks to keep in flight now.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// The largest size reached so far.
    pub(crate) fn largest(&self) -> usize {
        self.largest
    }

    /// One block arrived at `now`, `latency` after it was asked for.
    pub(crate) fn delivered(&mut self, now: Instant, latency: Duration) {
        let min = self.min_latency.map_or(latency, |m| m.min(latency));
        self.min_latency = Some(min);
        let Some(start) = self.period_start else {
            self.period_start = Some(now);
            return;
        };
        self.period_blocks = self.period_blocks.saturating_add(1);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= min.max(MIN_PERIOD) {
            self.rates[self.next_rate] = f64::from(self.period_blocks) / elapsed.as_secs_f64();
            self.next_rate = (self.next_rate + 1) % RATE_SAMPLES;
            self.period_start = Some(now);
            self.period_blocks = 0;
            self.resize();
        }
    }

    /// Delivered blocks kept their places for `took` after they arrived (a fetch's write of a
    /// batch): the window covers that time too.
    pub(crate) fn held(&mut self, took: Duration) {
        // An exponential average over about 8 batches.
        self.hold = (self.hold * 7 + took) / 8;
    }

    fn resize(&mut self) {
        let rate = self.rates.iter().copied().fold(0.0, f64::max);
        let cycle = self.min_latency.unwrap_or_default() + self.hold;
        let wanted = GAIN * rate * cycle.as_secs_f64();
        // Saturating float-to-int: an absurd measurement lands on the ceiling, not a panic.
        let wanted = (wanted.ceil() as usize).saturating_add(HEADROOM);
        self.size = wanted.clamp(self.floor, self.ceiling);
        self.largest = self.largest.max(self.size);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `w` a link that delivers `rate` blocks per second, each `latency` after it was
    /// asked, but never more than the window allows per latency; returns the window after
    /// `seconds`.
    fn run(w: &mut Window, rate: f64, latency: Duration, seconds: f64) -> usize {
        let start = Instant::now();
        let mut t = 0.0;
        while t < seconds {
            // What the window lets through in one latency, capped by the link.
            let per_latency = (w.size() as f64).min(rate * latency.as_secs_f64()).max(1.0);
            let step = latency.as_secs_f64() / per_latency;
            w.delivered(start + Duration::from_secs_f64(t), latency);
            t += step;
        }
        w.size()
    }

    #[test]
    fn a_long_fast_link_grows_the_window_to_twice_its_product_and_no_further() {
        // 1 Gbit/s in 64 KiB blocks (~1900 blocks/s), 100 ms from asking to receiving: the
        // product is ~190 blocks.
        let mut w = Window::new(32, 4096);
        let size = run(&mut w, 1900.0, Duration::from_millis(100), 10.0);
        assert!((380..=450).contains(&size), "{size}");
        assert!(w.largest() >= size);
    }

    #[test]
    fn a_short_link_stays_at_the_floor() {
        let mut w = Window::new(64, 1024);
        let size = run(&mut w, 5000.0, Duration::from_micros(500), 2.0);
        assert_eq!(size, 64, "5000 blocks/s × 0.5 ms is 2.5 blocks");
    }

    #[test]
    fn the_ceiling_holds_whatever_the_measurements() {
        let mut w = Window::new(8, 256);
        let now = Instant::now();
        // A peer that delivers a burst of thousands of blocks at once with a long latency.
        for i in 0..100_000u64 {
            w.delivered(now + Duration::from_micros(i), Duration::from_secs(60));
        }
        w.delivered(now + Duration::from_secs(120), Duration::from_secs(60));
        assert_eq!(w.size(), 256);
        assert_eq!(w.largest(), 256);
        // A zero latency or a zero-length period is no division by zero either.
        let mut w = Window::new(8, 256);
        for _ in 0..1000 {
            w.delivered(now, Duration::ZERO);
        }
        assert!(w.size() >= 8 && w.size() <= 256);
    }

    #[test]
    fn a_write_that_keeps_blocks_adds_to_the_window() {
        let mut plain = Window::new(1, 4096);
        let mut writing = Window::new(1, 4096);
        for _ in 0..50 {
            writing.held(Duration::from_millis(100));
        }
        let a = run(&mut plain, 1000.0, Duration::from_millis(50), 5.0);
        let b = run(&mut writing, 1000.0, Duration::from_millis(50), 5.0);
        assert!(b > 2 * a, "{a} without the write, {b} with a 100 ms write");
    }

    #[test]
    fn floor_and_ceiling_are_sane_whatever_the_configuration() {
        let w = Window::new(0, 0);
        assert_eq!((w.size(), w.floor, w.ceiling), (1, 1, 1));
        let w = Window::new(500, 100);
        assert_eq!(w.size(), 100, "a floor above the ceiling is lowered to it");
    }
}
