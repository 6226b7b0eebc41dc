//! One webhook request: build it, send it through the guard, read at most
//! 4 KiB of the answer, and say what happened.

use std::error::Error as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callhook_core::{AttemptError, SigningSecret};
use chrono::{DateTime, Utc};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use reqwest::StatusCode;

use crate::guard::{self, BlockedDestination, DnsFailure, GuardedResolver};

/// How much of a receiver's answer is kept.
pub const MAX_RESPONSE_BODY: usize = 4096;

/// Outbound HTTP settings.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    pub connect_timeout: Duration,
    /// The whole request, from connect to the last byte read.
    pub request_timeout: Duration,
    /// Let webhooks reach loopback and private addresses (local receivers, tests).
    pub allow_private: bool,
    /// Send every webhook through this HTTP(S) proxy (the operator's egress
    /// proxy). Proxy environment variables (`HTTP_PROXY`, …) are never used.
    pub egress_proxy: Option<String>,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            egress_proxy: None,
            allow_private: false,
        }
    }
}

/// What one attempt did, for the attempt row and the retry decision.
#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub status: Option<u16>,
    /// The first 4 KiB of the answer, as text (invalid UTF-8 and NULs replaced).
    pub body: Option<String>,
    pub error: Option<AttemptError>,
    /// A 429/503's `Retry-After` (seconds, or an HTTP-date from now).
    pub retry_after: Option<Duration>,
}

impl AttemptResult {
    pub fn is_success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    /// The attempt row's `error`: null when a response came back.
    pub fn error_text(&self) -> Option<&'static str> {
        self.error.map(AttemptError::as_str)
    }
}

/// The webhook to send.
#[derive(Debug, Clone, Copy)]
pub struct Webhook<'a> {
    pub url: &'a str,
    /// The delivery id: `webhook-id`, the same on every retry.
    pub id: &'a str,
    pub payload: &'a [u8],
    pub secrets: &'a [SigningSecret],
    /// The scenario's headers for this webhook (name, value opened), sent
    /// after callhook's own.
    pub custom: &'a [(String, String)],
}

impl Webhook<'_> {
    /// Every header of the request, signed at `timestamp` (seconds) with
    /// each secret (space-separated signatures during a rotation's
    /// overlap): what the sender sends, and what the console shows.
    pub fn headers(&self, timestamp: i64) -> Vec<(String, String)> {
        let signature = self
            .secrets
            .iter()
            .map(|s| s.sign(self.id, timestamp, self.payload))
            .collect::<Vec<_>>()
            .join(" ");
        let own = [
            (CONTENT_TYPE.as_str(), "application/json".to_owned()),
            (
                USER_AGENT.as_str(),
                concat!("callhook/", env!("CARGO_PKG_VERSION")).to_owned(),
            ),
            ("webhook-id", self.id.to_owned()),
            ("webhook-timestamp", timestamp.to_string()),
            ("webhook-signature", signature),
        ];
        own.into_iter()
            .map(|(n, v)| (n.to_owned(), v))
            .chain(self.custom.iter().cloned())
            .collect()
    }
}

/// Sends webhooks over one shared connection pool.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
    /// Webhooks go through a proxy: the destination is checked here, by
    /// name, before the request is handed to it.
    proxied: bool,
}

