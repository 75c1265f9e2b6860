//! The three phases a paper goes through and the status flow between them.
//!
//! Each phase is one machine run as one durable execution. A phase is
//! claimed from its *stable* status (pending, prepped, analyzed), runs in its
//! *working* status (prepping, analyzing, wrapping) and ends in the next
//! stable status (prepped, analyzed, done) — or `failed`.

use serde::{Deserialize, Serialize};
use std::fmt;

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
    pub fn from_status(self) -> &'static str {
        match self {
            Phase::Prep => "pending",
            Phase::Expensive => "prepped",
            Phase::Wrap => "analyzed",
        }
    }

    /// The status while the phase runs.
    pub fn working_status(self) -> &'static str {
        match self {
            Phase::Prep => "prepping",
            Phase::Expensive => "analyzing",
            Phase::Wrap => "wrapping",
        }
    }

    /// The status after the phase succeeded.
    pub fn done_status(self) -> &'static str {
        match self {
            Phase::Prep => "prepped",
            Phase::Expensive => "analyzed",
            Phase::Wrap => "done",
        }
    }

    /// The phase whose working status this is.
    pub fn of_working_status(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.working_status() == s)
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

/// Every status of the paper queue, in flow order.
pub const STATUSES: [&str; 8] = [
    "pending",
    "prepping",
    "prepped",
    "analyzing",
    "analyzed",
    "wrapping",
    "done",
    "failed",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_flow_chains_phases() {
        assert_eq!(Phase::Prep.done_status(), Phase::Expensive.from_status());
        assert_eq!(Phase::Expensive.done_status(), Phase::Wrap.from_status());
        for p in Phase::ALL {
            assert_eq!(Phase::of_working_status(p.working_status()), Some(p));
            assert_eq!(Phase::parse(p.name()), Some(p));
        }
    }
}
