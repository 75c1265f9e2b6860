//! Look-ups ingest makes in the queue (`executions`) before adding a
//! paper: whether some version of an arXiv id is queued already. Adding
//! itself is `Store::add_paper` (`store::queue`).
//!
//! Version handling (what the base id of `2401.01234v2` is) is ingest's
//! rule, not the store's: callers pass both the id and its base.

use super::db::Store;
use super::error::StoreError;
use super::sql::Dialect;
use rusqlite::{named_params, params};

/// A queued paper found by [`Store::queued_version`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPaper {
    /// Its queue id.
    pub id: String,
    /// Its queue status as stored (`pending`, `prepping`, …).
    pub status: String,
}

impl Store {
    /// The queued paper that is `arxiv_id`, or else one whose id is `base`
    /// or `base` with a version suffix (`vN`): the exact id first, then
    /// the lowest id.
    pub fn queued_version(
        &self,
        arxiv_id: &str,
        base: &str,
    ) -> Result<Option<QueuedPaper>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        // A versioned id is the base, `v`, then a digit. SQLite: GLOB, not
        // LIKE (`_` is a LIKE wildcard, and ids never contain GLOB's
        // `*?[]`); PostgreSQL: a prefix test, then the digit.
        let sql = match conn.dialect() {
            Dialect::Sqlite => {
                "SELECT id, status FROM executions
                 WHERE arxiv_id = :id OR arxiv_id = :base OR arxiv_id GLOB :base || 'v[0-9]*'
                 ORDER BY arxiv_id = :id DESC, arxiv_id LIMIT 1"
            }
            Dialect::Postgres => {
                "SELECT id, status FROM executions
                 WHERE arxiv_id = :id OR arxiv_id = :base
                    OR (starts_with(arxiv_id, :base || 'v')
                        AND substr(arxiv_id, length(:base) + 2, 1) BETWEEN '0' AND '9')
                 ORDER BY arxiv_id = :id DESC, arxiv_id LIMIT 1"
            }
        };
        conn.one(sql, named_params! {":id": arxiv_id, ":base": base}, |r| {
            Ok(QueuedPaper {
                id: r.get("id")?,
                status: r.get("status")?,
            })
        })
        .map_err(|e| self.err("looking up paper", e))
    }

    /// The arXiv id (as queued, possibly with a version) of every queued
    /// paper.
    pub fn queued_arxiv_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let ids = conn
            .all("SELECT arxiv_id FROM executions", params![], |r| {
                r.get::<String>("arxiv_id")
            })
            .map_err(|e| self.err("listing queued papers", e))?;
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AddOutcome, NewPaper};

    fn add(s: &Store, arxiv_id: &str) -> String {
        let p = NewPaper {
            arxiv_id: arxiv_id.into(),
            title: None,
            abstract_text: None,
            pdf_path: None,
            priority: 0,
            source: "test".into(),
        };
        match s.add_paper(&p).unwrap() {
            AddOutcome::Added { id, .. } => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn versions_of_a_paper_are_found_exact_id_first() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            &crate::store::pg::test_db(dir.path(), "i.db"),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(s.queued_version("2401.01234", "2401.01234").unwrap(), None);
        assert!(s.queued_arxiv_ids().unwrap().is_empty());
        let v2 = add(&s, "2401.01234v2");
        let v1 = add(&s, "2401.01234v1");
        add(&s, "2401.012345");
        add(&s, "2401x01234v1");
        // The base finds a version (the lowest id when several).
        let found = s
            .queued_version("2401.01234", "2401.01234")
            .unwrap()
            .unwrap();
        assert_eq!(found.id, v1);
        assert_eq!(found.status, "pending");
        // The exact id wins.
        let found = s
            .queued_version("2401.01234v2", "2401.01234")
            .unwrap()
            .unwrap();
        assert_eq!(found.id, v2);
        // A longer id is another paper, and `_` is no wildcard.
        assert_eq!(s.queued_version("2401.0123", "2401.0123").unwrap(), None);
        assert_eq!(s.queued_version("2401_01234", "2401_01234").unwrap(), None);
        let mut ids = s.queued_arxiv_ids().unwrap();
        ids.sort();
        assert_eq!(
            ids,
            [
                "2401.012345",
                "2401.01234v1",
                "2401.01234v2",
                "2401x01234v1"
            ]
        );
    }
}
