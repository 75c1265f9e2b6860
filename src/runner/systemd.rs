//! systemd integration: readiness, status, watchdog and stopping
//! notifications over the `sd_notify(3)` protocol.
//!
//! The unit runs with `Type=notify`, so systemd considers the daemon started
//! only after [`Notifier::ready`]: start-up (migrations, resuming leases) is
//! not mistaken for a healthy service. [`Notifier::status`] is what
//! `systemctl status runner` shows (mode, in-flight work, prep-only and why).
//! With `WatchdogSec=` set, systemd restarts the daemon when
//! [`Notifier::watchdog`] pings stop arriving.
//!
//! Outside systemd (`NOTIFY_SOCKET` unset: a terminal, a test, a one-shot)
//! every call is a no-op, so callers never branch on how they were started.
//! A failed send is logged and otherwise ignored: losing a status line must
//! never take the daemon down.

use sd_notify::NotifyState;
use std::time::Duration;

/// Sends notifications to the service manager. Cheap to copy; hand one to
/// each task that reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notifier {
    enabled: bool,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// A notifier for this process as systemd started it: enabled when
    /// `NOTIFY_SOCKET` is set, with the watchdog period from `WATCHDOG_USEC`
    /// when `WATCHDOG_PID` is unset or names this process (the crate's
    /// `watchdog_enabled` rules, so a child that inherited the variables
    /// does not take over the parent's watchdog).
    pub fn from_env() -> Self {
        let enabled = std::env::var_os("NOTIFY_SOCKET").is_some_and(|v| !v.is_empty());
        // A zero period would make a ticker spin (or panic in
        // `tokio::time::interval`); treat it as no watchdog.
        let watchdog = sd_notify::watchdog_enabled().filter(|d| !d.is_zero());
        Notifier {
            enabled,
            watchdog: watchdog.filter(|_| enabled),
        }
    }

    /// A notifier that never sends anything, for one-shot commands and tests.
    pub fn disabled() -> Self {
        Notifier {
            enabled: false,
            watchdog: None,
        }
    }

    /// Whether a service manager is listening.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// Start-up is finished: the daemon is claiming work.
    pub fn ready(&self) {
        self.send("READY", &[NotifyState::Ready]);
    }

    /// A one-line status for `systemctl status`. Newlines are replaced by
    /// spaces: the protocol separates assignments by newline, so an error
    /// text with a newline could otherwise forge another one (`READY=1`).
    pub fn status(&self, status: &str) {
        if !self.enabled {
            return;
        }
        let line = one_line(status);
        self.send("STATUS", &[NotifyState::Status(&line)]);
    }

    /// Shutdown has begun (drain on SIGTERM), so systemd reports
    /// "deactivating" instead of counting the drain against the watchdog.
    pub fn stopping(&self) {
        self.send("STOPPING", &[NotifyState::Stopping]);
    }

    /// The daemon is alive. Call it from the scheduler loop itself, not from
    /// a separate timer task: a timer would keep pinging while the loop is
    /// stuck, which defeats the watchdog.
    pub fn watchdog(&self) {
        self.send("WATCHDOG", &[NotifyState::Watchdog]);
    }

    /// How often to call [`Notifier::watchdog`]: half the period systemd
    /// enforces (the margin `sd_watchdog_enabled(3)` recommends), or `None`
    /// when no watchdog is configured for this process.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|d| d / 2)
    }

    fn send(&self, what: &str, state: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(state) {
            tracing::warn!(notification = what, error = %e, "systemd notification failed");
        }
    }
}

/// `s` with every line break replaced by a space.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_notifier_sends_nothing_and_has_no_watchdog() {
        let n = Notifier::disabled();
        assert!(!n.is_enabled());
        assert_eq!(n.watchdog_interval(), None);
        // No socket is consulted: these return without effect.
        n.ready();
        n.status("idle");
        n.watchdog();
        n.stopping();
    }

    #[test]
    fn status_is_one_line() {
        assert_eq!(one_line("a\nREADY=1\r\nb"), "a READY=1  b");
        assert_eq!(one_line("running 3 papers"), "running 3 papers");
    }
}
