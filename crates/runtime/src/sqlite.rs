//! SQLite for the single-process dev mode: one database file (or memory) per service, with the
//! same behaviour as its PostgreSQL store. What every SQLite store of Tierline shares:
//!
//! - **One writer.** SQLite has one writer at a time. Every write is a `BEGIN IMMEDIATE`
//!   transaction ([`SqliteDb::write`]), which takes the write lock when it starts, so
//!   everything it reads is what it writes over: version checks, "insert if absent" and the
//!   like need neither row locks nor retries, and cannot race. Writers of this process first
//!   queue on an async mutex, so they wait their turn in order rather than in SQLite's
//!   sleeping busy handler; the busy timeout ([`BUSY_TIMEOUT`]) then only matters when another
//!   process holds the file.
//! - **Snapshots.** Reads of more than one statement run in a deferred transaction
//!   ([`SqliteDb::read`]), one snapshot; in WAL mode they do not wait for the writer.
//! - **Times.** [`Stamp`]: integer microseconds since the Unix epoch, PostgreSQL's precision,
//!   rounded as sqlx rounds a `timestamptz`, and they order as numbers (RFC 3339 text would
//!   not: "…00Z" sorts after "…00.5Z").

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous, SqliteTypeInfo, SqliteValueRef,
};
use sqlx::{Decode, Encode, Sqlite, Transaction, Type};
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::{Mutex, OwnedMutexGuard};

/// How long a write waits for another process's write lock before it fails with SQLITE_BUSY
/// (see [`is_busy`]).
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections of a file database: readers run in parallel beside the one writer.
const FILE_CONNECTIONS: u32 = 8;

/// A time as stored: microseconds since the Unix epoch, UTC, an SQLite INTEGER.
///
/// Rounded as sqlx rounds a `timestamptz` for PostgreSQL (towards 2000-01-01), so a SQLite
/// store and its PostgreSQL twin keep the same instant for an input with nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stamp(i64);

/// PostgreSQL's epoch, from which sqlx counts the microseconds of a `timestamptz`.
const PG_EPOCH: OffsetDateTime = datetime!(2000-01-01 0:00 UTC);
/// [`PG_EPOCH`] in microseconds since the Unix epoch.
const PG_EPOCH_UNIX_MICROS: i64 = 946_684_800_000_000;

impl Stamp {
    /// `at`, to the microsecond.
    pub fn from_time(at: OffsetDateTime) -> Stamp {
        let since_pg_epoch = (at - PG_EPOCH).whole_microseconds();
        // Times outside i64 microseconds (±292,000 years) cannot reach here: the APIs accept
        // years 1 to 9999. Saturate rather than fail if one ever does.
        let micros = i64::try_from(since_pg_epoch)
            .unwrap_or(if since_pg_epoch < 0 {
                i64::MIN
            } else {
                i64::MAX
            })
            .saturating_add(PG_EPOCH_UNIX_MICROS);
        Stamp(micros)
    }

    /// Now, by the system clock.
    pub fn now() -> Stamp {
        Stamp::from_time(OffsetDateTime::now_utc())
    }

    /// The stamp of `micros` microseconds since the Unix epoch, as stored.
    pub const fn from_unix_micros(micros: i64) -> Stamp {
        Stamp(micros)
    }

    /// Microseconds since the Unix epoch, as stored.
    pub const fn unix_micros(self) -> i64 {
        self.0
    }

    /// The time. Fails only for a stored value no [`Stamp::from_time`] wrote (beyond year
    /// 9999): a decode error, as sqlx reports a column it cannot read.
    pub fn to_time(self) -> Result<OffsetDateTime, sqlx::Error> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1000)
            .map_err(|_| sqlx::Error::Decode(Box::new(StampOutOfRange(self.0))))
    }
}

/// An optional stored time (a nullable column), read with [`Stamp::to_time`].
pub fn opt_time(stamp: Option<Stamp>) -> Result<Option<OffsetDateTime>, sqlx::Error> {
    stamp.map(Stamp::to_time).transpose()
}

/// A stored [`Stamp`] beyond what [`OffsetDateTime`] holds: a bug or a manual edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("time {0} µs")]
pub struct StampOutOfRange(pub i64);

