//! The research pipeline end to end: `prep` → `expensive` → `wrap` as real
//! child processes of the built binary (`runner machine run … --db`), on
//! the sample papers in `examples/papers/`, against `runner mock-llm` (or,
//! where the mock cannot say what a test needs, a small provider stub in
//! this file), all on loopback. Each test has its own working directory,
//! so `reports/` and the database land in a temp dir.

use crate::support::{repo, stderr as stderr_of};
use paper_runner::pipeline::report::{
    missing_sections, parse_sections, split_frontmatter, REQUIRED_SECTIONS,
};
use paper_runner::pipeline::tags::{tag_allowed, STOP_WORDS, URL_PARTS};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_runner");
/// Model ids of the two profiles the machines use.
const CHEAP: &str = "mock-cheap-small";
const EXPENSIVE: &str = "mock-expensive-large";
/// The API key variable the profiles name (the mock only counts it).
const KEY_ENV: &str = "PIPELINE_E2E_KEY";

fn machine(name: &str) -> PathBuf {
    repo().join("machines").join(name)
}

/// One entry of `examples/papers.yml`.
#[derive(Debug, Clone)]
struct Paper {
    id: String,
    title: String,
    pdf: PathBuf,
}

/// The sample papers, as the demo reads them.
fn sample_papers() -> Vec<Paper> {
    let manifest = repo().join("examples/papers.yml");
    let text = std::fs::read_to_string(&manifest).expect("examples/papers.yml");
    let v: Value = serde_yaml::from_str(&text).expect("manifest is YAML");
    let papers = v["papers"].as_array().expect("`papers` list");
    assert!(papers.len() >= 4, "{papers:?}");
    papers
        .iter()
        .map(|p| {
            let field = |k: &str| {
                p[k].as_str()
                    .unwrap_or_else(|| panic!("{k} must be a string in {p}"))
                    .to_string()
            };
            let pdf = manifest.parent().unwrap().join(field("pdf"));
            assert!(pdf.is_file(), "{} is missing", pdf.display());
            Paper {
                id: field("arxiv_id"),
                title: field("title"),
                pdf,
            }
        })
        .collect()
}

/// `runner mock-llm --listen 127.0.0.1:0` as a child process; killed on drop.
struct Mock {
    child: Child,
    /// host:port
    addr: String,
}

