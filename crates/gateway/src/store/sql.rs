//! The statements' side of the storage seam: [`Db`], the handle a write or read gets, through
//! which every owner module (`requests`, `decisions`, …) runs its statements, with parameters
//! ([`Param`], written with [`args!`](crate::args)) and rows ([`Row`]) that name no database
//! crate.
//!
//! The owner modules' code therefore depends on no database crate: a second backend (the
//! scale-out issue's PostgreSQL) gives `Db` a connection of its own kind, and the owners keep
//! their one statement per operation, written in SQL both accept (numbered placeholders
//! `?1`, `?2`, …, `ON CONFLICT … DO NOTHING`/`DO UPDATE`, 64-bit integers, text and bytes),
//! with a variant per backend only where the dialects part (JSON paths, the event counter).
//! The engine (`sqlite`) runs them; `prepare_cached` keeps each statement prepared once per
//! connection.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;
use tokio_postgres::types::{IsNull, ToSql, Type};

use crate::error::StoreError;

/// One statement parameter.
#[derive(Clone, Copy)]
pub(super) enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// A value that can be a statement parameter.
pub(super) trait ToParam {
    fn param(&self) -> Param<'_>;
}

impl ToParam for i64 {
    fn param(&self) -> Param<'_> {
        Param::Int(*self)
    }
}

impl ToParam for u32 {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}

impl ToParam for i32 {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}

impl ToParam for bool {
    fn param(&self) -> Param<'_> {
        Param::Int(i64::from(*self))
    }
}

impl ToParam for str {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for String {
    fn param(&self) -> Param<'_> {
        Param::Text(self)
    }
}

impl ToParam for [u8] {
    fn param(&self) -> Param<'_> {
        Param::Bytes(self)
    }
}

impl ToParam for Vec<u8> {
    fn param(&self) -> Param<'_> {
        Param::Bytes(self)
    }
}

impl<T: ToParam + ?Sized> ToParam for &T {
    fn param(&self) -> Param<'_> {
        (**self).param()
    }
}

impl<T: ToParam> ToParam for Option<T> {
    fn param(&self) -> Param<'_> {
        match self {
            Some(v) => v.param(),
            None => Param::Null,
        }
    }
}

/// A statement's parameters, in placeholder order: `args![id, now]` binds `?1` and `?2`.
#[macro_export]
#[doc(hidden)]
macro_rules! args {
    () => { &[] as &[$crate::store::sql::Param<'_>] };
    ($($e:expr),+ $(,)?) => {
        &[$($crate::store::sql::ToParam::param(&$e)),+] as &[$crate::store::sql::Param<'_>]
    };
}

impl rusqlite::ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match *self {
            Param::Null => ValueRef::Null,
            Param::Int(i) => ValueRef::Integer(i),
            Param::Text(t) => ValueRef::Text(t.as_bytes()),
            Param::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

impl std::fmt::Debug for Param<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Param::Null => f.write_str("NULL"),
            Param::Int(i) => write!(f, "{i}"),
            Param::Text(t) => write!(f, "{t:?}"),
            Param::Bytes(b) => write!(f, "<{} bytes>", b.len()),
        }
    }
}

/// A parameter for PostgreSQL, as the type the server inferred for its placeholder: an integer
/// is sent as a `bigint`, `integer`, `smallint` or `boolean` (0 or 1), text as text, bytes as
/// `bytea`, and NULL as NULL of any type.
impl ToSql for Param<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match *self {
            Param::Null => Ok(IsNull::Yes),
            Param::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(i)?.to_sql(ty, out),
                Type::BOOL => (i != 0).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("an integer for a parameter of type {ty}").into()),
            },
            Param::Text(t) => t.to_sql(ty, out),
            Param::Bytes(b) => b.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A column's value, whichever database returned it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    Null,
    Int(i64),
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl Value<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "integer",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
        }
    }
}

/// A PostgreSQL column read whatever its type, as a [`Value`].
struct PgValue<'a>(Value<'a>);