impl Type<Sqlite> for Stamp {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for Stamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <i64 as Encode<Sqlite>>::encode_by_ref(&self.0, buf)
    }
}

impl Decode<'_, Sqlite> for Stamp {
    fn decode(value: SqliteValueRef<'_>) -> Result<Self, BoxDynError> {
        <i64 as Decode<Sqlite>>::decode(value).map(Stamp)
    }
}

/// True if `err` is SQLite's SQLITE_BUSY or SQLITE_LOCKED (any extended code): another
/// connection held the lock for longer than the busy timeout. Like a pool timeout in
/// PostgreSQL, the database is overloaded rather than the query wrong, so the caller may retry
/// (services map it to UNAVAILABLE).
pub fn is_busy(err: &sqlx::Error) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    let Some(sqlite) = db.try_downcast_ref::<sqlx::sqlite::SqliteError>() else {
        return false;
    };
    // Extended result codes keep the primary code in their low byte.
    sqlx::error::DatabaseError::code(sqlite)
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
}

/// A write transaction: `BEGIN IMMEDIATE`, so it holds SQLite's write lock from the start, and
/// this process's turn to write. Dropped without [`Write::commit`], it rolls back.
#[derive(Debug)]
pub struct Write {
    // Declared first so it is dropped first: the rollback is queued before the turn passes on.
    tx: Transaction<'static, Sqlite>,
    /// The time of every change this transaction makes, as `now()` is in PostgreSQL. Taken
    /// under the write lock, so times follow the order in which writes commit.
    pub now: Stamp,
    _turn: OwnedMutexGuard<()>,
}

impl Write {
    /// The connection, for the transaction's statements.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.tx
    }

    /// Commits, and passes the turn on.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

/// A migrated SQLite database and this process's queue of writers. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteDb {
    pool: SqlitePool,
    /// This process's writers queue here before they ask SQLite for the write lock.
    writer: Arc<Mutex<()>>,
}

