//! Per-key rate limiting (GCRA, via governor): a sustained rate plus a burst.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::core::config::RateLimitSettings;

/// A keyed limiter; the key is a token subject (or, later, a client address).
#[derive(Debug)]
pub struct RateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

/// A refused request: when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
}

impl RateLimited {
    /// Whole seconds for `Retry-After`, rounded up and never zero.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let per_second = NonZeroU32::new(settings.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(settings.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one cell for `key`, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), RateLimited> {
        // Look up by the borrowed key first would need a `Borrow` store; an owned key per call
        // costs one small allocation.
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| RateLimited {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Forgets keys whose state has fully recovered; call periodically to bound memory.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_per_key() {
        let limiter = RateLimiter::new(&RateLimitSettings {
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(limiter.check("alice").is_ok());
        }
        let refused = limiter.check("alice").unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert_eq!(refused.retry_after_secs(), 1);
        assert!(limiter.check("bob").is_ok(), "keys are independent");
    }
}
