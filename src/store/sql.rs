//! The one query interface every store module writes to, over either
//! backend: SQLite (rusqlite) or PostgreSQL (postgres).
//!
//! Why one interface instead of two stores: the queue, lease and ledger
//! rules are the product, and they must be the same on one host and on
//! many. Store modules keep their SQL and their row mapping once; only the
//! few statements whose dialects differ (claim search, schema pragmas,
//! sizes) branch on [`Dialect`].
//!
//! Parameters and columns use rusqlite's `ToSql`/`FromSql` on both
//! backends: a PostgreSQL parameter is the SQLite value (`Null`, `Integer`,
//! `Real`, `Text`, `Blob`) encoded as the type the server asks for, and a
//! PostgreSQL column is decoded into that value and then read by the same
//! `FromSql` the SQLite path uses. So a custom type (`PaperStatus`,
//! `CallStatus`, …) maps once, and range checks (an `INTEGER` read as `u32`)
//! behave the same on both.
//!
//! Placeholders are written SQLite-style (`?1`, `?2`); the PostgreSQL path
//! rewrites them to `$1`, `$2`. SQL in store modules keeps to the subset
//! both accept (`ON CONFLICT … DO …`, `RETURNING`, `COALESCE`, `CAST(… AS
//! BIGINT)` around sums).

use postgres::types::{to_sql_checked, FromSql, IsNull, Kind, ToSql as PgToSql, Type};
use rusqlite::types::{FromSql as LiteFromSql, ToSqlOutput, Value, ValueRef};
use rusqlite::ToSql as LiteToSql;
use std::cell::RefCell;
use std::collections::HashMap;
use std::error::Error as StdError;

/// Which SQL the backend speaks, for the few statements that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// A query failure of either backend (the store wraps it with its context
/// into a [`StoreError`](super::StoreError)).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
}

impl DbError {
    /// A query on a connection that is gone.
    pub fn closed() -> DbError {
        DbError::Sqlite(rusqlite::Error::InvalidQuery)
    }

    /// A statement that found no row where one was required.
    pub fn no_rows() -> DbError {
        DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows)
    }
}

/// A PostgreSQL connection with its prepared statements (each pooled
/// connection keeps its own: a statement is prepared once per connection,
/// not once per call).
pub struct PgConn {
    /// None only while being dropped (see the `Drop` impl).
    client: Option<postgres::Client>,
    statements: HashMap<String, postgres::Statement>,
}

impl PgConn {
    pub(super) fn new(client: postgres::Client) -> PgConn {
        PgConn {
            client: Some(client),
            statements: HashMap::new(),
        }
    }

    pub(super) fn client(&mut self) -> Option<&mut postgres::Client> {
        self.client.as_mut()
    }

    /// The client and its statement cache, for a [`Db`].
    pub(super) fn parts(
        &mut self,
    ) -> Option<(
        &mut postgres::Client,
        &mut HashMap<String, postgres::Statement>,
    )> {
        let PgConn { client, statements } = self;
        client.as_mut().map(|c| (c, statements))
    }
}

/// Closing a `postgres::Client` runs its private runtime, which tokio
/// refuses on an async worker thread (a pooled connection dropped there, or
/// the pool dropped at the end of `main`): such a client is closed on a
/// thread of its own.
impl Drop for PgConn {
    fn drop(&mut self) {
        if let (Some(c), Ok(_)) = (self.client.take(), tokio::runtime::Handle::try_current()) {
            let closed = std::thread::Builder::new()
                .name("pg-close".into())
                .spawn(move || drop(c));
            if let Err(e) = closed {
                tracing::debug!(error = %e, "cannot close a PostgreSQL connection cleanly");
            }
        }
    }
}

enum Handle<'a> {
    /// A pooled PostgreSQL connection that is gone: every query fails.
    Closed,
    Lite(&'a rusqlite::Connection),
    Pg(
        RefCell<&'a mut (dyn PgClient + 'a)>,
        RefCell<&'a mut HashMap<String, postgres::Statement>>,
    ),
}

/// A connection or transaction of either backend. Methods take `&self` so
/// the store's helpers can pass one handle around as they passed a
/// `rusqlite::Transaction`; no borrow is held while a row callback runs.
pub struct Db<'a> {
    handle: Handle<'a>,
}

