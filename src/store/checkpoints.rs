//! Configs, execution rows and checkpoints.
//!
//! A checkpoint write is one transaction: fence check, blobs, the snapshot
//! row, its blob references and the execution's latest pointer. Either all
//! of it is durable or none of it is.

use super::blobs::{self, Encoded};
use super::db::Store;
use super::error::StoreError;
use super::leases::Fence;
use crate::engine::{ErrorKind, Event, ExecError, Snapshot, Totals};
use crate::spec::Bundle;
use crate::store::sql::{Db, Row};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// The row of one machine execution.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub execution_id: String,
    pub root_id: String,
    pub parent_id: Option<String>,
    pub machine_name: String,
    pub machine_index: usize,
    pub config_hash: String,
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<ExecError>,
    pub updated_at: String,
}

/// The part of a snapshot kept in the `body` column.
#[derive(Serialize, Deserialize)]
struct Body {
    parent_id: Option<String>,
    machine_index: usize,
    machine_name: String,
    /// The encoded context (full checkpoints), or null (deltas).
    context: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delta: Option<Delta>,
    output: Option<Value>,
    error: Option<ExecError>,
    totals: Totals,
}

/// Context keys changed since the base checkpoint.
#[derive(Serialize, Deserialize)]
struct Delta {
    set: Map<String, Value>,
    unset: Vec<String>,
}

/// The last full checkpoint of an execution: the base of the next deltas.
#[derive(Debug, Clone)]
pub struct Base {
    pub id: i64,
    pub context: Map<String, Value>,
}

/// A large context value as last written: the value itself (to compare
/// with), its encoded form and the blobs it is stored in.
#[derive(Debug, Clone)]
struct Large {
    original: Value,
    encoded: Value,
    hashes: Vec<String>,
}

/// What the writer remembers about an execution between its snapshots.
///
/// Why: most snapshots carry the same paper and prompt texts as the one
/// before. Comparing an unchanged 100 KiB text with its last written form
/// is a `memcmp`; serialising and SHA-256 hashing it again at every state
/// enter and exit was a third of the runner's CPU at 200 papers in flight.
/// A memo is only updated after its snapshot committed, so every hash it
/// knows is in the database (a running execution's blobs are never
/// pruned; the write still checks, see [`StoreError::MissingBlob`]).
#[derive(Debug, Clone, Default)]
pub struct Memo {
    base: Option<Base>,
    large: HashMap<String, Large>,
}

impl Memo {
    /// Record a snapshot that committed as checkpoint `id`.
    pub fn committed(&mut self, id: i64, p: PreparedSnapshot, snap: &Snapshot) {
        if let Some(context) = p.full_context {
            self.base = Some(Base { id, context });
        }
        for key in p.memo_dropped {
            self.large.remove(&key);
        }
        for (key, encoded, hashes) in p.memo_fresh {
            if let Some(original) = snap.context.get(&key) {
                let original = original.clone();
                self.large.insert(
                    key,
                    Large {
                        original,
                        encoded,
                        hashes,
                    },
                );
            }
        }
    }
}

/// A snapshot ready to be written (encoding done outside the transaction).
pub struct PreparedSnapshot {
    execution_id: String,
    event: Event,
    step: u64,
    state: Option<String>,
    next_state: Option<String>,
    base_id: Option<i64>,
    body: Vec<u8>,
    /// Blobs to store (new content).
    blobs: Vec<(String, Vec<u8>)>,
    /// Blobs stored by an earlier snapshot of this execution that this one
    /// references too (checked to exist, not rewritten).
    known: Vec<String>,
    /// The encoded context, when this is a full checkpoint (becomes the new base).
    full_context: Option<Map<String, Value>>,
    /// Keys newly encoded into blobs: (key, encoded value, blob hashes).
    memo_fresh: Vec<(String, Value, Vec<String>)>,
    /// Keys the memo knew that are gone or no longer large.
    memo_dropped: Vec<String>,
    /// For the execution row on terminal events (encoded: blob references).
    output_json: Option<String>,
    /// Blobs `output_json` references.
    output_hashes: Vec<String>,
    error: Option<ExecError>,
    parent_id: Option<String>,
    machine_name: String,
    machine_index: usize,
}

