//! What can go wrong, how it is shown, and the exit status it gives.

use std::error::Error as _;
use std::fmt;

use serde_json::{Value, json};
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// The services the client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// customer-profile, :50051.
    Customer,
    /// ticket, :50052.
    Ticket,
    /// routing, :50053.
    Routing,
}

impl Service {
    /// The name people know it by.
    pub fn name(self) -> &'static str {
        match self {
            Service::Customer => "customer-profile",
            Service::Ticket => "ticket",
            Service::Routing => "routing",
        }
    }

    /// The flag that sets its address.
    pub fn flag(self) -> &'static str {
        match self {
            Service::Customer => "--customer-addr",
            Service::Ticket => "--ticket-addr",
            Service::Routing => "--routing-addr",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failure of a command.
#[derive(Debug)]
pub enum CliError {
    /// The command line asks for something impossible (exit status 2).
    Usage(String),
    /// A service cannot be reached (exit status 3).
    Unreachable {
        /// Which.
        service: Service,
        /// Where it was looked for.
        addr: String,
        /// What the transport said.
        detail: String,
    },
    /// A service answered with an error (exit status 1).
    Call {
        /// Which.
        service: Service,
        /// Its answer.
        status: Box<Status>,
    },
    /// Anything else that makes the command fail (exit status 1).
    Failed(String),
}

impl CliError {
    /// The error a call's status means: a transport failure (the server never answered) is
    /// [`CliError::Unreachable`], anything the server said is [`CliError::Call`].
    pub fn from_status(service: Service, addr: &str, status: Status) -> CliError {
        if is_transport_failure(&status) {
            return CliError::Unreachable {
                service,
                addr: addr.to_owned(),
                detail: error_chain(&status),
            };
        }
        CliError::Call {
            service,
            status: Box::new(status),
        }
    }

    /// The process exit status.
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Unreachable { .. } => 3,
            CliError::Call { .. } | CliError::Failed(_) => 1,
        }
    }

    /// The status code of a failed call, if this is one.
    pub fn code(&self) -> Option<Code> {
        match self {
            CliError::Call { status, .. } => Some(status.code()),
            _ => None,
        }
    }

    /// For people: `error: <CODE>: <message>` and one indented line per detail.
    pub fn render(&self) -> String {
        match self {
            CliError::Usage(m) => format!("error: {m}"),
            CliError::Failed(m) => format!("error: {m}"),
            CliError::Unreachable {
                service,
                addr,
                detail,
            } => format!(
                "error: cannot reach the {service} service at {addr}: {detail}\n  (is it running? \
                 set its address with {} or {})",
                service.flag(),
                env_var(*service)
            ),
            CliError::Call { status, .. } => render_status(status),
        }
    }

    /// For scripts: `{"error": {...}}` with the code, message and details.
    pub fn to_json(&self) -> Value {
        let inner = match self {
            CliError::Usage(m) => json!({"code": "USAGE", "message": m}),
            CliError::Failed(m) => json!({"code": "FAILED", "message": m}),
            CliError::Unreachable {
                service,
                addr,
                detail,
            } => json!({
                "code": "UNREACHABLE",
                "service": service.name(),
                "address": addr,
                "message": detail,
            }),
            CliError::Call { service, status } => {
                let details = status.get_error_details();
                let violations: Vec<Value> = details
                    .bad_request()
                    .map(|b| {
                        b.field_violations
                            .iter()
                            .map(|v| json!({"field": v.field, "description": v.description}))
                            .collect()
                    })
                    .unwrap_or_default();
                let preconditions: Vec<Value> = details
                    .precondition_failure()
                    .map(|p| {
                        p.violations
                            .iter()
                            .map(|v| {
                                json!({"type": v.r#type, "subject": v.subject,
                                       "description": v.description})
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut out = json!({
                    "code": code_name(status.code()),
                    "service": service.name(),
                    "message": status.message(),
                    "field_violations": violations,
                    "precondition_violations": preconditions,
                });
                if let (Some(info), Some(map)) = (details.error_info(), out.as_object_mut()) {
                    map.insert(
                        "reason".into(),
                        json!({"reason": info.reason, "domain": info.domain,
                               "metadata": info.metadata}),
                    );
                }
                out
            }
        };
        json!({ "error": inner })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for CliError {}

fn env_var(service: Service) -> &'static str {
    match service {
        Service::Customer => "TIERLINE_CUSTOMER_ADDR",
        Service::Ticket => "TIERLINE_TICKET_ADDR",
        Service::Routing => "TIERLINE_ROUTING_ADDR",
    }
}

/// `error: INVALID_ARGUMENT: message` and the details the services attach: field violations,
/// precondition violations, the ErrorInfo reason.
pub fn render_status(status: &Status) -> String {
    let mut out = format!(
        "error: {}: {}",
        code_name(status.code()),
        if status.message().is_empty() {
            "(no message)"
        } else {
            status.message()
        }
    );
    let details = status.get_error_details();
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            out.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    if let Some(failure) = details.precondition_failure() {
        for v in &failure.violations {
            let what = [v.r#type.as_str(), v.subject.as_str()]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            if v.description == status.message() || v.description.is_empty() {
                out.push_str(&format!("\n  precondition {what}"));
            } else {
                out.push_str(&format!("\n  precondition {what}: {}", v.description));
            }
        }
    }
    if let Some(info) = details.error_info() {
        let mut meta: Vec<String> = info
            .metadata
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        meta.sort();
        let meta = if meta.is_empty() {
            String::new()
        } else {
            format!(" {}", meta.join(" "))
        };
        out.push_str(&format!(
            "\n  reason: {} ({}){meta}",
            info.reason, info.domain
        ));
    }
    out
}

/// The canonical upper-case name of a gRPC code: `INVALID_ARGUMENT`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Whether a status was made on this side because the connection failed, rather than sent by
/// the server: tonic keeps the transport error as the status's source.
pub fn is_transport_failure(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.source().is_some()
}

/// An error and its causes, joined with ": ", without repeats.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::{ErrorDetails, FieldViolation};

    fn bad_follow_up() -> Status {
        let details = ErrorDetails::with_bad_request(vec![FieldViolation::new(
            "expected",
            "must be greater than 0 and at most 10",
        )]);
        Status::with_error_details(Code::InvalidArgument, "invalid follow-up", details)
    }

    #[test]
    fn a_call_error_names_the_code_the_message_and_each_field() {
        let e = CliError::from_status(Service::Ticket, "http://x", bad_follow_up());
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.render(),
            "error: INVALID_ARGUMENT: invalid follow-up\n  expected: must be greater than 0 and \
             at most 10"
        );
        let j = e.to_json();
        assert_eq!(j["error"]["code"], "INVALID_ARGUMENT");
        assert_eq!(j["error"]["field_violations"][0]["field"], "expected");
    }

    #[test]
    fn precondition_failures_show_their_reason() {
        let mut details = ErrorDetails::with_error_info(
            "ILLEGAL_TRANSITION",
            "tierline.ticket",
            [("state".to_owned(), "QUEUED".to_owned())],
        );
        details.add_precondition_failure_violation(
            "STATE",
            "ticket",
            "cannot move from QUEUED to RESOLVED",
        );
        let status =
            Status::with_error_details(Code::FailedPrecondition, "illegal transition", details);
        let text = render_status(&status);
        assert!(text.starts_with("error: FAILED_PRECONDITION: illegal transition"));
        assert!(text.contains("precondition STATE ticket: cannot move from QUEUED to RESOLVED"));
        assert!(text.contains("reason: ILLEGAL_TRANSITION (tierline.ticket) state=QUEUED"));
    }

    #[test]
    fn exit_statuses_tell_usage_call_and_reachability_apart() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Failed("x".into()).exit_code(), 1);
        let unreachable = CliError::Unreachable {
            service: Service::Routing,
            addr: "http://127.0.0.1:1".into(),
            detail: "connection refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 3);
        assert!(
            unreachable
                .render()
                .contains("routing service at http://127.0.0.1:1")
        );
        assert!(unreachable.render().contains("TIERLINE_ROUTING_ADDR"));
        // A status the server sent (no transport source) is a call failure, even UNAVAILABLE.
        let e = CliError::from_status(Service::Routing, "x", Status::unavailable("rebuilding"));
        assert_eq!(e.exit_code(), 1);
    }
}
