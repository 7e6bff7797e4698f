//! The rate limits of `POST /register`, of consent approvals (`POST /authorize`) and of metadata
//! document fetches: all are unauthenticated and write to the store (or make the bridge fetch),
//! so one caller must not be able to fill the registration cap or the store for everyone, and one
//! web page must not be able to use up the registrations of the other applications on its machine.
//!
//! Buckets are per client address (an IPv4 address or an IPv6 /64), and within an address per
//! browser origin: a request without `Origin` (VS Code, CLI hosts: not a browser) draws from the
//! address's own bucket; a browser request draws from its origin's bucket and from one bucket
//! shared by every origin of that address, ten times larger. A hostile page then burns its own
//! origin's bucket (or at most, with many origins, the browsers' shared one), never the bucket of
//! the non-browser hosts on the same machine, and the browsers of one address cannot fill the
//! registration cap.
//!
//! With a store that shares rate limits ([`Store::take_tokens`]: Redis), the buckets live there,
//! so every replica draws from the same ones; otherwise they live in this process.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use http::{Extensions, HeaderMap, header};

use super::store::{Store, StoreError, TokenBucket};
use crate::serve::network;

/// Who makes a request, as the limits count callers: the peer address ([`crate::serve()`] puts
/// it in the extensions; without it every caller is `0.0.0.0`) and the browser origin. Browsers
/// send `Origin` with every cross-origin request but not with a navigation (a GET of
/// `/authorize`); a navigation another page started says so in `Sec-Fetch-Site`, and those all
/// count as one pseudo-origin, apart from the requests of hosts that send neither.
pub(crate) fn caller(extensions: &Extensions, headers: &HeaderMap) -> (IpAddr, Option<String>) {
    let ip = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
        .unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let origin = match headers.get(header::ORIGIN) {
        Some(o) => Some(String::from_utf8_lossy(o.as_bytes()).into_owned()),
        None => headers
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .filter(|v| matches!(*v, "cross-site" | "same-site"))
            .map(|v| format!("(a page: {v})")),
    };
    (ip, origin)
}

/// What one request draws from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Bucket {
    /// Requests without `Origin` from one address.
    Address(IpAddr),
    /// Browser requests of one origin (its SHA-256) from one address.
    Origin(IpAddr, String),
    /// Browser requests of every origin from one address.
    Browsers(IpAddr),
}

/// How many more buckets the browsers of one address share than one origin has.
const BROWSERS_FACTOR: u32 = 10;

/// Token buckets for one kind of request (`name`): in the store when it shares them across
/// replicas ([`Store::take_tokens`]), else in this process.
pub(crate) struct RateLimiter {
    name: &'static str,
    store: Arc<dyn Store>,
    buckets: moka::sync::Cache<Bucket, Arc<Mutex<(f64, Instant)>>>,
    burst: u32,
    refill: Duration,
}

impl RateLimiter {
    pub(crate) fn new(name: &'static str, store: Arc<dyn Store>, burst: u32, refill: Duration) -> Self {
        let burst = burst.max(1);
        RateLimiter {
            name,
            store,
            buckets: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(refill.saturating_mul(burst).max(Duration::from_secs(1)))
                .build(),
            burst,
            refill,
        }
    }

    /// The buckets a request from `ip` with `origin` (the `Origin` header, if any) draws from.
    fn buckets(ip: IpAddr, origin: Option<&str>) -> Vec<Bucket> {
        let net = network(ip.to_canonical());
        match origin {
            None => vec![Bucket::Address(net)],
            Some(origin) => vec![
                Bucket::Origin(net, crate::oauth::sha256_b64url(origin)),
                Bucket::Browsers(net),
            ],
        }
    }

    /// A bucket's size and refill.
    fn shape(&self, bucket: &Bucket) -> (u32, Duration) {
        match bucket {
            Bucket::Browsers(_) => (self.burst * BROWSERS_FACTOR, self.refill / BROWSERS_FACTOR),
            _ => (self.burst, self.refill),
        }
    }

    /// Whether a request from `ip`/`origin` may proceed now (takes nothing).
    pub(crate) async fn allows(&self, ip: IpAddr, origin: Option<&str>) -> Result<bool, StoreError> {
        self.draw(ip, origin, false).await
    }

    /// Takes one token from `ip`/`origin`'s buckets; `false` (taking nothing) if one is empty.
    pub(crate) async fn take(&self, ip: IpAddr, origin: Option<&str>) -> Result<bool, StoreError> {
        self.draw(ip, origin, true).await
    }

