//! The routing service's one error type, and its mapping to gRPC status codes.

use tierline_runtime::error::{ErrorKind, FieldViolation, ServiceError};
use tierline_runtime::{Violations, db, sqlite};

use crate::live::LiveError;

/// Everything that can go wrong in the routing service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed; the violations name each field.
    #[error("invalid request: {0}")]
    InvalidArgument(Violations),
    /// No such resource.
    #[error("{what} {id} not found")]
    NotFound {
        /// Which kind of resource ("agent", "ticket", "reservation").
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// Optimistic concurrency lost (an agent record's `expected_version`).
    #[error("{what} {id} is at version {actual}, not the expected {expected}; read it again")]
    StaleVersion {
        /// Which kind of resource.
        what: &'static str,
        /// The resource.
        id: String,
        /// What the client expected.
        expected: i64,
        /// What is stored (0: it does not exist).
        actual: i64,
    },
    /// The state does not allow the call.
    #[error("{message}")]
    FailedPrecondition {
        /// Stable reason code (`OFFER_NOT_YOURS`, `OFFER_NOT_PENDING`, ...).
        reason: &'static str,
        /// The resource concerned (`reservations/<id>`, `agents/<id>`).
        subject: String,
        /// What is wrong, for people.
        message: String,
    },
    /// The database could not be reached (PostgreSQL), or another process held SQLite's write
    /// lock past the busy timeout.
    #[error("database unavailable")]
    DatabaseUnavailable(#[source] sqlx::Error),
    /// Redis could not be reached, or the live state is being rebuilt.
    #[error("live state unavailable: {0}")]
    LiveUnavailable(String),
    /// A service this one needs for the call (the ticket service) did not answer.
    #[error("{0}")]
    DependencyUnavailable(String),
    /// A fault of ours in the database.
    #[error("database error")]
    Database(#[source] sqlx::Error),
    /// A fault of ours in the live state (script error, unexpected data).
    #[error("live state error")]
    Live(#[source] LiveError),
    /// Stored data does not parse: a bug or a manual edit.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
}

impl Error {
    /// A violation of one field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::InvalidArgument(FieldViolation::new(field, description).into())
    }

    /// NOT_FOUND for an agent.
    pub fn agent_not_found(id: impl std::fmt::Display) -> Self {
        Error::NotFound {
            what: "agent",
            id: id.to_string(),
        }
    }

    /// FAILED_PRECONDITION with a stable reason.
    pub fn precondition(
        reason: &'static str,
        subject: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Error::FailedPrecondition {
            reason,
            subject: subject.into(),
            message: message.into(),
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
        if db::is_unavailable(&err) || sqlite::is_busy(&err) {
            Error::DatabaseUnavailable(err)
        } else {
            Error::Database(err)
        }
    }
}

impl From<LiveError> for Error {
    fn from(err: LiveError) -> Self {
        match err {
            LiveError::Unavailable(e) => Error::LiveUnavailable(e.to_string()),
            LiveError::Contended(m) => Error::LiveUnavailable(m),
            LiveError::InvalidArgument(m) => Error::invalid("request", m),
            other => Error::Live(other),
        }
    }
}

impl ServiceError for Error {
    fn domain(&self) -> &'static str {
        "tierline.routing"
    }

    fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::StaleVersion { .. } => ErrorKind::Aborted,
            Error::FailedPrecondition { .. } => ErrorKind::FailedPrecondition,
            Error::DatabaseUnavailable(_)
            | Error::LiveUnavailable(_)
            | Error::DependencyUnavailable(_) => ErrorKind::Unavailable,
            Error::Database(_) | Error::Live(_) | Error::Corrupt(_) => ErrorKind::Internal,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Error::InvalidArgument(_) => "INVALID_ARGUMENT",
            Error::NotFound { .. } => "NOT_FOUND",
            Error::StaleVersion { .. } => "STALE_VERSION",
            Error::FailedPrecondition { reason, .. } => reason,
            Error::DatabaseUnavailable(_) => "DATABASE_UNAVAILABLE",
            Error::LiveUnavailable(_) => "LIVE_STATE_UNAVAILABLE",
            Error::DependencyUnavailable(_) => "DEPENDENCY_UNAVAILABLE",
            Error::Database(_) | Error::Live(_) | Error::Corrupt(_) => "INTERNAL",
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

/// Result of the routing service.
pub type Result<T, E = Error> = std::result::Result<T, E>;
