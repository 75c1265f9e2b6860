//! Opening the database: pool, pragmas on every connection, migrations.

use super::clock::{Clock, SystemClock};
use super::error::StoreError;
use super::migrate;
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How durable a commit is. NORMAL (default) survives process crashes;
/// FULL also survives power loss at the cost of an fsync per commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub synchronous: Synchronous,
    pub busy_timeout: Duration,
    pub pool_size: u32,
    /// Where "now" comes from for every time comparison the store makes.
    pub clock: Arc<dyn Clock>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            synchronous: Synchronous::Normal,
            busy_timeout: Duration::from_secs(30),
            pool_size: 8,
            clock: Arc::new(SystemClock),
        }
    }
}

/// The SQLite store, shared by everything in the process.
///
/// Reads use a pool of connections; every write goes through one writer
/// connection behind a mutex. Why: SQLite admits one writer at a time
/// anyway, and with writes spread over pooled connections each one found
/// its page cache invalidated by the others' commits (WAL mode resets a
/// connection's cache whenever another connection wrote), re-reading the
/// B-tree from the OS at every `BEGIN`, while waiting writers slept in the
/// busy handler. One writer keeps its cache and its prepared statements
/// warm, and in-process writers queue on the mutex instead of polling.
/// Other processes on the same file still meet `BEGIN IMMEDIATE` and the
/// busy timeout.
#[derive(Clone)]
pub struct Store {
    pool: Pool<SqliteConnectionManager>,
    writer: Arc<Mutex<Connection>>,
    pub(super) path: PathBuf,
    clock: Arc<dyn Clock>,
}

pub(super) type Conn = PooledConnection<SqliteConnectionManager>;

impl Store {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        Self::open_to(path, opts, None)
    }

    /// Open and migrate only up to schema `version` (tests of upgrades).
    pub fn open_to(
        path: &Path,
        opts: &StoreOptions,
        version: Option<i64>,
    ) -> Result<Store, StoreError> {
        check_db_path(path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                    path: path.to_path_buf(),
                    message: format!("cannot create folder {}: {e}", dir.display()),
                    source: Some(Box::new(e)),
                })?;
            }
        }
        // Open once directly, so a read-only or corrupt file is classified
        // before the pool starts retrying.
        let mut first = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| classify_open(path, e))?;
        configure(&first, opts).map_err(|e| StoreError::sqlite(path, "setting pragmas", e))?;
        migrate::migrate(&mut first, path, version)?;
        configure_writer(&first).map_err(|e| StoreError::sqlite(path, "setting pragmas", e))?;

        let o = opts.clone();
        let manager = SqliteConnectionManager::file(path)
            .with_flags(OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_init(move |c| configure(c, &o));
        let pool = Pool::builder()
            .max_size(opts.pool_size.max(1))
            .connection_timeout(Duration::from_secs(60))
            .build(manager)
            .map_err(|e| StoreError::Pool {
                path: path.to_path_buf(),
                message: e.to_string(),
                source: e,
            })?;
        Ok(Store {
            pool,
            writer: Arc::new(Mutex::new(first)),
            path: path.to_path_buf(),
            clock: Arc::clone(&opts.clock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// "Now" in Unix milliseconds, from the injected clock
    /// ([`StoreOptions::clock`]).
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// "Now" as the text timestamp the store writes (`updated_at`,
    /// timeline `at`, …), from the injected clock, so retention (which
    /// compares these texts) follows the same time as leases and claims.
    pub fn now_text(&self) -> String {
        super::clock::timestamp_text(self.clock.now_us())
    }

    /// The store's clock, for components that must agree with it.
    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.clock)
    }

    /// Run blocking store work off the async worker threads.
    ///
    /// This is the one place the store meets tokio: async code calls
    /// `store.run(move |s| s.renew_lease(&l)).await` instead of spawning
    /// its own blocking task, so no SQLite call runs on an async worker
    /// and a panicked (or cancelled) task always surfaces the same way —
    /// as [`StoreError::TaskFailed`], which callers retry, never as a data
    /// error that fails a paper for good.
    pub async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let store = self.clone();
        match tokio::task::spawn_blocking(move || f(&store)).await {
            Ok(r) => r,
            Err(e) => Err(StoreError::task_failed(e)),
        }
    }

    pub(super) fn conn(&self) -> Result<Conn, StoreError> {
        self.pool.get().map_err(|e| StoreError::Pool {
            path: self.path.clone(),
            message: e.to_string(),
            source: e,
        })
    }

    /// Run `f` in a `BEGIN IMMEDIATE` transaction: the write lock is taken
    /// up front, so concurrent writers wait (busy_timeout) instead of failing
    /// with "database is locked" on lock upgrade.
    pub(super) fn write<T>(
        &self,
        what: &str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic inside an earlier write poisons the mutex; the connection
        // is still sound (the transaction was rolled back when dropped).
        let mut conn = match self.writer.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.err(what, e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.err(what, e))?;
        Ok(out)
    }

    pub(super) fn err(&self, what: &str, e: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path, what, e)
    }

    /// Current size of the database in bytes (pages in use).
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let q = |p: &str| -> Result<i64, StoreError> {
            conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                .map_err(|e| self.err("reading size", e))
        };
        let used = q("page_count")? - q("freelist_count")?;
        Ok((used.max(0) * q("page_size")?) as u64)
    }

    /// `PRAGMA integrity_check` result ("ok" when healthy).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        let conn = self.conn()?;
        conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err("integrity check", e))
    }
}