impl SqliteDb {
    /// Opens (creating it if missing) the database file at `path`, in WAL mode with foreign
    /// keys on and a busy timeout of [`BUSY_TIMEOUT`], and applies `migrator`.
    pub async fn open(path: impl AsRef<Path>, migrator: &Migrator) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // Readers keep their snapshot while the writer writes, and neither waits.
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL never corrupts the file; a power cut may lose the last commits,
            // which a dev mode can afford for many fewer fsyncs.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(FILE_CONNECTIONS)
            .connect_with(options)
            .await?;
        Self::migrated(pool, migrator).await
    }

    /// A fresh private database in memory, for tests. It lives in one connection, which the
    /// pool never closes (closing it would lose the data), so calls take turns.
    pub async fn in_memory(migrator: &Migrator) -> Result<Self, sqlx::Error> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        Self::migrated(pool, migrator).await
    }

    async fn migrated(pool: SqlitePool, migrator: &Migrator) -> Result<Self, sqlx::Error> {
        migrator.run(&pool).await?;
        Ok(SqliteDb {
            pool,
            writer: Arc::new(Mutex::new(())),
        })
    }

    /// Starts a write transaction (see [`Write`]), after the writes of this process queued
    /// before it.
    pub async fn write(&self) -> Result<Write, sqlx::Error> {
        let turn = self.writer.clone().lock_owned().await;
        let tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        Ok(Write {
            tx,
            now: Stamp::now(),
            _turn: turn,
        })
    }

    /// Starts a read transaction: one snapshot for reads of several statements.
    pub async fn read(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin().await
    }

    /// The pool, for single-statement reads (each is its own snapshot). Writes go through
    /// [`SqliteDb::write`], or they would bypass the queue and could meet SQLITE_BUSY.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Waits for in-flight calls and closes the database, checkpointing the WAL into the file.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static NO_MIGRATIONS: Migrator = Migrator::DEFAULT;

    #[test]
    fn stamps_keep_microseconds_and_truncate_like_sqlx_does_for_postgres() {
        let at = datetime!(2026-11-28 12:34:56.123456789 UTC);
        let stamp = Stamp::from_time(at);
        assert_eq!(
            stamp.to_time().ok(),
            Some(datetime!(2026-11-28 12:34:56.123456 UTC))
        );
        // Before 2000 sqlx truncates towards 2000-01-01, that is upwards.
        let old = datetime!(1999-12-31 23:59:59.000001500 UTC);
        assert_eq!(
            Stamp::from_time(old).to_time().ok(),
            Some(datetime!(1999-12-31 23:59:59.000002 UTC))
        );
        assert_eq!(Stamp::from_time(OffsetDateTime::UNIX_EPOCH), Stamp(0));
        assert!(Stamp::from_time(datetime!(0001-01-01 0:00 UTC)) < Stamp(0));
    }

    #[test]
    fn a_stamp_beyond_any_time_is_a_decode_error() {
        let err = Stamp::from_unix_micros(i64::MAX)
            .to_time()
            .expect_err("beyond year 9999");
        let sqlx::Error::Decode(source) = &err else {
            panic!("not a decode error: {err}");
        };
        assert_eq!(
            source.downcast_ref::<StampOutOfRange>(),
            Some(&StampOutOfRange(i64::MAX))
        );
        assert_eq!(opt_time(None).ok(), Some(None));
    }

    #[tokio::test]
    async fn stamps_round_trip_through_sqlite_and_order_as_numbers() {
        let db = SqliteDb::in_memory(&NO_MIGRATIONS).await.expect("open");
        let earlier = Stamp::from_time(datetime!(2026-11-28 12:00:00.5 UTC));
        let later = Stamp::from_time(datetime!(2026-11-28 12:00:01 UTC));
        let mut w = db.write().await.expect("write");
        sqlx::query("CREATE TABLE t (at INTEGER NOT NULL)")
            .execute(w.conn())
            .await
            .expect("create");
        for at in [later, earlier] {
            sqlx::query("INSERT INTO t (at) VALUES ($1)")
                .bind(at)
                .execute(w.conn())
                .await
                .expect("insert");
        }
        w.commit().await.expect("commit");
        let read: Vec<Stamp> = sqlx::query_scalar("SELECT at FROM t ORDER BY at")
            .fetch_all(db.pool())
            .await
            .expect("read");
        assert_eq!(read, [earlier, later]);
        db.close().await;
    }

    #[tokio::test]
    async fn writes_take_turns_and_a_dropped_write_rolls_back() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = SqliteDb::open(dir.path().join("t.db"), &NO_MIGRATIONS)
            .await
            .expect("open");
        let mut w = db.write().await.expect("write");
        sqlx::query("CREATE TABLE t (n INTEGER NOT NULL)")
            .execute(w.conn())
            .await
            .expect("create");
        w.commit().await.expect("commit");

        let mut first = db.write().await.expect("first");
        sqlx::query("INSERT INTO t (n) VALUES (1)")
            .execute(first.conn())
            .await
            .expect("insert");
        // The second writer waits for the first's turn, not for SQLite's busy timeout.
        let second = tokio::spawn({
            let db = db.clone();
            async move {
                let w = db.write().await.expect("second");
                w.now
            }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "the second writer waits its turn");
        let first_now = first.now;
        drop(first);
        let second_now = second.await.expect("task");
        assert!(second_now >= first_now, "times follow the order of writes");
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
            .fetch_one(db.pool())
            .await
            .expect("count");
        assert_eq!(rows, 0, "the dropped write rolled back");
        db.close().await;
    }

    #[tokio::test]
    async fn another_process_holding_the_lock_is_busy_after_the_timeout() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("t.db");
        let db = SqliteDb::open(&path, &NO_MIGRATIONS).await.expect("open");
        // Another "process": its own connection, with a short busy timeout of its own.
        let mut other = <SqliteConnection as sqlx::Connection>::connect_with(
            &SqliteConnectOptions::new()
                .filename(&path)
                .busy_timeout(Duration::from_millis(10)),
        )
        .await
        .expect("other connection");
        let w = db.write().await.expect("write");
        let err = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect_err("the lock is held");
        assert!(is_busy(&err), "{err}");
        assert!(!is_busy(&sqlx::Error::RowNotFound));
        drop(w);
        sqlx::Connection::close(other).await.expect("close");
        db.close().await;
    }
}
