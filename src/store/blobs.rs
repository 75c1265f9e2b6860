//! Content-addressed storage of large values.
//!
//! Before a snapshot is written, every string or JSON value whose JSON form
//! is at least [`BLOB_THRESHOLD`] bytes is replaced by `{"$blob": sha256}` and
//! stored once in `blobs`. A 100 KiB paper text carried through 30 states
//! costs 100 KiB once, not 100 KiB per snapshot. Values are replaced bottom
//! up, so a large map keeps its small fields inline and only its large
//! members become references.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

/// Values at least this large (JSON bytes) are stored as blobs.
pub const BLOB_THRESHOLD: usize = 4096;

const BLOB_KEY: &str = "$blob";
/// Escapes a user map that happens to look like a blob reference.
const LITERAL_KEY: &str = "$lit";

/// A value with large parts replaced, and the parts by hash.
pub struct Encoded {
    pub value: Value,
    pub blobs: Vec<(String, Vec<u8>)>,
}

pub fn hash_bytes(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Replace large parts of `v` by blob references.
pub fn encode(v: &Value) -> Encoded {
    let mut blobs = Vec::new();
    let (value, _) = encode_inner(v, &mut blobs);
    Encoded { value, blobs }
}

/// Returns the encoded value and its approximate JSON size.
fn encode_inner(v: &Value, blobs: &mut Vec<(String, Vec<u8>)>) -> (Value, usize) {
    match v {
        Value::String(s) => {
            if s.len() + 2 >= BLOB_THRESHOLD {
                return to_blob(v, s.len() + 2, blobs);
            }
            (v.clone(), s.len() + 2)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut size = 2;
            for item in items {
                let (e, n) = encode_inner(item, blobs);
                size += n + 1;
                out.push(e);
            }
            finish(Value::Array(out), size, v, blobs)
        }
        Value::Object(map) => {
            let mut out = Map::with_capacity(map.len());
            let mut size = 2;
            for (k, item) in map {
                let (e, n) = encode_inner(item, blobs);
                size += k.len() + 4 + n;
                out.insert(k.clone(), e);
            }
            if out.len() == 1 && (out.contains_key(BLOB_KEY) || out.contains_key(LITERAL_KEY)) {
                let mut wrapped = Map::new();
                wrapped.insert(LITERAL_KEY.into(), Value::Object(out));
                return finish(Value::Object(wrapped), size + 10, v, blobs);
            }
            finish(Value::Object(out), size, v, blobs)
        }
        other => (other.clone(), 8),
    }
}

/// A container that is still large after its members were replaced is itself
/// stored as one blob (in its encoded form, so large members are not copied
/// into it again).
fn finish(
    encoded: Value,
    size: usize,
    _original: &Value,
    blobs: &mut Vec<(String, Vec<u8>)>,
) -> (Value, usize) {
    if size >= BLOB_THRESHOLD {
        to_blob(&encoded, size, blobs)
    } else {
        (encoded, size)
    }
}

/// `size` is the approximate JSON size, so the buffer is allocated once
/// (escapes may add a little).
fn to_blob(v: &Value, size: usize, blobs: &mut Vec<(String, Vec<u8>)>) -> (Value, usize) {
    let mut bytes = Vec::with_capacity(size + size / 16 + 16);
    if serde_json::to_writer(&mut bytes, v).is_err() {
        bytes.clear();
    }
    let hash = hash_bytes(&bytes);
    let mut m = Map::new();
    m.insert(BLOB_KEY.into(), Value::String(hash.clone()));
    if !blobs.iter().any(|(h, _)| *h == hash) {
        blobs.push((hash, bytes));
    }
    (Value::Object(m), 80)
}

/// Deepest nesting [`decode`] follows: containers entered plus blob
/// references followed. The encoder never produces more than twice the
/// depth of the original value (and serde_json parses at most 128 levels),
/// so this only ever stops a corrupt or hostile database, e.g. a blob that
/// refers to itself, before it overflows the stack.
pub const MAX_DECODE_DEPTH: usize = 512;

/// Most JSON nodes one [`decode`] may produce. Blobs are shared, so a
/// crafted set of blobs that each refer to the next one twice would expand
/// exponentially; a real context (texts are single nodes however long) is
/// thousands of nodes, and 4 M nodes is at least 8 MB of JSON.
pub const MAX_DECODE_NODES: u64 = 4_000_000;

/// Why a stored value could not be put back together. Every variant means
/// the stored data is corrupt (or was pruned away): decoding it again
/// gives the same answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("blob {0} is missing")]
    Missing(String),
    #[error("corrupt data: blob references nest deeper than {limit} levels (a blob that refers to itself?)")]
    TooDeep { limit: usize },
    #[error("corrupt data: the value expands to more than {limit} nodes")]
    TooLarge { limit: u64 },
}

/// Put blobs back; `blobs` maps every hash the value uses (transitively) to
/// its stored (encoded) value. Bounded in depth ([`MAX_DECODE_DEPTH`]) and
/// size ([`MAX_DECODE_NODES`]): corrupt data is an error, never a stack
/// overflow or an allocation storm.
pub fn decode(v: Value, blobs: &HashMap<String, Value>) -> Result<Value, DecodeError> {
    let mut budget = Budget {
        nodes: 0,
        max_nodes: MAX_DECODE_NODES,
    };
    decode_at(v, blobs, 0, &mut budget)
}

