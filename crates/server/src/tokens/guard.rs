//! Limits on failed bearer credentials per client address.
//!
//! A bearer check must not touch the database for a malformed key, so failures are counted in
//! memory, per process, with the same rules as sign-in failures per address: some free
//! failures, then a delay that doubles up to `3600 / max_failures_per_ip_hour` seconds. With
//! 256-bit keys this is defence in depth, not the protection itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::credentials::limits::Limits;
use crate::error::{Error, Result};

const WINDOW: Duration = Duration::from_secs(3600);
const MAX_TRACKED: usize = 100_000;

struct Failures {
    count: u32,
    window_started: Instant,
    last: Instant,
}

/// Failed bearer credentials by client address.
pub struct FailureLimiter {
    limits: Limits,
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl FailureLimiter {
    /// A limiter with the per-address sign-in rules.
    pub fn new(limits: Limits) -> Self {
        Self { limits, failures: Mutex::new(HashMap::new()) }
    }

    /// Refuses with 429 while the address must wait.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<()> {
        let Some(ip) = ip else { return Ok(()) };
        let Ok(failures) = self.failures.lock() else { return Ok(()) };
        let Some(entry) = failures.get(&ip) else { return Ok(()) };
        if entry.window_started.elapsed() > WINDOW {
            return Ok(());
        }
        let delay = self.limits.delay_after(entry.count).to_std().unwrap_or_default();
        let waited = entry.last.elapsed();
        if waited < delay {
            let remaining = (delay - waited).as_millis() as u64;
            return Err(Error::RateLimited { retry_after_secs: std::cmp::max(remaining.div_ceil(1000), 1) });
        }
        Ok(())
    }

    /// Counts a failure.
    pub fn record(&self, ip: Option<IpAddr>) {
        let Some(ip) = ip else { return };
        let Ok(mut failures) = self.failures.lock() else { return };
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.window_started.elapsed() <= WINDOW);
        }
        let now = Instant::now();
        let entry = failures.entry(ip).or_insert(Failures { count: 0, window_started: now, last: now });
        if entry.window_started.elapsed() > WINDOW {
            *entry = Failures { count: 0, window_started: now, last: now };
        }
        entry.count += 1;
        entry.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_the_free_failures() {
        let limiter = FailureLimiter::new(Limits { free_failures: 2, max_failures_per_hour: 60 });
        let ip = Some("192.0.2.1".parse().unwrap());
        let other = Some("192.0.2.2".parse().unwrap());
        limiter.record(ip);
        assert!(limiter.check(ip).is_ok());
        limiter.record(ip);
        assert!(matches!(limiter.check(ip), Err(Error::RateLimited { .. })));
        assert!(limiter.check(other).is_ok());
        assert!(limiter.check(None).is_ok());
    }
}
