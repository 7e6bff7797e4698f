//! The per-address rate limit of `POST /register`: registrations are unauthenticated, so one
//! caller must not be able to fill the registration cap for everyone.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The rate-limited unit of a client address: an IPv4 address, or an IPv6 /64 (one host or
/// network usually holds a whole /64, so single IPv6 addresses would be free to vary).
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// A token bucket per client address (per IPv6 /64).
pub(crate) struct RateLimiter {
    buckets: moka::sync::Cache<IpAddr, Arc<Mutex<(f64, Instant)>>>,
    burst: f64,
    refill: Duration,
}

impl RateLimiter {
    pub(crate) fn new(burst: u32, refill: Duration) -> Self {
        RateLimiter {
            buckets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(refill.saturating_mul(burst.max(1)).max(Duration::from_secs(1)))
                .build(),
            burst: burst.max(1) as f64,
            refill,
        }
    }

    /// Whether a request from `ip` may proceed now; takes one token from its bucket if so.
    pub(crate) fn allow(&self, ip: IpAddr) -> bool {
        let bucket = self.buckets.get_with(rate_key(ip), || {
            Arc::new(Mutex::new((self.burst, Instant::now())))
        });
        let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = if self.refill.is_zero() {
            self.burst
        } else {
            now.duration_since(b.1).as_secs_f64() / self.refill.as_secs_f64()
        };
        b.0 = (b.0 + earned).min(self.burst);
        b.1 = now;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
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
    fn token_bucket() {
        let l = RateLimiter::new(2, Duration::from_secs(3600));
        let a = IpAddr::from([10, 0, 0, 1]);
        assert!(l.allow(a) && l.allow(a));
        assert!(!l.allow(a));
        assert!(l.allow(IpAddr::from([10, 0, 0, 2])), "buckets are per address");
    }

    #[test]
    fn ipv6_addresses_share_their_64_bucket() {
        let l = RateLimiter::new(2, Duration::from_secs(3600));
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap();
        assert!(l.allow(rate_key(a)) && l.allow(rate_key(b)));
        assert!(!l.allow(rate_key(a)), "one bucket per /64");
        assert!(
            l.allow(rate_key("2001:db8:1:3::1".parse().unwrap())),
            "another /64"
        );
        assert_eq!(
            rate_key("::ffff:10.0.0.1".parse().unwrap()),
            IpAddr::from([10, 0, 0, 1])
        );
    }
}