impl Mock {
    fn start(script: Option<&Path>) -> Mock {
        let mut cmd = Command::new(BIN);
        cmd.args(["mock-llm", "--listen", "127.0.0.1:0"]);
        if let Some(s) = script {
            cmd.arg("--script").arg(s);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mock-llm");
        // The mock prints one flushed line once it listens; reading it is
        // the synchronisation.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read mock-llm banner");
        let url = line
            .trim()
            .strip_prefix("mock-llm listening on ")
            .unwrap_or_else(|| panic!("unexpected mock-llm banner {line:?}"));
        let addr = url
            .strip_prefix("http://")
            .and_then(|u| u.strip_suffix("/v1"))
            .unwrap_or_else(|| panic!("unexpected mock-llm url {url:?}"))
            .to_string();
        Mock { child, addr }
    }

    fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `GET /stats`.
    fn stats(&self) -> Value {
        let mut s = TcpStream::connect(&self.addr).expect("connect to mock");
        write!(
            s,
            "GET /stats HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        serde_json::from_str(body).expect("stats json")
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temp working directory with a profile catalog and a database.
struct Workspace {
    dir: tempfile::TempDir,
    profiles: PathBuf,
    db: PathBuf,
}

impl Workspace {
    /// `cheap` and `expensive` profiles at the given OpenAI base URLs.
    fn new(cheap_url: &str, expensive_url: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        let profiles = dir.path().join("profiles.yml");
        let catalog = format!(
            "spec: flatprofile\nspec_version: \"4.2.1\"\ndata:\n  model_profiles:\n    \
             cheap: {{provider: openai, name: {CHEAP}, base_url: \"{cheap_url}\", api_key_env: {KEY_ENV}, timeout: 30}}\n    \
             expensive: {{provider: openai, name: {EXPENSIVE}, base_url: \"{expensive_url}\", api_key_env: {KEY_ENV}, timeout: 30}}\n  \
             default: cheap\n"
        );
        std::fs::write(&profiles, catalog).expect("write profiles");
        let db = dir.path().join("runner.sqlite");
        Workspace { dir, profiles, db }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn reports(&self) -> PathBuf {
        self.path().join("reports")
    }

    /// Copies a paper's PDF into the workspace and returns the relative
    /// path the machines get (resolved against the child's working dir).
    fn stage_pdf(&self, p: &Paper) -> String {
        let rel = format!("papers/{}.pdf", p.id);
        let dest = self.path().join(&rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&p.pdf, &dest).expect("copy pdf");
        rel
    }

    /// `runner machine run <machine> --db … --execution-id <id>` in the
    /// workspace, the input passed as a file.
    fn run(&self, machine_file: &str, exec_id: &str, input: &Value) -> Output {
        let inputs = self.path().join("inputs");
        std::fs::create_dir_all(&inputs).unwrap();
        let input_file = inputs.join(format!("{}.json", exec_id.replace('/', "_")));
        std::fs::write(&input_file, serde_json::to_vec(input).unwrap()).unwrap();
        Command::new(BIN)
            .arg("machine")
            .arg("run")
            .arg(machine(machine_file))
            .arg("--profiles")
            .arg(&self.profiles)
            .arg("--db")
            .arg(&self.db)
            .args(["--execution-id", exec_id])
            .arg("--input-file")
            .arg(&input_file)
            .current_dir(self.path())
            .env(KEY_ENV, "e2e-test-key")
            .output()
            .expect("run runner")
    }

    /// Like `run`, but the run must succeed; returns its output object.
    fn run_ok(&self, machine_file: &str, exec_id: &str, input: &Value) -> Map<String, Value> {
        let out = self.run(machine_file, exec_id, input);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "{machine_file} ({exec_id}) failed: {:?}\n{stderr}",
            out.status
        );
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{machine_file} stdout is not JSON ({e}): {stderr}"));
        v.as_object().cloned().expect("output object")
    }

    fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.db).expect("open db")
    }

    fn ledger_rows(&self) -> i64 {
        self.sql()
            .query_row("SELECT COUNT(*) FROM llm_calls", [], |r| r.get(0))
            .unwrap()
    }

    /// Distinct models of the ledger rows of these root executions and
    /// their children, sorted.
    fn models_called(&self, roots: &[String]) -> Vec<String> {
        let db = self.sql();
        let mut stmt = db
            .prepare(
                "SELECT DISTINCT model FROM llm_calls
                 WHERE execution_id = ?1 OR execution_id LIKE ?1 || '/%' ORDER BY model",
            )
            .unwrap();
        let mut all: Vec<String> = Vec::new();
        for r in roots {
            let rows = stmt.query_map([r], |row| row.get::<_, String>(0)).unwrap();
            all.extend(rows.map(Result::unwrap));
        }
        all.sort();
        all.dedup();
        all
    }

    fn execution_status(&self, id: &str) -> Option<String> {
        self.sql()
            .query_row(
                "SELECT status FROM machine_executions WHERE execution_id = ?1",
                [id],
                |r| r.get(0),
            )
            .ok()
    }

    /// Report files of one paper (`<id>-*.md`).
    fn reports_of(&self, id: &str) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.reports()) else {
            return Vec::new();
        };
        let mut v: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                name.starts_with(&format!("{id}-")) && name.ends_with(".md")
            })
            .collect();
        v.sort();
        v
    }
}

/// The wrap input: prep's output, expensive's output and the models used.
fn wrap_input(prep: &Map<String, Value>, expensive: &Map<String, Value>) -> Value {
    let mut m = prep.clone();
    m.extend(expensive.clone());
    m.insert("models".into(), json!([CHEAP, EXPENSIVE]));
    Value::Object(m)
}

