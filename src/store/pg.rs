//! The PostgreSQL backend: connection pool, versioned migrations from
//! `migrations/postgres/`, write transactions, the server's clock and the
//! `LISTEN/NOTIFY` wake-up.
//!
//! Why these choices:
//! - **Serializable writes, retried.** The store's rules were written for
//!   SQLite, where one writer at a time makes every read-then-write atomic
//!   (check a claim's token, then settle it; sum the budget, then admit).
//!   Running each write transaction at `SERIALIZABLE` keeps exactly that
//!   guarantee across hosts without a global lock: the server aborts one of
//!   two transactions that would interleave badly (SQLSTATE 40001), and the
//!   store runs it again. Claims are the exception ([`Isolation::
//!   ReadCommitted`]): one `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP
//!   LOCKED)` statement is atomic by itself, and claimers on many hosts
//!   then skip each other's rows instead of conflicting.
//! - **The server's clock.** Lease deadlines, claimability and the reaper
//!   compare times, and hosts' clocks drift. The store's clock here is the
//!   local clock corrected by the offset to the server's
//!   `clock_timestamp()`, measured at open and every few seconds after
//!   (half the round trip as the error bound), so a host whose clock is a
//!   minute off neither reaps live claims nor keeps dead ones.
//! - **The blocking `postgres` client.** The store interface is
//!   synchronous and runs on tokio's blocking pool through `Store::run`;
//!   `postgres` is tokio-postgres's own blocking face (same maintainers,
//!   same protocol code), pooled with r2d2 like the SQLite connections.

use super::clock::Clock;
use super::db::{Store, StoreOptions};
use super::error::StoreError;
use super::sql::{Db, PgConn};
use postgres::fallible_iterator::FallibleIterator;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// PostgreSQL migrations in order; the index + 1 is the schema version.
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_signals",
        include_str!("../../migrations/postgres/0002_signals.sql"),
    ),
    (
        "0003_spend",
        include_str!("../../migrations/postgres/0003_spend.sql"),
    ),
    (
        "0004_dashboard",
        include_str!("../../migrations/postgres/0004_dashboard.sql"),
    ),
];

/// The channel idle runners listen on.
pub const WORK_CHANNEL: &str = "paper_runner_work";

/// How often the server's clock offset is measured again.
const CLOCK_RESYNC: Duration = Duration::from_secs(5);

/// How often a write transaction is run again after a serialization
/// conflict before the conflict is returned.
const CONFLICT_RETRIES: u32 = 30;

/// True when `target` is a PostgreSQL URL rather than a SQLite path.
pub fn is_url(target: &str) -> bool {
    let t = target.trim_start();
    t.starts_with("postgres://") || t.starts_with("postgresql://")
}

/// `url` without its password, for messages and `runner status`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    // Query parameters may carry a password too.
    let host = match host.split_once('?') {
        Some((h, q)) => {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                .collect();
            if kept.is_empty() {
                h.to_string()
            } else {
                format!("{h}?{}", kept.join("&"))
            }
        }
        None => host.to_string(),
    };
    match auth {
        Some(a) => {
            let user = a.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}")
        }
        None => format!("{scheme}://{host}"),
    }
}

/// Isolation of a write transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    Serializable,
    ReadCommitted,
}

/// r2d2 manager of [`PgConn`]s.
#[derive(Debug)]
pub struct Manager {
    config: postgres::Config,
}

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        let mut client = self.config.connect(postgres::NoTls)?;
        // Serializable transactions lock what they read; a sequential scan
        // (the planner's choice on small tables) locks the whole table and
        // makes every concurrent writer a conflict. Index scans lock only
        // the rows and ranges read, so hosts conflict only when they
        // really touch the same rows.
        // No JIT: with sequential scans priced out, the planner's cost of
        // a short query easily passes `jit_above_cost`, and compiling it
        // took 120 ms where running it took 1 ms (the forecast's spend
        // look-ups behind the dashboard and `/status`).
        client.batch_execute("SET enable_seqscan = off; SET jit = off")?;
        Ok(PgConn::new(client))
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        match conn.client() {
            Some(c) => c.simple_query("").map(|_| ()),
            None => Ok(()),
        }
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        conn.client().is_none_or(|c| c.is_closed())
    }
}

