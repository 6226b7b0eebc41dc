//! The real `callhook` binary as a child process, and a throwaway Postgres
//! cluster, for crash and restart tests.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;

use crate::helpers::{ADMIN, INGEST};

/// The Postgres URL of the database behind `pool` (a `#[sqlx::test]` database).
pub(crate) fn database_url_of(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for the tests");
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(
        pool.connect_options()
            .get_database()
            .expect("test database has a name"),
    );
    url.to_string()
}

/// A free port on 127.0.0.1 (bound, read, released).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) struct ServerProcess {
    child: tokio::process::Child,
    pub addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `callhook serve` and waits until `/healthz` answers.
    pub(crate) async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        Self::start_with(database_url, env, None)
            .await
            .expect("callhook answers /healthz within 30 s")
    }

    /// Starts `callhook serve` with its output (the log) appended to `log`.
    pub(crate) async fn start_logging(
        database_url: &str,
        env: &[(&str, &str)],
        log: &Path,
    ) -> Self {
        Self::start_with(database_url, env, Some(log))
            .await
            .expect("callhook answers /healthz within 30 s")
    }

    /// Like [`Self::start_logging`], but `None` when the process exits or
    /// does not answer within 30 s (e.g. its port was taken meanwhile).
    pub(crate) async fn try_start_logging(
        database_url: &str,
        env: &[(&str, &str)],
        log: &Path,
    ) -> Option<Self> {
        Self::start_with(database_url, env, Some(log)).await
    }

    async fn start_with(
        database_url: &str,
        env: &[(&str, &str)],
        log: Option<&Path>,
    ) -> Option<Self> {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut cmd = tokio::process::Command::new(binary());
        cmd.arg("serve")
            .env("DATABASE_URL", database_url)
            .env("CALLHOOK_LISTEN", addr.to_string())
            .env("CALLHOOK_ADMIN_TOKEN", ADMIN)
            .env("CALLHOOK_INGEST_TOKEN", INGEST)
            .env("CALLHOOK_ALLOW_PRIVATE_DESTINATIONS", "true")
            .env("CALLHOOK_RETRY_SCHEDULE", "200ms,500ms,1s,1s,1s,1s")
            // Ended calls' during-call webhooks do not expire under these
            // tests' loads (`ordering.rs` tests the expiry).
            .env("CALLHOOK_DURING_CALL_GRACE", "1h")
            .env("CALLHOOK_REQUEST_TIMEOUT", "2s")
            .env("CALLHOOK_LEASE", "3s")
            .env("CALLHOOK_POLL_INTERVAL", "200ms")
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(match log {
                Some(path) => Stdio::from(open_log(path)),
                None => Stdio::null(),
            })
            .stderr(match log {
                Some(path) => Stdio::from(open_log(path)),
                None if std::env::var_os("TEST_LOG").is_some() => Stdio::inherit(),
                None => Stdio::null(),
            })
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("the callhook binary starts");
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                eprintln!("callhook exited at start-up: {status}");
                return None;
            }
            let up = http
                .get(format!("http://{addr}/healthz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Some(Self { child, addr });
            }
            // Not a wait: the poll interval while the process comes up (ends on /healthz).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs `body` (JSON) with the bearer `token`: the status and the JSON
    /// answer (`null` when there is none).
    pub(crate) async fn post(
        &self,
        http: &reqwest::Client,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let r = http
            .post(self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("callhook answers");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// SIGKILL: no chance to finish anything.
    /// The most memory the process has held (`VmHWM`), in bytes.
    pub(crate) fn peak_rss(&self) -> u64 {
        let pid = self.child.id().expect("still running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status");
        kb * 1024
    }

    pub(crate) async fn kill(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    /// SIGTERM, then the exit status.
    pub(crate) async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running") as i32;
        std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap()
    }
}

/// Runs `callhook <args>` to completion (a one-off command such as
/// `migrate`), with `env` set; its output.
pub(crate) async fn run_command(
    database_url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(binary());
    cmd.args(args)
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().await.expect("the callhook binary runs")
}

/// A private copy of the `callhook` binary, made at first use: the build
/// directory is shared (other checkouts may rebuild `callhook` there while a
/// long test restarts it), and a restart must run the same code.
fn binary() -> &'static Path {
    static COPY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    COPY.get_or_init(|| {
        let tmp = std::env::temp_dir();
        // Links left by test processes that have ended.
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("callhook-e2e-bin-") {
                if !Path::new("/proc").join(pid).exists() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let copy = tmp.join(format!("callhook-e2e-bin-{}", std::process::id()));
        // A hard link keeps this build's file even when the shared build
        // directory gets a new one; a copy where linking is impossible.
        let _ = std::fs::remove_file(&copy);
        if std::fs::hard_link(env!("CARGO_BIN_EXE_callhook"), &copy).is_err() {
            std::fs::copy(env!("CARGO_BIN_EXE_callhook"), &copy).expect("copy the callhook binary");
        }
        copy
    })
}

fn open_log(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the log file opens")
}

/// Every webhook a counting receiver got: call id → webhook-ids seen.
#[derive(Clone, Default)]
pub(crate) struct Tally(pub Arc<Mutex<HashMap<String, Vec<String>>>>);

impl Tally {
    pub(crate) fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub(crate) fn total(&self) -> usize {
        self.0.lock().unwrap().values().map(Vec::len).sum()
    }

    /// (call ids received more than once, extra requests); panics if a
    /// duplicate carries another webhook-id.
    pub(crate) fn duplicates(&self) -> (usize, usize) {
        let map = self.0.lock().unwrap();
        let mut calls = 0;
        let mut extra = 0;
        for (call, ids) in map.iter() {
            if ids.len() > 1 {
                assert!(
                    ids.iter().all(|i| i == &ids[0]),
                    "call {call} duplicates carry different webhook-ids: {ids:?}"
                );
                calls += 1;
                extra += ids.len() - 1;
            }
        }
        (calls, extra)
    }
}

/// A receiver that answers 200 after `delay` and tallies call ids.
pub(crate) async fn counting_receiver(delay: Duration) -> (String, Tally) {
    let (url, tally, gate) = gated_counting_receiver(delay, 0).await;
    gate.open();
    (url, tally)
}

/// Holds a gated receiver's answers: each answer takes one permit, so the
/// test decides how many requests are answered before it acts.
#[derive(Clone)]
pub(crate) struct Gate(Arc<tokio::sync::Semaphore>);

impl Gate {
    /// Answers every request from now on.
    pub(crate) fn open(&self) {
        self.0.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }
}

/// A counting receiver that tallies every request on arrival but answers
/// only `allowed` of them until its gate is opened; the rest wait, held.
pub(crate) async fn gated_counting_receiver(
    delay: Duration,
    allowed: usize,
) -> (String, Tally, Gate) {
    let tally = Tally::default();
    let gate = Gate(Arc::new(tokio::sync::Semaphore::new(allowed)));
    let (t, g) = (tally.clone(), gate.clone());
    let app = axum::Router::new().fallback(
        move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (t, g) = (t.clone(), g.clone());
            async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let call = v["id"].as_str().unwrap().to_owned();
                let id = headers
                    .get("webhook-id")
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned();
                t.0.lock().unwrap().entry(call).or_default().push(id);
                g.0.acquire().await.unwrap().forget();
                // Not a wait: the receiver's own behaviour (its answer delay).
                tokio::time::sleep(delay).await;
                "ok"
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), tally, gate)
}

/// A Postgres cluster of the test's own, on a free port, so it can be
/// restarted without disturbing other tests. Needs PostgreSQL's server
/// binaries (Debian's `postgresql` package); run as root it uses the
/// `postgres` user for them.
pub(crate) struct TempCluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// More server options (TLS).
    extra: String,
}