impl PreparedSnapshot {
    pub fn execution_id(&self) -> &str {
        &self.execution_id
    }
    pub fn event(&self) -> Event {
        self.event
    }
    /// Whether this is a full checkpoint (not a delta).
    pub fn is_full(&self) -> bool {
        self.full_context.is_some()
    }
}

fn add_blobs(into: &mut Vec<(String, Vec<u8>)>, more: Vec<(String, Vec<u8>)>) {
    for b in more {
        if !into.iter().any(|(h, _)| *h == b.0) {
            into.push(b);
        }
    }
}

fn add_hashes(into: &mut Vec<String>, more: &[String]) {
    for h in more {
        if !into.contains(h) {
            into.push(h.clone());
        }
    }
}

/// Encode a snapshot: large values become blobs, and when the memo has a
/// base and most of the context is unchanged, only the changed keys are
/// kept. Large values unchanged since the memo's last snapshot reuse their
/// encoding.
pub fn prepare(snap: &Snapshot, memo: &Memo) -> PreparedSnapshot {
    let base = memo.base.as_ref();
    let mut full = Map::with_capacity(snap.context.len());
    let mut set = Map::new();
    // New blobs and known hashes of every key; the hashes the changed keys
    // use pick from them when this becomes a delta.
    let (mut all_blobs, mut all_known) = (Vec::new(), Vec::new());
    let mut changed_hashes: HashSet<String> = HashSet::new();
    let mut memo_fresh = Vec::new();
    let mut memo_dropped = Vec::new();
    for (k, v) in &snap.context {
        let (value, new_blobs, known) = match memo.large.get(k) {
            Some(l) if l.original == *v => (l.encoded.clone(), Vec::new(), l.hashes.clone()),
            cached => {
                let Encoded { value, blobs } = blobs::encode(v);
                if blobs.is_empty() {
                    if cached.is_some() {
                        memo_dropped.push(k.clone());
                    }
                } else {
                    let hashes = blobs.iter().map(|(h, _)| h.clone()).collect();
                    memo_fresh.push((k.clone(), value.clone(), hashes));
                }
                (value, blobs, Vec::new())
            }
        };
        let changed = base.is_none_or(|b| b.context.get(k) != Some(&value));
        if changed {
            set.insert(k.clone(), value.clone());
            changed_hashes.extend(new_blobs.iter().map(|(h, _)| h.clone()));
            changed_hashes.extend(known.iter().cloned());
        }
        add_blobs(&mut all_blobs, new_blobs);
        add_hashes(&mut all_known, &known);
        full.insert(k.clone(), value);
    }
    memo_dropped.extend(
        memo.large
            .keys()
            .filter(|k| !snap.context.contains_key(*k))
            .cloned(),
    );
    let unset: Vec<String> = base
        .map(|b| {
            b.context
                .keys()
                .filter(|k| !full.contains_key(*k))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let delta_size: usize = set
        .iter()
        .map(|(k, v)| k.len() + approx_size(v))
        .sum::<usize>()
        + unset.iter().map(String::len).sum::<usize>();
    let full_size: usize = full.iter().map(|(k, v)| k.len() + approx_size(v)).sum();
    let use_delta = base.is_some() && delta_size * 2 < full_size;

    let (mut blobs_needed, mut known) = (all_blobs, all_known);
    if use_delta {
        blobs_needed.retain(|(h, _)| changed_hashes.contains(h));
        known.retain(|h| changed_hashes.contains(h));
    }
    let mut output_hashes = Vec::new();
    let output = snap.output.as_ref().map(|o| {
        let e = blobs::encode(o);
        output_hashes = e.blobs.iter().map(|(h, _)| h.clone()).collect();
        add_blobs(&mut blobs_needed, e.blobs);
        e.value
    });
    known.retain(|h| !blobs_needed.iter().any(|(b, _)| b == h));
    let (context, delta, full_context, base_id) = if use_delta {
        (
            Value::Null,
            Some(Delta { set, unset }),
            None,
            base.map(|b| b.id),
        )
    } else {
        (Value::Object(full.clone()), None, Some(full), None)
    };
    let body = Body {
        parent_id: snap.parent_id.clone(),
        machine_index: snap.machine_index,
        machine_name: snap.machine_name.clone(),
        context,
        delta,
        output: output.clone(),
        error: snap.error.clone(),
        totals: snap.totals,
    };
    // The row keeps the encoded output: its large values are the blobs the
    // snapshot stores anyway (referenced from machine_value_refs).
    let output_json = match (snap.event, &output) {
        (Event::MachineEnd, Some(o)) => serde_json::to_string(o).ok(),
        _ => None,
    };
    if output_json.is_none() {
        output_hashes.clear();
    }
    PreparedSnapshot {
        execution_id: snap.execution_id.clone(),
        event: snap.event,
        step: snap.step,
        state: snap.state.clone(),
        next_state: snap.next_state.clone(),
        base_id,
        body: serde_json::to_vec(&body).unwrap_or_default(),
        blobs: blobs_needed,
        known,
        full_context,
        memo_fresh,
        memo_dropped,
        output_json,
        output_hashes,
        error: snap.error.clone(),
        parent_id: snap.parent_id.clone(),
        machine_name: snap.machine_name.clone(),
        machine_index: snap.machine_index,
    }
}

fn approx_size(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(a) => 2 + a.iter().map(|x| approx_size(x) + 1).sum::<usize>(),
        Value::Object(m) => {
            2 + m
                .iter()
                .map(|(k, x)| k.len() + 4 + approx_size(x))
                .sum::<usize>()
        }
        _ => 8,
    }
}

/// Store a blob once (content-addressed: the same hash is the same bytes).
const PUT_BLOB: &str =
    "INSERT INTO blobs(hash, size, data) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING";

impl Store {
    /// Store a resolved bundle; returns its content hash.
    pub fn put_config(&self, bundle: &Bundle, source: Option<&str>) -> Result<String, StoreError> {
        let body = serde_json::to_vec(bundle)
            .map_err(|e| StoreError::Invalid(format!("cannot serialise config: {e}")))?;
        let hash = blobs::hash_bytes(&body);
        let name = bundle.root().name.clone();
        self.write_locked("storing config", |tx| {
            tx.exec(
                "INSERT INTO configs(hash, machine_name, source_path, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
                params![hash, name, source, body, self.now_text()])
            .map_err(|e| self.err("storing config", e))?;
            Ok(())
        })?;
        Ok(hash)
    }

    pub fn get_config(&self, hash: &str) -> Result<(Bundle, Option<String>), StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let row: Option<(Vec<u8>, Option<String>)> = conn
            .one(
                "SELECT body, source_path FROM configs WHERE hash = ?1",
                params![hash],
                |r| Ok((r.get("body")?, r.get("source_path")?)),
            )
            .map_err(|e| self.err("reading config", e))?;
        let (body, source) = row
            .ok_or_else(|| StoreError::NotFound(format!("config {hash} is not in the database")))?;
        let bundle = serde_json::from_slice(&body).map_err(|e| {
            StoreError::Invalid(format!("stored config {hash} does not decode: {e}"))
        })?;
        Ok((bundle, source))
    }

    /// Register a new root execution. Fails if the id exists.
    pub fn create_execution(
        &self,
        id: &str,
        config_hash: &str,
        machine_name: &str,
        machine_index: usize,
        input: &Map<String, Value>,
    ) -> Result<(), StoreError> {
        let encoded = blobs::encode(&Value::Object(input.clone()));
        let input = serde_json::to_string(&encoded.value).unwrap_or_else(|_| "{}".into());
        let hashes: Vec<String> = encoded.blobs.iter().map(|(h, _)| h.clone()).collect();
        self.write_locked("creating execution", |tx| {
            for (hash, data) in &encoded.blobs {
                tx.exec(PUT_BLOB, params![hash, data.len() as i64, data])
                    .map_err(|e| self.err("storing blob", e))?;
            }
            let n = tx.exec(
                    "INSERT INTO machine_executions(execution_id, root_id, parent_id, machine_name, machine_index, config_hash, input, status, created_at, updated_at)
                     VALUES (?1, ?1, NULL, ?2, ?3, ?4, ?5, 'running', ?6, ?6)
                     ON CONFLICT DO NOTHING",
                    params![id, machine_name, machine_index as i64, config_hash, input, self.now_text()])
                .map_err(|e| self.err("creating execution", e))?;
            if n == 0 {
                return Err(StoreError::Invalid(format!("execution {id} already exists")));
            }
            self.add_value_refs(tx, id, &hashes)?;
            Ok(())
        })
    }

    pub fn execution(&self, id: &str) -> Result<Option<ExecutionRow>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let row = conn
            .one(
                "SELECT execution_id, root_id, parent_id, machine_name, machine_index, config_hash, status, output, error_kind, error_message, updated_at
                 FROM machine_executions WHERE execution_id = ?1",
                params![id],
                row_to_execution)
            .map_err(|e| self.err("reading execution", e))?;
        match row {
            Some(mut r) => {
                if let Some(o) = r.output.take() {
                    r.output = Some(self.decode_row_value(&conn, id, o)?);
                }
                Ok(Some(r))
            }
            None => Ok(None),
        }
    }

    /// The input a root execution was started with.
    pub fn execution_input(&self, id: &str) -> Result<Map<String, Value>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let input: Option<String> = conn
            .one(
                "SELECT input FROM machine_executions WHERE execution_id = ?1",
                params![id],
                |r| r.get("input"),
            )
            .map_err(|e| self.err("reading execution input", e))?
            .flatten();
        let Some(v) = input.and_then(|s| serde_json::from_str::<Value>(&s).ok()) else {
            return Ok(Map::new());
        };
        Ok(self
            .decode_row_value(&conn, id, v)?
            .as_object()
            .cloned()
            .unwrap_or_default())
    }

    /// Point an execution tree at another stored config (`--reload-config`).
    pub fn set_config(&self, root_id: &str, config_hash: &str) -> Result<(), StoreError> {
        self.write_locked("switching config", |tx| {
            tx.exec(
                "UPDATE machine_executions SET config_hash = ?2 WHERE root_id = ?1",
                params![root_id, config_hash],
            )
            .map_err(|e| self.err("switching config", e))?;
            Ok(())
        })
    }

    /// Root executions that have not finished.
    pub fn unfinished_roots(&self) -> Result<Vec<String>, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let rows = conn
            .all("SELECT execution_id FROM machine_executions WHERE parent_id IS NULL AND status = 'running' ORDER BY created_at, execution_id", params![],|r| r.get::<String>("execution_id"))
            .map_err(|e| self.err("listing executions", e))?;
        Ok(rows)
    }

    /// Write a snapshot and move the latest pointer, in one transaction,
    /// after checking the fencing token when `fence` is given.
    pub fn save_checkpoint(
        &self,
        p: &PreparedSnapshot,
        fence: Option<&Fence>,
    ) -> Result<i64, StoreError> {
        self.write_locked("writing checkpoint", |tx| {
            if let Some(f) = fence {
                f.check(tx, self)?;
            }
            self.insert_checkpoint(tx, p)
        })
    }

    fn insert_checkpoint(&self, tx: &Db<'_>, p: &PreparedSnapshot) -> Result<i64, StoreError> {
        let e = |what: &str| {
            let what = what.to_string();
            move |err| self.err(&what, err)
        };
        let ts = self.now_text();
        if p.event == Event::MachineStart && p.parent_id.is_some() {
            // A child registers itself on its first snapshot.
            let (root, config): (String, String) = tx
                .row(
                    "SELECT root_id, config_hash FROM machine_executions WHERE execution_id = ?1",
                    params![p.parent_id.as_deref().unwrap_or_default()],
                    |r| Ok((r.get("root_id")?, r.get("config_hash")?)),
                )
                .map_err(e("finding parent execution"))?;
            tx.exec(
                "INSERT INTO machine_executions(execution_id, root_id, parent_id, machine_name, machine_index, config_hash, status, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?7)
                 ON CONFLICT(execution_id) DO UPDATE SET status = 'running', output = NULL, error_kind = NULL, error_message = NULL, updated_at = ?7",
                params![p.execution_id, root, p.parent_id, p.machine_name, p.machine_index as i64, config, ts])
            .map_err(e("registering child execution"))?;
        }
        for (hash, data) in &p.blobs {
            tx.exec(PUT_BLOB, params![hash, data.len() as i64, data])
                .map_err(e("storing blob"))?;
        }
        for hash in &p.known {
            let found = tx
                .one(
                    "SELECT hash FROM blobs WHERE hash = ?1",
                    params![hash],
                    |_| Ok(()),
                )
                .map_err(e("checking blob"))?;
            if found.is_none() {
                return Err(StoreError::MissingBlob(hash.clone()));
            }
        }
        let id: i64 = tx
            .row(
                "INSERT INTO checkpoints(execution_id, step, event, state, next_state, base_id, body, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) RETURNING id",
                params![p.execution_id, p.step as i64, p.event.as_str(), p.state, p.next_state, p.base_id, p.body, ts],
                |r| r.get("id"),
            )
            .map_err(e("writing checkpoint"))?;
        for hash in p.blobs.iter().map(|(h, _)| h).chain(&p.known) {
            tx.exec(
                "INSERT INTO blob_refs(checkpoint_id, hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![id, hash],
            )
            .map_err(e("referencing blob"))?;
        }
        let status = match p.event {
            Event::MachineEnd => "done",
            Event::MachineFailed => "failed",
            _ => "running",
        };
        let n = tx
            .exec(
                "UPDATE machine_executions SET latest_checkpoint = ?2, status = ?3, output = ?4, error_kind = ?5, error_message = ?6, updated_at = ?7
                 WHERE execution_id = ?1",
                params![
                    p.execution_id,
                    id,
                    status,
                    p.output_json,
                    p.error.as_ref().filter(|_| status == "failed").map(|e| e.kind.as_str()),
                    p.error.as_ref().filter(|_| status == "failed").map(|e| e.message.clone()),
                    ts
                ],
            )
            .map_err(e("moving latest pointer"))?;
        if n == 0 {
            return Err(StoreError::NotFound(format!(
                "execution {} is not registered",
                p.execution_id
            )));
        }
        self.add_value_refs(tx, &p.execution_id, &p.output_hashes)?;
        Ok(id)
    }

    /// Record that an execution row's input/output references these blobs.
    fn add_value_refs(&self, tx: &Db<'_>, id: &str, hashes: &[String]) -> Result<(), StoreError> {
        if hashes.is_empty() {
            return Ok(());
        }
        for h in hashes {
            tx.exec(
                "INSERT INTO machine_value_refs(execution_id, hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![id, h],
            )
            .map_err(|e| self.err("referencing blob", e))?;
        }
        Ok(())
    }

    /// Every blob that `table` (a `(execution_id, hash)` reference table)
    /// lists for `id`, decoded, by hash.
    pub(crate) fn referenced_blobs(
        &self,
        conn: &Db<'_>,
        table: &str,
        id: &str,
    ) -> Result<HashMap<String, Value>, StoreError> {
        let rows = conn
            .all(&format!(
                "SELECT b.hash AS hash, b.data AS data FROM {table} r JOIN blobs b ON b.hash = r.hash WHERE r.execution_id = ?1"
            ), params![id],|r| {
                Ok((r.get::<String>("hash")?, r.get::<Vec<u8>>("data")?))
            })
            .map_err(|e| self.err("reading blobs", e))?;
        let mut map = HashMap::new();
        for (h, data) in rows {
            let value: Value = serde_json::from_slice(&data)
                .map_err(|e| StoreError::Invalid(format!("blob {h} does not decode: {e}")))?;
            map.insert(h, value);
        }
        Ok(map)
    }

    /// Decode a stored input/output value of an execution row.
    fn decode_row_value(&self, conn: &Db<'_>, id: &str, v: Value) -> Result<Value, StoreError> {
        if !serde_json::to_string(&v).is_ok_and(|s| s.contains("\"$blob\"")) {
            return Ok(v);
        }
        let map = self.referenced_blobs(conn, "machine_value_refs", id)?;
        blobs::decode(v, &map).map_err(|e| StoreError::Invalid(format!("execution {id}: {e}")))
    }

    /// The latest snapshot of an execution. An execution whose checkpoints
    /// were pruned yields a synthesized terminal snapshot from its row.
    pub fn latest(&self, id: &str) -> Result<Option<Snapshot>, StoreError> {
        let Some(row) = self.execution(id)? else {
            return Ok(None);
        };
        let mut guard = self.conn()?;
        let conn = guard.db();
        type Row = (
            i64,
            u64,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            Vec<u8>,
        );
        let ckpt: Option<Row> = conn
            .one(
                "SELECT c.id AS id, c.step AS step, c.event AS event, c.state AS state,
                        c.next_state AS next_state, c.base_id AS base_id, c.body AS body
                 FROM machine_executions m
                 JOIN checkpoints c ON c.id = m.latest_checkpoint WHERE m.execution_id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get("id")?,
                        r.get::<i64>("step")? as u64,
                        r.get("event")?,
                        r.get("state")?,
                        r.get("next_state")?,
                        r.get("base_id")?,
                        r.get("body")?,
                    ))
                },
            )
            .map_err(|e| self.err("reading latest checkpoint", e))?;
        let Some((cid, step, event, state, next_state, base_id, body)) = ckpt else {
            return Ok(synthesize(&row));
        };
        let mut blobs = HashMap::new();
        self.load_blobs(&conn, cid, &mut blobs)?;
        let bad = |e: String| StoreError::Invalid(format!("checkpoint {cid} of {id}: {e}"));
        let body: Body =
            serde_json::from_slice(&body).map_err(|e| bad(format!("does not decode: {e}")))?;
        let encoded_context = match (&body.delta, base_id) {
            (Some(delta), Some(base)) => {
                let base_body: Vec<u8> = conn
                    .row(
                        "SELECT body FROM checkpoints WHERE id = ?1",
                        params![base],
                        |r| r.get("body"),
                    )
                    .map_err(|e| self.err("reading base checkpoint", e))?;
                self.load_blobs(&conn, base, &mut blobs)?;
                let base_body: Body = serde_json::from_slice(&base_body)
                    .map_err(|e| bad(format!("base does not decode: {e}")))?;
                let mut ctx = match base_body.context {
                    Value::Object(m) => m,
                    _ => Map::new(),
                };
                for k in &delta.unset {
                    ctx.remove(k);
                }
                for (k, v) in &delta.set {
                    ctx.insert(k.clone(), v.clone());
                }
                Value::Object(ctx)
            }
            (Some(_), None) => return Err(bad("delta without a base".into())),
            (None, _) => body.context,
        };
        let context =
            match blobs::decode(encoded_context, &blobs).map_err(|e| bad(e.to_string()))? {
                Value::Object(m) => m,
                _ => Map::new(),
            };
        let output = match body.output {
            Some(o) => Some(blobs::decode(o, &blobs).map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        let event = parse_event(&event).ok_or_else(|| {
            StoreError::Invalid(format!("checkpoint {cid} has unknown event {event}"))
        })?;
        Ok(Some(Snapshot {
            execution_id: id.to_string(),
            parent_id: body.parent_id,
            machine_index: body.machine_index,
            machine_name: body.machine_name,
            event,
            state,
            next_state,
            step,
            context,
            output,
            error: body.error,
            totals: body.totals,
        }))
    }

    fn load_blobs(
        &self,
        conn: &Db<'_>,
        checkpoint: i64,
        into: &mut HashMap<String, Value>,
    ) -> Result<(), StoreError> {
        let rows = conn
            .all("SELECT b.hash AS hash, b.data AS data FROM blob_refs r JOIN blobs b ON b.hash = r.hash WHERE r.checkpoint_id = ?1", params![checkpoint],|r| {
                Ok((r.get::<String>("hash")?, r.get::<Vec<u8>>("data")?))
            })
            .map_err(|e| self.err("reading blobs", e))?;
        for (h, data) in rows {
            let v: Value = serde_json::from_slice(&data)
                .map_err(|e| StoreError::Invalid(format!("blob {h} does not decode: {e}")))?;
            into.insert(h, v);
        }
        Ok(())
    }

    /// Count checkpoints (all, or of one execution).
    pub fn checkpoint_count(&self, id: Option<&str>) -> Result<u64, StoreError> {
        let mut guard = self.conn()?;
        let conn = guard.db();
        let n: i64 = match id {
            Some(id) => conn.row(
                "SELECT COUNT(*) AS n FROM checkpoints WHERE execution_id = ?1",
                params![id],
                |r| r.get("n"),
            ),
            None => conn.row("SELECT COUNT(*) AS n FROM checkpoints", params![], |r| {
                r.get("n")
            }),
        }
        .map_err(|e| self.err("counting checkpoints", e))?;
        Ok(n as u64)
    }
}

