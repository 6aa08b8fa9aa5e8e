//! The gateway's clock. The gateway is the time authority for expiry; tests shift this clock
//! instead of sleeping.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Clock {
    offset: AtomicI64,
}

impl Clock {
    /// Unix seconds, shifted by the offset.
    // The one place the gateway reads the wall clock (clippy.toml bans it elsewhere).
    #[allow(clippy::disallowed_methods)]
    pub fn now(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        real + self.offset.load(Ordering::Relaxed)
    }

    /// Moves the clock forward (or back) by `seconds`. Used by tests and simulations.
    pub fn shift(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}
