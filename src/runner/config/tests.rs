//! Loading, overlay, validation and resolution of the runner configuration.

use super::file::line_column;
use super::*;
use crate::runner::phase::Phase;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// An environment made of the given pairs; nothing else is set.
fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn load_file(text: &str) -> Result<Loaded, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config.toml", text);
    load_with(Some(&path), &no_env, &dir.path().join("absent.toml"))
}

fn problems(config: &Config) -> Vec<Problem> {
    match config.validate() {
        Ok(()) => Vec::new(),
        Err(ConfigError::Invalid { problems }) => problems,
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn problem_keys(config: &Config) -> Vec<String> {
    problems(config).into_iter().map(|p| p.key).collect()
}

#[test]
fn defaults_when_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = load_with(None, &no_env, &dir.path().join("config.toml")).unwrap();
    assert_eq!(loaded.source, None);
    assert_eq!(loaded.config, Config::default());
    Config::default().validate().unwrap();
}

#[test]
fn fallback_file_is_used_when_present() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "config.toml", "[scheduler]\nworkers = 9\n");
    let loaded = load_with(None, &no_env, &path).unwrap();
    assert_eq!(loaded.source.as_deref(), Some(path.as_path()));
    assert_eq!(loaded.config.scheduler.workers, 9);
}

#[test]
fn explicit_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let err = load_with(Some(&missing), &no_env, &dir.path().join("config.toml")).unwrap_err();
    assert!(matches!(
        err,
        ConfigError::NotFound {
            origin: "--config",
            ..
        }
    ));
    assert!(err.to_string().contains("nope.toml"), "{err}");

    let env = env_of(&[(CONFIG_ENV, missing.to_str().unwrap())]);
    let err = load_with(None, &env, &dir.path().join("config.toml")).unwrap_err();
    assert!(err.to_string().contains("$RUNNER_CONFIG"), "{err}");
}

#[test]
fn explicit_beats_env_beats_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(dir.path(), "a.toml", "[scheduler]\nworkers = 1\n");
    let b = write(dir.path(), "b.toml", "[scheduler]\nworkers = 2\n");
    let c = write(dir.path(), "config.toml", "[scheduler]\nworkers = 3\n");
    let env = env_of(&[(CONFIG_ENV, b.to_str().unwrap())]);
    let workers = |explicit: Option<&Path>, env: &dyn Fn(&str) -> Option<String>| {
        load_with(explicit, env, &c)
            .unwrap()
            .config
            .scheduler
            .workers
    };
    assert_eq!(workers(Some(&a), &env), 1);
    assert_eq!(workers(None, &env), 2);
    assert_eq!(workers(None, &no_env), 3);
    // An empty RUNNER_CONFIG counts as unset.
    assert_eq!(workers(None, &env_of(&[(CONFIG_ENV, "")])), 3);
}

