//! The ops endpoint under a hostile client (issue 12, B.7): piles of idle
//! connections, half-sent requests, and a daemon at its descriptor limit.
//! Real `runner` processes and real sockets over loopback.

use crate::support::Site;
use paper_runner::ops::http::{serve, OpsState};
use paper_runner::ops::metrics::Metrics;
use paper_runner::runner::Config;
use paper_runner::store::{Store, StoreOptions};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const PDFS: [&str; 2] = ["paper-a.pdf", "paper-b.pdf"];

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Descriptors of process `pid` that are TCP sockets on local port `port`
/// (its listener and the connections it accepted there).
fn sockets_on_port(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter_map(|l| {
                    let l = l.to_string_lossy().to_string();
                    l.strip_prefix("socket:[")
                        .and_then(|r| r.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let hex_port = format!(":{port:04X}");
    let mut n = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[1].ends_with(&hex_port) && inodes.contains(f[9]) {
                n += 1;
            }
        }
    }
    n
}

fn connect(port: u16, within: Duration) -> Option<TcpStream> {
    TcpStream::connect_timeout(&std::net::SocketAddr::from(([127, 0, 0, 1], port)), within).ok()
}

/// Kills the daemon if a test fails while it runs.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// `GET path` over a fresh connection with a deadline: the status code, or
/// None when the connection was refused, closed or timed out.
fn get(port: u16, path: &str, within: Duration) -> Option<u16> {
    let mut s = connect(port, within)?;
    s.set_read_timeout(Some(within)).ok()?;
    s.set_write_timeout(Some(within)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Poll until `f` holds (real processes force polling), with a deadline.
fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether the server closed `s` (EOF or reset), reading until `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A 408 may come first; keep reading to the close.
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A [`Site`] whose daemon serves the ops endpoint on `port`.
struct Daemon {
    site: Site,
    port: u16,
}

impl Daemon {
    async fn site(max_connections: u32, header_timeout_secs: u64) -> Daemon {
        let port = free_port();
        let site = Site::with_config(
            "",
            &format!(
                "[ops]\nlisten = \"127.0.0.1:{port}\"\nmax_connections = {max_connections}\nheader_timeout_secs = {header_timeout_secs}\nidle_timeout_secs = 60\n"
            ),
        )
        .await;
        Daemon { site, port }
    }

    fn add_papers(&self, n: usize) {
        self.site.add_pdfs(&PDFS, 0, n);
    }

    /// The daemon with both descriptor limits lowered to `nofile` (so it
    /// cannot raise them back), stderr to a file.
    fn spawn(&self, nofile: u64) -> Child {
        let log = std::fs::File::create(self.site.path().join("daemon.log")).unwrap();
        let mut c = self
            .site
            .cmd(&["--daemon", "--workers", "2", "--poll-interval", "0.1"]);
        c.stdout(Stdio::null()).stderr(log);
        // SAFETY: setrlimit is async-signal-safe; nothing else runs here.
        unsafe {
            c.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: nofile as libc::rlim_t,
                    rlim_max: nofile as libc::rlim_t,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c.spawn().unwrap()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.site.path().join("daemon.log")).unwrap_or_default()
    }

    fn statuses(&self) -> Vec<String> {
        let c = self.site.conn();
        let mut st = c
            .prepare("SELECT status FROM executions ORDER BY arxiv_id")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

/// B.7: a daemon limited to 128 descriptors, flooded with 300 idle
/// connections to its ops endpoint (capped at 4), keeps answering
/// `/healthz`, finishes every paper (no save fails with "Too many open
/// files"), holds at most the cap of ops sockets, and still drains on
/// SIGTERM with idle connections open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_flood_neither_silences_healthz_nor_fails_papers() {
    let cap = 4;
    let d = Daemon::site(cap, 60).await;
    d.add_papers(2);
    let mut child = Reap(d.spawn(128));
    let pid = child.0.id();
    tokio::task::block_in_place(|| {
        wait_for("the ops endpoint", Duration::from_secs(60), || {
            get(d.port, "/healthz", Duration::from_secs(2)) == Some(200)
        });
        // More idle connections than the daemon has descriptors. Connecting
        // succeeds (the kernel's backlog), holding them costs the daemon at
        // most `cap` descriptors.
        let mut idle = Vec::new();
        for _ in 0..300 {
            if let Some(s) = connect(d.port, Duration::from_secs(1)) {
                idle.push(s);
            }
        }
        // Each new connection displaces the one idle longest: /healthz
        // answers at once, not after the 60 s header timeout.
        for _ in 0..5 {
            let started = Instant::now();
            let got = get(d.port, "/healthz", Duration::from_secs(10));
            assert_eq!(got, Some(200), "healthz under a flood; log:\n{}", d.log());
            assert!(started.elapsed() < Duration::from_secs(5));
        }
        // The listener plus at most `cap` connections (+1: one just
        // accepted, waiting for the slot of the connection it displaced).
        let held = sockets_on_port(pid, d.port);
        assert!(
            (1..=cap as usize + 2).contains(&held),
            "ops sockets not bounded: {held} with the flood (cap {cap})"
        );
        wait_for("both papers done", Duration::from_secs(120), || {
            d.statuses().iter().all(|s| s == "done")
        });
        assert!(
            !d.log().contains("Too many open files"),
            "log:\n{}",
            d.log()
        );
        // SIGTERM with idle connections open: the endpoint closes them and
        // the daemon exits 0 promptly.
        // SAFETY: signalling our own child.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(st) = child.0.try_wait().unwrap() {
                break st;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not stop; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status:?}; log:\n{}", d.log());
        drop(idle);
    });
}

async fn start(
    config: Config,
) -> (
    u16,
    CancellationToken,
    tokio::task::JoinHandle<()>,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("runner.db"), &StoreOptions::default()).unwrap();
    let state = OpsState {
        store,
        settings: Arc::new(config.resolve().unwrap()),
        stats: None,
        metrics: Metrics::new(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = CancellationToken::new();
    let s2 = stop.clone();
    let handle = tokio::spawn(async move { serve(listener, state, s2).await.unwrap() });
    (port, stop, handle, dir)
}

/// A half-sent request, and a connection that sends nothing, are closed
/// after `header_timeout_secs`; a complete request is still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_and_silent_connections_are_closed_after_the_header_timeout() {
    let mut config = Config::default();
    config.ops.header_timeout_secs = 1;
    config.ops.max_connections = 8;
    let (port, stop, handle, _dir) = start(config).await;
    tokio::task::block_in_place(|| {
        let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
        half.write_all(b"GET /healthz HTTP/1.1\r\nHost: local")
            .unwrap();
        let mut silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let started = Instant::now();
        assert!(closed_within(&mut half, Duration::from_secs(10)));
        assert!(closed_within(&mut silent, Duration::from_secs(10)));
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(5),
            "closed after {took:?}"
        );
        assert_eq!(get(port, "/healthz", Duration::from_secs(5)), Some(200));
        // A kept-alive connection that goes quiet after a request is closed
        // the same way.
        let mut kept = TcpStream::connect(("127.0.0.1", port)).unwrap();
        kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        assert!(closed_within(&mut kept, Duration::from_secs(10)));
    });
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .unwrap()
        .unwrap();
}

/// Past the cap, a new client displaces an idle connection instead of
/// waiting out its header timeout, and shutdown does not wait for the
/// silent ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_displace_idle_ones_and_shutdown_is_prompt() {
    let mut config = Config::default();
    config.ops.header_timeout_secs = 60;
    config.ops.max_connections = 2;
    let (port, stop, handle, _dir) = start(config).await;
    tokio::task::block_in_place(|| {
        let mut first = TcpStream::connect(("127.0.0.1", port)).unwrap();
        first.write_all(b"GET /heal").unwrap();
        let mut second = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let started = Instant::now();
        assert_eq!(get(port, "/healthz", Duration::from_secs(5)), Some(200));
        assert!(started.elapsed() < Duration::from_secs(5));
        // One of the idle connections made room; it is closed, not left
        // hanging.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut closed = false;
        while !closed && Instant::now() < deadline {
            closed = closed_within(&mut first, Duration::from_millis(100))
                || closed_within(&mut second, Duration::from_millis(100));
        }
        assert!(closed, "no idle connection was displaced");
    });
    let _held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), handle)
        .await
        .expect("shutdown waited for idle connections")
        .unwrap();
}
