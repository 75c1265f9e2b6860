//! Opening the database (SQLite file or PostgreSQL URL): pool, pragmas on
//! every connection, migrations, and the read/write entry points every
//! store module uses.

use super::clock::{Clock, SystemClock};
use super::error::StoreError;
use super::migrate;
use super::sql::{Db, DbError, Dialect};
use r2d2::{Pool, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
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

/// The store, shared by everything in the process: SQLite (one file, one
/// host) or PostgreSQL (one server, any number of hosts), behind one
/// interface ([`Db`]).
///
/// SQLite: reads use a pool of connections; every write goes through one
/// writer connection behind a mutex. Why: SQLite admits one writer at a
/// time anyway, and with writes spread over pooled connections each one
/// found its page cache invalidated by the others' commits (WAL mode resets
/// a connection's cache whenever another connection wrote), re-reading the
/// B-tree from the OS at every `BEGIN`, while waiting writers slept in the
/// busy handler. One writer keeps its cache and its prepared statements
/// warm, and in-process writers queue on the mutex instead of polling.
/// Other processes on the same file still meet `BEGIN IMMEDIATE` and the
/// busy timeout.
///
/// PostgreSQL: see [`super::pg`] — serializable write transactions retried
/// on conflict, so every read-then-write the store makes is as atomic as
/// under SQLite's single writer, across hosts.
#[derive(Clone)]
pub struct Store {
    pub(super) backend: Backend,
    pub(super) path: PathBuf,
    clock: Arc<dyn Clock>,
    wake: Arc<tokio::sync::Notify>,
}

#[derive(Clone)]
pub(super) enum Backend {
    Sqlite {
        pool: Pool<SqliteConnectionManager>,
        writer: Arc<Mutex<Connection>>,
    },
    Postgres(super::pg::PgBackend),
}

pub(super) type Conn = PooledConnection<SqliteConnectionManager>;

/// A pooled connection of either backend, held while its [`Db`] is used.
pub(super) enum ConnGuard {
    Lite(Conn),
    Pg(Box<PooledConnection<super::pg::Manager>>),
}

impl ConnGuard {
    pub(super) fn db(&mut self) -> Db<'_> {
        match self {
            ConnGuard::Lite(c) => Db::lite(c),
            ConnGuard::Pg(c) => match c.parts() {
                Some((client, statements)) => Db::pg(client, statements),
                None => Db::closed(),
            },
        }
    }
}

impl Store {
    /// Open (creating if needed) and migrate the database at `path`: a
    /// SQLite file, or a PostgreSQL database when `path` is a
    /// `postgres://` URL (see [`is_db_url`]).
    pub fn open(path: &Path, opts: &StoreOptions) -> Result<Store, StoreError> {
        Self::open_to(path, opts, None)
    }

