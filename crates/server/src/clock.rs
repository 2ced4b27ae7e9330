//! The time limits on guessing are measured by: the system's time, unless it was stopped. A
//! stopped clock lets a test reach the moment a delay ends, or stay inside a window, without
//! waiting for real time to pass and without racing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

/// Marks a clock that follows the system's time.
const RUNNING: i64 = i64::MIN;

/// A shared clock: clones read and move the same time.
#[derive(Clone, Debug)]
pub struct Clock {
    /// Milliseconds since the epoch the clock stopped at, or [`RUNNING`].
    stopped_at: Arc<AtomicI64>,
}

impl Default for Clock {
    fn default() -> Self {
        Self { stopped_at: Arc::new(AtomicI64::new(RUNNING)) }
    }
}

impl Clock {
    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        match self.stopped_at.load(Ordering::Acquire) {
            RUNNING => Utc::now(),
            millis => DateTime::from_timestamp_millis(millis).unwrap_or_else(Utc::now),
        }
    }

    /// Stops the clock at the current time.
    pub fn stop(&self) {
        self.stopped_at.store(Utc::now().timestamp_millis(), Ordering::Release);
    }

    /// Moves the clock forward by `by` and leaves it stopped there.
    pub fn advance(&self, by: TimeDelta) {
        let at = self.now() + by;
        self.stopped_at.store(at.timestamp_millis(), Ordering::Release);
    }

    /// Lets the clock follow the system's time again.
    pub fn resume(&self) {
        self.stopped_at.store(RUNNING, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_clock_moves_only_when_advanced() {
        let clock = Clock::default();
        let shared = clock.clone();
        clock.stop();
        let stopped = shared.now();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(shared.now(), stopped);
        clock.advance(TimeDelta::seconds(90));
        assert_eq!(shared.now(), stopped + TimeDelta::seconds(90));
        clock.resume();
        assert!((shared.now() - Utc::now()).num_seconds().abs() < 5);
    }
}
