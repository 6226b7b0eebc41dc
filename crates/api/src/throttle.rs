//! Slowed guessing: wrong bearer tokens and failed console sign-ins are
//! counted per client address (`governor`'s keyed limiter, 10 a minute
//! after a burst of 10). Past that the address is answered `429` with
//! `Retry-After` until its quota refills, the right token included, so
//! guessing stays slow whatever it guesses. Another address is never
//! locked out by it.
//!
//! The client address is the connection's peer, or, when the peer is one
//! of `CALLHOOK_TRUSTED_PROXIES`, the last address `X-Forwarded-For` names
//! that is not itself a trusted proxy.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::HashMapStateStore;
use governor::{Quota, RateLimiter};

/// Failures an address may make in a burst, then one a `REFILL`.
const BURST: u32 = 10;
const PER_MINUTE: u32 = 10;
/// Locked-out addresses remembered at most (the oldest lockouts go first).
const MAX_LOCKED: usize = 100_000;

/// The per-address failure counter and its lockouts.
pub(crate) struct Throttle {
    failures: RateLimiter<IpAddr, HashMapStateStore<IpAddr>, DefaultClock>,
    locked: Mutex<HashMap<IpAddr, Instant>>,
    /// Whether `locked` may hold anyone: every authenticated request asks,
    /// and without a lockout it need not take the lock.
    any_locked: AtomicBool,
    trusted: Vec<IpAddr>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("trusted", &self.trusted)
            .finish_non_exhaustive()
    }
}

impl Throttle {
    /// A throttle trusting `X-Forwarded-For` from these proxies only.
    pub(crate) fn new(trusted: Vec<IpAddr>) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(PER_MINUTE).expect("not zero"))
            .allow_burst(NonZeroU32::new(BURST).expect("not zero"));
        Self {
            failures: RateLimiter::hashmap(quota),
            locked: Mutex::default(),
            any_locked: AtomicBool::new(false),
            trusted,
        }
    }

    /// Whether `peer` is a proxy whose forwarding headers count.
    pub(crate) fn trusts(&self, peer: IpAddr) -> bool {
        self.trusted.contains(&peer)
    }

    /// The client's address: the peer, or what a trusted proxy forwarded.
    pub(crate) fn client(&self, peer: Option<IpAddr>, headers: &HeaderMap) -> IpAddr {
        let peer = peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        if !self.trusts(peer) {
            return peer;
        }
        headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .rev()
            .find(|a| !self.trusts(*a))
            .unwrap_or(peer)
    }

    /// How long `client` must still wait, if it is locked out now.
    pub(crate) fn locked_out(&self, client: IpAddr) -> Option<Duration> {
        if !self.any_locked.load(Ordering::Acquire) {
            return None;
        }
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        let until = *locked.get(&client)?;
        let now = Instant::now();
        if until <= now {
            locked.remove(&client);
            if locked.is_empty() {
                self.any_locked.store(false, Ordering::Release);
            }
            return None;
        }
        Some(until - now)
    }

    /// Counts a failure of `client`; how long it is locked out for, if this
    /// one took it past its quota.
    pub(crate) fn failed(&self, client: IpAddr) -> Option<Duration> {
        let not_until = self.failures.check_key(&client).err()?;
        let wait = not_until
            .wait_time_from(DefaultClock::default().now())
            .max(Duration::from_secs(1));
        let mut locked = self.locked.lock().unwrap_or_else(|e| e.into_inner());
        if locked.len() >= MAX_LOCKED {
            let now = Instant::now();
            locked.retain(|_, until| *until > now);
        }
        locked.insert(client, Instant::now() + wait);
        self.any_locked.store(true, Ordering::Release);
        self.failures.retain_recent();
        Some(wait)
    }
}

/// Drops `X-Forwarded-For` and `X-Forwarded-Proto` from a request unless its
/// peer is a trusted proxy: past this point they can be believed (the
/// console's `Secure` cookie reads the second).
pub(crate) async fn forwarded_only_from_trusted(
    axum::extract::State(throttle): axum::extract::State<std::sync::Arc<Throttle>>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let peer = peer_of(request.extensions());
    if !peer.is_some_and(|p| throttle.trusts(p)) {
        request.headers_mut().remove("x-forwarded-for");
        request.headers_mut().remove("x-forwarded-proto");
    }
    next.run(request).await
}

/// The peer address of a request's connection, when the server recorded one.
pub(crate) struct ConnectInfoPeer(pub(crate) Option<IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ConnectInfoPeer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(peer_of(&parts.extensions)))
    }
}

/// The peer address the server recorded for a request's connection.
pub(crate) fn peer_of(extensions: &axum::http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_address_is_locked_out_after_its_burst_and_no_other_is() {
        let t = Throttle::new(Vec::new());
        let (guesser, other) = (ip("192.0.2.1"), ip("192.0.2.2"));
        for _ in 0..BURST {
            assert_eq!(t.failed(guesser), None);
        }
        assert!(t.failed(guesser).is_some(), "past the burst");
        assert!(t.locked_out(guesser).is_some());
        assert_eq!(t.locked_out(other), None);
        assert_eq!(t.failed(other), None);
    }

    #[test]
    fn forwarded_addresses_count_only_from_a_trusted_proxy() {
        let proxy = ip("10.0.0.5");
        let t = Throttle::new(vec![proxy]);
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9, 10.0.0.5".parse().unwrap());
        assert_eq!(t.client(Some(proxy), &h), ip("203.0.113.9"));
        let stranger = ip("198.51.100.7");
        assert_eq!(
            t.client(Some(stranger), &h),
            stranger,
            "a client cannot pick its address"
        );
    }
}
