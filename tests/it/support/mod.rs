//! Helpers shared by every integration test: paths to the repository and
//! its fixtures, process-output text, a scripted in-process agent
//! ([`agent`]), and a runner directory on the mock provider for tests that
//! run the real `runner` binary ([`site`]). One copy, used by all; add a
//! helper here rather than in a test file when a second file needs it.
#![allow(dead_code)]

pub mod agent;
pub mod site;

// Unused by a standalone test binary that includes this module by path.
#[allow(unused_imports)]
pub use agent::*;
#[allow(unused_imports)]
pub use site::*;

use std::path::{Path, PathBuf};
use std::process::Output;

/// Run the `runner` binary in `dir` with `args` (no `RUST_LOG`, no
/// `RUNNER_CONFIG` from the test's environment) and wait for it.
pub fn runner_in(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("RUNNER_CONFIG")
        .args(args)
        .output()
        .unwrap()
}

/// The repository root (the paper-runner package).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

/// Copies a directory tree (machines/, fixtures) into a test directory.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

/// A child's stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A child's stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Send `sig` (e.g. `"-TERM"`) to process `pid` with kill(1), asserting it
/// was delivered.
pub fn signal(pid: &str, sig: &str) {
    let sent = std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .is_ok_and(|s| s.success());
    assert!(sent, "kill {sig} {pid} failed");
}

/// The PostgreSQL server tests may use (`RUNNER_TEST_PG`), if any.
pub fn pg_base() -> Option<String> {
    std::env::var(paper_runner::store::pg::TEST_PG_ENV)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// Run blocking PostgreSQL client work from a test, which may be on an
/// async worker thread (the client refuses to run there otherwise).
pub fn pg_blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// One query's rows on `url` (a [`pg_base`] server or a fresh schema).
pub fn pg_query(url: &str, sql: &str) -> Vec<postgres::Row> {
    pg_blocking(|| {
        let mut c = url
            .parse::<postgres::Config>()
            .unwrap()
            .connect(postgres::NoTls)
            .unwrap();
        c.query(sql, &[]).unwrap()
    })
}