#[test]
fn unknown_key_names_file_key_and_line() {
    let err = load_file("db = \"x.db\"\n\n[scheduler]\nwrokers = 3\n").unwrap_err();
    let ConfigError::Parse { key, line, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(key.as_deref(), Some("scheduler.wrokers"));
    assert_eq!(*line, Some(4));
    let msg = err.to_string();
    assert!(
        msg.contains("config.toml:4:1: unknown key 'scheduler.wrokers'"),
        "{msg}"
    );
    assert!(
        msg.contains("`workers`"),
        "the message lists valid keys: {msg}"
    );
    assert!(!msg.contains('\n'), "one line: {msg}");

    // Dotted and top-level keys are named the same way.
    let msg = load_file("scheduler.wrokers = 3\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("unknown key 'scheduler.wrokers'"), "{msg}");
    let msg = load_file("bogus = 1\n").unwrap_err().to_string();
    assert!(
        msg.contains("config.toml:1:1: unknown key 'bogus'"),
        "{msg}"
    );
}

#[test]
fn mistyped_value_names_key_and_line() {
    let err = load_file("[scheduler]\nworkers = \"four\"\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("config.toml:2:11: scheduler.workers: invalid type"),
        "{msg}"
    );
    let msg = load_file("[scheduler]\nphase_order = [\"prep\", \"wrpa\"]\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("scheduler.phase_order"), "{msg}");
    assert!(msg.contains("wrpa"), "{msg}");
    let msg = load_file("[scheduler.phase_caps]\nprap = 1\n")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains(": scheduler.phase_caps: unknown variant `prap`"),
        "{msg}"
    );
}

#[test]
fn syntax_error_names_file_and_line() {
    let err = load_file("[budget]\ndaily = \n").unwrap_err();
    let ConfigError::Parse { line, key, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!((*line, key.as_deref()), (Some(2), None));
    assert!(err.to_string().contains("config.toml:2:"), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_file_directory() {
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc");
    let path = write(
        &etc,
        "config.toml",
        "db = \"state/runner.db\"\nmachines_dir = \"/opt/machines\"\n\
         profiles = \"profiles.yml\"\ncorpus_db = \"../corpus.db\"\n\
         [seed]\ndb = \"seed.db\"\n",
    );
    let c = load_with(Some(&path), &no_env, Path::new("absent"))
        .unwrap()
        .config;
    assert_eq!(c.db, etc.join("state/runner.db"));
    assert_eq!(c.machines_dir, PathBuf::from("/opt/machines"));
    assert_eq!(c.profiles, Some(etc.join("profiles.yml")));
    assert_eq!(c.corpus_db, Some(etc.join("../corpus.db")));
    assert_eq!(c.seed.db, Some(etc.join("seed.db")));
    // Not in the file: the default stays relative to the working directory.
    assert_eq!(c.pdf_dir, Config::default().pdf_dir);
    assert_eq!(c.terminology, None);
}

#[test]
fn env_overrides_apply_after_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "config.toml",
        "[scheduler]\nworkers = 2\n[budget]\ndaily = 100\ncheap = 50\n",
    );
    let env = env_of(&[
        ("RUNNER_WORKERS", "7"),
        ("RUNNER_BUDGET_DAILY", ""),
        ("RUNNER_DB", "rel/other.db"),
        ("RUNNER_POLL_INTERVAL_SECS", "0.5"),
        ("RUNNER_PREP_BURST_CRON", "0 0 23 * * *"),
        ("RUNNER_LISTEN", "127.0.0.1:9464"),
        ("RUNNER_LOG_FORMAT", "json"),
        ("RUNNER_SYNC_FULL", "yes"),
    ]);
    let c = load_with(Some(&path), &env, Path::new("absent"))
        .unwrap()
        .config;
    assert_eq!(c.scheduler.workers, 7);
    assert_eq!(c.budget.daily, None, "an empty value unsets");
    assert_eq!(c.budget.cheap, Some(50), "untouched by the environment");
    assert_eq!(
        c.db,
        PathBuf::from("rel/other.db"),
        "env paths are not resolved"
    );
    assert_eq!(c.scheduler.poll_interval_secs, 0.5);
    assert_eq!(c.scheduler.prep_burst_cron.as_deref(), Some("0 0 23 * * *"));
    assert_eq!(c.ops.listen.as_deref(), Some("127.0.0.1:9464"));
    assert_eq!(c.ops.log_format, "json");
    assert!(c.sync_full);
    c.validate().unwrap();
}

#[test]
fn bad_env_value_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let load = |pairs: &[(&str, &str)]| {
        load_with(None, &env_of(pairs), &dir.path().join("config.toml")).unwrap_err()
    };
    let err = load(&[("RUNNER_WORKERS", "four")]);
    assert!(matches!(
        err,
        ConfigError::Env {
            var: "RUNNER_WORKERS",
            ..
        }
    ));
    let msg = err.to_string();
    assert!(msg.contains("RUNNER_WORKERS=\"four\""), "{msg}");
    assert!(msg.contains("scheduler.workers"), "{msg}");
    let msg = load(&[("RUNNER_MAX_ATTEMPTS", "-1")]).to_string();
    assert!(msg.contains("RUNNER_MAX_ATTEMPTS"), "{msg}");
    let msg = load(&[("RUNNER_DB", "")]).to_string();
    assert!(msg.contains("RUNNER_DB") && msg.contains("empty"), "{msg}");
}

#[test]
fn every_documented_env_var_exists() {
    let names: Vec<&str> = env_overrides().map(|(var, _)| var).collect();
    for var in [
        "RUNNER_DB",
        "RUNNER_MACHINES_DIR",
        "RUNNER_PROFILES",
        "RUNNER_PDF_DIR",
        "RUNNER_REPORTS_DIR",
        "RUNNER_CORPUS_DB",
        "RUNNER_PDF_BASE_URL",
        "RUNNER_ARXIV_API_URL",
        "RUNNER_WORKERS",
        "RUNNER_LEASE_TTL_SECS",
        "RUNNER_MAX_ATTEMPTS",
        "RUNNER_POLL_INTERVAL_SECS",
        "RUNNER_DRAIN_TIMEOUT_SECS",
        "RUNNER_BUDGET_DAILY",
        "RUNNER_BUDGET_CHEAP",
        "RUNNER_BUDGET_EXPENSIVE",
        "RUNNER_PREP_BURST_CRON",
        "RUNNER_LISTEN",
        "RUNNER_LOG_FORMAT",
    ] {
        assert!(names.contains(&var), "{var} missing");
    }
}

#[test]
fn validation_names_each_bad_key() {
    let mut c = Config::default();
    c.scheduler.workers = 0;
    c.scheduler.lease_ttl_secs = 0;
    c.scheduler.max_attempts = 0;
    c.scheduler.poll_interval_secs = f64::NAN;
    c.scheduler.phase_order = vec![Phase::Prep, Phase::Wrap, Phase::Prep];
    c.budget.day_start_utc = "24:00".into();
    c.budget.classes.insert("judge".into(), "medium".into());
    c.ops.log_format = "xml".into();
    let keys = problem_keys(&c);
    assert_eq!(
        keys,
        [
            "scheduler.workers",
            "scheduler.lease_ttl_secs",
            "scheduler.max_attempts",
            "scheduler.poll_interval_secs",
            "scheduler.phase_order",
            "budget.day_start_utc",
            "budget.classes.judge",
            "ops.log_format",
        ]
    );
    let msg = c.validate().unwrap_err().to_string();
    assert!(
        msg.contains("scheduler.phase_order: lists prep more than once"),
        "{msg}"
    );
    assert!(msg.contains("\"medium\""), "{msg}");
}

#[test]
fn validation_of_cron() {
    let mut c = Config::default();
    c.scheduler.prep_burst_cron = Some("0 0 23 * * *".into());
    c.validate().unwrap();
    c.scheduler.prep_burst_cron = Some("0 23 * * *".into());
    let p = problems(&c);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].key, "scheduler.prep_burst_cron");
    assert!(p[0].message.contains("first field is seconds"), "{}", p[0]);
    assert!(!p[0].message.contains('\n'), "one line: {}", p[0]);
    c.scheduler.prep_burst_cron = Some("0 0 25 * * *".into());
    let p = problems(&c);
    assert_eq!(p[0].key, "scheduler.prep_burst_cron");
    assert!(p[0].message.contains("Hours"), "{}", p[0]);
    assert!(!p[0].message.contains('\n'), "one line: {}", p[0]);
}

