//! What may be claimed right now: the mode (prep-only and why) and, per
//! phase, whether the models it needs and the budget allow a claim.

use super::phase::Phase;
use serde::Serialize;

/// The current mode, as shown in status and the systemd STATUS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModeView {
    pub prep_only: bool,
    /// Why prep-only ("flag", "breaker open: …", "expensive budget spent", …); empty when normal.
    pub reason: String,
}

/// Claim gates of one runner.
#[derive(Default)]
pub struct Gates {}

impl Gates {
    pub async fn mode(&self, prep_only_flag: bool) -> ModeView {
        if prep_only_flag {
            return ModeView {
                prep_only: true,
                reason: "--prep-only".into(),
            };
        }
        ModeView {
            prep_only: false,
            reason: String::new(),
        }
    }

    pub async fn phase_allowed(&self, _phase: Phase) -> bool {
        true
    }
}
