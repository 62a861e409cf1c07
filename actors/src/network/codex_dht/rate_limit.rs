//! A packet rate limit per source IP: a token bucket each, in a bounded table.
//!
//! Keyed by IP rather than IP and port, so that a sender cannot escape its limit by changing
//! ports. Every datagram costs one token, before any decryption, so a flood costs us a hash
//! lookup per packet and nothing more. When the table is full, idle sources are forgotten; if
//! none is idle, packets from new sources are dropped until one is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits of a [`RateLimiter`].
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// Tokens added per second per source.
    pub packets_per_second: u32,
    /// Most tokens a source can save up.
    pub burst: u32,
    /// Sources tracked at once.
    pub max_sources: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        // A lookup exchanges a few packets with each node; 200/s leaves ample room for a busy
        // honest peer and caps what one address can make us do.
        RateLimits {
            packets_per_second: 200,
            burst: 400,
            max_sources: 4096,
        }
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Per-source token buckets.
pub struct RateLimiter {
    limits: RateLimits,
    sources: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    /// A limiter with no sources yet.
    pub fn new(limits: RateLimits) -> Self {
        RateLimiter {
            limits,
            sources: HashMap::new(),
        }
    }

    /// Takes a token for a packet from `ip`; false means drop it.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        let rate = f64::from(self.limits.packets_per_second);
        let burst = f64::from(self.limits.burst);
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.limits.max_sources {
            // A source is idle once its bucket would be full again.
            let refill = Duration::from_secs_f64(burst / rate.max(1.0));
            self.sources
                .retain(|_, b| now.duration_since(b.last) < refill);
            if self.sources.len() >= self.limits.max_sources {
                return false;
            }
        }
        let bucket = self.sources.entry(ip).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let mut r = RateLimiter::new(RateLimits {
            packets_per_second: 10,
            burst: 5,
            max_sources: 2,
        });
        let now = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!((0..10).filter(|_| r.allow(ip, now)).count(), 5);
        assert!(r.allow(ip, now + Duration::from_millis(150)));
        // Another source has its own bucket; a third is refused while both are busy.
        assert!(r.allow("10.0.0.2".parse().unwrap(), now));
        assert!(!r.allow("10.0.0.3".parse().unwrap(), now));
        assert!(r.allow("10.0.0.3".parse().unwrap(), now + Duration::from_secs(5)));
    }
}
