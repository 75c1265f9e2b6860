//! Queueing papers. Why its own module: adding is the one write that does
//! not need a claim, and it must stay idempotent — the arXiv id is unique,
//! so adding a paper twice reports the queued row instead of failing or
//! resetting it.

use super::{paper_id, AddOutcome, Ev, NewPaper};
use crate::store::db::Store;
use crate::store::error::StoreError;
use crate::store::phase::PaperStatus;
use rusqlite::params;

impl Store {
    /// Queue a paper; adding it twice is a no-op that says so.
    pub fn add_paper(&self, p: &NewPaper) -> Result<AddOutcome, StoreError> {
        let arxiv = p.arxiv_id.trim();
        if arxiv.is_empty() {
            return Err(StoreError::Invalid("a paper needs an arXiv id".into()));
        }
        let id = paper_id(arxiv);
        self.write("adding paper", |tx| {
            let existing: Option<PaperStatus> = tx
                .one(
                    "SELECT status FROM executions WHERE arxiv_id = ?1",
                    params![arxiv],
                    |r| r.get("status"))
                .map_err(|e| self.err("adding paper", e))?;
            if let Some(status) = existing {
                return Ok(AddOutcome::Exists {
                    id: id.clone(),
                    status: status.to_string(),
                });
            }
            let t = self.now_text();
            tx.exec(
                "INSERT INTO executions(id, arxiv_id, title, abstract, pdf_path, source, priority, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    id,
                    arxiv,
                    p.title,
                    p.abstract_text,
                    p.pdf_path,
                    p.source,
                    p.priority,
                    PaperStatus::Pending,
                    t
                ])
            .map_err(|e| self.err("adding paper", e))?;
            self.event(
                tx,
                &id,
                Ev {
                    kind: "added",
                    to: Some(PaperStatus::Pending),
                    message: Some(&p.source),
                    ..Ev::default()
                },
            )?;
            self.notify_work(tx)?;
            Ok(AddOutcome::Added { id: id.clone() })
        })
    }
}