impl<'a> tokio_postgres::types::FromSql<'a> for PgValue<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i64::from(i32::from_sql(ty, raw)?)),
            Type::INT2 => Value::Int(i64::from(i16::from_sql(ty, raw)?)),
            Type::BOOL => Value::Int(i64::from(bool::from_sql(ty, raw)?)),
            Type::BYTEA => Value::Bytes(raw),
            // Text, and JSON as its text (`json` keeps the text as stored).
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::JSON | Type::BPCHAR => {
                Value::Text(<&str>::from_sql(ty, raw)?)
            }
            _ => return Err(format!("a column of type {ty}").into()),
        }))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(Value::Null))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

enum RowOf<'r> {
    Sqlite(&'r rusqlite::Row<'r>),
    Pg(&'r tokio_postgres::Row),
}

/// One row a statement returned; [`Row::get`] reads a column by its index.
pub(super) struct Row<'r> {
    inner: RowOf<'r>,
}

impl Row<'_> {
    /// Column `i` as a `T`; a value of another type (or a NULL for a non-`Option`) is an
    /// error.
    pub(super) fn get<T: FromColumn>(&self, i: usize) -> Result<T, StoreError> {
        let corrupt = |why: String| StoreError::Corrupt(format!("column {i}: {why}"));
        match &self.inner {
            RowOf::Sqlite(r) => {
                let v = match r.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(n) => Value::Int(n),
                    ValueRef::Text(t) => {
                        Value::Text(std::str::from_utf8(t).map_err(|e| corrupt(e.to_string()))?)
                    }
                    ValueRef::Blob(b) => Value::Bytes(b),
                    ValueRef::Real(x) => return Err(corrupt(format!("a real number {x}"))),
                };
                T::from_value(v).map_err(corrupt)
            }
            RowOf::Pg(r) => {
                let PgValue(v) = r
                    .try_get::<_, PgValue<'_>>(i)
                    .map_err(|e| corrupt(e.to_string()))?;
                T::from_value(v).map_err(corrupt)
            }
        }
    }
}

/// A value a column can be read as.
pub(super) trait FromColumn: Sized {
    fn from_value(v: Value<'_>) -> Result<Self, String>;
}

fn wrong(v: Value<'_>, want: &str) -> String {
    format!("{} where {want} was expected", v.kind())
}

impl FromColumn for i64 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Int(i) => Ok(i),
            _ => Err(wrong(v, "an integer")),
        }
    }
}

impl FromColumn for u32 {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        let i = i64::from_value(v)?;
        u32::try_from(i).map_err(|_| format!("{i} does not fit 32 bits"))
    }
}

impl FromColumn for bool {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        Ok(i64::from_value(v)? != 0)
    }
}

impl FromColumn for String {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Text(t) => Ok(t.to_owned()),
            _ => Err(wrong(v, "text")),
        }
    }
}

