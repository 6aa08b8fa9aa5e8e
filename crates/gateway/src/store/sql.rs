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

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::Connection;

use crate::error::StoreError;

/// One statement parameter.
#[derive(Debug, Clone, Copy)]
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

/// One row a statement returned; [`Row::get`] reads a column by its index.
pub(super) struct Row<'r> {
    inner: &'r rusqlite::Row<'r>,
}

impl Row<'_> {
    /// Column `i` as a `T`; a value of another type (or a NULL for a non-`Option`) is an
    /// error.
    pub(super) fn get<T: FromColumn>(&self, i: usize) -> Result<T, StoreError> {
        let v = self.inner.get_ref(i)?;
        T::from_sqlite(v).map_err(|why| StoreError::Corrupt(format!("column {i}: {why}")))
    }
}

/// A value a column can be read as.
pub(super) trait FromColumn: Sized {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String>;
}

fn wrong(v: ValueRef<'_>, want: &str) -> String {
    format!("a {} where {want} was expected", v.data_type())
}

impl FromColumn for i64 {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Integer(i) => Ok(i),
            _ => Err(wrong(v, "an integer")),
        }
    }
}

impl FromColumn for u32 {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        let i = i64::from_sqlite(v)?;
        u32::try_from(i).map_err(|_| format!("{i} does not fit 32 bits"))
    }
}

impl FromColumn for bool {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        Ok(i64::from_sqlite(v)? != 0)
    }
}

impl FromColumn for String {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Text(t) => String::from_utf8(t.to_vec()).map_err(|e| e.to_string()),
            _ => Err(wrong(v, "text")),
        }
    }
}

impl FromColumn for Vec<u8> {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Blob(b) => Ok(b.to_vec()),
            _ => Err(wrong(v, "bytes")),
        }
    }
}

impl<T: FromColumn> FromColumn for Option<T> {
    fn from_sqlite(v: ValueRef<'_>) -> Result<Self, String> {
        match v {
            ValueRef::Null => Ok(None),
            v => T::from_sqlite(v).map(Some),
        }
    }
}

/// One write's or read's handle on its connection: what the owner modules implement the
/// store's row traits for. A write's connection is inside its savepoint; a read's is a reader
/// (`query_only`), so a statement that writes fails there.
pub(super) struct Db<'c> {
    conn: &'c Connection,
    /// The store's count of failed statements (`StoreStats::errors`).
    errors: &'c std::sync::atomic::AtomicU64,
}

impl<'c> Db<'c> {
    pub(super) fn sqlite(conn: &'c Connection, errors: &'c std::sync::atomic::AtomicU64) -> Self {
        Db { conn, errors }
    }

    /// Counts a failed statement.
    fn failed(&self, e: StoreError) -> StoreError {
        self.errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        e
    }

    /// Runs a statement that changes rows and returns how many it changed.
    pub(super) fn exec(&self, sql: &str, params: &[Param<'_>]) -> Result<usize, StoreError> {
        self.conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(rusqlite::params_from_iter(params)))
            .map_err(|e| self.failed(e.into()))
    }

    /// The first row `sql` selects, or `None`.
    pub(super) fn row<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let run = || -> Result<Option<T>, StoreError> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            match rows.next()? {
                Some(r) => f(&Row { inner: r }).map(Some),
                None => Ok(None),
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
            let mut stmt = self.conn.prepare_cached(sql)?;
            let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(f(&Row { inner: r })?);
            }
            Ok(out)
        };
        run().map_err(|e| self.failed(e))
    }
}
