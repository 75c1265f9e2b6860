//! A runner directory for end-to-end tests with the real binary: the
//! repository's machines, profiles pointing at the mock provider over
//! loopback (no `rate_limit`: the runner knows no limit of the provider),
//! papers added offline from the fixture PDFs.

use super::{copy_dir, repo};
use paper_runner::runner::Config;
use paper_runner::store::{Store, StoreOptions};
use rusqlite::Connection;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use testkit::mock::{MockScript, MockServer};

/// The fixture PDFs [`Site::add_papers`] cycles through.
pub const PDFS: [&str; 4] = ["paper-a.pdf", "paper-b.pdf", "paper-c.pdf", "onecol.pdf"];

/// The arXiv id the `i`-th added paper gets (0-based).
pub fn arxiv(i: usize) -> String {
    format!("2501.{:05}", i + 1)
}

/// A runner directory (machines whose profiles point at the mock, data/,
/// reports/) and the mock provider serving it.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub mock: MockServer,
    /// The PostgreSQL database (a fresh schema) the site's runners share,
    /// when it is a PostgreSQL site ([`Site::postgres`]).
    pub pg: Option<String>,
}

impl Site {
    /// A site without a config.toml (every setting at its default).
    pub async fn new(script: &str) -> Site {
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
        Site {
            dir,
            mock,
            pg: None,
        }
    }

    /// A site whose runners share a fresh PostgreSQL schema on the server
    /// `RUNNER_TEST_PG` names, `config` added to its config.toml; None
    /// (after saying why) when the variable is not set.
    pub async fn postgres(script: &str, config: &str) -> Option<Site> {
        let Some(base) = super::pg_base() else {
            eprintln!(
                "skipped: RUNNER_TEST_PG is not set (a postgres:// URL of a server tests may use; .ci/run sets it)"
            );
            return None;
        };
        let url = super::pg_blocking(|| paper_runner::store::pg::fresh_schema_url(&base))
            .unwrap_or_else(|e| panic!("RUNNER_TEST_PG={base} is unusable: {e}"));
        let mut site = Site::new(script).await;
        std::fs::write(
            site.path().join("config.toml"),
            format!("db = \"{url}\"\n{config}"),
        )
        .unwrap();
        site.pg = Some(url);
        Some(site)
    }

    /// A site whose config.toml is `config`.
    pub async fn with_config(script: &str, config: &str) -> Site {
        let site = Site::new(script).await;
        std::fs::write(site.path().join("config.toml"), config).unwrap();
        site
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn db(&self) -> PathBuf {
        match &self.pg {
            Some(url) => PathBuf::from(url),
            None => self.path().join("data/runner.db"),
        }
    }

    /// The binary in the site directory, with the mock's key and no
    /// inherited `RUST_LOG` or `RUNNER_CONFIG`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_runner"));
        c.current_dir(self.path())
            .env("MOCK_KEY", "test-key-not-secret")
            .env_remove("RUST_LOG")
            .env_remove("RUNNER_CONFIG")
            .args(args);
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Run and expect success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "runner {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run with --json and parse stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}\n{text}"))
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

    /// Adds papers `from..from + n` offline (ids [`arxiv`]`(i)`), their PDFs
    /// cycling through [`PDFS`].
    pub fn add_papers(&self, from: usize, n: usize) {
        self.add_pdfs(&PDFS, from, n);
    }

    /// Adds papers `from..from + n` offline, their PDFs cycling through
    /// `pdfs` (names under tests/fixtures/papers).
    pub fn add_pdfs(&self, pdfs: &[&str], from: usize, n: usize) {
        for i in from..from + n {
            let pdf = repo()
                .join("tests/fixtures/papers")
                .join(pdfs[i % pdfs.len()]);
            // Offline: no arXiv metadata lookup (tests stay on loopback).
            self.ok(&[
                "add",
                &arxiv(i),
                "--offline",
                "--pdf",
                pdf.to_str().unwrap(),
            ]);
        }
    }

    pub fn conn(&self) -> Connection {
        let c = Connection::open(self.db()).unwrap();
        c.busy_timeout(Duration::from_secs(10)).unwrap();
        c
    }

    pub fn scalar(&self, sql: &str) -> i64 {
        if let Some(url) = &self.pg {
            return super::pg_query(url, sql)[0].get(0);
        }
        self.conn().query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// arXiv id → queue status.
    pub fn statuses(&self) -> BTreeMap<String, String> {
        if let Some(url) = &self.pg {
            return super::pg_query(url, "SELECT arxiv_id, status FROM executions")
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
        }
        let c = self.conn();
        let mut st = c
            .prepare("SELECT arxiv_id, status FROM executions")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// File names of the written reports.
    pub fn reports(&self) -> Vec<String> {
        match std::fs::read_dir(self.path().join("reports")) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".md"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn store(&self) -> Store {
        Store::open(&self.db(), &StoreOptions::default()).unwrap()
    }

    /// The configuration a runner started here would use for its paths.
    pub fn config(&self) -> Config {
        Config {
            db: self.db(),
            machines_dir: self.path().join("machines"),
            ..Config::default()
        }
    }

    /// Poll with a deadline (the daemons are real child processes);
    /// panics after `limit`.
    pub fn wait_for(&self, what: &str, limit: Duration, cond: impl Fn(&Site) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(start.elapsed() < limit, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
