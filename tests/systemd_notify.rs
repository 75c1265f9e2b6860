//! `Notifier` against a real notification socket.
//!
//! `sd-notify` reads `NOTIFY_SOCKET` / `WATCHDOG_*` from the process
//! environment on every call, so this test has to set them. It is the only
//! test in this binary: no other thread reads or writes the environment
//! while it runs (so it is not a module of tests/it/).

use paper_runner::runner::systemd::Notifier;
use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// The next datagram. The timeout only bounds a failing test; the datagram
/// is already queued when `recv` is called, so a passing test never waits.
fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 1024];
    let n = sock.recv(&mut buf).expect("a notification arrives");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn assert_nothing_queued(sock: &UnixDatagram) {
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    let err = sock.recv(&mut buf).expect_err("no notification was sent");
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    sock.set_nonblocking(false).unwrap();
}

#[test]
fn notifications_reach_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // Outside systemd: a no-op, with no watchdog.
    std::env::remove_var("NOTIFY_SOCKET");
    std::env::set_var("WATCHDOG_USEC", "4000000");
    let off = Notifier::from_env();
    assert!(!off.is_enabled());
    assert_eq!(off.watchdog_interval(), None);
    off.ready();
    assert_nothing_queued(&sock);

    // Under systemd, watchdog meant for this process.
    std::env::set_var("NOTIFY_SOCKET", &path);
    std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
    let n = Notifier::from_env();
    assert!(n.is_enabled());
    assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));

    n.ready();
    assert_eq!(recv(&sock), "READY=1\n");
    n.status("running: 3 in flight\nREADY=1");
    assert_eq!(recv(&sock), "STATUS=running: 3 in flight READY=1\n");
    n.watchdog();
    assert_eq!(recv(&sock), "WATCHDOG=1\n");
    n.stopping();
    assert_eq!(recv(&sock), "STOPPING=1\n");

    // A watchdog meant for another process (the variables were inherited).
    std::env::set_var("WATCHDOG_PID", (std::process::id() + 1).to_string());
    assert_eq!(Notifier::from_env().watchdog_interval(), None);
    std::env::remove_var("WATCHDOG_PID");
    std::env::remove_var("WATCHDOG_USEC");
    assert_eq!(Notifier::from_env().watchdog_interval(), None);

    // Nobody listening: logged, not a panic.
    drop(sock);
    std::env::set_var("NOTIFY_SOCKET", dir.path().join("gone.sock"));
    let n = Notifier::from_env();
    n.ready();
    n.status("still fine");
    n.watchdog();
    n.stopping();
    std::env::remove_var("NOTIFY_SOCKET");
}
