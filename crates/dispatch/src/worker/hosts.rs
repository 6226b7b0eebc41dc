//! Per-host in-flight limits, so a slow receiver cannot take every worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Per-host in-flight limits.
pub(super) struct HostLimits {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    pub(super) fn new(per_host: usize) -> Self {
        Self {
            per_host: per_host.max(1),
            hosts: Mutex::default(),
        }
    }

    /// A slot for `url`'s host, waiting briefly for one: a fast receiver frees
    /// slots within milliseconds, a hanging one does not.
    pub(super) async fn acquire(&self, url: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let host = reqwest::Url::parse(url)
            .ok()
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or(""),
                    u.port_or_known_default().unwrap_or(0)
                )
            })
            .unwrap_or_default();
        let sem = {
            let mut hosts = self.hosts.lock().expect("host limits lock");
            if hosts.len() > 10_000 {
                // Forget idle hosts so the map cannot grow without bound.
                hosts.retain(|_, s| s.available_permits() < self.per_host);
            }
            hosts
                .entry(host)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone()
        };
        tokio::time::timeout(Duration::from_millis(100), sem.acquire_owned())
            .await
            .ok()?
            .ok()
    }
}