#[test]
fn validation_of_listen_and_token() {
    let mut c = Config::default();
    c.ops.listen = Some("127.0.0.1:9464".into());
    let listen = |c: &Config| c.resolve().unwrap().ops.listen.unwrap();
    assert!(listen(&c).ip().is_loopback());
    c.ops.listen = Some("[::1]:9464".into());
    assert!(listen(&c).ip().is_loopback());
    c.ops.listen = Some("0.0.0.0:9464".into());
    assert!(!parse_listen("0.0.0.0:9464").unwrap().ip().is_loopback());
    assert_eq!(problem_keys(&c), ["ops.token_env"]);
    c.ops.token_env = Some("RUNNER_HTTP_TOKEN".into());
    c.validate().unwrap();
    c.ops.listen = Some("localhost".into());
    assert_eq!(problem_keys(&c), ["ops.listen"]);
}

#[test]
fn day_start_parses_hh_mm() {
    let mut c = Config::default();
    let day_start = |c: &Config| c.resolve().unwrap().budget.day_start;
    let hm = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0).unwrap();
    assert_eq!(day_start(&c), hm(0, 0));
    c.budget.day_start_utc = "06:30".into();
    assert_eq!(day_start(&c), hm(6, 30));
    c.budget.day_start_utc = "7:05".into();
    assert_eq!(day_start(&c), hm(7, 5));
    for bad in [
        "", "6", "06:3", "06:60", "24:00", "-1:00", "06:30:00", "a:bc",
    ] {
        assert_eq!(parse_hh_mm(bad), None, "{bad:?}");
    }
}