/// The local clock corrected to the server's (see the module doc).
#[derive(Debug)]
pub struct ServerClock {
    base: Arc<dyn Clock>,
    offset_us: AtomicI64,
}

impl ServerClock {
    fn set_offset(&self, us: i64) {
        self.offset_us.store(us, Ordering::Relaxed);
    }

    /// Measure the offset on `client`: the server's time minus the local
    /// time at the middle of the round trip.
    fn sync(&self, client: &mut postgres::Client) -> Result<(), postgres::Error> {
        let before = self.base.now_us();
        let t0 = Instant::now();
        let row = client.query_one(
            "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
            &[],
        )?;
        let rtt = i64::try_from(t0.elapsed().as_micros()).unwrap_or(0);
        let server: i64 = row.get(0);
        self.set_offset(server.saturating_sub(before.saturating_add(rtt / 2)));
        Ok(())
    }
}

impl Clock for ServerClock {
    fn now_ms(&self) -> i64 {
        self.now_us().div_euclid(1000)
    }

    fn now_us(&self) -> i64 {
        self.base
            .now_us()
            .saturating_add(self.offset_us.load(Ordering::Relaxed))
    }
}

/// The PostgreSQL side of a [`Store`].
#[derive(Clone)]
pub struct PgBackend {
    pool: r2d2::Pool<Manager>,
}

impl PgBackend {
    /// Connect, migrate (up to `version`, all by default), start the
    /// listener; returns the backend, the redacted URL (the store's
    /// "path") and the clock to use.
    pub(super) fn open_to(
        url: &str,
        opts: &StoreOptions,
        wake: &Arc<tokio::sync::Notify>,
        version: Option<i64>,
    ) -> Result<(PgBackend, String, Arc<dyn Clock>), StoreError> {
        blocking(|| Self::connect(url, opts, wake, version))
    }

    fn connect(
        url: &str,
        opts: &StoreOptions,
        wake: &Arc<tokio::sync::Notify>,
        version: Option<i64>,
    ) -> Result<(PgBackend, String, Arc<dyn Clock>), StoreError> {
        let name = redact(url.trim());
        let path = PathBuf::from(&name);
        let mut config: postgres::Config = url.trim().parse().map_err(|e| StoreError::Open {
            path: path.clone(),
            message: format!("not a valid PostgreSQL URL: {e}"),
            source: Some(Box::new(e)),
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            // The process id lets an operator (or a test) find one host's
            // connections in pg_stat_activity.
            config.application_name(&format!("paper-runner/{}", std::process::id()));
        }
        // Connect once directly, so an unreachable server or a missing
        // database is reported as such before the pool starts retrying.
        let mut first = config
            .connect(postgres::NoTls)
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                message: format!("cannot connect: {}", pg_reason(&e)),
                source: Some(Box::new(e)),
            })?;
        migrate(&mut first, &path, version)?;

        let clock: Arc<dyn Clock> = if opts.clock.is_manual() {
            // Tests drive time themselves.
            Arc::clone(&opts.clock)
        } else {
            let sc = Arc::new(ServerClock {
                base: Arc::clone(&opts.clock),
                offset_us: AtomicI64::new(0),
            });
            sc.sync(&mut first)
                .map_err(|e| StoreError::postgres(&path, "reading the server's clock", e))?;
            spawn_listener(config.clone(), Arc::downgrade(&sc), Arc::downgrade(wake));
            sc
        };
        drop(first);

