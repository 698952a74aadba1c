//! SQLite statements of fixed text that diesel prepares once per connection.
//!
//! diesel keys its statement cache by the query's type when the type says it has a
//! static id, and otherwise by the SQL text — which it then builds (identifier by
//! identifier) and hashes on every execution, even when the statement is cached.
//! An `INSERT … ON CONFLICT` has no static id, and an `ON CONFLICT DO UPDATE` or a
//! `sql_query` is never cached at all. A hot statement executed once per row (a
//! round of usage writes thousands) implements [`SqliteStatement`] instead: its text
//! is constant, its type is its cache key, so after the first execution each row
//! costs binding its values and one `sqlite3_step`.

use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;
use diesel::sqlite::{Sqlite, SqliteConnection};
use diesel::{QueryResult, RunQueryDsl};

/// A statement of constant text, `HEAD ?, ?, … TAIL`, with the values of one execution
/// (diesel writes each `?` as the value is bound).
pub trait SqliteStatement {
    /// A type naming this statement alone (its cache key).
    type Id: 'static;
    /// The text before the values, e.g. `INSERT INTO t (a, b) VALUES (`.
    const HEAD: &'static str;
    /// The text after the values, e.g. `) ON CONFLICT (a) DO NOTHING`.
    const TAIL: &'static str;
    /// Binds the values, in order.
    fn bind_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()>;
}

/// The values of a [`SqliteStatement`], separated by commas.
pub struct Values<'p, 'a, 'b> {
    out: &'p mut AstPass<'a, 'b, Sqlite>,
    first: bool,
}

impl<'b> Values<'_, '_, 'b> {
    /// Binds the next value as SQL type `ST`.
    pub fn bind<ST, U>(&mut self, value: &'b U) -> QueryResult<()>
    where
        Sqlite: HasSqlType<ST>,
        U: ToSql<ST, Sqlite> + ?Sized,
    {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push_sql(", ");
        }
        self.out.push_bind_param::<ST, U>(value)
    }
}

fn walk<'b, S: SqliteStatement>(
    statement: &'b S,
    mut out: AstPass<'_, 'b, Sqlite>,
) -> QueryResult<()> {
    out.push_sql(S::HEAD);
    statement.bind_values(&mut Values {
        out: &mut out,
        first: true,
    })?;
    out.push_sql(S::TAIL);
    Ok(())
}

/// A [`SqliteStatement`] ready to run: `Prepared(&row).execute(conn)`.
#[derive(Debug, Clone, Copy)]
pub struct Prepared<'s, S>(pub &'s S);

impl<S: SqliteStatement> QueryId for Prepared<'_, S> {
    type QueryId = S::Id;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<S: SqliteStatement> QueryFragment<Sqlite> for Prepared<'_, S> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        walk(self.0, out)
    }
}

impl<S> RunQueryDsl<SqliteConnection> for Prepared<'_, S> {}

/// A [`SqliteStatement`] with a `RETURNING` clause whose columns have the SQL types
/// `ST`: `Returning::<_, ST>::new(&row).get_result(conn)`.
#[derive(Debug, Clone, Copy)]
pub struct Returning<'s, S, ST> {
    statement: &'s S,
    sql_type: std::marker::PhantomData<ST>,
}

impl<'s, S, ST> Returning<'s, S, ST> {
    /// `statement`, read as rows of `ST`.
    pub fn new(statement: &'s S) -> Self {
        Self {
            statement,
            sql_type: std::marker::PhantomData,
        }
    }
}

impl<S: SqliteStatement, ST: 'static> QueryId for Returning<'_, S, ST> {
    type QueryId = S::Id;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<S: SqliteStatement, ST> QueryFragment<Sqlite> for Returning<'_, S, ST> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Sqlite>) -> QueryResult<()> {
        walk(self.statement, out)
    }
}

impl<S: SqliteStatement, ST> Query for Returning<'_, S, ST> {
    type SqlType = ST;
}

impl<S, ST> RunQueryDsl<SqliteConnection> for Returning<'_, S, ST> {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex, PoisonError};

    use diesel::connection::{InstrumentationEvent, SimpleConnection};
    use diesel::sql_types::{BigInt, Text};
    use diesel::Connection;

    struct Put<'a> {
        key: &'a str,
        value: i64,
    }

    impl SqliteStatement for Put<'_> {
        type Id = Put<'static>;
        const HEAD: &'static str = "INSERT INTO t (k, v) VALUES (";
        const TAIL: &'static str =
            ") ON CONFLICT (k) DO UPDATE SET v = v + excluded.v RETURNING k, v";
        fn bind_values<'b>(&'b self, values: &mut Values<'_, '_, 'b>) -> QueryResult<()> {
            values.bind::<Text, _>(&self.key)?;
            values.bind::<BigInt, _>(&self.value)
        }
    }

    #[test]
    fn a_fixed_statement_is_prepared_once_and_runs_with_each_rows_values() -> QueryResult<()> {
        let mut conn = SqliteConnection::establish(":memory:")
            .map_err(|e| diesel::result::Error::QueryBuilderError(e.into()))?;
        conn.batch_execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BIGINT NOT NULL)")?;
        let cached = Arc::new(Mutex::new(Vec::<String>::new()));
        let seen = Arc::clone(&cached);
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::CacheQuery { sql, .. } = event {
                seen.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(sql.to_owned());
            }
        });
        for (key, value) in [("a", 1), ("b", 2), ("a", 40)] {
            Prepared(&Put { key, value }).execute(&mut conn)?;
        }
        // Prepared (and cached) by the first execution only.
        assert_eq!(
            *cached.lock().unwrap_or_else(PoisonError::into_inner),
            vec!["INSERT INTO t (k, v) VALUES (?, ?) \
                  ON CONFLICT (k) DO UPDATE SET v = v + excluded.v RETURNING k, v"
                .to_owned()]
        );
        let row: (String, i64) = Returning::<_, (Text, BigInt)>::new(&Put { key: "a", value: 1 })
            .get_result(&mut conn)?;
        assert_eq!(row, ("a".to_owned(), 42));
        let b: i64 = diesel::sql_query("SELECT v FROM t WHERE k = 'b'")
            .get_result::<V>(&mut conn)?
            .v;
        assert_eq!(b, 2);
        Ok(())
    }

    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = BigInt)]
        v: i64,
    }
}