fn configure(c: &Connection, opts: &StoreOptions) -> Result<(), rusqlite::Error> {
    c.busy_timeout(opts.busy_timeout)?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(journal_mode = %mode, "could not switch the database to WAL");
    }
    let sync = match opts.synchronous {
        Synchronous::Normal => "NORMAL",
        Synchronous::Full => "FULL",
    };
    c.pragma_update(None, "synchronous", sync)?;
    Ok(())
}

/// The writer runs every write of the process: keep more of its prepared
/// statements. Its page cache stays at SQLite's default (2 MiB): a 16 MiB
/// cache measured ~4 ms more CPU per paper (commits walk the whole cache
/// to drop pages past the end of the file).
fn configure_writer(c: &Connection) -> Result<(), rusqlite::Error> {
    c.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// The database must be a regular file, or not exist yet: SQLite would
/// otherwise "open" a device such as `/dev/null` (creating
/// `/dev/null-journal` beside it, or failing later with a confusing I/O
/// error), block on a FIFO, or fail on a directory with a generic message.
/// A missing file's parent must be a directory (or not exist yet, to be
/// created).
fn check_db_path(path: &Path) -> Result<(), StoreError> {
    let refuse = |message: String| StoreError::Open {
        path: path.to_path_buf(),
        message,
        source: None,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(m) => Err(refuse(format!(
            "{} is {}, not a database file (give the path of a regular file, or of one to create)",
            path.display(),
            crate::fsx::file_kind(&m)
        ))),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            match path.parent().filter(|d| !d.as_os_str().is_empty()) {
                Some(dir) => match std::fs::metadata(dir) {
                    Ok(m) if !m.is_dir() => Err(refuse(format!(
                        "its folder {} is {}, not a directory",
                        dir.display(),
                        crate::fsx::file_kind(&m)
                    ))),
                    _ => Ok(()),
                },
                None => Ok(()),
            }
        }
        Err(e) => Err(StoreError::Open {
            path: path.to_path_buf(),
            message: format!("cannot inspect the path: {e}"),
            source: Some(Box::new(e)),
        }),
    }
}

fn classify_open(path: &Path, e: rusqlite::Error) -> StoreError {
    match StoreError::sqlite(path, "opening", e) {
        StoreError::Sqlite { source, .. } => StoreError::Open {
            path: path.to_path_buf(),
            message: source.to_string(),
            source: Some(Box::new(source)),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn dev_null_is_refused_and_nothing_is_created_beside_it() {
        let err = Store::open(Path::new("/dev/null"), &StoreOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("a character device, not a database file"),
            "{err}"
        );
        assert!(!Path::new("/dev/null-journal").exists());
        assert!(!Path::new("/dev/null-wal").exists());
    }

    #[test]
    fn directories_and_file_parents_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Store::open(dir.path(), &StoreOptions::default())
            .err()
            .unwrap();
        assert!(err.to_string().contains("is a directory"), "{err}");
        let file = dir.path().join("plain");
        std::fs::write(&file, "x").unwrap();
        let err = Store::open(&file.join("q.db"), &StoreOptions::default())
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("is a regular file, not a directory"),
            "{err}"
        );
        // A fresh path in a missing folder is still fine (folders are created).
        Store::open(&dir.path().join("new/q.db"), &StoreOptions::default()).unwrap();
    }
}