        let pool = r2d2::Pool::builder()
            .max_size(opts.pool_size.max(2))
            .connection_timeout(Duration::from_secs(30))
            .build(Manager { config })
            .map_err(|e| StoreError::Pool {
                path: path.clone(),
                message: e.to_string(),
                source: e,
            })?;
        Ok((PgBackend { pool }, name, clock))
    }

    pub(super) fn conn(
        &self,
        store: &Store,
    ) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        blocking(|| self.pool.get()).map_err(|e| StoreError::Pool {
            path: store.path.clone(),
            message: e.to_string(),
            source: e,
        })
    }

    /// Reads on a pooled connection (see [`blocking`]).
    pub(super) fn read<T>(
        &self,
        store: &Store,
        f: impl FnOnce(&Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        blocking(|| {
            let mut conn = self.conn(store)?;
            match conn.parts() {
                Some((client, statements)) => f(&Db::pg(client, statements)),
                None => f(&Db::closed()),
            }
        })
    }

    pub(super) fn write<T>(
        &self,
        store: &Store,
        what: &str,
        isolation: Isolation,
        f: impl FnMut(&Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        blocking(|| self.write_now(store, what, isolation, f))
    }

    fn write_now<T>(
        &self,
        store: &Store,
        what: &str,
        isolation: Isolation,
        mut f: impl FnMut(&Db<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn(store)?;
        let mut attempt = 0u32;
        loop {
            let level = match isolation {
                Isolation::Serializable => postgres::IsolationLevel::Serializable,
                Isolation::ReadCommitted => postgres::IsolationLevel::ReadCommitted,
            };
            let result = match conn.parts() {
                None => Err(store.err(what, super::sql::DbError::closed())),
                Some((client, statements)) => {
                    match client.build_transaction().isolation_level(level).start() {
                        Err(e) => Err(store.err(what, e)),
                        Ok(mut tx) => match f(&Db::pg(&mut tx, statements)) {
                            Ok(v) => tx.commit().map(|()| v).map_err(|e| store.err(what, e)),
                            Err(e) => Err(e), // dropping `tx` rolls it back
                        },
                    }
                }
            };
            match result {
                Err(e) if e.is_connection_lost() && attempt < 3 => {
                    // Nothing was committed; take another connection (the
                    // pool replaces broken ones) and run it again.
                    attempt += 1;
                    tracing::warn!(error = %e, "PostgreSQL connection lost; retrying on a new one");
                    drop(conn);
                    conn = self.conn(store)?;
                }
                Err(e) if e.is_conflict() && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    // Jittered, growing pause so conflicting hosts do not
                    // meet again at once.
                    let ms = 1 + fastrand::u64(0..(2u64 << attempt.min(6)));
                    std::thread::sleep(Duration::from_millis(ms));
                }
                other => return other,
            }
        }
    }
}

/// Run blocking client work. The `postgres` client drives its connection
/// on a runtime of its own, which tokio refuses to start on an async
/// worker thread; store work normally arrives through `Store::run` (a
/// blocking-pool thread, where this is a no-op), but a store call made
/// straight from async code must not panic: on a multi-threaded runtime
/// the worker is handed over for the call (`block_in_place`).
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Why a connection failed, in the operator's words (the server's message
/// when it sent one: "database \"x\" does not exist", …).
fn pg_reason(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_string(),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s = format!("{s}: {inner}");
                src = inner.source();
            }
            s
        }
    }
}

/// Apply missing migrations up to `target`, under a transaction-scoped
/// advisory lock so hosts starting together migrate once.
pub(super) fn migrate(
    client: &mut postgres::Client,
    path: &Path,
    target: Option<i64>,
) -> Result<i64, StoreError> {
    let latest = MIGRATIONS.len() as i64;
    let target = target.unwrap_or(latest);
    let err = |what: &str, e: postgres::Error| StoreError::postgres(path, what, e);
    let mut tx = client
        .transaction()
        .map_err(|e| err("starting migration", e))?;
    tx.batch_execute(
        "SELECT pg_advisory_xact_lock(7261537000001);
         CREATE TABLE IF NOT EXISTS paper_runner_schema (
             version    BIGINT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         );",
    )
    .map_err(|e| err("locking the schema", e))?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM paper_runner_schema",
            &[],
        )
        .map_err(|e| err("reading schema version", e))?
        .get(0);
    if current > latest {
        return Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: current,
            supported: latest,
        });
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current || version > target {
            continue;
        }
        tx.batch_execute(sql)
            .map_err(|e| err(&format!("applying migration postgres/{name}"), e))?;
        tx.execute(
            "INSERT INTO paper_runner_schema(version) VALUES ($1)",
            &[&version],
        )
        .map_err(|e| err("recording schema version", e))?;
        tracing::info!(migration = name, "applied PostgreSQL migration");
    }
    tx.commit().map_err(|e| err("committing migration", e))?;
    Ok(current.max(target))
}