    async fn draw(&self, ip: IpAddr, origin: Option<&str>, take: bool) -> Result<bool, StoreError> {
        let buckets = Self::buckets(ip, origin);
        let shared: Vec<TokenBucket> = buckets
            .iter()
            .map(|b| {
                let (burst, refill) = self.shape(b);
                TokenBucket::new(format!("{}:{}", self.name, key(b)), burst, refill)
            })
            .collect();
        if let Some(allowed) = self.store.take_tokens(&shared, take).await? {
            return Ok(allowed);
        }
        let all = buckets
            .iter()
            .all(|b| self.with_bucket(b, |tokens| tokens >= 1.0, |_| {}));
        if all && take {
            for b in &buckets {
                self.with_bucket(b, |_| true, |tokens| *tokens = (*tokens - 1.0).max(0.0));
            }
        }
        Ok(all)
    }

    /// Refills `bucket` (in this process), then runs `check` on its tokens and, if it passes,
    /// `then`.
    fn with_bucket(&self, bucket: &Bucket, check: impl Fn(f64) -> bool, then: impl Fn(&mut f64)) -> bool {
        let (burst, refill) = self.shape(bucket);
        let burst = burst as f64;
        let state = self
            .buckets
            .get_with(bucket.clone(), || Arc::new(Mutex::new((burst, Instant::now()))));
        let mut b = state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = if refill.is_zero() {
            burst
        } else {
            now.duration_since(b.1).as_secs_f64() / refill.as_secs_f64()
        };
        b.0 = (b.0 + earned).min(burst);
        b.1 = now;
        let ok = check(b.0);
        if ok {
            then(&mut b.0);
        }
        ok
    }
}

/// A bucket's name in a shared store.
fn key(bucket: &Bucket) -> String {
    match bucket {
        Bucket::Address(ip) => format!("addr:{ip}"),
        Bucket::Origin(ip, origin) => format!("origin:{ip}:{origin}"),
        Bucket::Browsers(ip) => format!("browsers:{ip}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A limiter in this process (a `MemoryStore` shares none).
    fn limiter(burst: u32) -> RateLimiter {
        RateLimiter::new("t", Arc::new(crate::dcr::store::MemoryStore::new()), burst, HOUR)
    }

    #[tokio::test]
    async fn token_bucket_per_address() {
        let l = limiter(2);
        let a = IpAddr::from([10, 0, 0, 1]);
        assert!(
            l.allows(a, None).await.unwrap() && l.allows(a, None).await.unwrap(),
            "looking takes nothing"
        );
        assert!(l.take(a, None).await.unwrap() && l.take(a, None).await.unwrap());
        assert!(!l.allows(a, None).await.unwrap() && !l.take(a, None).await.unwrap());
        assert!(
            l.take(IpAddr::from([10, 0, 0, 2]), None).await.unwrap(),
            "buckets are per address"
        );
    }

    #[tokio::test]
    async fn ipv6_addresses_share_their_64_bucket() {
        let l = limiter(2);
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1234:5678:9abc".parse().unwrap();
        assert!(l.take(a, None).await.unwrap() && l.take(b, None).await.unwrap());
        assert!(!l.take(a, None).await.unwrap(), "one bucket per /64");
        assert!(
            l.take("2001:db8:1:3::1".parse().unwrap(), None).await.unwrap(),
            "another /64"
        );
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert!(
            l.take(mapped, None).await.unwrap() && l.take(IpAddr::from([10, 0, 0, 1]), None).await.unwrap()
        );
        assert!(
            !l.take(mapped, None).await.unwrap(),
            "an IPv4-mapped address is its IPv4 address"
        );
    }

    #[tokio::test]
    async fn a_page_burns_its_own_origin_not_the_non_browser_hosts() {
        let l = limiter(2);
        let lo = IpAddr::from([127, 0, 0, 1]);
        let hostile = Some("http://127.0.0.1:9999");
        assert!(l.take(lo, hostile).await.unwrap() && l.take(lo, hostile).await.unwrap());
        assert!(!l.take(lo, hostile).await.unwrap());
        assert!(
            l.take(lo, Some("http://localhost:6274")).await.unwrap(),
            "another origin"
        );
        assert!(
            l.take(lo, None).await.unwrap() && l.take(lo, None).await.unwrap(),
            "the host without Origin"
        );
    }

    #[tokio::test]
    async fn the_browsers_of_one_address_share_a_larger_bucket() {
        let l = limiter(2);
        let lo = IpAddr::from([127, 0, 0, 1]);
        let mut taken = 0;
        for port in 0..100 {
            let origin = format!("http://a{port}.example");
            while l.take(lo, Some(&origin)).await.unwrap() {
                taken += 1;
            }
        }
        assert_eq!(taken, 2 * BROWSERS_FACTOR as usize);
        assert!(l.take(lo, None).await.unwrap(), "non-browser hosts keep theirs");
        assert!(
            !l.take(lo, Some("http://fresh.example")).await.unwrap(),
            "the browsers' share is used up"
        );
    }
}
