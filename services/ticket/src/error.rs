//! The ticket service's one error type.

use tierline_runtime::error::{ErrorKind, FieldViolation, ServiceError};
use tierline_runtime::{Violations, db, sqlite};

/// Everything that can go wrong in the ticket service.
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
    /// Optimistic concurrency lost.
    #[error("ticket {id} is at version {actual}, not the expected {expected}; read it again")]
    StaleVersion {
        /// The ticket.
        id: String,
        /// What the client expected.
        expected: i64,
        /// What is stored.
        actual: i64,
    },
    /// The resource's state does not allow the operation.
    #[error("{message}")]
    FailedPrecondition {
        /// Stable reason code (`ILLEGAL_TRANSITION`, `IDEMPOTENCY_KEY_REUSED`, ...).
        reason: &'static str,
        /// The resource concerned (`tickets/<id>`).
        subject: String,
        /// What is wrong, for people.
        message: String,
    },
    /// A cursor outside the retained event log.
    #[error("{0}")]
    OutOfRange(String),
    /// The database could not be reached, or (SQLite) another process held its write lock
    /// past the busy timeout.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// A service this one needs for the request (the customer service) did not answer.
    #[error("{0}")]
    DependencyUnavailable(String),
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

    /// NOT_FOUND for a ticket.
    pub fn ticket_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what: "ticket",
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
        // SQLite's BUSY/LOCKED is its overload signal, as a pool timeout is PostgreSQL's: retry.
        if db::is_unavailable(&err) || sqlite::is_busy(&err) {
            Error::Unavailable(err)
        } else {
            Error::Database(err)
        }
    }
}

impl ServiceError for Error {
    fn domain(&self) -> &'static str {
        "tierline.ticket"
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::StaleVersion { .. } => ErrorKind::Aborted,
            Error::FailedPrecondition { .. } => ErrorKind::FailedPrecondition,
            Error::OutOfRange(_) => ErrorKind::OutOfRange,
            Error::Unavailable(_) | Error::DependencyUnavailable(_) => ErrorKind::Unavailable,
            Error::Database(_) | Error::Corrupt(_) => ErrorKind::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::StaleVersion { .. } => "STALE_VERSION",
            Error::FailedPrecondition { reason, .. } => reason,
            Error::OutOfRange(_) => "CURSOR_OUT_OF_RANGE",
            Error::Unavailable(_) => "DATABASE_UNAVAILABLE",
            Error::DependencyUnavailable(_) => "DEPENDENCY_UNAVAILABLE",
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

/// Result of the ticket service.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::domain::ticket::RuleError> for Error {
    fn from(err: crate::domain::ticket::RuleError) -> Self {
        use crate::domain::state::TransitionError;
        use crate::domain::ticket::RuleError;
        match err {
            RuleError::Transition(TransitionError::Invalid(v)) => Error::InvalidArgument(v),
            RuleError::Transition(illegal @ TransitionError::Illegal { .. }) => {
                let reason = tierline_runtime::ServiceError::reason(&illegal);
                Error::FailedPrecondition {
                    reason,
                    subject: "ticket".into(),
                    message: illegal.to_string(),
                }
            }
            RuleError::Category(v) => Error::InvalidArgument(v.into()),
            // Configuration is validated at start; reaching these is a bug.
            RuleError::Calendar(e) => Error::Corrupt(format!("sla calendar: {e}")),
            RuleError::UnknownPolicy(p) => {
                Error::Corrupt(format!("sla policy {p:?} not configured"))
            }
        }
    }
}

impl From<crate::domain::ticket::FollowUpOrRule> for Error {
    fn from(err: crate::domain::ticket::FollowUpOrRule) -> Self {
        use crate::domain::ticket::{FollowUpError, FollowUpOrRule};
        match err {
            FollowUpOrRule::Rule(rule) => rule.into(),
            FollowUpOrRule::FollowUp(f) => Error::FailedPrecondition {
                reason: match f {
                    FollowUpError::NotResolved(_) => "TICKET_NOT_RESOLVED",
                    FollowUpError::OwnFollowUp(_) => "OWN_FOLLOW_UP",
                    FollowUpError::AlreadyRecorded => "FOLLOW_UP_ALREADY_RECORDED",
                },
                subject: "ticket".into(),
                message: f.to_string(),
            },
        }
    }
}

impl From<crate::domain::patch::PatchError> for Error {
    fn from(err: crate::domain::patch::PatchError) -> Self {
        use crate::domain::patch::PatchError;
        match err {
            PatchError::Invalid(v) => Error::InvalidArgument(v),
            PatchError::Calendar(e) => Error::Corrupt(format!("sla calendar: {e}")),
            other => Error::FailedPrecondition {
                reason: ServiceError::reason(&other),
                subject: "ticket".into(),
                message: other.to_string(),
            },
        }
    }
}

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
        let err = Error::from(bad);
        assert!(matches!(err, Error::Database(_)), "{err:?}");
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert!(matches!(
            Error::from(sqlx::Error::PoolClosed),
            Error::Unavailable(_)
        ));
    }
}
