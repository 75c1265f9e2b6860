//! Reading the config file: where it is, the capped read, TOML parsing
//! with errors that name file:line:column and the dotted key, and relative
//! paths resolved against the file's directory.

use super::env::apply_env;
use super::model::Config;
use std::fmt;
use std::path::{Path, PathBuf};

/// The file looked for in the current directory when neither `--config`
/// nor `$RUNNER_CONFIG` names one.
pub const DEFAULT_FILE: &str = "config.toml";

/// The environment variable that names the config file.
pub const CONFIG_ENV: &str = "RUNNER_CONFIG";

/// A loaded configuration and the file it came from (`None` = built-in
/// defaults and environment only), so the log and `status` can say which
/// file is in force.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    pub config: Config,
    pub source: Option<PathBuf>,
}

/// One unusable value found by [`Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `scheduler.workers`.
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded or is not usable. Every variant
/// names what to fix: the file (with line and column when known), the key,
/// or the environment variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named by `--config` or `$RUNNER_CONFIG` is not there. Unlike
    /// a missing `./config.toml` this is an error: the operator asked for
    /// that file, and running on defaults instead would hide a typo.
    #[error("config file {} (from {origin}) does not exist", .path.display())]
    NotFound { path: PathBuf, origin: &'static str },
    #[error("config file {}: cannot read: {message}", .path.display())]
    Read { path: PathBuf, message: String },
    /// Larger than [`MAX_CONFIG_BYTES`]: not a config file.
    #[error("config file {}: larger than the {limit}-byte limit for config files", .path.display())]
    TooLarge { path: PathBuf, limit: u64 },
    /// Bad TOML, an unknown key or a value of the wrong type. `message`
    /// already names the key.
    #[error("{}{}: {message}", .path.display(), position(.line, .column))]
    Parse {
        path: PathBuf,
        /// Dotted key of the offending entry, when the error is about one.
        key: Option<String>,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    #[error("environment variable {var}={value:?} (sets {key}): {message}")]
    Env {
        var: &'static str,
        key: &'static str,
        value: String,
        message: String,
    },
    /// Every problem [`Config::validate`] found, not just the first, so one
    /// edit fixes them all.
    #[error("invalid configuration: {}", join_problems(.problems))]
    Invalid { problems: Vec<Problem> },
}

fn position(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Loads the configuration from the process environment: the file named by
/// `explicit` (`--config`), else `$RUNNER_CONFIG`, else `./config.toml` when
/// it exists, else built-in defaults; then `RUNNER_*` overrides.
///
/// The result is not validated: apply command-line flags first, then call
/// [`Config::validate`].
pub fn load(explicit: Option<&Path>) -> Result<Loaded, ConfigError> {
    let env = |name: &str| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned());
    load_with(explicit, &env, Path::new(DEFAULT_FILE))
}

/// [`load`] with the environment and the fallback file passed in, so tests
/// (and embedders) need not touch the process environment or the current
/// directory. `env` returns a variable's value, `None` when unset.
pub fn load_with(
    explicit: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
    default_file: &Path,
) -> Result<Loaded, ConfigError> {
    let from_env = env(CONFIG_ENV).filter(|v| !v.is_empty());
    let (path, origin) = match (explicit, from_env) {
        (Some(p), _) => (p.to_path_buf(), Some("--config")),
        (None, Some(p)) => (PathBuf::from(p), Some("$RUNNER_CONFIG")),
        (None, None) => (default_file.to_path_buf(), None),
    };
    let (mut config, source) = match read_file(&path, origin)? {
        Some(text) => (parse_file(&text, &path)?, Some(path)),
        None => (Config::default(), None),
    };
    apply_env(&mut config, env)?;
    Ok(Loaded { config, source })
}

/// The file's text; `None` when the fallback file is simply absent.
///
/// Read with [`read_text_capped`]: a config is a few KiB, so anything
/// larger than [`MAX_CONFIG_BYTES`] (or not a regular file at all, e.g.
/// `--config /dev/zero` or a FIFO) is refused before it can eat memory or
/// block the start.
fn read_file(path: &Path, origin: Option<&'static str>) -> Result<Option<String>, ConfigError> {
    match read_text_capped(path, MAX_CONFIG_BYTES) {
        Ok(text) => Ok(Some(text)),
        Err(CappedReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => match origin {
            Some(origin) => Err(ConfigError::NotFound {
                path: path.to_path_buf(),
                origin,
            }),
            None => Ok(None),
        },
        Err(CappedReadError::TooLarge { limit }) => Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
            limit,
        }),
        Err(e) => Err(ConfigError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// Largest config file read: 1 MiB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

use crate::fsx::{read_text_capped, CappedReadError};

/// Parses a config file and resolves the relative paths it sets against
/// its directory.
///
/// The text is parsed twice: once as a plain table, to know which keys the
/// file sets (only those paths are resolved: a default the file does not
/// mention stays relative to the working directory), and once into
/// [`Config`] through `serde_path_to_error`, because toml's own errors name
/// a leaf field (`wrokers`) but not where it sits (`scheduler.wrokers`).
fn parse_file(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| parse_error(path, text, &e, None))?;
    let de = toml::Deserializer::parse(text).map_err(|e| parse_error(path, text, &e, None))?;
    let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        // serde_path_to_error writes `?` for a map key it could not read
        // (`scheduler.phase_caps.?`); the map itself is the useful name.
        let key = e.path().to_string();
        let key = key.strip_suffix(".?").unwrap_or(&key).to_string();
        let key = (!key.is_empty() && key != "." && key != "?").then_some(key);
        parse_error(path, text, e.inner(), key)
    })?;
    resolve_paths(&mut config, &table, path.parent().unwrap_or(Path::new("")));
    Ok(config)
}