/// Waits that are not durations (NaN, infinity, negative, huge) never
/// panic: resolving refuses them, naming both keys; and a resolved park
/// threshold is never below the claim backlog.
#[test]
fn derived_waits_never_panic() {
    let mut c = Config::default();
    for v in [f64::NAN, f64::INFINITY, -1.0, 1e300] {
        c.scheduler.claim_backlog_secs = v;
        c.scheduler.park_after_secs = v;
        assert_eq!(
            problem_keys(&c),
            ["scheduler.claim_backlog_secs", "scheduler.park_after_secs"],
            "{v}"
        );
    }
    c.scheduler.claim_backlog_secs = 30.0;
    c.scheduler.park_after_secs = 5.0;
    let t = c.resolve().unwrap().scheduler;
    assert!(t.park_after >= t.claim_backlog);
}

#[test]
fn out_of_range_values_name_key_value_and_range() {
    let mut c = Config::default();
    c.scheduler.lease_ttl_secs = 9_300_000_000_000_000;
    let p = problems(&c);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(
        p[0].to_string(),
        "scheduler.lease_ttl_secs: 9300000000000000 is out of range: allowed 5 to 86400 seconds"
    );
    c.scheduler.lease_ttl_secs = 4;
    assert_eq!(problem_keys(&c), ["scheduler.lease_ttl_secs"]);
    c.scheduler.lease_ttl_secs = 5;
    c.validate().unwrap();
    c.scheduler.lease_ttl_secs = 86_400;
    c.validate().unwrap();

    let mut c = Config::default();
    c.scheduler.poll_interval_secs = f64::INFINITY;
    c.scheduler.claim_backlog_secs = -1.0;
    c.scheduler.retry_max_secs = u64::MAX;
    c.scheduler.drain_timeout_secs = u64::MAX;
    c.scheduler.prep_burst_minutes = u64::MAX;
    c.scheduler.phase_caps.insert(Phase::Prep, usize::MAX);
    c.budget.daily = Some(u64::MAX);
    c.breaker.open_max_secs = u64::MAX;
    c.breaker.window_secs = 0;
    c.seed.interval_secs = u64::MAX;
    c.prompt_token_budget = 0;
    assert_eq!(
        problem_keys(&c),
        [
            "prompt_token_budget",
            "scheduler.phase_caps.prep",
            "scheduler.retry_max_secs",
            "scheduler.poll_interval_secs",
            "scheduler.claim_backlog_secs",
            "scheduler.drain_timeout_secs",
            "scheduler.prep_burst_minutes",
            "budget.daily",
            "breaker.window_secs",
            "breaker.open_max_secs",
            "seed.interval_secs",
        ]
    );
    let msg = c.validate().unwrap_err().to_string();
    assert!(
        msg.contains(
            "scheduler.poll_interval_secs: inf is out of range: allowed 0.01 to 3600 seconds"
        ),
        "{msg}"
    );
}