/// Every required section is there, exactly once as a `## ` heading, with
/// content.
fn assert_complete(report: &Path, body: &str) {
    assert!(
        missing_sections(body).is_empty(),
        "{}: {:?}",
        report.display(),
        missing_sections(body)
    );
    let sections = parse_sections(body);
    for s in REQUIRED_SECTIONS {
        let content = sections
            .get(s)
            .unwrap_or_else(|| panic!("{}: no '## {s}' heading", report.display()));
        assert!(
            content.split_whitespace().count() >= 5,
            "{}: section {s} is thin: {content:?}",
            report.display()
        );
        let headings = body
            .lines()
            .filter(|l| l.trim() == format!("## {s}"))
            .count();
        assert_eq!(
            headings,
            1,
            "{}: '## {s}' appears {headings} times",
            report.display()
        );
    }
}

/// Tags are slugs, never function words, URL/identifier fragments or bare
/// numbers, and never start or end with a function word.
fn assert_clean_tags(tags: &[String]) {
    assert!(!tags.is_empty());
    for tag in tags {
        let parts: Vec<&str> = tag.split('-').collect();
        assert!(
            tag.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{tag}"
        );
        assert!(parts.iter().all(|p| !p.is_empty()), "{tag}");
        assert!(
            !STOP_WORDS.contains(&tag.as_str()),
            "function word tag {tag}"
        );
        assert!(
            !STOP_WORDS.contains(&parts[0]),
            "{tag} starts with a function word"
        );
        assert!(
            !STOP_WORDS.contains(parts.last().unwrap()),
            "{tag} ends with a function word"
        );
        assert!(
            !parts.iter().any(|p| URL_PARTS.contains(p)),
            "URL fragment in {tag}"
        );
        assert!(
            !parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())),
            "numeric tag {tag}"
        );
        assert!(tag_allowed(tag), "{tag}");
    }
}

fn yaml_strings(v: &serde_yaml::Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(serde_yaml::Value::as_sequence)
        .unwrap_or_else(|| panic!("frontmatter {key} is not a list: {v:?}"))
        .iter()
        .map(|t| t.as_str().expect("string item").to_string())
        .collect()
}

