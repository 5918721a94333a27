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
        if db::is_unavailable(&err) || tierline_runtime::sqlite::is_busy(&err) {
            Error::Unavailable(err)
        } else {
            Error::Database(err)
        }
    }
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