#[test]
fn an_env_lease_ttl_out_of_range_is_refused_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let env = env_of(&[("RUNNER_LEASE_TTL_SECS", "9300000000000000")]);
    let c = load_with(None, &env, &dir.path().join("config.toml"))
        .unwrap()
        .config;
    assert_eq!(problem_keys(&c), ["scheduler.lease_ttl_secs"]);
}

#[test]
fn the_maxima_keep_every_deadline_in_range() {
    use crate::store::{lease_deadline_ms, RetryPolicy};
    use std::time::Duration;
    let now = chrono::Utc::now().timestamp_millis();
    let ttl = Duration::from_secs(*limits::LEASE_TTL_SECS.end());
    let until = lease_deadline_ms(now, ttl);
    let exact = now.checked_add(i64::try_from(ttl.as_millis()).unwrap());
    assert_eq!(Some(until), exact, "no clamping needed at the maximum");
    assert_eq!(
        crate::store::MAX_LEASE_TTL.as_secs(),
        *limits::LEASE_TTL_SECS.end(),
        "the store's clamp is the config's maximum"
    );
    let retry = RetryPolicy {
        max_attempts: *limits::MAX_ATTEMPTS.end(),
        base: Duration::from_secs(*limits::RETRY_SECS.end()),
        max: Duration::from_secs(*limits::RETRY_SECS.end()),
    };
    let delay = retry.delay_ms(retry.max_attempts);
    assert!(now.checked_add(delay).is_some());
    for secs in [
        *limits::BREAKER_SECS.end(),
        *limits::SEED_INTERVAL_SECS.end(),
        *limits::DRAIN_TIMEOUT_SECS.end(),
    ] {
        assert!(now.checked_add((secs as i64) * 1000).is_some());
    }
    assert!(chrono::TimeDelta::try_minutes(*limits::PREP_BURST_MINUTES.end() as i64).is_some());
    Duration::try_from_secs_f64(*limits::POLL_INTERVAL_SECS.end()).unwrap();
    Duration::try_from_secs_f64(*limits::CLAIM_BACKLOG_SECS.end()).unwrap();
}

#[test]
fn day_start_has_one_parser() {
    // "7:00" validates, and the budget takes it: no daemon stop.
    let mut c = Config::default();
    c.budget.day_start_utc = "7:00".into();
    let budget = crate::runner::budget::Budget::new(c.resolve().unwrap().budget);
    assert_eq!(
        budget.settings().day_start,
        chrono::NaiveTime::from_hms_opt(7, 0, 0).unwrap()
    );
    for bad in ["7", "7:0", "24:00", "07:60", " : ", "٧:00"] {
        c.budget.day_start_utc = bad.into();
        assert_eq!(problem_keys(&c), ["budget.day_start_utc"], "{bad:?}");
    }
}