#[test]
fn three_papers_run_end_to_end_into_audited_reports() {
    let mock = Mock::start(None);
    let ws = Workspace::new(&mock.base_url(), &mock.base_url());
    let papers: Vec<Paper> = sample_papers().into_iter().take(3).collect();
    let mut wrap_inputs = Vec::new();

    for p in &papers {
        let pdf = ws.stage_pdf(p);
        let prep = ws.run_ok(
            "prep.yml",
            &format!("prep-{}", p.id),
            &json!({"arxiv_id": p.id, "title": p.title, "pdf_path": pdf}),
        );
        assert_eq!(prep["arxiv_id"], json!(p.id));
        assert!(prep["pages"].as_u64().unwrap() >= 2, "{prep:?}");
        assert!(prep["reference_count"].as_u64().unwrap() >= 5);
        assert!(!prep["key_outcome"].as_str().unwrap_or("").trim().is_empty());
        let expensive = ws.run_ok(
            "expensive.yml",
            &format!("expensive-{}", p.id),
            &Value::Object(prep.clone()),
        );
        for k in ["mechanism", "reproduction", "open_questions"] {
            assert!(
                expensive[k].as_str().is_some_and(|s| s.contains("## ")),
                "{k}: {expensive:?}"
            );
        }
        let input = wrap_input(&prep, &expensive);
        let wrap = ws.run_ok("wrap.yml", &format!("wrap-{}", p.id), &input);
        assert_eq!(wrap["verdict"], "PASS", "{wrap:?}");
        assert_eq!(wrap["models"], json!([CHEAP, EXPENSIVE]));
        let report = ws
            .path()
            .join(wrap["report_path"].as_str().expect("report_path"));
        assert!(report.is_file(), "{}", report.display());
        assert_eq!(ws.reports_of(&p.id), vec![report.clone()]);
        for phase in ["prep", "expensive", "wrap"] {
            let id = format!("{phase}-{}", p.id);
            assert_eq!(ws.execution_status(&id).as_deref(), Some("done"), "{id}");
        }

        let text = std::fs::read_to_string(&report).unwrap();
        let (fm, body) = split_frontmatter(&text);
        let fm = fm.unwrap_or_else(|| panic!("{}: no YAML frontmatter", report.display()));
        assert_eq!(fm["arxiv_id"].as_str(), Some(p.id.as_str()));
        assert_eq!(fm["title"].as_str(), Some(p.title.as_str()));
        let tags = yaml_strings(&fm, "tags");
        assert_eq!(json!(tags), wrap["tags"]);
        assert_clean_tags(&tags);
        assert_clean_tags(&yaml_strings(&fm, "domain_tags"));
        // The frontmatter names exactly the models the ledger says this
        // paper's three phases called.
        let mut models = yaml_strings(&fm, "models");
        assert_eq!(models, [CHEAP, EXPENSIVE]);
        models.sort();
        let roots = ["prep", "expensive", "wrap"].map(|ph| format!("{ph}-{}", p.id));
        assert_eq!(ws.models_called(&roots), models);
        assert_complete(&report, body);
        wrap_inputs.push(input);
    }

    // The audit passes, as JSON.
    let out = Command::new(BIN)
        .args(["audit", "--json", "--reports"])
        .arg(ws.reports())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "audit failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let audit: Value = serde_json::from_slice(&out.stdout).expect("audit JSON");
    assert_eq!(audit["reports"], 3, "{audit}");
    assert_eq!(audit["failing"], 0, "{audit}");
    for a in audit["audits"].as_array().unwrap() {
        assert_eq!(a["problems"], json!([]), "{a}");
        assert_eq!(a["frontmatter_ok"], true, "{a}");
        assert_eq!(a["missing_sections"], json!([]), "{a}");
    }

    // Rerunning wrap replaces the paper's report: same input, then a
    // corrected title (a new file name); always exactly one file.
    let first = &papers[0];
    let before = ws.reports_of(&first.id);
    let again = ws.run_ok(
        "wrap.yml",
        &format!("wrap-{}-again", first.id),
        &wrap_inputs[0],
    );
    assert_eq!(ws.reports_of(&first.id), before);
    assert_eq!(
        ws.path().join(again["report_path"].as_str().unwrap()),
        before[0]
    );
    let mut retitled = wrap_inputs[0].clone();
    retitled["title"] = json!(format!("{} (Revised)", first.title));
    let revised = ws.run_ok("wrap.yml", &format!("wrap-{}-revised", first.id), &retitled);
    let now = ws.reports_of(&first.id);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, before, "a new title gives a new file name");
    assert!(!before[0].exists());
    assert_eq!(
        ws.path().join(revised["report_path"].as_str().unwrap()),
        now[0]
    );
    let text = std::fs::read_to_string(&now[0]).unwrap();
    let fm = split_frontmatter(&text).0.unwrap();
    assert_eq!(
        fm["title"].as_str(),
        Some(retitled["title"].as_str().unwrap())
    );
    for other in &papers[1..] {
        assert_eq!(ws.reports_of(&other.id).len(), 1);
    }

    // Every request the provider saw has exactly one ledger row.
    let stats = mock.stats();
    let requests = stats["requests"].as_i64().unwrap();
    assert_eq!(requests, ws.ledger_rows(), "{stats}");
    // 1 prep + 3 expensive + 3 wrap calls per paper, 3 per wrap rerun.
    assert_eq!(requests, 3 * 7 + 2 * 3, "{stats}");
    assert_eq!(stats["by_status"], json!({"200": requests}), "{stats}");
    assert_eq!(stats["with_auth"], requests, "{stats}");
    let by_model = |m: &str| -> i64 {
        ws.sql()
            .query_row(
                "SELECT COUNT(*) FROM llm_calls WHERE model = ?1 AND status = 'ok'",
                [m],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(stats["by_model"][CHEAP], by_model(CHEAP));
    assert_eq!(stats["by_model"][EXPENSIVE], by_model(EXPENSIVE));
}

/// Mock script: the expensive model's second request gets a 400.
const INVALID_SECOND_EXPENSIVE: &str = "models:\n  mock-expensive-large:\n    faults:\n      - {at: 2, status: 400, body: \"e2e: this request is rejected\"}\n";

#[test]
fn a_failed_expensive_child_fails_the_phase_and_no_report_follows() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.yml");
    std::fs::write(&script, INVALID_SECOND_EXPENSIVE).unwrap();
    let mock = Mock::start(Some(&script));
    let ws = Workspace::new(&mock.base_url(), &mock.base_url());
    let p = &sample_papers()[1];
    let pdf = ws.stage_pdf(p);
    let prep = ws.run_ok(
        "prep.yml",
        "prep-1",
        &json!({"arxiv_id": p.id, "pdf_path": pdf}),
    );
    // Without a title in the input, prep takes the one on the first page.
    assert_eq!(prep["title"], json!(p.title));

    let out = ws.run("expensive.yml", "expensive-1", &Value::Object(prep.clone()));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "no output on failure");
    assert!(stderr.contains("error: child_failed: "), "{stderr}");
    assert!(stderr.contains("1 child machine(s) failed"), "{stderr}");
    // Which child sent the second request is up to the scheduler of the
    // three parallel children; the ledger says which one it was, and the
    // error must name that one (and only that one) with the provider's kind.
    let failed: String = ws
        .sql()
        .query_row(
            "SELECT execution_id FROM llm_calls WHERE http_status = 400 AND error_kind = 'invalid_request'",
            [],
            |r| r.get(0),
        )
        .expect("one rejected call in the ledger");
    let child = failed.rsplit('/').next().unwrap().to_string();
    assert!(failed.starts_with("expensive-1/analyse@"), "{failed}");
    assert!(
        stderr.contains(&format!("'{child}' (invalid_request: ")),
        "{stderr}"
    );
    for other in ["mechanism", "reproduction", "open_questions"] {
        if other != child {
            assert!(!stderr.contains(&format!("'{other}'")), "{stderr}");
        }
    }
    assert_eq!(
        ws.execution_status("expensive-1").as_deref(),
        Some("failed")
    );
    assert_eq!(ws.execution_status(&failed).as_deref(), Some("failed"));
    // invalid_request is permanent: one attempt, no retries.
    let attempts: i64 = ws
        .sql()
        .query_row(
            "SELECT COUNT(*) FROM llm_calls WHERE execution_id = ?1",
            [&failed],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(attempts, 1);

    // Nothing to wrap: a wrap run on prep's output alone fails before any
    // call and writes no report.
    let out = ws.run("wrap.yml", "wrap-1", &wrap_input(&prep, &Map::new()));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: empty_response: state 'inputs': wrap input"),
        "{stderr}"
    );
    assert!(ws.reports_of(&p.id).is_empty());
    assert!(!ws.reports().exists() || std::fs::read_dir(ws.reports()).unwrap().next().is_none());
    let stats = mock.stats();
    assert_eq!(
        stats["requests"].as_i64().unwrap(),
        ws.ledger_rows(),
        "{stats}"
    );
    assert_eq!(
        stats["requests"], 4,
        "1 prep + 3 expensive, none for wrap: {stats}"
    );
}

