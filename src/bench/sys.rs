//! Resource readings of this process for the benchmarks: CPU time
//! (`getrusage`) and resident memory (`/proc/self/status`).
//!
//! `getrusage` gives microsecond CPU time for the whole process or one
//! thread; Linux's `ru_maxrss` cannot be reset, so the peak of a measured
//! window comes from `VmHWM` after resetting it through
//! `/proc/self/clear_refs` (when that is not possible the lifetime peak is
//! used and [`reset_peak_rss`] says so).

use std::time::Duration;

fn rusage(who: libc::c_int) -> Option<libc::rusage> {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` points to writable memory of the right size; getrusage
    // only writes into it and reports failure through its return value.
    let rc = unsafe { libc::getrusage(who, ru.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: getrusage returned 0, so it filled the struct (and it was
    // zero-initialised before).
    Some(unsafe { ru.assume_init() })
}

fn timeval(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
}

fn cpu_of(who: libc::c_int) -> Duration {
    rusage(who)
        .map(|r| timeval(r.ru_utime) + timeval(r.ru_stime))
        .unwrap_or_default()
}

/// User + system CPU time of the whole process so far.
pub fn process_cpu() -> Duration {
    cpu_of(libc::RUSAGE_SELF)
}

/// User + system CPU time of this process's children that have ended and
/// been waited for (the PDF extraction workers; the mock provider only once
/// it is stopped).
pub fn children_cpu() -> Duration {
    cpu_of(libc::RUSAGE_CHILDREN)
}

/// Largest peak RSS of any ended, waited-for child so far, bytes
/// (`ru_maxrss` of `RUSAGE_CHILDREN`, KiB on Linux).
pub fn children_peak_rss_bytes() -> Option<u64> {
    rusage(libc::RUSAGE_CHILDREN).map(|r| (r.ru_maxrss.max(0) as u64).saturating_mul(1024))
}

/// CPU time and context switches of the whole process so far, split.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub user: Duration,
    pub system: Duration,
    /// Voluntary context switches (waits: locks, I/O, sleeps).
    pub voluntary_switches: u64,
    /// Involuntary ones (preempted: more runnable threads than CPUs).
    pub involuntary_switches: u64,
}

/// [`Usage`] of this process (zero when getrusage fails).
pub fn process_usage() -> Usage {
    rusage(libc::RUSAGE_SELF)
        .map(|r| Usage {
            user: timeval(r.ru_utime),
            system: timeval(r.ru_stime),
            voluntary_switches: r.ru_nvcsw.max(0) as u64,
            involuntary_switches: r.ru_nivcsw.max(0) as u64,
        })
        .unwrap_or_default()
}

/// Threads of this process now (`Threads:` of `/proc/self/status`).
pub fn threads() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// User + system CPU time of the calling thread so far (Linux).
pub fn thread_cpu() -> Duration {
    cpu_of(libc::RUSAGE_THREAD)
}

/// Busy CPU time of the whole host (every process) since boot, from the
/// first line of `/proc/stat`: user + nice + system + irq + softirq +
/// steal. Lets a benchmark tell how much of the machine others used while
/// it ran (the numbers are only comparable on an otherwise idle host).
pub fn host_busy_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|i| f.get(*i)).sum();
    Duration::try_from_secs_f64(busy as f64 / clock_ticks()?).ok()
}

/// Clock ticks per second of `/proc` CPU times.
pub fn clock_ticks() -> Option<f64> {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then_some(hz as f64)
}

/// A `kB` field of `/proc/self/status` in bytes.
fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|k| k * 1024)
}

/// Current resident set size in bytes.
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS")
}

/// Peak resident set size in bytes since start or the last successful
/// [`reset_peak_rss`]; falls back to `ru_maxrss` (KiB on Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM").or_else(|| {
        rusage(libc::RUSAGE_SELF).map(|r| (r.ru_maxrss.max(0) as u64).saturating_mul(1024))
    })
}

/// Reset the peak RSS to the current RSS (Linux ≥ 4.0: writing `5` to
/// `/proc/self/clear_refs`). Returns false when the kernel refused, in
/// which case the peak includes everything before.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_available_and_consistent() {
        let rss = rss_bytes().unwrap();
        let peak = peak_rss_bytes().unwrap();
        assert!(rss > 0 && peak >= rss, "rss {rss} peak {peak}");
        // Burn some CPU on this thread: both clocks move forward.
        let (p0, t0) = (process_cpu(), thread_cpu());
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(thread_cpu() >= t0);
        assert!(process_cpu() >= p0);
        assert!(process_cpu() >= thread_cpu());
        assert!(host_busy_cpu().is_some());
        assert!(threads().unwrap() >= 1);
        let c0 = children_cpu();
        let status = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .status()
            .unwrap();
        assert!(status.success());
        assert!(children_cpu() > c0, "a waited-for child's CPU is counted");
        assert!(children_peak_rss_bytes().unwrap() > 0);
        let u = process_usage();
        assert!(u.user + u.system >= thread_cpu());
    }
}
