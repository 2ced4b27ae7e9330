//! How long someone who keeps failing must wait: the rule behind every limit on guessing.

use chrono::TimeDelta;

/// The rules of one kind of failure counter: some free failures, then a delay that doubles
/// with each failure up to the one that allows `max_failures_per_hour`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub free_failures: u32,
    pub max_failures_per_hour: u32,
}

impl Limits {
    /// The limits on one client address's (or one known browser's) failures at one account: at
    /// most one less an hour than the account's ceiling, so one address can never use it up and
    /// keep the owner out of every other address.
    pub fn per_account_address(config: &crate::config::SignInConfig) -> Self {
        let below_ceiling = config.max_failures_per_account_hour.saturating_sub(1).max(1);
        Self {
            free_failures: config.free_failures_per_account_address,
            max_failures_per_hour: config.max_failures_per_account_address_hour.min(below_ceiling),
        }
    }

    /// The limits on one client address's failures, whatever it guessed.
    pub fn per_address(config: &crate::config::SignInConfig) -> Self {
        Self { free_failures: config.free_failures_per_ip, max_failures_per_hour: config.max_failures_per_ip_hour }
    }

    /// How long to wait after `failures` failures in the window.
    pub fn delay_after(self, failures: u32) -> TimeDelta {
        if failures < self.free_failures {
            return TimeDelta::zero();
        }
        let cap = std::cmp::max(3600 / i64::from(std::cmp::max(self.max_failures_per_hour, 1)), 1);
        let exponent = std::cmp::min(failures - self.free_failures, 20);
        TimeDelta::seconds(std::cmp::min(1i64 << exponent, cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_never_reaches_the_accounts_ceiling() {
        let mut config = crate::config::Config::default().sign_in;
        config.max_failures_per_account_address_hour = 500;
        config.max_failures_per_account_hour = 100;
        assert_eq!(Limits::per_account_address(&config).max_failures_per_hour, 99);
        config.max_failures_per_account_address_hour = 30;
        assert_eq!(Limits::per_account_address(&config).max_failures_per_hour, 30);
    }

    #[test]
    fn delays_grow_then_cap_at_the_hourly_limit() {
        let limits = Limits { free_failures: 5, max_failures_per_hour: 100 };
        assert_eq!(limits.delay_after(0), TimeDelta::zero());
        assert_eq!(limits.delay_after(4), TimeDelta::zero());
        assert_eq!(limits.delay_after(5), TimeDelta::seconds(1));
        assert_eq!(limits.delay_after(7), TimeDelta::seconds(4));
        assert_eq!(limits.delay_after(50), TimeDelta::seconds(36));
        // 36 s between attempts is at most 100 attempts an hour.
        assert!(3600 / limits.delay_after(1000).num_seconds() <= 100);
    }
}