/// Nodes produced so far by one [`decode`] and its cap.
struct Budget {
    nodes: u64,
    max_nodes: u64,
}

fn decode_at(
    v: Value,
    blobs: &HashMap<String, Value>,
    depth: usize,
    budget: &mut Budget,
) -> Result<Value, DecodeError> {
    if depth > MAX_DECODE_DEPTH {
        return Err(DecodeError::TooDeep {
            limit: MAX_DECODE_DEPTH,
        });
    }
    budget.nodes += 1;
    if budget.nodes > budget.max_nodes {
        return Err(DecodeError::TooLarge {
            limit: budget.max_nodes,
        });
    }
    let nodes = budget;
    let next = depth + 1;
    match v {
        Value::Object(mut m) => {
            if m.len() == 1 {
                if let Some(Value::String(h)) = m.get(BLOB_KEY) {
                    let stored = blobs
                        .get(h)
                        .cloned()
                        .ok_or_else(|| DecodeError::Missing(h.clone()))?;
                    return decode_at(stored, blobs, next, nodes);
                }
                if let Some(Value::Object(inner)) = m.remove(LITERAL_KEY) {
                    let mut out = Map::with_capacity(inner.len());
                    for (k, x) in inner {
                        out.insert(k, decode_at(x, blobs, next, nodes)?);
                    }
                    return Ok(Value::Object(out));
                }
            }
            let mut out = Map::with_capacity(m.len());
            for (k, x) in m {
                out.insert(k, decode_at(x, blobs, next, nodes)?);
            }
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .into_iter()
            .map(|x| decode_at(x, blobs, next, nodes))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roundtrip(v: Value) -> (Value, usize) {
        let e = encode(&v);
        let map: HashMap<String, Value> = e
            .blobs
            .iter()
            .map(|(h, b)| (h.clone(), serde_json::from_slice(b).unwrap()))
            .collect();
        let n = e.blobs.len();
        let back = decode(e.value, &map).unwrap();
        assert_eq!(back, v);
        (back, n)
    }

    #[test]
    fn small_values_stay_inline() {
        let v = json!({"a": 1, "b": "short", "c": [1, 2]});
        let e = encode(&v);
        assert!(e.blobs.is_empty());
        assert_eq!(e.value, v);
    }

    #[test]
    fn large_strings_become_one_blob_each() {
        let text = "x".repeat(100_000);
        let v = json!({"paper": text, "copy": text, "small": 1});
        let e = encode(&v);
        assert_eq!(e.blobs.len(), 1, "same content is stored once");
        assert!(serde_json::to_vec(&e.value).unwrap().len() < 300);
        roundtrip(v);
    }

    #[test]
    fn large_containers_of_small_values_become_blobs() {
        let items: Vec<Value> = (0..2000).map(|i| json!(i)).collect();
        let (_, n) = roundtrip(json!({"list": items, "k": "v"}));
        assert_eq!(n, 1);
    }

    #[test]
    fn a_blob_that_refers_to_itself_is_an_error_not_a_stack_overflow() {
        let h = "a".repeat(64);
        let mut map = HashMap::new();
        map.insert(h.clone(), json!({ "$blob": h }));
        let err = decode(json!({ "$blob": h }), &map).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooDeep {
                limit: MAX_DECODE_DEPTH
            }
        );
        assert!(err.to_string().contains("corrupt data"), "{err}");
        // Two blobs referring to each other.
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        let mut map = HashMap::new();
        map.insert(a.clone(), json!([{ "$blob": b }]));
        map.insert(b.clone(), json!({"x": { "$blob": a }}));
        assert!(matches!(
            decode(json!({ "$blob": a }), &map),
            Err(DecodeError::TooDeep { .. })
        ));
    }

    #[test]
    fn a_blob_chain_that_doubles_at_each_step_is_refused() {
        // blob i = [ref(i+1), ref(i+1)]: 2^40 nodes if expanded. (A small
        // cap keeps the test fast; `decode` uses MAX_DECODE_NODES.)
        let hash = |i: usize| format!("{i:064}");
        let mut map = HashMap::new();
        for i in 0..40 {
            let r = json!({ "$blob": hash(i + 1) });
            map.insert(hash(i), json!([r.clone(), r]));
        }
        map.insert(hash(40), json!("leaf"));
        let mut budget = Budget {
            nodes: 0,
            max_nodes: 10_000,
        };
        assert_eq!(
            decode_at(json!({ "$blob": hash(0) }), &map, 0, &mut budget),
            Err(DecodeError::TooLarge { limit: 10_000 })
        );
    }

    #[test]
    fn deep_but_legitimate_values_decode() {
        let mut v = json!("x".repeat(5000));
        for _ in 0..120 {
            v = json!({ "k": v, "pad": "y".repeat(100) });
        }
        roundtrip(v);
    }

    #[test]
    fn missing_blobs_are_named() {
        let err = decode(json!({ "$blob": "f00" }), &HashMap::new()).unwrap_err();
        assert_eq!(err.to_string(), "blob f00 is missing");
    }

    #[test]
    fn user_maps_that_look_like_references_survive() {
        roundtrip(json!({"x": {"$blob": "not-a-hash"}, "y": {"$lit": 1}}));
    }
}
