//! The three phases a paper goes through and the status flow between them.
//!
//! Each phase is one machine run as one durable execution. A phase is
//! claimed from its *stable* status (pending, prepped, analyzed), runs in its
//! *working* status (prepping, analyzing, wrapping) and ends in the next
//! stable status (prepped, analyzed, done) — or `failed`.
//!
//! [`PaperStatus`] is the queue's status column as one Rust enum: the only
//! place a status is spelled in Rust (`as_str`), read from the database
//! (`FromSql`, an unknown value is a conversion error, never a panic) and
//! written to it (`ToSql`). SQL that needs a status takes it as a parameter
//! or is generated from the enum, so renaming a status is a change here plus
//! a migration.

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Prep,
    Expensive,
    Wrap,
}

impl Phase {
    pub const ALL: [Phase; 3] = [Phase::Prep, Phase::Expensive, Phase::Wrap];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Prep => "prep",
            Phase::Expensive => "expensive",
            Phase::Wrap => "wrap",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        match s.trim().to_ascii_lowercase().as_str() {
            "prep" => Some(Phase::Prep),
            "expensive" => Some(Phase::Expensive),
            "wrap" => Some(Phase::Wrap),
            _ => None,
        }
    }

    /// The status a paper must have for this phase to be claimed.
    pub fn from_status(self) -> PaperStatus {
        match self {
            Phase::Prep => PaperStatus::Pending,
            Phase::Expensive => PaperStatus::Prepped,
            Phase::Wrap => PaperStatus::Analyzed,
        }
    }

    /// The status while the phase runs.
    pub fn working_status(self) -> PaperStatus {
        match self {
            Phase::Prep => PaperStatus::Prepping,
            Phase::Expensive => PaperStatus::Analyzing,
            Phase::Wrap => PaperStatus::Wrapping,
        }
    }

    /// The status after the phase succeeded.
    pub fn done_status(self) -> PaperStatus {
        match self {
            Phase::Prep => PaperStatus::Prepped,
            Phase::Expensive => PaperStatus::Analyzed,
            Phase::Wrap => PaperStatus::Done,
        }
    }

    /// The phase whose working status `s` (as text) is; None for any other
    /// text. Typed code uses [`PaperStatus::working_phase`].
    pub fn of_working_status(s: &str) -> Option<Phase> {
        s.parse::<PaperStatus>().ok()?.working_phase()
    }

    /// The `executions` column counting this phase's attempts.
    pub fn attempts_column(self) -> &'static str {
        match self {
            Phase::Prep => "attempts_prep",
            Phase::Expensive => "attempts_expensive",
            Phase::Wrap => "attempts_wrap",
        }
    }

    /// The machine file of this phase inside the machines directory.
    pub fn machine_file(self) -> &'static str {
        match self {
            Phase::Prep => "prep.yml",
            Phase::Expensive => "expensive.yml",
            Phase::Wrap => "wrap.yml",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The status of a paper in the queue (`executions.status`).
///
/// Cancelling is not a status: it is the `cancel_requested` flag, kept
/// beside whatever status the paper has. Variants are declared in flow
/// order and `Ord` follows it (`failed` last), so "at or past a status"
/// is a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaperStatus {
    Pending,
    Prepping,
    Prepped,
    Analyzing,
    Analyzed,
    Wrapping,
    Done,
    Failed,
}

impl PaperStatus {
    /// Every status, in flow order.
    pub const ALL: [PaperStatus; 8] = [
        PaperStatus::Pending,
        PaperStatus::Prepping,
        PaperStatus::Prepped,
        PaperStatus::Analyzing,
        PaperStatus::Analyzed,
        PaperStatus::Wrapping,
        PaperStatus::Done,
        PaperStatus::Failed,
    ];

    /// The status as stored in the database and shown to operators — the
    /// one place each status is spelled.
    pub const fn as_str(self) -> &'static str {
        match self {
            PaperStatus::Pending => "pending",
            PaperStatus::Prepping => "prepping",
            PaperStatus::Prepped => "prepped",
            PaperStatus::Analyzing => "analyzing",
            PaperStatus::Analyzed => "analyzed",
            PaperStatus::Wrapping => "wrapping",
            PaperStatus::Done => "done",
            PaperStatus::Failed => "failed",
        }
    }

    /// The phase running while a paper has this status (a working status),
    /// else None.
    pub fn working_phase(self) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.working_status() == self)
    }

    /// The phase claimed from this status (a stable status before a
    /// phase), else None.
    pub fn next_phase(self) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.from_status() == self)
    }

    /// `'a', 'b', …` for an SQL `IN (…)` list. Only ever built from enum
    /// values (static, known text), never from input.
    pub(crate) fn sql_list(statuses: impl IntoIterator<Item = PaperStatus>) -> String {
        statuses
            .into_iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for PaperStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status text that is not one of [`PaperStatus::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown paper status {0:?} (expected one of pending, prepping, prepped, analyzing, analyzed, wrapping, done, failed)")]
pub struct UnknownStatus(pub String);

impl FromStr for PaperStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaperStatus::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_string()))
    }
}

impl ToSql for PaperStatus {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

/// A row whose status is not known to this build (a newer runner wrote
/// it, or the file was edited) fails the read with a conversion error
/// naming the text, which the store reports as a `StoreError`.
impl FromSql for PaperStatus {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let text = value.as_str()?;
        text.parse().map_err(|e| FromSqlError::Other(Box::new(e)))
    }
}

/// Every status of the paper queue as text, in flow order (the spelling
/// is [`PaperStatus::as_str`]).
pub const STATUSES: [&str; 8] = [
    PaperStatus::Pending.as_str(),
    PaperStatus::Prepping.as_str(),
    PaperStatus::Prepped.as_str(),
    PaperStatus::Analyzing.as_str(),
    PaperStatus::Analyzed.as_str(),
    PaperStatus::Wrapping.as_str(),
    PaperStatus::Done.as_str(),
    PaperStatus::Failed.as_str(),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_flow_chains_phases() {
        assert_eq!(Phase::Prep.done_status(), Phase::Expensive.from_status());
        assert_eq!(Phase::Expensive.done_status(), Phase::Wrap.from_status());
        for p in Phase::ALL {
            assert_eq!(
                Phase::of_working_status(p.working_status().as_str()),
                Some(p)
            );
            assert_eq!(Phase::parse(p.name()), Some(p));
            assert_eq!(p.working_status().working_phase(), Some(p));
            assert_eq!(p.from_status().next_phase(), Some(p));
        }
    }

    #[test]
    fn statuses_round_trip_through_text_and_unknown_text_is_an_error() {
        for s in PaperStatus::ALL {
            assert_eq!(s.as_str().parse::<PaperStatus>(), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(STATUSES.len(), PaperStatus::ALL.len());
        let e = "cancelled".parse::<PaperStatus>().unwrap_err();
        assert!(e.to_string().contains("\"cancelled\""), "{e}");
        assert_eq!(
            Phase::of_working_status("analyzing"),
            Some(Phase::Expensive)
        );
        assert_eq!(Phase::of_working_status("prepped"), None);
        assert_eq!(Phase::of_working_status("bogus"), None);
    }
}
