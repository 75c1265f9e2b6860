//! A runner directory for end-to-end tests with the real binary: the
//! repository's machines, profiles pointing at the mock provider over
//! loopback (no `rate_limit`: the runner knows no limit of the provider),
//! papers added offline from the fixture PDFs. Shared by the hostile
//! scheduler and pause tests; each test uses a part of it.
#![allow(dead_code)]

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use testkit::mock::{MockScript, MockServer};

pub const PDFS: [&str; 4] = ["paper-a.pdf", "paper-b.pdf", "paper-c.pdf", "onecol.pdf"];

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

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

/// A runner directory whose profiles point at the mock (no `rate_limit`:
/// the runner knows no limit of the provider).
pub struct Site {
    pub dir: tempfile::TempDir,
    pub mock: MockServer,
}

impl Site {
    pub async fn new(script: &str, config: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&repo().join("machines"), &dir.path().join("machines"));
        let mock = MockServer::start("127.0.0.1:0", MockScript::parse(script).unwrap())
            .await
            .unwrap();
        let profiles = format!(
            "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    cheap: {{provider: openai, name: mock/cheap, base_url: \"{0}\", api_key_env: MOCK_KEY, timeout: 30}}\n    expensive: {{provider: openai, name: mock/expensive, base_url: \"{0}\", api_key_env: MOCK_KEY, timeout: 30}}\n  default: cheap\n",
            mock.base_url()
        );
        std::fs::write(dir.path().join("machines/profiles.yml"), profiles).unwrap();
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Site { dir, mock }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.current_dir(self.path())
            .env("MOCK_KEY", "test-key-not-secret")
            .env_remove("RUST_LOG")
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// A daemon whose log is read as it comes (a full pipe would stall it).
    pub fn daemon(&self) -> (Child, JoinHandle<String>) {
        let mut child = self
            .cmd(&["--log-level", "info", "--daemon"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut pipe = child.stderr.take().unwrap();
        let log = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
            text
        });
        (child, log)
    }

    pub fn add_papers(&self, from: usize, n: usize) {
        for i in from..from + n {
            let pdf = repo()
                .join("tests/fixtures/papers")
                .join(PDFS[i % PDFS.len()]);
            let id = format!("2501.{:05}", i + 1);
            let out = self.run(&["add", &id, "--offline", "--pdf", pdf.to_str().unwrap()]);
            assert!(out.status.success(), "{}", stderr(&out));
        }
    }

    pub fn conn(&self) -> Connection {
        let c = Connection::open(self.path().join("data/runner.db")).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    pub fn scalar(&self, sql: &str) -> i64 {
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// Poll with a deadline (the daemons are real child processes).
    pub fn wait_for(&self, what: &str, limit: Duration, cond: impl Fn(&Site) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