/// What the stub provider answers: every `## Heading` the prompt asks for
/// gets a paragraph, except that "Open Questions" gets a placeholder and
/// "Key Results" only whitespace — the failures a model really produces.
fn stub_answer(prompt: &str) -> String {
    let mut out = String::new();
    let mut seen = Vec::new();
    for h in prompt.lines().filter_map(|l| l.trim().strip_prefix("## ")) {
        let h = h.trim();
        if h.is_empty() || seen.contains(&h) {
            continue;
        }
        seen.push(h);
        let body = match h {
            "Open Questions" => "Insufficient context.".to_string(),
            "Key Results" => " \t ".to_string(),
            _ => format!("The paper's {h} is described in enough detail to act on."),
        };
        out.push_str(&format!("## {h}\n\n{body}\n\n"));
    }
    out
}

/// Handles one HTTP/1.1 chat request on `s` with `stub_answer`.
fn serve_stub(s: TcpStream) {
    let mut reader = BufReader::new(s.try_clone().expect("clone stream"));
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let req: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let prompt: Vec<&str> = req["messages"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["content"].as_str()).collect())
        .unwrap_or_default();
    let resp = json!({
        "id": "stub-1",
        "object": "chat.completion",
        "created": 1_767_225_600,
        "model": req["model"],
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": stub_answer(&prompt.join("\n"))}}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}
    })
    .to_string();
    let mut s = s;
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{resp}",
        resp.len()
    );
}

