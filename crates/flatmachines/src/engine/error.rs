//! The error taxonomy every layer reports in, and the error that ends (or is
//! routed out of) a state.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Error kinds, as named in `on_error` maps and `context.last_error_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    RateLimit,
    Timeout,
    ServerError,
    InvalidRequest,
    AuthError,
    PaymentRequired,
    LegalBlock,
    ContentFilter,
    ContextLength,
    ModelNotFound,
    EmptyResponse,
    ActionError,
    ChildFailed,
    TemplateError,
    NoTransition,
    MaxSteps,
    /// A resource (e.g. a paper's PDF) does not exist: permanent.
    NotFound,
    /// A PDF that cannot be parsed (malformed, truncated, encrypted).
    PdfUnreadable,
    /// A PDF over a configured limit (bytes, pages, memory): permanent.
    PdfTooLarge,
    /// PDF extraction past its wall-time limit: permanent.
    PdfTimeout,
    /// A provider response body over its size cap.
    ResponseTooLarge,
    /// Output of a shell action, hook or template over its cap.
    OutputTooLarge,
    /// Machine nesting deeper than the depth limit, or more child
    /// executions than the total-children limit.
    RecursionLimit,
    /// A bug in the runner (a panic inside a task): retried at phase level.
    Internal,
    /// The host ran out of a resource (file descriptors, memory, disk):
    /// says nothing about the paper, retried at phase level.
    ResourceExhausted,
    /// The execution was stopped from outside (lease lost, cancel, shutdown).
    /// Never routed through `on_error`.
    Interrupted,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 26] = [
        ErrorKind::RateLimit,
        ErrorKind::Timeout,
        ErrorKind::ServerError,
        ErrorKind::InvalidRequest,
        ErrorKind::AuthError,
        ErrorKind::PaymentRequired,
        ErrorKind::LegalBlock,
        ErrorKind::ContentFilter,
        ErrorKind::ContextLength,
        ErrorKind::ModelNotFound,
        ErrorKind::EmptyResponse,
        ErrorKind::ActionError,
        ErrorKind::ChildFailed,
        ErrorKind::TemplateError,
        ErrorKind::NoTransition,
        ErrorKind::MaxSteps,
        ErrorKind::NotFound,
        ErrorKind::PdfUnreadable,
        ErrorKind::PdfTooLarge,
        ErrorKind::PdfTimeout,
        ErrorKind::ResponseTooLarge,
        ErrorKind::OutputTooLarge,
        ErrorKind::RecursionLimit,
        ErrorKind::Internal,
        ErrorKind::ResourceExhausted,
        ErrorKind::Interrupted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::Timeout => "timeout",
            ErrorKind::ServerError => "server_error",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::AuthError => "auth_error",
            ErrorKind::PaymentRequired => "payment_required",
            ErrorKind::LegalBlock => "legal_block",
            ErrorKind::ContentFilter => "content_filter",
            ErrorKind::ContextLength => "context_length",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::EmptyResponse => "empty_response",
            ErrorKind::ActionError => "action_error",
            ErrorKind::ChildFailed => "child_failed",
            ErrorKind::TemplateError => "template_error",
            ErrorKind::NoTransition => "no_transition",
            ErrorKind::MaxSteps => "max_steps",
            ErrorKind::NotFound => "not_found",
            ErrorKind::PdfUnreadable => "pdf_unreadable",
            ErrorKind::PdfTooLarge => "pdf_too_large",
            ErrorKind::PdfTimeout => "pdf_timeout",
            ErrorKind::ResponseTooLarge => "response_too_large",
            ErrorKind::OutputTooLarge => "output_too_large",
            ErrorKind::RecursionLimit => "recursion_limit",
            ErrorKind::Internal => "internal",
            ErrorKind::ResourceExhausted => "resource_exhausted",
            ErrorKind::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Kinds a `retry` execution retries: transient provider trouble.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimit
                | ErrorKind::Timeout
                | ErrorKind::ServerError
                | ErrorKind::EmptyResponse
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind an I/O failure of an action reports.
///
/// Running out of a host resource — file descriptors (`EMFILE`, `ENFILE`),
/// memory (`ENOMEM`), buffer space (`ENOBUFS`), disk space or quota
/// (`ENOSPC`, `EDQUOT`) — says nothing about the paper: it is
/// [`ErrorKind::ResourceExhausted`], which the runner retries, so a busy or
/// full host never fails a paper permanently. Anything else is an
/// [`ErrorKind::ActionError`]; callers with a more precise kind for their
/// own failures (e.g. `not_found`) check for `ResourceExhausted` first.
pub fn io_error_kind(e: &std::io::Error) -> ErrorKind {
    let exhausted = matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOMEM
                | libc::ENOBUFS
                | libc::ENOSPC
                | libc::EDQUOT
        )
    ) || matches!(
        e.kind(),
        std::io::ErrorKind::OutOfMemory | std::io::ErrorKind::StorageFull
    );
    if exhausted {
        ErrorKind::ResourceExhausted
    } else {
        ErrorKind::ActionError
    }
}