fn parse_error(path: &Path, text: &str, e: &toml::de::Error, key: Option<String>) -> ConfigError {
    let (line, column) = match e.span() {
        Some(span) => {
            let (l, c) = line_column(text, span.start);
            (Some(l), Some(c))
        }
        None => (None, None),
    };
    let inner = e.message().trim();
    let message = match &key {
        Some(k) if inner.starts_with("unknown field") => match inner.split_once(", ") {
            Some((_, expected)) => format!("unknown key '{k}' ({expected})"),
            None => format!("unknown key '{k}'"),
        },
        Some(k) => format!("{k}: {inner}"),
        None => inner.to_string(),
    };
    ConfigError::Parse {
        path: path.to_path_buf(),
        key,
        line,
        column,
        message,
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn resolve_paths(config: &mut Config, table: &toml::Table, base: &Path) {
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    // Required paths have defaults: resolve only those the file sets.
    // A PostgreSQL URL is not a path.
    if table.contains_key("db") && crate::store::is_db_url(&config.db).is_none() {
        resolve(&mut config.db);
    }
    for (key, field) in [
        ("machines_dir", &mut config.machines_dir),
        ("pdf_dir", &mut config.pdf_dir),
        ("reports_dir", &mut config.reports_dir),
    ] {
        if table.contains_key(key) {
            resolve(field);
        }
    }
    // Hook handler paths: `cmd:run.sh` next to the config file. A value
    // that does not parse stays as written; `resolve` reports it.
    for v in config.hooks.values_mut() {
        if let Ok(spec) = crate::engine::HandlerSpec::parse(v, base) {
            *v = spec.to_string();
        }
    }
    // The Python interpreter: a bare name is looked up in PATH; a path
    // with a folder (`venv/bin/python`) is relative to the config file.
    if config.python.interpreter.components().count() > 1 {
        resolve(&mut config.python.interpreter);
    }
    // Optional paths default to None, so Some means the file set them.
    for field in [
        &mut config.profiles,
        &mut config.terminology,
        &mut config.corpus_db,
        &mut config.seed.db,
    ]
    .into_iter()
    .flatten()
    {
        resolve(field);
    }
}