    /// Open and migrate only up to schema `version` (tests of upgrades).
    pub fn open_to(
        path: &Path,
        opts: &StoreOptions,
        version: Option<i64>,
    ) -> Result<Store, StoreError> {
        if let Some(url) = is_db_url(path) {
            let wake = Arc::new(tokio::sync::Notify::new());
            let (backend, name, clock) = super::pg::PgBackend::open_to(url, opts, &wake, version)?;
            return Ok(Store {
                backend: Backend::Postgres(backend),
                path: PathBuf::from(name),
                clock,
                wake,
            });
        }
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
            backend: Backend::Sqlite {
                pool,
                writer: Arc::new(Mutex::new(first)),
            },
            path: path.to_path_buf(),
            clock: Arc::clone(&opts.clock),
            wake: Arc::new(tokio::sync::Notify::new()),
        })
    }

    /// The database file, or for PostgreSQL its URL without the password.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Which SQL the backend speaks.
    pub fn dialect(&self) -> Dialect {
        match self.backend {
            Backend::Sqlite { .. } => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// "Now" in Unix milliseconds, from the injected clock
    /// ([`StoreOptions::clock`]); on PostgreSQL, the server's clock.
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

    /// Woken when work may have become claimable: a paper added, retried
    /// or given back, a breaker closed — by this process, or on
    /// PostgreSQL by any host (`LISTEN/NOTIFY`). Idle schedulers wait on it
    /// (with their poll interval as the deadline) instead of only polling.
    pub fn wake(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.wake)
    }

    /// Tell idle schedulers (here, and on PostgreSQL on every host once
    /// `tx` commits) that work may be claimable.
    pub(super) fn notify_work(&self, tx: &Db<'_>) -> Result<(), StoreError> {
        self.wake.notify_waiters();
        if tx.dialect() == Dialect::Postgres {
            tx.exec("SELECT pg_notify('paper_runner_work', '')", params![])
                .map_err(|e| self.err("notifying other hosts", e))?;
        }
        Ok(())
    }

    /// Run blocking store work off the async worker threads.
    ///
    /// This is the one place the store meets tokio: async code calls
    /// `store.run(move |s| s.renew_lease(&l)).await` instead of spawning
    /// its own blocking task, so no database call runs on an async worker
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

    /// Run reads on a pooled connection (no transaction on SQLite; an
    /// implicit one per statement on PostgreSQL).
    pub(super) fn read<T>(
        &self,
        f: impl FnOnce(&Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite { .. } => {
                let mut guard = self.conn()?;
                f(&guard.db())
            }
            Backend::Postgres(pg) => pg.read(self, f),
        }
    }

    /// A pooled read connection of either backend; `guard.db()` queries it.
    pub(super) fn conn(&self) -> Result<ConnGuard, StoreError> {
        match &self.backend {
            Backend::Sqlite { pool, .. } => {
                Ok(ConnGuard::Lite(pool.get().map_err(|e| self.pool_err(e))?))
            }
            Backend::Postgres(pg) => Ok(ConnGuard::Pg(Box::new(pg.conn(self)?))),
        }
    }

    fn pool_err(&self, e: r2d2::Error) -> StoreError {
        StoreError::Pool {
            path: self.path.clone(),
            message: e.to_string(),
            source: e,
        }
    }

    /// Run `f` in one write transaction.
    ///
    /// SQLite: `BEGIN IMMEDIATE` — the write lock is taken up front, so
    /// concurrent writers wait (busy_timeout) instead of failing with
    /// "database is locked" on lock upgrade. PostgreSQL: a serializable
    /// transaction, run again from the start when the server reports a
    /// serialization conflict (so `f` may run more than once and must not
    /// have effects outside the transaction).
    pub(super) fn write<T>(
        &self,
        what: &str,
        mut f: impl FnMut(&Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite { writer, .. } => {
                // A panic inside an earlier write poisons the mutex; the
                // connection is still sound (the transaction was rolled
                // back when dropped).
                let mut conn = match writer.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(|e| self.err(what, e))?;
                let out = f(&Db::lite(&tx))?;
                tx.commit().map_err(|e| self.err(what, e))?;
                Ok(out)
            }
            Backend::Postgres(pg) => pg.write(self, what, super::pg::Isolation::Serializable, f),
        }
    }

    /// A write whose consistency rests on row locks, not on serializable
    /// isolation: each statement is atomic on its own (an upsert, an
    /// update by key), or the row it depends on is locked first
    /// ([`lock_row`](super::sql::lock_row): the lease of a checkpoint
    /// write, the paper row of a claim's settle), or the claim search skips
    /// locked rows (`FOR UPDATE SKIP LOCKED`). READ COMMITTED on
    /// PostgreSQL — so the hot paths (checkpoints, the ledger, claims) of
    /// many hosts never abort each other on predicate-lock conflicts — and
    /// the same `BEGIN IMMEDIATE` as [`Store::write`] on SQLite. Anything
    /// that reads several rows to decide a write (admission against a
    /// budget, the reaper, taking a lease that may not exist yet) uses
    /// [`Store::write`].
    pub(super) fn write_locked<T>(
        &self,
        what: &str,
        f: impl FnMut(&Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite { .. } => self.write(what, f),
            Backend::Postgres(pg) => pg.write(self, what, super::pg::Isolation::ReadCommitted, f),
        }
    }

    /// Wrap a query error of either backend with what the store was doing.
    pub(super) fn err(&self, what: &str, e: impl Into<DbError>) -> StoreError {
        match e.into() {
            DbError::Sqlite(e) => StoreError::sqlite(&self.path, what, e),
            DbError::Postgres(e) => StoreError::postgres(&self.path, what, e),
        }
    }

    /// Current size of the database in bytes (pages in use; on PostgreSQL
    /// the database's size on the server).
    pub fn size_bytes(&self) -> Result<u64, StoreError> {
        self.read(|db| match db.sqlite() {
            Some(conn) => {
                let q = |p: &str| -> Result<i64, StoreError> {
                    conn.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
                        .map_err(|e| self.err("reading size", e))
                };
                let used = q("page_count")? - q("freelist_count")?;
                Ok((used.max(0) * q("page_size")?) as u64)
            }
            None => {
                let n: i64 = db
                    .row(
                        "SELECT CAST(pg_database_size(current_database()) AS BIGINT) AS n",
                        params![],
                        |r| r.get("n"),
                    )
                    .map_err(|e| self.err("reading size", e))?;
                Ok(n.max(0) as u64)
            }
        })
    }

    /// `PRAGMA integrity_check` result ("ok" when healthy); PostgreSQL
    /// checks its own pages, so there it is "ok" once the server answers.
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.read(|db| match db.sqlite() {
            Some(conn) => conn
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .map_err(|e| self.err("integrity check", e)),
            None => db
                .row("SELECT 'ok' AS ok", params![], |r| r.get("ok"))
                .map_err(|e| self.err("integrity check", e)),
        })
    }
}

/// The PostgreSQL URL `db` holds, when it is one (`postgres://…` or
/// `postgresql://…`); None for a SQLite file path. Config, `RUNNER_DB` and
/// `--db` all take either.
pub fn is_db_url(db: &Path) -> Option<&str> {
    db.to_str().filter(|s| super::pg::is_url(s)).map(str::trim)
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