impl Sender {
    pub fn new(config: &SenderConfig) -> Result<Self, reqwest::Error> {
        let builder = reqwest::Client::builder();
        // Proxy settings come from CALLHOOK_EGRESS_PROXY only: a proxy from
        // the environment would be checked by the guard instead of the
        // destination, and would then connect anywhere.
        let builder = match &config.egress_proxy {
            // The resolver then only ever resolves the proxy's own name
            // (often a private address): the destination is checked in
            // `send`.
            Some(url) => builder
                .proxy(reqwest::Proxy::all(url)?)
                .dns_resolver(Arc::new(GuardedResolver {
                    allow_private: true,
                })),
            None => builder.no_proxy().dns_resolver(Arc::new(GuardedResolver {
                allow_private: config.allow_private,
            })),
        };
        let client = builder
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("callhook/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            client,
            allow_private: config.allow_private,
            proxied: config.egress_proxy.is_some(),
        })
    }

    /// Sends one webhook now. Never fails: every failure is a result.
    pub async fn send(&self, hook: Webhook<'_>) -> AttemptResult {
        let started_at = Utc::now();
        let clock = Instant::now();
        let done = |status, body, error, retry_after| AttemptResult {
            started_at,
            duration: clock.elapsed(),
            status,
            body,
            error,
            retry_after,
        };
        // Names go through the guarded resolver; an IP literal never reaches
        // a resolver, so it is checked here.
        if !self.allow_private && literal_host_is_internal(hook.url) {
            return done(None, None, Some(AttemptError::BlockedDestination), None);
        }
        if self.proxied && !self.allow_private {
            // The proxy resolves the name again and connects: it must refuse
            // internal addresses itself (DNS rebinding between this check and
            // its connect is its to stop). Here: any internal answer refuses.
            match destination_is_internal(hook.url).await {
                Ok(false) => {}
                Ok(true) => return done(None, None, Some(AttemptError::BlockedDestination), None),
                Err(()) => return done(None, None, Some(AttemptError::Dns), None),
            }
        }
        let mut request = self.client.post(hook.url);
        for (name, value) in hook.headers(started_at.timestamp()) {
            request = request.header(name, value);
        }
        let request = request.body(hook.payload.to_vec());
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return done(None, None, Some(classify(&e)), None),
        };
        let status = response.status();
        let retry_after = if matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
        ) {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()))
        } else {
            None
        };
        // Read at most 4 KiB; a body that breaks off or times out after the
        // status line still counts as that status.
        let mut body = Vec::new();
        while body.len() < MAX_RESPONSE_BODY {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        body.truncate(MAX_RESPONSE_BODY);
        done(
            Some(status.as_u16()),
            Some(safe_text(&body)),
            None,
            retry_after,
        )
    }
}

/// Text safe to store in Postgres: lossy UTF-8, NUL replaced.
pub fn safe_text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\0', "\u{FFFD}")
}

/// Whether any address the URL's host resolves to is internal (`Err` when
/// it does not resolve).
async fn destination_is_internal(url: &str) -> Result<bool, ()> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Err(());
    };
    let Some(host) = parsed.host_str() else {
        return Err(());
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| ())?
        .collect();
    if addrs.is_empty() {
        return Err(());
    }
    Ok(addrs.iter().any(|a| guard::is_internal(a.ip())))
}

fn literal_host_is_internal(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.host() {
        Some(url::Host::Ipv4(ip)) => guard::is_internal(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => guard::is_internal(IpAddr::V6(ip)),
        _ => false,
    }
}

/// `Retry-After` as delay-seconds or as an HTTP-date (RFC 9110 §10.2.3),
/// the delay from `now`; a date in the past is no delay.
fn parse_retry_after(v: &HeaderValue, now: std::time::SystemTime) -> Option<Duration> {
    let text = v.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

fn classify(e: &reqwest::Error) -> AttemptError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = e.source();
    while let Some(s) = source {
        if s.is::<BlockedDestination>() {
            return AttemptError::BlockedDestination;
        }
        if s.is::<DnsFailure>() {
            return AttemptError::Dns;
        }
        if s.is::<rustls::Error>() {
            return AttemptError::Tls;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return AttemptError::Timeout;
            }
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return AttemptError::Tls;
            }
        }
        source = s.source();
    }
    if e.is_timeout() {
        AttemptError::Timeout
    } else if e.is_connect() {
        AttemptError::Connect
    } else {
        AttemptError::Request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Tue, 01 Dec 2026 10:00:00 GMT").unwrap();
        let parse = |s: &str| parse_retry_after(&HeaderValue::from_str(s).unwrap(), now);
        assert_eq!(parse("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse("Tue, 01 Dec 2026 10:02:30 GMT"),
            Some(Duration::from_secs(150))
        );
        assert_eq!(parse("Tue, 01 Dec 2026 09:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse("soon"), None);
    }
}
