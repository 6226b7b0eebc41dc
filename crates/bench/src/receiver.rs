//! The bench's webhook receiver: a bare hyper 1 HTTP/1.1 server on 127.0.0.1
//! that answers every request `200` on a kept-alive connection and records,
//! per call id (the payload's `"id"`), when the first copy arrived and how many
//! copies came.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// When a call's webhook first arrived, and how many times it came.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub first: Instant,
    pub count: u32,
}

/// What the receiver saw, shared with the bench's measuring code.
#[derive(Debug, Default)]
pub(crate) struct Arrivals {
    by_call: Mutex<HashMap<String, Arrival>>,
    /// Every request, duplicates and probe traffic included; lets a waiter
    /// notice progress without locking the map.
    total: AtomicU64,
    /// When the latest call arrived for the first time.
    latest_first: Mutex<Option<Instant>>,
}

impl Arrivals {
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    fn record(&self, call_id: String, at: Instant) {
        let mut map = self.by_call.lock().unwrap_or_else(|e| e.into_inner());
        let mut first = false;
        map.entry(call_id)
            .and_modify(|a| a.count += 1)
            .or_insert_with(|| {
                first = true;
                Arrival {
                    first: at,
                    count: 1,
                }
            });
        drop(map);
        if first {
            let mut latest = self.latest_first.lock().unwrap_or_else(|e| e.into_inner());
            *latest = latest.max(Some(at));
        }
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// The arrivals of the given calls, `None` for a call that never arrived.
    pub(crate) fn lookup<'a>(&self, ids: impl Iterator<Item = &'a str>) -> Vec<Option<Arrival>> {
        let map = self.by_call.lock().unwrap_or_else(|e| e.into_inner());
        ids.map(|id| map.get(id).copied()).collect()
    }

    /// When the latest call arrived for the first time.
    pub(crate) fn latest_first(&self) -> Option<Instant> {
        *self.latest_first.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many calls arrived at least once.
    pub(crate) fn distinct(&self) -> usize {
        self.by_call.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// How many of the given calls arrived at least once.
    pub(crate) fn count_arrived<'a>(&self, ids: impl Iterator<Item = &'a str>) -> usize {
        let map = self.by_call.lock().unwrap_or_else(|e| e.into_inner());
        ids.filter(|id| map.contains_key(*id)).count()
    }
}

/// Binds 127.0.0.1 on a free port and serves until the process ends.
pub(crate) async fn start() -> anyhow::Result<(SocketAddr, Arc<Arrivals>)> {
    start_answering_after(std::time::Duration::ZERO).await
}

/// A receiver that records each request as it arrives and answers it after
/// `delay` (a slow CRM).
pub(crate) async fn start_answering_after(
    delay: std::time::Duration,
) -> anyhow::Result<(SocketAddr, Arc<Arrivals>)> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the bench receiver on 127.0.0.1")?;
    let addr = listener.local_addr().context("receiver address")?;
    let arrivals = Arc::new(Arrivals::default());
    let state = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, state.clone(), delay));
                // A connection error (the peer went away) ends that connection only.
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, arrivals))
}

async fn handle(
    req: Request<Incoming>,
    arrivals: Arc<Arrivals>,
    delay: std::time::Duration,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let at = Instant::now();
    if let Some(id) = call_id(&body) {
        arrivals.record(id, at);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

/// The payload's top-level `"id"`; the payload is parsed only as far as needed.
pub(crate) fn call_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: String,
    }
    serde_json::from_slice::<Id>(body).ok().map(|p| p.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_id_is_read_from_a_payload_with_other_fields() {
        let body = br#"{"id":"b-1-7","caller":"79990000000","custom_fields":[],"order_id":null}"#;
        assert_eq!(call_id(body).as_deref(), Some("b-1-7"));
    }

    #[test]
    fn call_id_of_a_body_without_one_is_none() {
        assert_eq!(call_id(b"{}"), None);
        assert_eq!(call_id(b"not json"), None);
    }
}
