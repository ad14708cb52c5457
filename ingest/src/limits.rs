//! Rate limits per client IP and per organization (governor's GCRA limiters). An
//! organization's own limit from its settings overrides the deployment default.
//!
//! An IPv6 client is limited by its /64 prefix: that is what one subscriber or host is
//! usually given, and it can pick any address inside it, so limiting single addresses
//! would let it rotate past the limit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// A rate (events per second) and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    fn quota(self) -> Quota {
        let per_second = NonZeroU32::new(self.per_second).unwrap_or(NonZeroU32::MIN);
        Quota::per_second(per_second).allow_burst(NonZeroU32::new(self.burst).unwrap_or(per_second))
    }
}

#[derive(Debug)]
pub struct RateLimits {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    org_default: Rate,
    per_org: Mutex<HashMap<String, (Rate, Arc<DefaultDirectRateLimiter>)>>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(per_ip: Rate, org_default: Rate) -> Self {
        RateLimits {
            per_ip: RateLimiter::keyed(per_ip.quota()),
            org_default,
            per_org: Mutex::new(HashMap::new()),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(wait)` when the client must wait before its next event is accepted.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.per_ip
            .check_key(&client_key(ip))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// `Err(wait)` when the organization is over its limit (`own` from its settings).
    pub fn check_org(&self, organization_id: &str, own: Option<Rate>) -> Result<(), Duration> {
        let rate = own.unwrap_or(self.org_default);
        let limiter = {
            let mut per_org = self.per_org.lock().unwrap_or_else(PoisonError::into_inner);
            match per_org.get(organization_id) {
                Some((current, limiter)) if *current == rate => Arc::clone(limiter),
                // New organization, or its limit changed: start a limiter with the new quota.
                _ => {
                    let limiter = Arc::new(RateLimiter::direct(rate.quota()));
                    per_org.insert(organization_id.to_string(), (rate, Arc::clone(&limiter)));
                    limiter
                }
            }
        };
        limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets client IPs whose limit has fully recovered, so memory follows the
    /// number of recently active clients rather than every client ever seen.
    pub fn forget_idle_clients(&self) {
        self.per_ip.retain_recent();
        self.per_ip.shrink_to_fit();
    }
}

/// The key a client IP is limited under: an IPv4 address (also when it arrives as an
/// IPv4-mapped IPv6 one), or an IPv6 address's /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
        v4 => v4,
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_wait() {
        let limits = RateLimits::new(
            Rate {
                per_second: 1,
                burst: 3,
            },
            Rate {
                per_second: 100,
                burst: 200,
            },
        );
        for _ in 0..3 {
            assert!(limits.check_ip(IP).is_ok());
        }
        let wait = limits.check_ip(IP).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1), "{wait:?}");
    }

    #[test]
    fn an_organizations_own_limit_overrides_the_default() {
        let limits = RateLimits::new(
            Rate {
                per_second: 100,
                burst: 100,
            },
            Rate {
                per_second: 100,
                burst: 100,
            },
        );
        let own = Some(Rate {
            per_second: 1,
            burst: 1,
        });
        assert!(limits.check_org("org_a", own).is_ok());
        assert!(limits.check_org("org_a", own).is_err());
        // Another organization has its own budget.
        assert!(limits.check_org("org_b", None).is_ok());
        // A changed limit takes effect at once.
        assert!(
            limits
                .check_org(
                    "org_a",
                    Some(Rate {
                        per_second: 10,
                        burst: 10
                    })
                )
                .is_ok()
        );
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv6_client_is_limited_by_its_64_prefix() {
        let limits = RateLimits::new(
            Rate {
                per_second: 1,
                burst: 2,
            },
            Rate {
                per_second: 100,
                burst: 200,
            },
        );
        // Rotating addresses within one /64 draws on one budget.
        assert!(limits.check_ip(ip("2001:db8:1:2::1")).is_ok());
        assert!(limits.check_ip(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")).is_ok());
        assert!(limits.check_ip(ip("2001:db8:1:2::abcd")).is_err());
        // The neighbouring /64 is another client.
        assert!(limits.check_ip(ip("2001:db8:1:3::1")).is_ok());
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_client() {
        assert_eq!(client_key(ip("::ffff:203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_key(ip("203.0.113.7")), ip("203.0.113.7"));
        assert_eq!(client_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
        let limits = RateLimits::new(
            Rate {
                per_second: 1,
                burst: 1,
            },
            Rate {
                per_second: 100,
                burst: 200,
            },
        );
        assert!(limits.check_ip(ip("203.0.113.7")).is_ok());
        assert!(limits.check_ip(ip("::ffff:203.0.113.7")).is_err());
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }
}