/// A loopback OpenAI-compatible stub serving `stub_answer`; returns its
/// base URL. The accept loop ends with the test process.
fn start_stub() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind stub");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || serve_stub(conn));
        }
    });
    format!("http://{addr}/v1")
}

#[test]
fn placeholder_or_blank_sections_fail_the_phase_and_cannot_reach_a_report() {
    let mock = Mock::start(None);
    let stub = start_stub();
    // Cheap calls (prep, wrap) go to the mock, expensive ones to the stub.
    let ws = Workspace::new(&mock.base_url(), &stub);
    let p = &sample_papers()[2];
    let pdf = ws.stage_pdf(p);
    let prep = ws.run_ok(
        "prep.yml",
        "prep-2",
        &json!({"arxiv_id": p.id, "title": p.title, "pdf_path": pdf}),
    );

    let out = ws.run("expensive.yml", "expensive-2", &Value::Object(prep.clone()));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("error: child_failed: state 'analyse': 2 child machine(s) failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("'open_questions' (empty_response: state 'check': the open questions: missing or empty sections: Open Questions)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("'reproduction' (empty_response: state 'check': the reproduction notes: missing or empty sections: Key Results)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("'mechanism'"),
        "mechanism was fine: {stderr}"
    );
    assert_eq!(
        ws.execution_status("expensive-2").as_deref(),
        Some("failed")
    );
    let mechanism = ws
        .sql()
        .query_row(
            "SELECT status FROM machine_executions WHERE execution_id LIKE 'expensive-2/%/mechanism'",
            [],
            |r| r.get::<_, String>(0),
        )
        .unwrap();
    assert_eq!(mechanism, "done");

    // Had the sections been passed on anyway, wrap refuses them before
    // calling a model, and no report appears.
    let calls_before = mock.stats()["requests"].clone();
    let sections =
        |h: &[&str]| stub_answer(&h.iter().map(|h| format!("## {h}\n")).collect::<String>());
    let leaked = json!({
        "mechanism": sections(&["Why This Works (Mechanism)", "Foundational Learning", "Architecture Onboarding"]),
        "reproduction": sections(&["Method Summary", "Key Results", "Next Checks"]),
        "open_questions": sections(&["Open Questions"]),
    });
    let out = ws.run(
        "wrap.yml",
        "wrap-2",
        &wrap_input(&prep, leaked.as_object().unwrap()),
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: empty_response: state 'inputs': wrap input (the expensive phase's analyses): missing or empty sections: Key Results, Open Questions"),
        "{stderr}"
    );
    assert!(ws.reports_of(&p.id).is_empty());
    assert_eq!(
        mock.stats()["requests"],
        calls_before,
        "wrap paid for nothing"
    );
}