#[test]
fn config_files_are_read_with_a_cap() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.toml");
    let mut text = String::from("# padding\n");
    while text.len() as u64 <= MAX_CONFIG_BYTES {
        text.push_str(&"#".repeat(1023));
        text.push('\n');
    }
    std::fs::write(&big, &text).unwrap();
    let err = load_with(Some(&big), &no_env, Path::new("absent")).unwrap_err();
    assert!(matches!(err, ConfigError::TooLarge { limit, .. } if limit == MAX_CONFIG_BYTES));
    assert!(err.to_string().contains("big.toml"), "{err}");
    assert!(err.to_string().contains("1048576-byte limit"), "{err}");

    let err = load_with(Some(dir.path()), &no_env, Path::new("absent")).unwrap_err();
    assert!(
        err.to_string().contains("not a regular file (a directory)"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn devices_and_fifos_are_refused_without_reading_or_blocking() {
    let err = load_with(Some(Path::new("/dev/zero")), &no_env, Path::new("absent")).unwrap_err();
    assert!(
        err.to_string()
            .contains("/dev/zero: cannot read: not a regular file (a character device)"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    // No writer: a blocking open would hang here forever.
    let err = read_text_capped(&fifo, 100).unwrap_err();
    assert!(
        matches!(err, CappedReadError::NotRegular { kind: "a FIFO" }),
        "{err}"
    );
}

#[test]
fn line_column_counts_characters() {
    let text = "a = 1\n[é]\nbé = 2\n";
    let offset = text.find("= 2").unwrap();
    assert_eq!(line_column(text, offset), (3, 4));
    assert_eq!(line_column(text, 0), (1, 1));
}

/// The resolved settings carry every value typed, equal to what the file
/// model says, with the derived floors applied.
#[test]
fn resolve_types_every_setting() {
    use std::time::Duration;
    let text = "[scheduler]\nlease_ttl_secs = 90\nretry_base_secs = 7\nretry_max_secs = 70\n\
                poll_interval_secs = 0.25\nclaim_backlog_secs = 3\npark_after_secs = 1\n\
                drain_timeout_secs = 12\nphase_timeout_secs = 600\n\
                prep_burst_cron = \"0 0 23 * * *\"\nprep_burst_minutes = 30\n\
                [budget]\nday_start_utc = \"7:00\"\nclasses = { judge = \"expensive\" }\n\
                [breaker]\nwindow_secs = 9\nopen_base_secs = 10\nopen_max_secs = 20\n\
                [seed]\ninterval_secs = 120\n\
                [ops]\nlisten = \"127.0.0.1:9464\"\nlog_format = \"json\"\nheader_timeout_secs = 4\n";
    let s = load_file(text).unwrap().config.resolve().unwrap();
    let t = &s.scheduler;
    assert_eq!(t.lease_ttl, Duration::from_secs(90));
    assert_eq!(
        (t.retry_base, t.retry_max),
        (Duration::from_secs(7), Duration::from_secs(70))
    );
    assert_eq!(t.poll_interval, Duration::from_millis(250));
    assert_eq!(t.claim_backlog, Duration::from_secs(3));
    assert_eq!(
        t.park_after,
        Duration::from_secs(3),
        "never below claim_backlog"
    );
    assert_eq!(t.drain_timeout, Duration::from_secs(12));
    assert_eq!(t.phase_timeout, Duration::from_secs(600));
    let burst = t.prep_burst.as_ref().unwrap();
    assert_eq!(burst.window, Duration::from_secs(30 * 60));
    assert_eq!(burst.expr, "0 0 23 * * *");
    assert_eq!(
        s.budget.day_start,
        chrono::NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
        "\"7:00\" is 07:00"
    );
    assert_eq!(s.budget.class_of("judge"), ModelClass::Expensive);
    assert_eq!(s.budget.class_of("small"), ModelClass::Cheap);
    assert_eq!(s.budget.class_of("big-expensive"), ModelClass::Expensive);
    assert_eq!(s.breaker.window, Duration::from_secs(9));
    assert_eq!(s.breaker.open_max, Duration::from_secs(20));
    assert_eq!(s.seed_interval, Duration::from_secs(120));
    assert_eq!(s.ops.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(s.ops.log_format, LogFormat::Json);
    assert_eq!(s.ops.header_timeout, Duration::from_secs(4));
    assert_eq!(s.ops.max_connections, 64);

    // The tiniest poll interval that validates polls every 50 ms.
    let mut c = Config::default();
    c.scheduler.poll_interval_secs = 0.01;
    assert_eq!(
        c.resolve().unwrap().scheduler.poll_interval,
        Duration::from_millis(50)
    );
    // The typed waits are the file's seconds.
    let d = Config::default();
    let r = d.resolve().unwrap();
    assert_eq!(
        r.scheduler.claim_backlog,
        Duration::from_secs_f64(d.scheduler.claim_backlog_secs)
    );
    assert_eq!(
        r.scheduler.park_after,
        Duration::from_secs_f64(d.scheduler.park_after_secs)
    );
    // The typed defaults are what the file's defaults resolve to.
    assert_eq!(r.breaker, BreakerSettings::default());
    assert_eq!(r.budget, BudgetSettings::default());
    assert_eq!(r.budget.day_start, chrono::NaiveTime::MIN);
    assert_eq!(r.ops.log_format, LogFormat::Human);
    assert!(r.scheduler.prep_burst.is_none() && r.ops.listen.is_none());
}

/// Every setting's bad value is refused at resolution, once, naming its
/// key; nothing else is reported alongside it.
#[test]
fn every_bad_value_is_refused_once_naming_its_key() {
    type Edit = fn(&mut Config);
    let cases: &[(&str, Edit)] = &[
        ("prompt_token_budget", |c| c.prompt_token_budget = 0),
        ("pdf_base_url", |c| c.pdf_base_url = "ftp://x".into()),
        ("arxiv_api_url", |c| c.arxiv_api_url = "x".into()),
        ("scheduler.workers", |c| c.scheduler.workers = 0),
        ("scheduler.phase_caps.wrap", |c| {
            c.scheduler.phase_caps.insert(Phase::Wrap, 5000);
        }),
        ("scheduler.phase_order", |c| {
            c.scheduler.phase_order = vec![Phase::Wrap, Phase::Wrap]
        }),
        ("scheduler.prepped_low_watermark", |c| {
            c.scheduler.prepped_low_watermark = Some(usize::MAX)
        }),
        ("scheduler.lease_ttl_secs", |c| {
            c.scheduler.lease_ttl_secs = 4
        }),
        ("scheduler.max_attempts", |c| c.scheduler.max_attempts = 101),
        // (`retry_base_secs` out of range is always above `retry_max_secs`
        // too, so it cannot be alone: see out_of_range_values_name_key_value_and_range.)
        ("scheduler.retry_max_secs", |c| {
            c.scheduler.retry_max_secs = 1
        }),
        ("scheduler.poll_interval_secs", |c| {
            c.scheduler.poll_interval_secs = f64::NAN
        }),
        ("scheduler.claim_backlog_secs", |c| {
            c.scheduler.claim_backlog_secs = -0.5
        }),
        ("scheduler.drain_timeout_secs", |c| {
            c.scheduler.drain_timeout_secs = 86_401
        }),
        ("scheduler.prep_burst_cron", |c| {
            c.scheduler.prep_burst_cron = Some("every night".into())
        }),
        ("scheduler.prep_burst_minutes", |c| {
            c.scheduler.prep_burst_minutes = 0
        }),
        ("scheduler.phase_timeout_secs", |c| {
            c.scheduler.phase_timeout_secs = 0
        }),
        ("scheduler.park_after_secs", |c| {
            c.scheduler.park_after_secs = f64::INFINITY
        }),
        ("budget.daily", |c| c.budget.daily = Some(u64::MAX)),
        ("budget.cheap", |c| c.budget.cheap = Some(u64::MAX)),
        ("budget.expensive", |c| c.budget.expensive = Some(u64::MAX)),
        ("budget.day_start_utc", |c| {
            c.budget.day_start_utc = "7".into()
        }),
        ("budget.classes.judge", |c| {
            c.budget.classes.insert("judge".into(), "Cheap".into());
        }),
        ("breaker.rate_limit_threshold", |c| {
            c.breaker.rate_limit_threshold = 0
        }),
        ("breaker.error_threshold", |c| c.breaker.error_threshold = 0),
        ("breaker.window_secs", |c| c.breaker.window_secs = 0),
        ("breaker.open_base_secs", |c| c.breaker.open_base_secs = 0),
        ("breaker.open_max_secs", |c| c.breaker.open_max_secs = 5),
        ("seed.limit", |c| c.seed.limit = Some(usize::MAX)),
        ("seed.interval_secs", |c| c.seed.interval_secs = 0),
        ("ops.listen", |c| {
            c.ops.listen = Some("localhost:9464".into())
        }),
        ("ops.token_env", |c| {
            c.ops.listen = Some("0.0.0.0:9464".into())
        }),
        ("ops.log_format", |c| c.ops.log_format = "JSON".into()),
        ("ops.max_connections", |c| c.ops.max_connections = 0),
        ("ops.header_timeout_secs", |c| c.ops.header_timeout_secs = 0),
        ("ops.idle_timeout_secs", |c| c.ops.idle_timeout_secs = 3601),
        ("ops.request_timeout_secs", |c| {
            c.ops.request_timeout_secs = 0
        }),
    ];
    for (key, edit) in cases {
        let mut c = Config::default();
        edit(&mut c);
        match c.resolve() {
            Err(ConfigError::Invalid { problems }) => {
                let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
                assert_eq!(keys, [*key], "{problems:?}");
                assert!(!problems[0].message.contains('\n'), "{}", problems[0]);
            }
            other => panic!("{key}: expected one problem, got {other:?}"),
        }
    }
}

/// A bad day start read from a file is refused when the file is resolved,
/// naming the key; "7:00" resolves to the same time as "07:00".
#[test]
fn day_start_from_a_file_is_checked_at_resolution() {
    let seven = |v: &str| {
        load_file(&format!("[budget]\nday_start_utc = \"{v}\"\n"))
            .unwrap()
            .config
            .resolve()
    };
    assert_eq!(
        seven("7:00").unwrap().budget.day_start,
        seven("07:00").unwrap().budget.day_start
    );
    let err = seven("7h").unwrap_err().to_string();
    assert!(
        err.contains("budget.day_start_utc: \"7h\" is not a time HH:MM or H:MM"),
        "{err}"
    );
}

/// `[hooks]`: handler paths are relative to the config file (python files
/// and an interpreter path with a folder too); a malformed handler or an
/// out-of-range `[python]` value is a problem naming the key.
#[test]
fn hook_handlers_resolve_against_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "etc/config.toml",
        "[hooks]\nv2-hooks = \"cmd:hooks/run.sh\"\nabs = \"cmd:/opt/h\"\npy = \"python:h.py:V2Hooks\"\n\
         [python]\ninterpreter = \"venv/bin/python\"\n",
    );
    let loaded = load_with(Some(&path), &no_env, &dir.path().join("absent.toml")).unwrap();
    let hooks = &loaded.config.hooks;
    assert_eq!(
        hooks["v2-hooks"],
        format!("cmd:{}", dir.path().join("etc/hooks/run.sh").display())
    );
    assert_eq!(hooks["abs"], "cmd:/opt/h");
    assert_eq!(
        hooks["py"],
        format!("python:{}:V2Hooks", dir.path().join("etc/h.py").display())
    );
    assert_eq!(
        loaded.config.python.interpreter,
        dir.path().join("etc/venv/bin/python")
    );
    let registry = loaded.config.hook_registry().unwrap().unwrap();
    assert_eq!(registry.names(), ["abs", "py", "v2-hooks"]);
    assert!(Config::default().hook_registry().unwrap().is_none());

    let mut c = Config::default();
    c.python.max_output_bytes = 1;
    assert_eq!(problem_keys(&c), ["python.max_output_bytes"]);
    c.python.max_output_bytes = 1 << 20;
    c.hooks.insert("v2".into(), "run.sh".into());
    assert!(problem_keys(&c).contains(&"hooks".to_string()));
}
