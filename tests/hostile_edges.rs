//! Hostile-input tests for the leftovers of issue 12: a host out of file
//! descriptors never fails a paper permanently (local PDF, cached PDF,
//! corpus), a local PDF swapped for a FIFO or a directory fails at once,
//! a crash's download temp files are swept at start, and `check` (and
//! start-up) refuse invalid model profiles and `{% %}` blocks in shell
//! scripts.
//!
//! The descriptor tests lower this process's `RLIMIT_NOFILE`, which every
//! thread shares, so every test in this file runs under one lock, and
//! the file is its own test binary (not a module of tests/it/).

use paper_runner::engine::ErrorKind;
use paper_runner::pipeline::acquire::{AcquireConfig, Acquirer};
use paper_runner::pipeline::corpus::{corpus_lookup, STATUS_DB_UNAVAILABLE};
use paper_runner::runner::build::{build, BuildError, RunOptions};
use paper_runner::runner::scheduler::RunMode;
use paper_runner::runner::Config;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` while no new file descriptor can be opened (the soft
/// `RLIMIT_NOFILE` is set to the lowest free descriptor), then restores
/// the limit, also when `f` panics.
fn with_descriptors_exhausted<T>(f: impl FnOnce() -> T) -> T {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `old` is a valid rlimit to write into.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let lowest_free = std::fs::File::open("/dev/null").unwrap().as_raw_fd();
    let low = libc::rlimit {
        rlim_cur: lowest_free as libc::rlim_t,
        rlim_max: old.rlim_max,
    };
    // SAFETY: a valid rlimit; lowering the soft limit is always allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
    let exhausted = std::fs::File::open("/dev/null").map(|_| ());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    // SAFETY: restores the limit read above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    assert_eq!(
        exhausted.map_err(|e| e.raw_os_error()),
        Err(Some(libc::EMFILE)),
        "the limit did exhaust descriptors"
    );
    match r {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

fn acquirer(pdf_dir: &Path) -> Acquirer {
    Acquirer::new(AcquireConfig {
        // Nothing listens on the discard port: a download attempt would
        // fail as a transport error (`server_error`), not as exhaustion.
        pdf_base_url: "http://127.0.0.1:9/pdf".into(),
        pdf_dir: pdf_dir.to_path_buf(),
        backoffs: Vec::new(),
        timeout: Duration::from_secs(5),
        min_interval: Duration::from_millis(1),
        ..AcquireConfig::default()
    })
    .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

const PDF: &[u8] = b"%PDF-1.4\n% a cached paper\n";

/// Before: a local PDF that could not be opened for lack of descriptors was
/// a permanent `pdf_unreadable`, a cached one read as "not cached" (a
/// needless download, failing as a transport error), and the corpus as
/// "unavailable" (the paper analysed without its signals, for good). Now
/// all three are `resource_exhausted`, which the runner retries, and
/// nothing on disk is touched.
#[test]
fn descriptor_exhaustion_is_retryable_for_pdfs_and_the_corpus() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("own.pdf");
    std::fs::write(&local, PDF).unwrap();
    let cache = dir.path().join("pdfs");
    std::fs::create_dir(&cache).unwrap();
    let cached = cache.join("2401.00001.pdf");
    std::fs::write(&cached, PDF).unwrap();
    let corpus = dir.path().join("corpus.db");
    rusqlite::Connection::open(&corpus)
        .unwrap()
        .execute_batch("CREATE TABLE t(x);")
        .unwrap();
    let a = acquirer(&cache);
    let rt = rt();

    let (local_r, cached_r, corpus_r, unconfigured) = with_descriptors_exhausted(|| {
        (
            rt.block_on(a.acquire("2401.00001", Some(&local))),
            rt.block_on(a.acquire("2401.00001", None)),
            corpus_lookup(Some(&corpus), "2401.00001", "Graph transformers", ""),
            corpus_lookup(None, "2401.00001", "Graph transformers", ""),
        )
    });
    let e = local_r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceExhausted, "{}", e.message);
    assert!(e.message.contains("own.pdf"), "{}", e.message);
    let e = cached_r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceExhausted, "{}", e.message);
    assert!(e.message.contains("2401.00001.pdf"), "{}", e.message);
    let e = corpus_r.unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceExhausted, "{}", e.message);
    assert!(e.message.contains("corpus.db"), "{}", e.message);
    // No corpus configured is still not an error.
    assert_eq!(unconfigured.unwrap().status, STATUS_DB_UNAVAILABLE);

    // Nothing was lost or replaced, and with descriptors back all is well.
    assert_eq!(std::fs::read(&cached).unwrap(), PDF);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
    assert_eq!(
        rt.block_on(a.acquire("2401.00001", Some(&local))).unwrap(),
        local
    );
    assert_eq!(rt.block_on(a.acquire("2401.00001", None)).unwrap(), cached);
    let s = corpus_lookup(Some(&corpus), "2401.00001", "Graph transformers", "").unwrap();
    assert_eq!(
        s.status, STATUS_DB_UNAVAILABLE,
        "a foreign database degrades"
    );
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Runs `f` on a thread and fails the test if it has not returned within
/// ten seconds (it would have blocked a worker for good).
fn within_deadline<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("returned within its deadline instead of blocking")
}

/// A paper added with `--pdf` whose file became a FIFO (or a directory)
/// later: opening it used to block until a writer appeared. Now it is a
/// permanent `pdf_unreadable` naming the path, at once; the same for a
/// FIFO in the cache's place, which is neither "cached" nor downloaded
/// over.
#[test]
fn local_pdf_replaced_by_a_fifo_or_directory_fails_at_once() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("paper.pdf");
    mkfifo(&fifo);
    let folder = dir.path().join("folder.pdf");
    std::fs::create_dir(&folder).unwrap();
    let cache = dir.path().join("pdfs");
    std::fs::create_dir(&cache).unwrap();
    mkfifo(&cache.join("2401.00002.pdf"));
    let d = dir.path().to_path_buf();
    let results = within_deadline(move || {
        let a = acquirer(&d.join("pdfs"));
        let rt = rt();
        [
            rt.block_on(a.acquire("2401.00001", Some(&d.join("paper.pdf")))),
            rt.block_on(a.acquire("2401.00001", Some(&d.join("folder.pdf")))),
            rt.block_on(a.acquire("2401.00002", None)),
        ]
    });
    for (r, (name, what)) in results.into_iter().zip([
        ("paper.pdf", "not a regular file"),
        ("folder.pdf", "is a directory"),
        ("2401.00002.pdf", "not a regular file"),
    ]) {
        let e = r.unwrap_err();
        assert_eq!(e.kind, ErrorKind::PdfUnreadable, "{name}: {}", e.message);
        assert!(
            e.message.contains(name) && e.message.contains(what),
            "{name}: {}",
            e.message
        );
    }
}

/// A runner directory with the shipped machines.
fn runner_config(dir: &Path) -> Config {
    paper_runner::runner::embedded::write_machines(&dir.join("machines")).unwrap();
    Config {
        db: dir.join("data/runner.db"),
        machines_dir: dir.join("machines"),
        pdf_dir: dir.join("data/pdfs"),
        reports_dir: dir.join("reports"),
        terminology: Some(dir.join("machines/terminology.yml")),
        ..Config::default()
    }
}

fn options() -> RunOptions {
    RunOptions {
        mode: RunMode::SinglePass,
        prep_only: false,
    }
}

/// A crash mid-download left `.NAME.pid.rand.tmp` files in the PDF cache
/// for good. Building the runner now removes those of dead processes, and
/// keeps a live download's temp file, cached PDFs and anything else.
#[test]
fn runner_start_sweeps_stale_download_temp_files() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = runner_config(dir.path());
    std::fs::create_dir_all(&cfg.pdf_dir).unwrap();
    // 2147483000 is above any kernel's pid_max: that process is gone.
    let stale: Vec<PathBuf> = (0..3)
        .map(|i| {
            cfg.pdf_dir.join(format!(
                ".2401.0000{i}.pdf.2147483000.00000000deadbee{i}.tmp"
            ))
        })
        .collect();
    let live = cfg.pdf_dir.join(format!(
        ".2401.00009.pdf.{}.0123456789abcdef.tmp",
        std::process::id()
    ));
    let keep = [
        cfg.pdf_dir.join("2401.00001.pdf"),
        cfg.pdf_dir.join("notes.tmp"),
        live.clone(),
    ];
    for p in stale.iter().chain(keep.iter()) {
        std::fs::write(p, PDF).unwrap();
    }
    let built = build(&cfg.resolve().unwrap(), &options()).unwrap();
    drop(built);
    for p in &stale {
        assert!(!p.exists(), "{} was swept", p.display());
    }
    for p in &keep {
        assert_eq!(std::fs::read(p).unwrap(), PDF, "{} kept", p.display());
    }
}

fn runner(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("RUNNER_CONFIG")
        .args(args)
        .output()
        .unwrap()
}

const HEAD: &str = "spec: flatmachine\nspec_version: \"4.2.1\"\n";

/// A profile the HTTP client refuses (`max_response_bytes: 0`, a bad
/// `rate_limit`) passed `check` and start-up and failed only when a paper
/// reached its agent. Now `check` exits 2 with one error per bad profile
/// naming the catalog file and the profile, and the runner does not start.
#[test]
fn invalid_profiles_are_refused_by_check_and_at_start() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("profiles.yml"),
        "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    \
         good: {provider: openai, name: m, timeout: 30}\n    \
         tiny: {provider: openai, name: m, max_response_bytes: 0}\n    \
         fast: {provider: openai, name: m, rate_limit: \"lots\"}\n  default: good\n",
    )
    .unwrap();
    let agent = |p: &str| {
        format!("{{spec: flatagent, spec_version: \"4.2.1\", data: {{profile: {p}, prompt: {{user: hi}}}}}}")
    };
    std::fs::write(
        d.join("m.yml"),
        format!(
            "{HEAD}data:\n  agents:\n    a: {}\n    b: {}\n    c: {}\n    d: {}\n  states:\n    \
             start: {{type: initial, transitions: [{{to: ask}}]}}\n    \
             ask: {{agent: a, transitions: [{{to: done}}]}}\n    done: {{type: final}}\n",
            agent("good"),
            agent("tiny"),
            agent("fast"),
            agent("tiny"),
        ),
    )
    .unwrap();
    let o = runner(d, &["machine", "check", "m.yml"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(2), "{out}");
    let catalog = std::fs::canonicalize(d.join("profiles.yml")).unwrap();
    let errors: Vec<&str> = out.lines().filter(|l| l.contains("is invalid")).collect();
    assert_eq!(errors.len(), 2, "one error per bad profile: {out}");
    let tiny = errors
        .iter()
        .find(|l| l.contains("profile 'tiny'"))
        .unwrap();
    assert!(
        tiny.starts_with(&format!("{}: ", catalog.display()))
            && tiny.contains("agent 'b'")
            && tiny.contains("`max_response_bytes` must be a whole number"),
        "{tiny}"
    );
    let fast = errors
        .iter()
        .find(|l| l.contains("profile 'fast'"))
        .unwrap();
    assert!(
        fast.contains("agent 'c'") && fast.contains("lots"),
        "{fast}"
    );
    assert!(!out.contains("'good'"), "{out}");
    // `--profiles` names that catalog instead.
    let o = runner(
        d,
        &["machine", "check", "m.yml", "--profiles", "profiles.yml"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stdout).contains("profiles.yml: profile 'tiny'"));

    // Start-up: the shipped machines with one profile made invalid.
    let site = tempfile::tempdir().unwrap();
    let cfg = runner_config(site.path());
    let profiles = cfg.machines_dir.join("profiles.yml");
    let text = std::fs::read_to_string(&profiles).unwrap();
    assert!(
        build(&cfg.resolve().unwrap(), &options()).is_ok(),
        "the shipped profiles are valid"
    );
    let bad = text.replacen("timeout:", "max_response_bytes: 0\n      timeout:", 1);
    assert_ne!(bad, text, "the shipped profiles set a timeout");
    std::fs::write(&profiles, &bad).unwrap();
    match build(&cfg.resolve().unwrap(), &options()) {
        Err(BuildError::Machine { problems, .. }) => {
            assert!(
                problems.contains("profiles.yml") && problems.contains("max_response_bytes"),
                "{problems}"
            );
        }
        Err(e) => panic!("unexpected error: {e}"),
        Ok(_) => panic!("the runner started with an invalid profile"),
    }
}

/// `{% %}` blocks in a shell script were refused only at run time
/// (`template_error`); `check` now names the file and the state, for the
/// string form and for `sh -c` in the list form, and still accepts values
/// and `{% %}` in plain list arguments (which are rendered as one argument
/// each, never as shell code).
#[test]
fn check_refuses_template_blocks_in_shell_scripts() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let machine = |name: &str, command: &str| {
        std::fs::write(
            d.join(name),
            format!(
                "{HEAD}data:\n  states:\n    start: {{type: initial, transitions: [{{to: sh}}]}}\n    \
                 sh:\n      action: shell\n      command: {command}\n      transitions: [{{to: done}}]\n    \
                 done: {{type: final}}\n"
            ),
        )
        .unwrap();
    };
    machine("line.yml", "\"echo {% if context.x %}rm -rf x{% endif %}\"");
    machine(
        "argv.yml",
        "[sh, -ec, \"echo {%- for f in context.files %}{{ f }}{% endfor %}\"]",
    );
    machine("open.yml", "\"echo '{{ context.x'\"");
    machine(
        "fine.yml",
        "\"echo '{{ context.x }}' \\\"{{ context.y | default('') }}\\\" {# note #}\"",
    );
    machine(
        "plain.yml",
        "[printf, \"%s\", \"{% if context.x %}yes{% endif %}\"]",
    );
    for (file, what) in [
        (
            "line.yml",
            "`{% %}` blocks are not allowed in a shell script",
        ),
        (
            "argv.yml",
            "`{% %}` blocks are not allowed in a shell script",
        ),
        ("open.yml", "has no closing `}}`"),
    ] {
        let o = runner(d, &["machine", "check", file]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(2), "{file}: {out}");
        assert!(
            out.contains(&format!("{file}: state 'sh': command: ")) && out.contains(what),
            "{file}: {out}"
        );
    }
    for file in ["fine.yml", "plain.yml"] {
        let o = runner(d, &["machine", "check", file]);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{file}: {}",
            String::from_utf8_lossy(&o.stdout)
        );
    }
    // What check refuses, a run refuses too (before anything runs).
    let o = runner(d, &["machine", "run", "line.yml"]);
    assert_eq!(o.status.code(), Some(2));
}
