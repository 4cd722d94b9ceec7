//! Rate limiting (GCRA, via governor): a sustained rate plus a burst, per token subject for
//! each class of routes (see [`ScopeClass`]), and per client address for open routes and for
//! requests whose token is refused.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;

use crate::core::config::{Quota, RateLimitSettings, ScopeClass};

type Keyed<K> =
    governor::RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// What a limiter said about one request, for the `RateLimit-*` response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// The bucket size (`RateLimit-Limit`).
    pub limit: u32,
    /// Requests that may still be sent back to back (`RateLimit-Remaining`).
    pub remaining: u32,
    /// Until the bucket is full again (`RateLimit-Reset`).
    pub reset: Duration,
    /// The sustained rate (`RateLimit-Policy`'s quota per one-second window).
    pub per_second: u32,
}

impl Allowance {
    /// Whole seconds, rounded up.
    pub fn reset_secs(&self) -> u64 {
        ceil_secs(self.reset)
    }
}

/// A refused request: when to try again, and the allowance (with nothing remaining).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
    pub allowance: Allowance,
}

impl RateLimited {
    /// Whole seconds for `Retry-After`, rounded up and never zero.
    pub fn retry_after_secs(&self) -> u64 {
        ceil_secs(self.retry_after).max(1)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// One keyed limiter with its quota.
struct Limiter<K: Hash + Eq + Clone> {
    limiter: Keyed<K>,
    burst: u32,
    per_second: u32,
    interval: Duration,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    fn new(quota: Quota) -> Self {
        let per_second = NonZeroU32::new(quota.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(quota.burst).unwrap_or(NonZeroU32::MIN);
        let gcra = governor::Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: governor::RateLimiter::keyed(gcra)
                .with_middleware::<StateInformationMiddleware>(),
            burst: burst.get(),
            per_second: per_second.get(),
            interval: gcra.replenish_interval(),
        }
    }

    fn allowance(&self, remaining: u32) -> Allowance {
        Allowance {
            limit: self.burst,
            remaining,
            reset: self.interval * (self.burst - remaining.min(self.burst)),
            per_second: self.per_second,
        }
    }

    fn check(&self, key: &K) -> Result<Allowance, RateLimited> {
        match self.limiter.check_key(key) {
            Ok(snapshot) => Ok(self.allowance(snapshot.remaining_burst_capacity())),
            Err(not_until) => {
                let retry_after = not_until.wait_time_from(self.limiter.clock().now());
                let mut allowance = self.allowance(0);
                // The next cell frees after `retry_after`; the rest follow at the rate.
                allowance.reset = retry_after + self.interval * (self.burst - 1);
                Err(RateLimited {
                    retry_after,
                    allowance,
                })
            }
        }
    }

    fn retain_recent(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// The class of a route that needs `scope` (`None`: any valid token).
pub fn class_of(scope: Option<&str>) -> ScopeClass {
    use crate::core::security::scopes;
    match scope {
        None => ScopeClass::Read,
        Some(scopes::PREDICT) => ScopeClass::Predict,
        Some(scopes::FEATURES_WRITE) => ScopeClass::FeaturesWrite,
        Some(scopes::MODELS_WRITE) => ScopeClass::ModelsWrite,
        Some(scopes::FEEDBACK_WRITE) => ScopeClass::FeedbackWrite,
        // A scope without a class of its own shares the read bucket.
        Some(_) => ScopeClass::Read,
    }
}

/// Every limiter of the service.
pub struct RateLimiter {
    read: Limiter<String>,
    predict: Limiter<String>,
    features_write: Limiter<String>,
    models_write: Limiter<String>,
    feedback_write: Limiter<String>,
    clients: Limiter<IpAddr>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter").finish_non_exhaustive()
    }
}

impl RateLimiter {
    pub fn new(settings: &RateLimitSettings) -> Self {
        let of = |class| Limiter::new(settings.quota(class));
        Self {
            read: of(ScopeClass::Read),
            predict: of(ScopeClass::Predict),
            features_write: of(ScopeClass::FeaturesWrite),
            models_write: of(ScopeClass::ModelsWrite),
            feedback_write: of(ScopeClass::FeedbackWrite),
            clients: Limiter::new(settings.open),
        }
    }

    /// Takes one cell of `subject`'s bucket for routes of `class`, or says how long to wait.
    /// [`ScopeClass::Open`] has no subjects: it is [`RateLimiter::check_client`].
    pub fn check_subject(
        &self,
        class: ScopeClass,
        subject: &str,
    ) -> Result<Allowance, RateLimited> {
        let limiter = match class {
            ScopeClass::Read | ScopeClass::Open => &self.read,
            ScopeClass::Predict => &self.predict,
            ScopeClass::FeaturesWrite => &self.features_write,
            ScopeClass::ModelsWrite => &self.models_write,
            ScopeClass::FeedbackWrite => &self.feedback_write,
        };
        // An owned key per call: governor's keyed store looks keys up by `&K`.
        limiter.check(&subject.to_owned())
    }

    /// Takes one cell of a client address's bucket (open routes, refused tokens).
    pub fn check_client(&self, client: IpAddr) -> Result<Allowance, RateLimited> {
        self.clients.check(&client)
    }

    /// Forgets keys whose state has fully recovered; call periodically to bound memory.
    pub fn retain_recent(&self) {
        for limiter in [
            &self.read,
            &self.predict,
            &self.features_write,
            &self.models_write,
            &self.feedback_write,
        ] {
            limiter.retain_recent();
        }
        self.clients.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::config::QuotaOverride;

    fn settings() -> RateLimitSettings {
        RateLimitSettings {
            per_second: 1,
            burst: 3,
            predict: QuotaOverride::default(),
            read: QuotaOverride::default(),
            features_write: QuotaOverride::default(),
            models_write: QuotaOverride {
                per_second: None,
                burst: Some(1),
            },
            feedback_write: QuotaOverride::default(),
            open: Quota {
                per_second: 1,
                burst: 2,
            },
            client_ip_header: String::new(),
        }
    }

    #[test]
    fn burst_then_refusal_per_key_and_class() {
        let limiter = RateLimiter::new(&settings());
        let remaining: Vec<u32> = (0..3)
            .map(|_| {
                limiter
                    .check_subject(ScopeClass::Predict, "alice")
                    .unwrap()
                    .remaining
            })
            .collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = limiter
            .check_subject(ScopeClass::Predict, "alice")
            .unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(1));
        assert_eq!(refused.retry_after_secs(), 1);
        assert_eq!(refused.allowance.limit, 3);
        assert_eq!(refused.allowance.remaining, 0);
        assert_eq!(refused.allowance.reset_secs(), 3);
        assert!(
            limiter.check_subject(ScopeClass::Predict, "bob").is_ok(),
            "keys are independent"
        );
        assert!(
            limiter.check_subject(ScopeClass::Read, "alice").is_ok(),
            "classes are independent"
        );
    }

    #[test]
    fn quotas_per_class_and_per_client() {
        let limiter = RateLimiter::new(&settings());
        let first = limiter
            .check_subject(ScopeClass::ModelsWrite, "alice")
            .unwrap();
        assert_eq!((first.limit, first.remaining), (1, 0));
        assert!(
            limiter
                .check_subject(ScopeClass::ModelsWrite, "alice")
                .is_err()
        );
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(limiter.check_client(ip).is_ok());
        assert!(limiter.check_client(ip).is_ok());
        assert!(limiter.check_client(ip).is_err());
        assert!(limiter.check_client("192.0.2.2".parse().unwrap()).is_ok());
    }
}