/// One result row of either backend; read columns by name.
pub enum Row<'r, 's> {
    Lite(&'r rusqlite::Row<'s>),
    Pg(&'r postgres::Row),
}

impl Row<'_, '_> {
    /// Column `name` as `T`, through `T`'s SQLite `FromSql` on both backends.
    pub fn get<T: LiteFromSql>(&self, name: &str) -> rusqlite::Result<T> {
        match self {
            Row::Lite(r) => r.get(name),
            Row::Pg(r) => {
                let idx = self.column_index(name)?;
                let v = r
                    .try_get::<_, PgValue>(idx)
                    .map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(
                            idx,
                            rusqlite::types::Type::Null,
                            Box::new(e),
                        )
                    })?
                    .0;
                T::column_result(ValueRef::from(&v)).map_err(|e| match e {
                    rusqlite::types::FromSqlError::InvalidType => {
                        rusqlite::Error::InvalidColumnType(idx, name.to_string(), v.data_type())
                    }
                    rusqlite::types::FromSqlError::OutOfRange(i) => {
                        rusqlite::Error::IntegralValueOutOfRange(idx, i)
                    }
                    other => rusqlite::Error::FromSqlConversionFailure(
                        idx,
                        v.data_type(),
                        Box::new(other),
                    ),
                })
            }
        }
    }

    /// The index of column `name`.
    pub fn column_index(&self, name: &str) -> rusqlite::Result<usize> {
        match self {
            Row::Lite(r) => r.as_ref().column_index(name),
            Row::Pg(r) => r
                .columns()
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| rusqlite::Error::InvalidColumnName(name.to_string())),
        }
    }
}

/// Statement parameters: positional (`params![…]`, `?1`…) or named
/// (`named_params!{…}`, `:name`). Named ones are turned into positional
/// ones for PostgreSQL, which has no named parameters.
pub trait SqlArgs: rusqlite::Params + Copy {
    /// The SQL (with named parameters rewritten to `?n`) and the values
    /// in placeholder order.
    fn positional<'s>(&self, sql: &'s str) -> (std::borrow::Cow<'s, str>, Vec<&dyn LiteToSql>);
}

impl SqlArgs for &[&dyn LiteToSql] {
    fn positional<'s>(&self, sql: &'s str) -> (std::borrow::Cow<'s, str>, Vec<&dyn LiteToSql>) {
        (std::borrow::Cow::Borrowed(sql), self.to_vec())
    }
}

impl SqlArgs for &[(&str, &dyn LiteToSql)] {
    fn positional<'s>(&self, sql: &'s str) -> (std::borrow::Cow<'s, str>, Vec<&dyn LiteToSql>) {
        let names: Vec<&str> = self.iter().map(|(n, _)| *n).collect();
        (
            std::borrow::Cow::Owned(named_to_positional(sql, &names)),
            self.iter().map(|(_, v)| *v).collect(),
        )
    }
}

/// `:name` → `?k` (k = the name's place in `names`, 1-based) outside
/// quotes; `::` casts are left alone.
fn named_to_positional(sql: &str, names: &[&str]) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<u8> = None;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else if c == b'\'' || c == b'"' {
            quote = Some(c);
        } else if c == b':'
            && b.get(i + 1)
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == b'_')
            && (i == 0 || b[i - 1] != b':')
        {
            let end = b[i + 1..]
                .iter()
                .position(|n| !(n.is_ascii_alphanumeric() || *n == b'_'))
                .map_or(b.len(), |p| i + 1 + p);
            let name = &sql[i..end];
            if let Some(k) = names.iter().position(|n| *n == name) {
                out.push_str(&format!("?{}", k + 1));
                i = end;
                continue;
            }
        }
        // Copy one whole UTF-8 character.
        let len = sql[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&sql[i..i + len]);
        i += len;
    }
    out
}

impl<'a> Db<'a> {
    pub(super) fn lite(conn: &'a rusqlite::Connection) -> Db<'a> {
        Db {
            handle: Handle::Lite(conn),
        }
    }

    /// A handle whose connection is gone (every query is an error).
    pub(super) fn closed() -> Db<'a> {
        Db {
            handle: Handle::Closed,
        }
    }