/// An error raised while executing a state, or the error an execution ended with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ExecError {
    pub kind: ErrorKind,
    pub message: String,
    /// Seconds the provider asked us to wait (429/503), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<f64>,
    /// Why an [`ErrorKind::Interrupted`] execution stopped, when the cause
    /// matters to the runner: typed, so a park and a lost lease are told
    /// apart without reading the message. Neither is a failure; the state
    /// in flight re-runs on resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Box<Stop>>,
    /// For `child_failed`: the kinds the failed children failed with, down
    /// to the first kind that is not itself `child_failed`. Typed so the
    /// runner decides whether a phase is worth retrying without parsing the
    /// message. Empty for other kinds (and in errors stored before it
    /// existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<ErrorKind>,
    /// The error underneath, when a host component failed (the store, the
    /// spend ledger, a blocking task): kept so a log or an operator sees the
    /// whole chain (`std::error::Error::source`). The runtime cannot name
    /// the host's error types, so it is held as a trait object. Not stored
    /// in checkpoints (the message says what happened).
    #[serde(skip)]
    #[source]
    pub source: Option<ErrorSource>,
}

/// A host error kept as the [`ExecError::source`]: shared so `ExecError`
/// stays `Clone`; two are equal only when they are the same error.
#[derive(Clone)]
pub struct ErrorSource(Arc<dyn std::error::Error + Send + Sync + 'static>);

impl ErrorSource {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> ErrorSource {
        ErrorSource(Arc::new(e))
    }

    /// The host error itself, for `downcast_ref` by the host that made it.
    pub fn get(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for ErrorSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl std::error::Error for ErrorSource {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl PartialEq for ErrorSource {
    fn eq(&self, other: &ErrorSource) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// The cause of an interruption the runner acts on.
///
/// There is no "cancelled": a host that stops an execution from outside
/// (an operator's cancel, a deadline) does not ask the engine to fail —
/// it drops the drive future, which aborts the engine's children and its
/// lease renewer, and settles the work itself. Nothing inside the engine
/// observes a cancel, so nothing here could report one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// Something the execution needs is unavailable for a while: give the
    /// worker slot back.
    Parked(Parked),
    /// A `wait_for` state has no signal yet: the execution holds no worker
    /// and no lease until signal `signal` arrives or `deadline_ms` (unix
    /// ms) passes; resuming re-runs the waiting state.
    Waiting {
        signal: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<i64>,
    },
    /// Another process took the execution's lease: write nothing more.
    LeaseLost { owner: String },
    /// The process is stopping (a signal, the runtime shutting down).
    Shutdown,
    /// The host under the execution failed (the store, the spend ledger, a
    /// blocking task that panicked or was cancelled): says nothing about
    /// the execution, whose work is safe at its last checkpoint. The
    /// error itself is [`ExecError::source`].
    Host,
}

/// Why an execution gave its worker back: a model it calls is blocked
/// (breaker open, rate-limited far ahead, provider out of credits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parked {
    /// The blocked resource: a model's limiter key (`base_url|model`).
    pub model: String,
    /// `breaker_open`, `rate_limited`, `payment_required` or `budget`.
    pub reason: String,
    /// When it is expected to be usable again (unix ms), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
}

impl ExecError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ExecError {
        ExecError {
            kind,
            message: message.into(),
            retry_after: None,
            stop: None,
            causes: Vec::new(),
            source: None,
        }
    }

    /// An `interrupted` error with a typed cause.
    pub fn stopped(stop: Stop, message: impl Into<String>) -> ExecError {
        ExecError {
            stop: Some(Box::new(stop)),
            ..ExecError::new(ErrorKind::Interrupted, message)
        }
    }

    /// The execution stops (kind `interrupted`, never routed through
    /// `on_error`, no `machine_failed` checkpoint) because `p` is blocked.
    pub fn parked(p: Parked, message: impl Into<String>) -> ExecError {
        ExecError::stopped(Stop::Parked(p), message)
    }

    /// The execution stops (kind `interrupted`) because `owner` took its
    /// lease: a process that lost its lease writes nothing more.
    pub fn lease_lost(owner: impl Into<String>, message: impl Into<String>) -> ExecError {
        ExecError::stopped(
            Stop::LeaseLost {
                owner: owner.into(),
            },
            message,
        )
    }

    /// The execution stops (kind `interrupted`) because the host failed
    /// under it; `source` is the host's error, kept for the error chain.
    pub fn host(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> ExecError {
        ExecError::stopped(Stop::Host, message).with_source(source)
    }

    /// This error with `source` as the error underneath.
    pub fn with_source(self, source: impl std::error::Error + Send + Sync + 'static) -> ExecError {
        ExecError {
            source: Some(ErrorSource::new(source)),
            ..self
        }
    }

    /// The typed cause of an interruption, if any.
    pub fn stop(&self) -> Option<&Stop> {
        self.stop.as_deref()
    }

    /// The park, when this error is one.
    pub fn park(&self) -> Option<&Parked> {
        match self.stop.as_deref() {
            Some(Stop::Parked(p)) => Some(p),
            _ => None,
        }
    }

    /// The signal a `wait_for` state waits for and its deadline, when the
    /// execution stopped to wait.
    pub fn waiting(&self) -> Option<(&str, Option<i64>)> {
        match self.stop.as_deref() {
            Some(Stop::Waiting {
                signal,
                deadline_ms,
            }) => Some((signal.as_str(), *deadline_ms)),
            _ => None,
        }
    }

    /// A `child_failed` error caused by `children` (each a child's error).
    pub fn child_failed<'a>(
        message: impl Into<String>,
        children: impl IntoIterator<Item = &'a ExecError>,
    ) -> ExecError {
        let mut causes: Vec<ErrorKind> = Vec::new();
        for c in children {
            for k in c.root_causes() {
                if !causes.contains(&k) {
                    causes.push(k);
                }
            }
        }
        ExecError {
            causes,
            ..ExecError::new(ErrorKind::ChildFailed, message)
        }
    }

    /// The kinds behind this error: `causes` for a `child_failed` that has
    /// them, else the error's own kind.
    pub fn root_causes(&self) -> Vec<ErrorKind> {
        if self.kind == ErrorKind::ChildFailed && !self.causes.is_empty() {
            self.causes.clone()
        } else {
            vec![self.kind]
        }
    }

    /// Whether the execution stopped because its lease was taken over.
    pub fn is_lease_lost(&self) -> bool {
        matches!(self.stop.as_deref(), Some(Stop::LeaseLost { .. }))
    }

    /// Who took the lease, when the execution stopped because it was.
    pub fn lease_owner(&self) -> Option<&str> {
        match self.stop.as_deref() {
            Some(Stop::LeaseLost { owner }) => Some(owner),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(k.as_str()), Some(k));
        }
        for name in crate::spec::model::ERROR_KINDS {
            assert!(ErrorKind::parse(name).is_some(), "{name}");
        }
        assert_eq!(
            serde_json::to_string(&ErrorKind::RateLimit).ok().as_deref(),
            Some("\"rate_limit\"")
        );
    }

    /// A host failure keeps its error underneath for the chain, is typed
    /// (not read from the message), and stays out of stored checkpoints.
    #[test]
    fn a_host_failure_keeps_its_source_and_is_typed() {
        use std::error::Error as _;
        let io = std::io::Error::other("disk full");
        let e = ExecError::host("checkpoint failed: disk full", io);
        assert_eq!(e.kind, ErrorKind::Interrupted);
        assert_eq!(e.stop(), Some(&Stop::Host));
        assert!(!e.is_lease_lost() && e.park().is_none());
        let source = e.source().map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("disk full"));
        assert_eq!(e.clone(), e, "a clone shares the source");
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("source"), "{json}");
        let back: ExecError = serde_json::from_str(&json).unwrap();
        assert_eq!(back.stop(), Some(&Stop::Host));
        assert!(back.source.is_none());
        let lost = ExecError::lease_lost("host:2", "taken");
        assert_eq!(lost.lease_owner(), Some("host:2"));
        assert_eq!(
            ExecError::stopped(Stop::Shutdown, "x").stop(),
            Some(&Stop::Shutdown)
        );
    }

    #[test]
    fn host_exhaustion_is_retryable_and_other_io_errors_are_not() {
        use std::io::Error;
        for code in [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOMEM,
            libc::ENOBUFS,
            libc::ENOSPC,
            libc::EDQUOT,
        ] {
            assert_eq!(
                io_error_kind(&Error::from_raw_os_error(code)),
                ErrorKind::ResourceExhausted,
                "errno {code}"
            );
        }
        for code in [libc::ENOENT, libc::EACCES, libc::EISDIR, libc::EIO] {
            assert_eq!(
                io_error_kind(&Error::from_raw_os_error(code)),
                ErrorKind::ActionError,
                "errno {code}"
            );
        }
        assert_eq!(
            io_error_kind(&Error::from(std::io::ErrorKind::OutOfMemory)),
            ErrorKind::ResourceExhausted
        );
    }
}
