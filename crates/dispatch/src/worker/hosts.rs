//! Per-host in-flight limits, so a slow receiver cannot take every worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Per-host in-flight limits.
pub(super) struct HostLimits {
    per_host: usize,
    /// How long a delivery waits for its host's turn.
    wait: Duration,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimits {
    pub(super) fn new(per_host: usize, wait: Duration) -> Self {
        Self {
            per_host: per_host.max(1),
            wait,
            hosts: Mutex::default(),
        }
    }

    /// A slot for `url`'s host if one is free now.
    pub(super) fn try_acquire(&self, url: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.semaphore(url).try_acquire_owned().ok()
    }

    /// A slot for `url`'s host, waiting a while for one (the dispatcher's
    /// `seat_wait`): a fast receiver frees slots within milliseconds, a
    /// hanging one does not.
    pub(super) async fn acquire(&self, url: &str) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(self.wait, self.semaphore(url).acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn semaphore(&self, url: &str) -> Arc<Semaphore> {
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
        let mut hosts = self.hosts.lock().expect("host limits lock");
        if hosts.len() > 10_000 {
            // Forget idle hosts so the map cannot grow without bound.
            hosts.retain(|_, s| s.available_permits() < self.per_host);
        }
        hosts
            .entry(host)
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }
}