fn parse_event(s: &str) -> Option<Event> {
    [
        Event::MachineStart,
        Event::StateEnter,
        Event::StateExit,
        Event::MachineEnd,
        Event::MachineFailed,
    ]
    .into_iter()
    .find(|e| e.as_str() == s)
}

fn row_to_execution(r: &Row<'_, '_>) -> rusqlite::Result<ExecutionRow> {
    let output: Option<String> = r.get("output")?;
    let kind: Option<String> = r.get("error_kind")?;
    let message: Option<String> = r.get("error_message")?;
    Ok(ExecutionRow {
        execution_id: r.get("execution_id")?,
        root_id: r.get("root_id")?,
        parent_id: r.get("parent_id")?,
        machine_name: r.get("machine_name")?,
        machine_index: r.get::<i64>("machine_index")? as usize,
        config_hash: r.get("config_hash")?,
        status: r.get("status")?,
        output: output.and_then(|o| serde_json::from_str(&o).ok()),
        error: kind.map(|k| {
            ExecError::new(
                ErrorKind::parse(&k).unwrap_or(ErrorKind::ActionError),
                message.unwrap_or_default(),
            )
        }),
        updated_at: r.get("updated_at")?,
    })
}

/// A terminal snapshot rebuilt from an execution row (checkpoints pruned).
fn synthesize(row: &ExecutionRow) -> Option<Snapshot> {
    let event = match row.status.as_str() {
        "done" => Event::MachineEnd,
        "failed" => Event::MachineFailed,
        _ => return None,
    };
    Some(Snapshot {
        execution_id: row.execution_id.clone(),
        parent_id: row.parent_id.clone(),
        machine_index: row.machine_index,
        machine_name: row.machine_name.clone(),
        event,
        state: None,
        next_state: None,
        step: 0,
        context: Map::new(),
        output: row.output.clone(),
        error: row.error.clone(),
        totals: Totals::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn snap(step: u64, context: Map<String, Value>) -> Snapshot {
        Snapshot {
            execution_id: "e".into(),
            parent_id: None,
            machine_index: 0,
            machine_name: "m".into(),
            event: Event::StateExit,
            state: Some("s".into()),
            next_state: Some("s".into()),
            step,
            context,
            output: None,
            error: None,
            totals: Totals::default(),
        }
    }

    fn ctx(paper: &str, step: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("paper".into(), json!(paper));
        m.insert("step".into(), json!(step));
        m
    }

    #[test]
    fn unchanged_large_values_reuse_their_encoding() {
        let a = "a".repeat(10_000);
        let mut memo = Memo::default();
        let s0 = snap(0, ctx(&a, 0));
        let p0 = prepare(&s0, &memo);
        assert!(p0.is_full());
        assert_eq!(p0.blobs.len(), 1, "first snapshot stores the text");
        let hash = p0.blobs[0].0.clone();
        memo.committed(1, p0, &s0);

        // Same text, another small change: a delta without the text.
        let s1 = snap(1, ctx(&a, 1));
        let p1 = prepare(&s1, &memo);
        assert!(!p1.is_full());
        assert!(p1.blobs.is_empty() && p1.known.is_empty());
        memo.committed(2, p1, &s1);

        // A full snapshot (most keys changed) references the text it
        // already stored without carrying its bytes again.
        let mut c2 = ctx(&a, 2);
        for i in 0..20 {
            c2.insert(format!("k{i}"), json!(i));
        }
        let s2 = snap(2, c2);
        let p2 = prepare(&s2, &memo);
        assert!(p2.is_full());
        assert!(p2.blobs.is_empty());
        assert_eq!(p2.known, vec![hash.clone()]);
        memo.committed(3, p2, &s2);

        // A changed text is encoded again.
        let b = "b".repeat(10_000);
        let s3 = snap(3, ctx(&b, 3));
        let p3 = prepare(&s3, &memo);
        assert_eq!(p3.blobs.len(), 1);
        assert_ne!(p3.blobs[0].0, hash);
        memo.committed(4, p3, &s3);

        // A value that became small leaves the memo.
        let s4 = snap(4, ctx("short", 4));
        let p4 = prepare(&s4, &memo);
        memo.committed(5, p4, &s4);
        assert!(memo.large.is_empty());
    }
}