    /// A PostgreSQL transaction (or, for reads, the bare client) with its
    /// connection's statement cache.
    pub(super) fn pg(
        client: &'a mut (dyn PgClient + 'a),
        statements: &'a mut HashMap<String, postgres::Statement>,
    ) -> Db<'a> {
        Db {
            handle: Handle::Pg(RefCell::new(client), RefCell::new(statements)),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self.handle {
            Handle::Lite(_) => Dialect::Sqlite,
            Handle::Pg(..) | Handle::Closed => Dialect::Postgres,
        }
    }

    /// The SQLite connection, for the few SQLite-only operations (pragmas,
    /// backups); None on PostgreSQL.
    pub fn sqlite(&self) -> Option<&rusqlite::Connection> {
        match self.handle {
            Handle::Lite(c) => Some(c),
            _ => None,
        }
    }

    /// Run a statement; the number of rows it changed.
    pub fn exec<P: SqlArgs>(&self, sql: &str, args: P) -> Result<usize, DbError> {
        match &self.handle {
            Handle::Lite(c) => Ok(c.prepare_cached(sql)?.execute(args)?),
            _ => {
                let n = self.pg_run(sql, args, |c, st, a| c.execute(st, a))?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
        }
    }

    /// Run several `;`-separated statements without parameters.
    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.handle {
            Handle::Lite(c) => Ok(c.execute_batch(sql)?),
            Handle::Pg(c, _) => Ok(super::pg::blocking(|| c.borrow_mut().batch(sql))?),
            Handle::Closed => Err(DbError::closed()),
        }
    }

    /// The first row mapped by `f`, or None when there is none.
    pub fn one<T, P: SqlArgs>(
        &self,
        sql: &str,
        args: P,
        f: impl FnOnce(&Row<'_, '_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, DbError> {
        match &self.handle {
            Handle::Lite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(args)?;
                match rows.next()? {
                    Some(r) => Ok(Some(f(&Row::Lite(r))?)),
                    None => Ok(None),
                }
            }
            _ => {
                let rows = self.pg_run(sql, args, |c, st, a| c.query(st, a))?;
                match rows.first() {
                    Some(r) => Ok(Some(f(&Row::Pg(r))?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Exactly one row mapped by `f` (an aggregate, a row known to exist);
    /// no row is an error.
    pub fn row<T, P: SqlArgs>(
        &self,
        sql: &str,
        args: P,
        f: impl FnOnce(&Row<'_, '_>) -> rusqlite::Result<T>,
    ) -> Result<T, DbError> {
        self.one(sql, args, f)?.ok_or_else(DbError::no_rows)
    }

    /// Every row, each mapped by `f`.
    pub fn all<T, P: SqlArgs>(
        &self,
        sql: &str,
        args: P,
        mut f: impl FnMut(&Row<'_, '_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, DbError> {
        match &self.handle {
            Handle::Lite(c) => {
                let mut st = c.prepare_cached(sql)?;
                let mut rows = st.query(args)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next()? {
                    out.push(f(&Row::Lite(r))?);
                }
                Ok(out)
            }
            _ => {
                let rows = self.pg_run(sql, args, |c, st, a| c.query(st, a))?;
                let mut out = Vec::with_capacity(rows.len());
                for r in &rows {
                    out.push(f(&Row::Pg(r))?);
                }
                Ok(out)
            }
        }
    }

    /// Prepare (once per connection) and run `sql` on PostgreSQL.
    fn pg_run<T, P: SqlArgs>(
        &self,
        sql: &str,
        args: P,
        run: impl FnOnce(
            &mut dyn PgClient,
            &postgres::Statement,
            &[&(dyn PgToSql + Sync)],
        ) -> Result<T, postgres::Error>,
    ) -> Result<T, DbError> {
        let (sql, args) = args.positional(sql);
        let sql: &str = &sql;
        let values: Vec<PgArg> = args
            .iter()
            .map(|a| PgArg::of(*a))
            .collect::<Result<_, _>>()?;
        let refs: Vec<&(dyn PgToSql + Sync)> =
            values.iter().map(|v| v as &(dyn PgToSql + Sync)).collect();
        match &self.handle {
            Handle::Lite(_) => unreachable_lite(),
            Handle::Closed => Err(DbError::closed()),
            Handle::Pg(c, cache) => super::pg::blocking(|| {
                let mut c = c.borrow_mut();
                let mut cache = cache.borrow_mut();
                let st = prepared(&mut **c, &mut cache, sql)?;
                Ok(run(&mut **c, &st, &refs)?)
            }),
        }
    }
}

/// Never reached: `pg_run` is only called for PostgreSQL handles. Kept as
/// an error path (not a panic) so a future mistake fails one query.
fn unreachable_lite<T>() -> Result<T, DbError> {
    Err(DbError::Sqlite(rusqlite::Error::InvalidQuery))
}

/// What [`Db`] needs of a PostgreSQL client or transaction.
pub trait PgClient {
    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error>;
    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error>;
    fn execute(
        &mut self,
        st: &postgres::Statement,
        args: &[&(dyn PgToSql + Sync)],
    ) -> Result<u64, postgres::Error>;
    fn query(
        &mut self,
        st: &postgres::Statement,
        args: &[&(dyn PgToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error>;
}

impl PgClient for postgres::Client {
    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.batch_execute(sql)
    }
    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        postgres::Client::prepare(self, sql)
    }
    fn execute(
        &mut self,
        st: &postgres::Statement,
        args: &[&(dyn PgToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        postgres::Client::execute(self, st, args)
    }
    fn query(
        &mut self,
        st: &postgres::Statement,
        args: &[&(dyn PgToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        postgres::Client::query(self, st, args)
    }
}

impl PgClient for postgres::Transaction<'_> {
    fn batch(&mut self, sql: &str) -> Result<(), postgres::Error> {
        self.batch_execute(sql)
    }
    fn prepare(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        postgres::Transaction::prepare(self, sql)
    }
    fn execute(
        &mut self,
        st: &postgres::Statement,
        args: &[&(dyn PgToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        postgres::Transaction::execute(self, st, args)
    }
    fn query(
        &mut self,
        st: &postgres::Statement,
        args: &[&(dyn PgToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, postgres::Error> {
        postgres::Transaction::query(self, st, args)
    }
}

/// The connection's prepared statement for `sql` (rewritten to `$n`
/// placeholders), preparing it on first use.
fn prepared(
    client: &mut dyn PgClient,
    cache: &mut HashMap<String, postgres::Statement>,
    sql: &str,
) -> Result<postgres::Statement, postgres::Error> {
    if let Some(st) = cache.get(sql) {
        return Ok(st.clone());
    }
    let st = client.prepare(&placeholders(sql))?;
    // A bounded cache: generated statements (IN lists of varying length)
    // must not grow it without end.
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(sql.to_string(), st.clone());
    Ok(st)
}

/// `sql` (a `SELECT` of one row a write transaction is about to check and
/// then change) with `FOR UPDATE` on PostgreSQL, so no other transaction
/// changes the row between the check and the write; SQLite's single
/// writer already guarantees that.
pub fn lock_row(db: &Db<'_>, sql: &str) -> String {
    match db.dialect() {
        Dialect::Sqlite => sql.to_string(),
        Dialect::Postgres => format!("{sql} FOR UPDATE"),
    }
}

/// `?1` → `$1` outside string literals and quoted identifiers.
pub fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                out.push(c);
                if c == q {
                    quote = None;
                }
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '?' && chars.peek().is_some_and(|n| n.is_ascii_digit()) => {
                out.push('$');
            }
            None => out.push(c),
        }
    }
    out
}

/// A parameter as the SQLite value it converts to, encoded for PostgreSQL
/// as whatever type the server inferred for its placeholder.
#[derive(Debug)]
struct PgArg(Value);

impl PgArg {
    fn of(a: &dyn LiteToSql) -> Result<PgArg, DbError> {
        let v = match a.to_sql()? {
            ToSqlOutput::Borrowed(r) => owned(r),
            ToSqlOutput::Owned(v) => v,
            _ => return Err(DbError::Sqlite(rusqlite::Error::InvalidQuery)),
        };
        Ok(PgArg(v))
    }
}

type BoxError = Box<dyn StdError + Sync + Send>;

/// A NUMERIC in PostgreSQL's binary form (what `SUM` of a BIGINT
/// column returns): an integer when it has no fractional digits and fits
/// in i64, else a REAL. Layout: digit count, weight, sign, scale (each 16
/// bits), then base-10000 digits, most significant first.
fn numeric(raw: &[u8]) -> Result<Value, BoxError> {
    let word = |i: usize| -> Result<u16, BoxError> {
        raw.get(i * 2..i * 2 + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "truncated NUMERIC".into())
    };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let scale = word(3)?;
    if sign == 0xC000 {
        return Ok(Value::Real(f64::NAN));
    }
    let negative = sign == 0x4000;
    let mut int: Option<i128> = Some(0);
    let mut real = 0f64;
    for i in 0..ndigits {
        let d = i64::from(word(4 + i)?);
        let power = weight - i as i64;
        real += d as f64 * 10000f64.powi(power as i32);
        int = match (int, power >= 0) {
            (Some(acc), true) => u32::try_from(power)
                .ok()
                .and_then(|p| 10000i128.checked_pow(p))
                .and_then(|m| acc.checked_add(i128::from(d) * m)),
            (Some(acc), false) if d == 0 => Some(acc),
            _ => None,
        };
    }
    let int = int.map(|v| if negative { -v } else { v });
    Ok(match int.and_then(|v| i64::try_from(v).ok()) {
        Some(v) if scale == 0 => Value::Integer(v),
        _ => Value::Real(if negative { -real } else { real }),
    })
}

fn owned(r: ValueRef<'_>) -> Value {
    match r {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Real(f) => Value::Real(f),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

impl PgToSql for PgArg {
    fn to_sql(&self, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
        fn put<T: PgToSql>(v: T, ty: &Type, out: &mut bytes::BytesMut) -> Result<IsNull, BoxError> {
            PgToSql::to_sql(&v, ty, out)
        }
        let wrong = || -> BoxError {
            format!("a {} value cannot be sent as {}", self.0.data_type(), ty).into()
        };
        match &self.0 {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(i) => match *ty {
                Type::INT8 => put(*i, ty, out),
                Type::INT4 => put(i32::try_from(*i)?, ty, out),
                Type::INT2 => put(i16::try_from(*i)?, ty, out),
                Type::BOOL => put(*i != 0, ty, out),
                Type::FLOAT8 => put(*i as f64, ty, out),
                Type::FLOAT4 => put(*i as f32, ty, out),
                Type::TEXT | Type::VARCHAR => put(i.to_string(), ty, out),
                _ => Err(wrong()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => put(*f, ty, out),
                Type::FLOAT4 => put(*f as f32, ty, out),
                Type::TEXT | Type::VARCHAR => put(f.to_string(), ty, out),
                _ => Err(wrong()),
            },
            Value::Text(s) => match *ty {
                Type::INT8 => put(s.parse::<i64>()?, ty, out),
                Type::BYTEA => put(s.as_bytes(), ty, out),
                _ if matches!(ty.kind(), Kind::Simple) => put(s.as_str(), &Type::TEXT, out),
                _ => Err(wrong()),
            },
            Value::Blob(b) => match *ty {
                Type::BYTEA => put(b.as_slice(), ty, out),
                _ => Err(wrong()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// A column of any type the schema uses, as the SQLite value it reads as.
struct PgValue(Value);

impl<'a> FromSql<'a> for PgValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let v = match *ty {
            Type::INT8 => Value::Integer(<i64 as FromSql>::from_sql(ty, raw)?),
            Type::INT4 => Value::Integer(<i32 as FromSql>::from_sql(ty, raw)?.into()),
            Type::INT2 => Value::Integer(<i16 as FromSql>::from_sql(ty, raw)?.into()),
            Type::OID => Value::Integer(<u32 as FromSql>::from_sql(ty, raw)?.into()),
            Type::BOOL => Value::Integer(<bool as FromSql>::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(<f64 as FromSql>::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(<f32 as FromSql>::from_sql(ty, raw)?.into()),
            Type::BYTEA => Value::Blob(raw.to_vec()),
            Type::NUMERIC => numeric(raw)?,
            _ => Value::Text(<String as FromSql>::from_sql(&Type::TEXT, raw)?),
        };
        Ok(PgValue(v))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::INT8
                | Type::INT4
                | Type::INT2
                | Type::OID
                | Type::BOOL
                | Type::FLOAT8
                | Type::FLOAT4
                | Type::BYTEA
                | Type::NUMERIC
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::UNKNOWN
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_rewritten_outside_quotes() {
        assert_eq!(
            placeholders("SELECT '?1', \"a?2\" FROM t WHERE a = ?1 AND b = ?12"),
            "SELECT '?1', \"a?2\" FROM t WHERE a = $1 AND b = $12"
        );
        assert_eq!(placeholders("a ? b"), "a ? b");
    }

    #[test]
    fn numerics_decode_as_integers_or_reals() {
        let enc =
            |words: &[u16]| -> Vec<u8> { words.iter().flat_map(|w| w.to_be_bytes()).collect() };
        // 12345678 = [1234, 5678], weight 1.
        assert_eq!(
            numeric(&enc(&[2, 1, 0, 0, 1234, 5678])).unwrap(),
            Value::Integer(12_345_678)
        );
        assert_eq!(
            numeric(&enc(&[1, 0, 0x4000, 0, 42])).unwrap(),
            Value::Integer(-42)
        );
        assert_eq!(numeric(&enc(&[0, 0, 0, 0])).unwrap(), Value::Integer(0));
        // 1.5 = [1, 5000], weight 0, scale 1.
        assert_eq!(
            numeric(&enc(&[2, 0, 0, 1, 1, 5000])).unwrap(),
            Value::Real(1.5)
        );
        assert!(numeric(&[0, 1]).is_err());
    }

    #[test]
    fn named_parameters_become_positional() {
        assert_eq!(
            named_to_positional(
                "a = :id OR b = :base || ':x' AND c::text = :id",
                &[":id", ":base"]
            ),
            "a = ?1 OR b = ?2 || ':x' AND c::text = ?1"
        );
    }
}
