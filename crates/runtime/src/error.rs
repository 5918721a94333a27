//! The one mapping from domain errors to gRPC statuses.
//!
//! Each crate keeps its own error enum and implements [`ServiceError`] for it, saying which
//! [`ErrorKind`] each variant is. [`to_status`] turns any of them into a `tonic::Status` with
//! `google.rpc` details: field violations for bad input, a precondition failure for an illegal
//! state change, and an `ErrorInfo` reason. Internal errors are logged here and never leaked.

use std::collections::HashMap;
use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of an error whose service names none (see
/// [`ServiceError::domain`]).
pub const ERROR_DOMAIN: &str = "tierline.dev";

/// What kind of failure an error is, from the client's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong; [`ServiceError::field_violations`] says where.
    InvalidArgument,
    /// A named resource does not exist.
    NotFound,
    /// A resource with the same identity exists already.
    AlreadyExists,
    /// The resource's state does not allow the operation (an illegal state change).
    FailedPrecondition,
    /// Optimistic concurrency lost: the resource changed since the version the client read.
    Aborted,
    /// A dependency is down or the server is overloaded; retrying later may work.
    Unavailable,
    /// A deadline passed before the work finished.
    DeadlineExceeded,
    /// The caller is not allowed to do this.
    PermissionDenied,
    /// A position (a stream cursor) outside what the server keeps.
    OutOfRange,
    /// A fault of ours. Logged; the client sees only that something went wrong.
    Internal,
}

impl ErrorKind {
    /// The gRPC code of this kind.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::Aborted => Code::Aborted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::OutOfRange => Code::OutOfRange,
            ErrorKind::Internal => Code::Internal,
        }
    }
}

/// One offending field of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field in the request, proto names joined by dots (`customer.display_name`).
    pub field: String,
    /// What is wrong with it, lower case, no trailing punctuation.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        FieldViolation {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation under a parent path (`identity` → `customer.identity`).
    pub fn nested(mut self, parent: &str) -> Self {
        if !parent.is_empty() {
            self.field = if self.field.is_empty() {
                parent.to_owned()
            } else {
                format!("{parent}.{}", self.field)
            };
        }
        self
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// Collects every field violation of a request, so the client hears about all of them at once.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Violations(Vec::new())
    }

    /// Records a violation of `field`.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the violations of a nested message under `parent`.
    pub fn extend_nested(&mut self, parent: &str, others: Violations) {
        self.0
            .extend(others.0.into_iter().map(|v| v.nested(parent)));
    }

    /// Keeps the value of a parse, or records its violation under `field`.
    pub fn take<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(description) => {
                self.add(field, description);
                None
            }
        }
    }

    /// Keeps the value of a nested parse, or records its violations under `parent`.
    pub fn take_nested<T>(&mut self, parent: &str, parsed: Result<T, Violations>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(others) => {
                self.extend_nested(parent, others);
                None
            }
        }
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else the violations.
    pub fn finish<T>(self, value: impl FnOnce() -> T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value())
        } else {
            Err(self)
        }
    }

    /// The recorded violations.
    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }
}

impl From<FieldViolation> for Violations {
    fn from(v: FieldViolation) -> Self {
        Violations(vec![v])
    }
}

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// What every domain error enum tells the gRPC layer about itself.
pub trait ServiceError: std::error::Error {
    /// What kind of failure this is.
    fn kind(&self) -> ErrorKind;

    /// A stable machine-readable reason in UPPER_SNAKE_CASE (`STALE_VERSION`), sent as
    /// `google.rpc.ErrorInfo.reason`.
    fn reason(&self) -> &'static str;

    /// The offending fields, for [`ErrorKind::InvalidArgument`].
    fn field_violations(&self) -> &[FieldViolation] {
        &[]
    }

    /// For [`ErrorKind::FailedPrecondition`]: the violated condition as (type, subject).
    fn precondition(&self) -> Option<(&'static str, String)> {
        None
    }

    /// The `google.rpc.ErrorInfo.domain` the reasons belong to: the service's, as its proto
    /// documents (`tierline.ticket`, `tierline.routing`, ...).
    fn domain(&self) -> &'static str {
        ERROR_DOMAIN
    }
}

/// Turns a domain error into the status the client receives.
pub fn to_status<E: ServiceError>(err: &E) -> Status {
    let kind = err.kind();
    if kind == ErrorKind::Internal {
        tracing::error!(error = %DisplayChain(err), "internal error");
        return Status::internal("internal error; it has been logged");
    }
    let mut details = ErrorDetails::new();
    details.set_error_info(err.reason(), err.domain(), HashMap::new());
    for v in err.field_violations() {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    if let Some((kind, subject)) = err.precondition() {
        details.add_precondition_failure_violation(kind, subject, err.to_string());
    }
    if kind == ErrorKind::Unavailable {
        tracing::warn!(error = %DisplayChain(err), "dependency unavailable");
    }
    Status::with_error_details(kind.code(), err.to_string(), details)
}

/// Displays an error with its whole `source()` chain, for logs.
pub struct DisplayChain<'a, E: ?Sized>(pub &'a E);

impl<E: std::error::Error + ?Sized> fmt::Display for DisplayChain<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum TestError {
        #[error("invalid request: {0}")]
        Invalid(Violations),
        #[error("database fell over: secret dsn")]
        Db,
        #[error("ticket is closed")]
        Closed,
    }

    impl ServiceError for TestError {
        fn kind(&self) -> ErrorKind {
            match self {
                TestError::Invalid(_) => ErrorKind::InvalidArgument,
                TestError::Db => ErrorKind::Internal,
                TestError::Closed => ErrorKind::FailedPrecondition,
            }
        }
        fn reason(&self) -> &'static str {
            match self {
                TestError::Invalid(_) => "INVALID_ARGUMENT",
                TestError::Db => "INTERNAL",
                TestError::Closed => "TICKET_CLOSED",
            }
        }
        fn field_violations(&self) -> &[FieldViolation] {
            match self {
                TestError::Invalid(v) => v.as_slice(),
                _ => &[],
            }
        }
        fn precondition(&self) -> Option<(&'static str, String)> {
            match self {
                TestError::Closed => Some(("STATE", "tickets/1".into())),
                _ => None,
            }
        }
    }

    #[test]
    fn invalid_argument_carries_every_field_violation() {
        let mut v = Violations::new();
        v.add("display_name", "must not be empty");
        let mut nested = Violations::new();
        nested.add("value", "not a phone number");
        v.extend_nested("identities[0]", nested);
        let status = to_status(&TestError::Invalid(v));
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        let fields: Vec<_> = bad
            .field_violations
            .iter()
            .map(|f| f.field.as_str())
            .collect();
        assert_eq!(fields, ["display_name", "identities[0].value"]);
        assert_eq!(
            details.error_info().map(|i| i.reason.as_str()),
            Some("INVALID_ARGUMENT")
        );
        assert_eq!(
            details.error_info().map(|i| i.domain.as_str()),
            Some(ERROR_DOMAIN),
            "a service that names no domain gets the default"
        );
    }

    #[test]
    fn internal_errors_are_not_leaked() {
        let status = to_status(&TestError::Db);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    #[test]
    fn failed_precondition_names_the_condition() {
        let status = to_status(&TestError::Closed);
        assert_eq!(status.code(), Code::FailedPrecondition);
        let details = status.get_error_details();
        let pf = details
            .precondition_failure()
            .expect("precondition details");
        assert_eq!(pf.violations[0].r#type, "STATE");
    }
}