impl TempCluster {
    pub(crate) fn start() -> Self {
        Self::start_with(|_| Vec::new())
    }

    /// A cluster serving TLS with this certificate and key (PEM), signed by
    /// a CA of the test's own; the cluster's directory is passed to make
    /// the files' paths.
    pub(crate) fn start_tls(cert_pem: &str, key_pem: &str) -> Self {
        let (cert, key) = (cert_pem.to_owned(), key_pem.to_owned());
        Self::start_with(move |dir| {
            let cert_path = dir.join("server.crt");
            let key_path = dir.join("server.key");
            std::fs::write(&cert_path, &cert).unwrap();
            std::fs::write(&key_path, &key).unwrap();
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                for p in [&cert_path, &key_path] {
                    std::process::Command::new("chown")
                        .arg("postgres:postgres")
                        .arg(p)
                        .status()
                        .unwrap();
                }
            }
            vec![
                "-c ssl=on".to_owned(),
                format!("-c ssl_cert_file={}", cert_path.display()),
                format!("-c ssl_key_file={}", key_path.display()),
            ]
        })
    }

    fn start_with(extra: impl FnOnce(&Path) -> Vec<String>) -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .and_then(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).find(|p| p.join("initdb").exists()))
            .expect("PostgreSQL server binaries under /usr/lib/postgresql/*/bin (apt-get install postgresql)");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("callhook-pg-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let cluster = Self {
            dir,
            bin,
            port,
            extra: String::new(),
        };
        if is_root() {
            let ok = std::process::Command::new("chown")
                .arg("postgres:postgres")
                .arg(&cluster.dir)
                .status()
                .unwrap();
            assert!(ok.success(), "chown the cluster directory to postgres");
        }
        cluster.pg(
            "initdb",
            &[
                "-D",
                cluster.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        );
        let mut cluster = cluster;
        cluster.extra = extra(&cluster.dir).join(" ");
        cluster.ctl_start();
        cluster
    }

    fn data(&self) -> &str {
        self.dir.to_str().unwrap()
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Where the cluster keeps its files (the test's certificates too).
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A Postgres server tool, run as the `postgres` user when we are root
    /// (initdb and the server refuse to run as root).
    fn tool(&self, tool: &str) -> std::process::Command {
        let path = self.bin.join(tool);
        if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.arg("-u").arg("postgres").arg("--").arg(path);
            c
        } else {
            std::process::Command::new(path)
        }
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let out = self.tool(tool).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn ctl_start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off {}",
            self.port,
            self.data(),
            self.extra
        );
        let log = format!("{}/log", self.data());
        self.pg(
            "pg_ctl",
            &[
                "-D",
                self.data(),
                "-o",
                &opts,
                "-l",
                &log,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    pub(crate) fn stop(&self) {
        self.pg("pg_ctl", &["-D", self.data(), "-m", "fast", "-w", "stop"]);
    }

    pub(crate) fn start_again(&self) {
        self.ctl_start();
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        let _ = self
            .tool("pg_ctl")
            .args(["-D", self.data(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
