//! What a run costs the server process (CPU, RSS from `/proc`) and Postgres
//! (CPU of its processes, WAL written).

use crate::{pg, procfs, Common};

/// Postgres's cost over the main phase: CPU of every `postgres` process on
/// this machine (so Postgres must run here) and WAL written.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgUse {
    pub(crate) cpu_s: f64,
    pub(crate) wal_bytes: i64,
}

/// Readings taken before the main phase.
pub(crate) struct PgWatch {
    pub(crate) pool: sqlx::PgPool,
    pub(crate) ticks: f64,
    pub(crate) cpu0: u64,
    pub(crate) wal0: i64,
}

impl PgWatch {
    pub(crate) async fn start(url: Option<&str>, ticks: f64) -> Option<Self> {
        let pool = pg::connect(url?, 1).await.ok()?;
        let wal0 = pg::wal_position(&pool).await.ok()?;
        Some(Self {
            pool,
            ticks,
            cpu0: procfs::postgres_cpu_ticks(),
            wal0,
        })
    }

    pub(crate) async fn finish(self) -> Option<PgUse> {
        let cpu1 = procfs::postgres_cpu_ticks();
        let wal1 = pg::wal_position(&self.pool).await.ok()?;
        Some(PgUse {
            cpu_s: cpu1.saturating_sub(self.cpu0) as f64 / self.ticks,
            wal_bytes: wal1 - self.wal0,
        })
    }
}

/// One run's server-side measurements.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ServerUse {
    pub(crate) cpu_s: Option<f64>,
    pub(crate) peak_rss: Option<u64>,
    pub(crate) vm_hwm: Option<u64>,
}

/// The server process, when it could be found.
pub(crate) struct ServerProc {
    pub(crate) pid: Option<u32>,
    pub(crate) ticks: f64,
}

impl ServerProc {
    pub(crate) fn find(c: &Common) -> Self {
        let pid = c.server_pid.or_else(|| {
            let port = reqwest::Url::parse(&c.server)
                .ok()?
                .port_or_known_default()?;
            match procfs::pid_listening_on(port) {
                Ok(pid) => Some(pid),
                Err(e) => {
                    eprintln!("warning: server CPU and RSS not measured: {e:#}");
                    None
                }
            }
        });
        Self {
            pid,
            ticks: procfs::clock_ticks(),
        }
    }

    pub(crate) fn watch(&self) -> Watch {
        Watch {
            pid: self.pid,
            ticks: self.ticks,
            cpu0: self.pid.and_then(|p| procfs::cpu_ticks(p).ok()),
            rss: self.pid.map(procfs::RssSampler::start),
        }
    }
}

pub(crate) struct Watch {
    pub(crate) pid: Option<u32>,
    pub(crate) ticks: f64,
    pub(crate) cpu0: Option<u64>,
    pub(crate) rss: Option<procfs::RssSampler>,
}

impl Watch {
    pub(crate) async fn finish(self) -> ServerUse {
        let Some(pid) = self.pid else {
            return ServerUse::default();
        };
        let cpu1 = procfs::cpu_ticks(pid).ok();
        let peak_rss = match self.rss {
            Some(s) => Some(s.finish().await),
            None => None,
        };
        ServerUse {
            cpu_s: self
                .cpu0
                .zip(cpu1)
                .map(|(a, b)| b.saturating_sub(a) as f64 / self.ticks),
            peak_rss,
            vm_hwm: procfs::status_kb(pid, "VmHWM").ok(),
        }
    }
}
