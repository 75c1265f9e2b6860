//! Store errors: each names the database file and says what to do.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: cannot open: {message}")]
    Open { path: PathBuf, message: String },
    #[error("database {path} is read-only: {message} (check the file and folder permissions)")]
    ReadOnly { path: PathBuf, message: String },
    #[error("database {path} is corrupt or not a paper-runner database: {message}")]
    Corrupt { path: PathBuf, message: String },
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
    #[error("database {path}: connection pool: {message}")]
    Pool { path: PathBuf, message: String },
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

    /// Wrap a SQLite error, classifying read-only and corrupt files.
    pub fn sqlite(path: &std::path::Path, context: &str, e: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        let path = path.to_path_buf();
        if let rusqlite::Error::SqliteFailure(f, msg) = &e {
            let message = msg.clone().unwrap_or_else(|| f.to_string());
            match f.code {
                ErrorCode::ReadOnly => return StoreError::ReadOnly { path, message },
                ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                    return StoreError::Corrupt { path, message }
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
