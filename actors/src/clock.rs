//! Wall-clock time as the store records it: whole seconds since the Unix epoch. Its own file so
//! that the rooms that need the time (the handle, maintenance) do not import each other.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Unix seconds at which a block stored now with `ttl` expires; a zero TTL never expires.
pub(crate) fn expiry_after(ttl: Duration) -> u64 {
    if ttl.is_zero() {
        return u64::MAX;
    }
    unix_now().saturating_add(ttl.as_secs())
}