/// The listener thread: `LISTEN` on [`WORK_CHANNEL`] and wake the store's
/// idle schedulers on every notification; measure the server's clock
/// between waits. It holds only weak references, so it ends (within one
/// resync period) once the store is dropped; a lost connection is
/// re-opened with a growing pause.
fn spawn_listener(
    config: postgres::Config,
    clock: Weak<ServerClock>,
    wake: Weak<tokio::sync::Notify>,
) {
    let spawned = std::thread::Builder::new()
        .name("pg-listener".into())
        .spawn(move || {
            let mut pause = Duration::from_millis(200);
            loop {
                if clock.strong_count() == 0 {
                    return;
                }
                match listen(&config, &clock, &wake) {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %pg_reason(&e), "PostgreSQL listener lost its connection; reconnecting");
                        // Wake idle schedulers: they poll once and find any
                        // work a missed notification announced.
                        if let Some(w) = wake.upgrade() {
                            w.notify_waiters();
                        }
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the PostgreSQL listener; idle runners will poll");
    }
}

/// One listener connection's life; Ok when the store is gone.
fn listen(
    config: &postgres::Config,
    clock: &Weak<ServerClock>,
    wake: &Weak<tokio::sync::Notify>,
) -> Result<(), postgres::Error> {
    let mut client = config.connect(postgres::NoTls)?;
    client.batch_execute(&format!("LISTEN {WORK_CHANNEL}"))?;
    let mut synced = Instant::now();
    loop {
        let wait = CLOCK_RESYNC.saturating_sub(synced.elapsed());
        let got = {
            let mut n = client.notifications();
            let first = n.timeout_iter(wait).next()?;
            if first.is_some() {
                // Drain what else is queued; one wake-up covers them all.
                let mut rest = n.iter();
                while rest.next()?.is_some() {}
            }
            first.is_some()
        };
        if got {
            match wake.upgrade() {
                Some(w) => w.notify_waiters(),
                None => return Ok(()),
            }
        }
        if synced.elapsed() >= CLOCK_RESYNC {
            match clock.upgrade() {
                Some(c) => c.sync(&mut client)?,
                None => return Ok(()),
            }
            synced = Instant::now();
        }
    }
}

/// Environment variable naming the PostgreSQL server tests may use
/// (`postgres://root@127.0.0.1/test`); `.ci/run` sets it.
pub const TEST_PG_ENV: &str = "RUNNER_TEST_PG";

/// Environment variable that moves the store tests onto PostgreSQL
/// (`postgres`): `.ci/run` runs the store's own tests a second time with
/// it, so both backends pass the same contract.
pub const TEST_BACKEND_ENV: &str = "PAPER_RUNNER_TEST_BACKEND";

/// A fresh, empty PostgreSQL schema on the server `base` names, as a URL
/// whose connections use it (`search_path`): each test gets its own
/// database namespace without the cost of `CREATE DATABASE`.
pub fn fresh_schema_url(base: &str) -> Result<String, String> {
    blocking(|| create_schema(base))
}

fn create_schema(base: &str) -> Result<String, String> {
    let mut client = base
        .parse::<postgres::Config>()
        .map_err(|e| e.to_string())?
        .connect(postgres::NoTls)
        .map_err(|e| pg_reason(&e))?;
    let schema = format!("prt_{:016x}", fastrand::u64(..));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .map_err(|e| pg_reason(&e))?;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

/// Where a store test keeps its database: `dir/name` (SQLite), or a fresh
/// PostgreSQL schema when [`TEST_BACKEND_ENV`] is `postgres` and
/// [`TEST_PG_ENV`] names a server. Not for product code.
#[doc(hidden)]
pub fn test_db(dir: &Path, name: &str) -> PathBuf {
    let pg = std::env::var(TEST_BACKEND_ENV).is_ok_and(|v| v == "postgres");
    match (pg, std::env::var(TEST_PG_ENV)) {
        (true, Ok(base)) if !base.trim().is_empty() => match fresh_schema_url(base.trim()) {
            Ok(url) => PathBuf::from(url),
            Err(e) => panic!("{TEST_BACKEND_ENV}=postgres but {TEST_PG_ENV} is unusable: {e}"),
        },
        _ => dir.join(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_told_from_paths_and_passwords_are_dropped() {
        assert!(is_url("postgres://u@h/db"));
        assert!(is_url("postgresql://h/db"));
        assert!(!is_url("data/runner.db"));
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u@h:5432/db"
        );
        assert_eq!(
            redact("postgres://h/db?password=x&sslmode=disable"),
            "postgres://h/db?sslmode=disable"
        );
        assert_eq!(redact("postgresql://h/db"), "postgresql://h/db");
    }
}
