//! The customer service's one error type.

use tierline_runtime::error::{ErrorKind, FieldViolation, ServiceError};
use tierline_runtime::{Violations, db};

/// Everything that can go wrong in the customer service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the violations name each field.
    #[error("invalid request: {0}")]
    InvalidArgument(Violations),
    /// No such resource.
    #[error("{what} {id} not found")]
    NotFound {
        /// Which kind of resource.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The identity belongs to another customer.
    #[error("{kind} {value} already belongs to another customer")]
    IdentityTaken {
        /// Kind of identity.
        kind: &'static str,
        /// Normalised value.
        value: String,
    },
    /// Optimistic concurrency lost.
    #[error("customer {id} is at version {actual}, not the expected {expected}; read it again")]
    StaleVersion {
        /// The customer.
        id: String,
        /// What the client expected.
        expected: i64,
        /// What is stored.
        actual: i64,
    },
    /// The resource's state does not allow the operation.
    #[error("{message}")]
    FailedPrecondition {
        /// Stable reason code.
        reason: &'static str,
        /// The resource concerned.
        subject: String,
        /// What is wrong, for people.
        message: String,
    },
    /// The database could not be reached (PostgreSQL), or stayed busy or locked past the busy
    /// timeout (SQLite).
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A fault of ours.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// Stored data does not parse: a bug or a manual edit.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl Error {
    /// A violation of one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(FieldViolation::new(field, description).into())
    }

    /// NOT_FOUND for a customer.
    pub fn customer_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what: "customer",
            id: id.to_string(),
        }
    }
}

impl From<Violations> for Error {
    fn from(v: Violations) -> Self {
        Error::InvalidArgument(v)
    }
}

impl From<sqlx::Error> for Error {
    fn from(err: sqlx::Error) -> Self {
        if db::is_unavailable(&err) || is_sqlite_busy(&err) {
            Error::Unavailable(err)
        } else {
            Error::Database(err)
        }
    }
}

/// True if `err` is SQLite's SQLITE_BUSY or SQLITE_LOCKED (any extended code): another
/// connection held the lock for longer than the busy timeout. Like a pool timeout in
/// PostgreSQL, the database is overloaded rather than the query wrong, so the caller may retry.
fn is_sqlite_busy(err: &sqlx::Error) -> bool {
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

impl ServiceError for Error {
    fn domain(&self) -> &'static str {
        "tierline.customer"
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::IdentityTaken { .. } => ErrorKind::AlreadyExists,
            Error::StaleVersion { .. } => ErrorKind::Aborted,
            Error::FailedPrecondition { .. } => ErrorKind::FailedPrecondition,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Database(_) | Error::Corrupt(_) => ErrorKind::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::IdentityTaken { .. } => "IDENTITY_TAKEN",
            Error::StaleVersion { .. } => "STALE_VERSION",
            Error::FailedPrecondition { reason, .. } => reason,
            Error::Unavailable(_) => "DATABASE_UNAVAILABLE",
            Error::Database(_) | Error::Corrupt(_) => "INTERNAL",
        }
    }

    fn field_violations(&self) -> &[FieldViolation] {
        match self {
            Error::InvalidArgument(v) => v.as_slice(),
            _ => &[],
        }
    }

    fn precondition(&self) -> Option<(&'static str, String)> {
        match self {
            Error::FailedPrecondition {
                reason, subject, ..
            } => Some((reason, subject.clone())),
            _ => None,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(err: Error) -> Self {
        tierline_runtime::error::to_status(&err)
    }
}

/// Result of the customer service.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use sqlx::Connection;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

    use super::*;

    #[tokio::test]
    async fn a_sqlite_file_locked_by_another_writer_is_unavailable_and_a_bad_query_internal() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("locked.db"))
            .create_if_missing(true)
            .busy_timeout(Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&options)
            .await
            .expect("connect");
        let mut waiter = SqliteConnection::connect_with(&options)
            .await
            .expect("connect");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut holder)
            .await
            .expect("take the write lock");
        let busy = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut waiter)
            .await
            .expect_err("the lock is held");
        let err = Error::from(busy);
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Unavailable);

        let bad = sqlx::query("SELEC 1")
            .execute(&mut waiter)
            .await
            .expect_err("syntax");
        assert!(matches!(Error::from(bad), Error::Database(_)));
    }
}