impl FromColumn for Vec<u8> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Bytes(b) => Ok(b.to_vec()),
            _ => Err(wrong(v, "bytes")),
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_value(v: Value<'_>) -> Result<Self, String> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// Which SQL a [`Db`] speaks, for the few statements the backends write differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

enum Conn<'c> {
    Sqlite(&'c Connection),
    Pg(&'c deadpool_postgres::ClientWrapper),
}

/// One write's or read's handle on its connection: what the owner modules implement the
/// store's row traits for. A write's connection is inside its transaction (SQLite: its
/// savepoint); a read's only reads (a SQLite reader is `query_only`, a PostgreSQL read is a
/// `READ ONLY` transaction), so a statement that writes fails there.
pub(super) struct Db<'c> {
    conn: Conn<'c>,
    /// The store's count of failed statements (`StoreStats::errors`).
    errors: &'c AtomicU64,
    /// Whether a statement of this transaction failed (PostgreSQL then aborts it whole).
    failed_any: std::cell::Cell<bool>,
}

/// A PostgreSQL error, naming the statement (its text only: parameters may be secrets).
fn in_statement(sql: &str, e: tokio_postgres::Error) -> StoreError {
    match StoreError::from(e) {
        StoreError::Database { source, disk_full } => StoreError::Database {
            source: format!(
                "{source}, in: {}",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            )
            .into(),
            disk_full,
        },
        other => other,
    }
}

/// `sql` with PostgreSQL's placeholders: `?1` becomes `$1`.
pub(super) fn numbered(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl<'c> Db<'c> {
    pub(super) fn sqlite(conn: &'c Connection, errors: &'c AtomicU64) -> Self {
        Db {
            conn: Conn::Sqlite(conn),
            errors,
            failed_any: std::cell::Cell::new(false),
        }
    }

    pub(super) fn postgres(
        client: &'c deadpool_postgres::ClientWrapper,
        errors: &'c AtomicU64,
    ) -> Self {
        Db {
            conn: Conn::Pg(client),
            errors,
            failed_any: std::cell::Cell::new(false),
        }
    }

    /// The SQL this handle speaks.
    pub(super) fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Pg(_) => Dialect::Postgres,
        }
    }

    /// Counts a failed statement.
    fn failed(&self, e: StoreError) -> StoreError {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.failed_any.set(true);
        e
    }

    /// Whether a statement run through this handle failed.
    pub(super) fn any_failed(&self) -> bool {
        self.failed_any.get()
    }

    /// Runs `sql` on PostgreSQL (prepared once per connection) and returns its rows.
    fn pg_query(
        client: &deadpool_postgres::ClientWrapper,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        futures::executor::block_on(async {
            let stmt = client.prepare_cached(&numbered(sql)).await?;
            client.query(&stmt, &refs).await
        })
        .map_err(|e| in_statement(sql, e))
    }

    /// Runs a statement that changes rows and returns how many it changed.
    pub(super) fn exec(&self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError> {
        match self.conn {
            Conn::Sqlite(conn) => conn
                .prepare_cached(sql)
                .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
                .map_err(|e| self.failed(e.into())),
            Conn::Pg(client) => {
                let refs: Vec<&(dyn ToSql + Sync)> =
                    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
                futures::executor::block_on(async {
                    let stmt = client.prepare_cached(&numbered(sql)).await?;
                    client.execute(&stmt, &refs).await
                })
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .map_err(|e| self.failed(in_statement(sql, e)))
            }
        }
    }

    /// The first row `sql` selects, or `None`.
    pub(super) fn row<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let run = || -> Result<Option<T>, StoreError> {
            match self.conn {
                Conn::Sqlite(conn) => {
                    let mut stmt = conn.prepare_cached(sql)?;
                    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                    match rows.next()? {
                        Some(r) => f(&Row {
                            inner: RowOf::Sqlite(r),
                        })
                        .map(Some),
                        None => Ok(None),
                    }
                }
                Conn::Pg(client) => match Self::pg_query(client, sql, params)?.first() {
                    Some(r) => f(&Row {
                        inner: RowOf::Pg(r),
                    })
                    .map(Some),
                    None => Ok(None),
                },
            }
        };
        run().map_err(|e| self.failed(e))
    }

    /// The first row `sql` selects; none is an error.
    pub(super) fn one<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.row(sql, params, f)?.ok_or_else(|| {
            self.failed(StoreError::Corrupt(format!(
                "a statement that always returns a row returned none: {sql}"
            )))
        })
    }

    /// Every row `sql` selects, in its order.
    pub(super) fn rows<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut run = || -> Result<Vec<T>, StoreError> {
            match self.conn {
                Conn::Sqlite(conn) => {
                    let mut stmt = conn.prepare_cached(sql)?;
                    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
                    let mut out = Vec::new();
                    while let Some(r) = rows.next()? {
                        out.push(f(&Row {
                            inner: RowOf::Sqlite(r),
                        })?);
                    }
                    Ok(out)
                }
                Conn::Pg(client) => Self::pg_query(client, sql, params)?
                    .iter()
                    .map(|r| {
                        f(&Row {
                            inner: RowOf::Pg(r),
                        })
                    })
                    .collect(),
            }
        };
        run().map_err(|e| self.failed(e))
    }
}

#[cfg(test)]
mod tests {
    use super::numbered;

    #[test]
    fn placeholders_are_numbered_for_postgresql() {
        assert_eq!(
            numbered("SELECT a FROM t WHERE b = ?1 AND c > ?12 OR d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c > $12 OR d = '?'"
        );
    }
}
