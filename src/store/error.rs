//! Store errors: each names the database file and says what to do.
//!
//! The message (`Display`) is for the operator and stays one line; the
//! underlying error is kept as the [`source`](std::error::Error::source),
//! so code and logs can reach the SQLite (or I/O, or pool) error itself
//! instead of parsing text.

use std::path::PathBuf;

/// An underlying error of any type (see [`StoreError::Open`]).
pub type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `source`: the SQLite error, or the I/O error of the path or its
    /// folder; none when the runner refused the path itself (not a
    /// regular file: nothing failed).
    #[error("database {path}: cannot open: {message}")]
    Open {
        path: PathBuf,
        message: String,
        #[source]
        source: Option<BoxedSource>,
    },
    #[error("database {path} is read-only: {message} (check the file and folder permissions)")]
    ReadOnly {
        path: PathBuf,
        message: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("database {path} is corrupt or not a paper-runner database: {message}")]
    Corrupt {
        path: PathBuf,
        message: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this runner supports ({supported}); upgrade paper-runner"
    )]
    NewerSchema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("database {path}: {context}: {source}")]
    Sqlite {
        path: PathBuf,
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// A PostgreSQL error (`path` is the URL without its password).
    #[error("database {path}: {context}: {source}")]
    Postgres {
        path: PathBuf,
        context: String,
        #[source]
        source: postgres::Error,
    },
    #[error("database {path}: connection pool: {message}")]
    Pool {
        path: PathBuf,
        message: String,
        #[source]
        source: r2d2::Error,
    },
    #[error("execution {id} is leased by {owner} until {until}")]
    Leased {
        id: String,
        owner: String,
        until: String,
    },
    #[error("lease on execution {id} was taken over by {owner}")]
    LeaseLost { id: String, owner: String },
    #[error("{0}")]
    NotFound(String),
    /// A snapshot referenced a blob an earlier snapshot stored, and it is
    /// gone (pruned meanwhile); the writer re-encodes and stores it again.
    #[error("blob {0} is no longer stored")]
    MissingBlob(String),
    #[error("{0}")]
    Invalid(String),
    /// A blocking store task panicked or was cancelled. Says nothing about
    /// the data (unlike `Invalid`), so a phase that meets it is retried as
    /// `internal`, never failed for good on the first occurrence. The join
    /// error is kept as the source (it holds the panic payload).
    #[error("store task failed: a blocking store task {}", if .0.is_panic() { "panicked" } else { "was cancelled" })]
    TaskFailed(#[source] tokio::task::JoinError),
}

impl StoreError {
    /// A blocking store task that did not return: it panicked, or the
    /// runtime cancelled it at shutdown.
    pub fn task_failed(e: tokio::task::JoinError) -> StoreError {
        StoreError::TaskFailed(e)
    }

    /// Wrap a PostgreSQL error.
    pub fn postgres(path: &std::path::Path, context: &str, e: postgres::Error) -> StoreError {
        StoreError::Postgres {
            path: path.to_path_buf(),
            context: context.to_string(),
            source: e,
        }
    }

    /// A PostgreSQL serialization conflict or deadlock: the transaction
    /// was rolled back and running it again is the cure.
    pub fn is_conflict(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            StoreError::Postgres { source, .. } => matches!(
                source.code(),
                Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
            ),
            _ => false,
        }
    }

    /// A PostgreSQL connection that was closed under the store (server
    /// restart, `pg_terminate_backend`, a cut network): nothing was
    /// committed, and a new connection may well succeed.
    pub fn is_connection_lost(&self) -> bool {
        use postgres::error::SqlState;
        match self {
            StoreError::Postgres { source, .. } => {
                source.is_closed()
                    || matches!(
                        source.code(),
                        Some(c) if *c == SqlState::ADMIN_SHUTDOWN
                            || *c == SqlState::CRASH_SHUTDOWN
                            || *c == SqlState::CONNECTION_FAILURE
                    )
            }
            _ => false,
        }
    }

    /// Wrap a SQLite error, classifying read-only and corrupt files.
    pub fn sqlite(path: &std::path::Path, context: &str, e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        let path = path.to_path_buf();
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            let message = msg.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                ErrorCode::ReadOnly => {
                    return StoreError::ReadOnly {
                        path,
                        message,
                        source: e,
                    }
                }
                ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                    return StoreError::Corrupt {
                        path,
                        message,
                        source: e,
                    }
                }
                _ => {}
            }
        }
        StoreError::Sqlite {
            path,
            context: context.to_string(),
            source: e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, StoreOptions};
    use std::error::Error as _;

    /// The first error of `T` in `e`'s source chain.
    fn in_chain<T: std::error::Error + 'static>(e: &StoreError) -> Option<&T> {
        let mut next = e.source();
        while let Some(s) = next {
            if let Some(t) = s.downcast_ref::<T>() {
                return Some(t);
            }
            next = s.source();
        }
        None
    }

    fn sqlite_code(e: &StoreError) -> Option<rusqlite::ErrorCode> {
        in_chain::<rusqlite::Error>(e).and_then(|s| s.sqlite_error_code())
    }

    #[test]
    fn a_corrupt_file_is_classified_and_keeps_the_sqlite_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.db");
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let err = Store::open(&path, &StoreOptions::default()).err().unwrap();
        let StoreError::Corrupt { message, .. } = &err else {
            panic!("not classified as corrupt: {err}");
        };
        assert_eq!(sqlite_code(&err), Some(rusqlite::ErrorCode::NotADatabase));
        // The message is unchanged: the operator's line, then the hint.
        assert_eq!(
            err.to_string(),
            format!(
                "database {} is corrupt or not a paper-runner database: {message}",
                path.display()
            )
        );
    }

    /// A write refused by SQLite as read-only (a connection opened
    /// read-only: permissions do not stop root, who runs some CI).
    #[test]
    fn a_read_only_database_is_classified_and_keeps_the_sqlite_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ro.db");
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        let ro = rusqlite::Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let e = ro.execute("INSERT INTO t VALUES (1)", []).unwrap_err();
        let err = StoreError::sqlite(&path, "writing", e);
        assert!(matches!(err, StoreError::ReadOnly { .. }), "{err}");
        assert_eq!(sqlite_code(&err), Some(rusqlite::ErrorCode::ReadOnly));
        assert!(
            err.to_string()
                .ends_with("(check the file and folder permissions)"),
            "{err}"
        );
    }

    /// A folder that cannot be created keeps its I/O error; a path refused
    /// for what it is (a directory) has no underlying error.
    #[test]
    fn open_failures_keep_their_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"").unwrap();
        let err = Store::open(&file.join("sub/x.db"), &StoreOptions::default())
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::Open { .. }), "{err}");
        assert!(in_chain::<std::io::Error>(&err).is_some(), "{err:?}");
        let err = Store::open(dir.path(), &StoreOptions::default())
            .err()
            .unwrap();
        assert!(
            matches!(err, StoreError::Open { source: None, .. }),
            "{err}"
        );
    }
}
