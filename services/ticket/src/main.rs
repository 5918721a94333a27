//! `tierline-ticket`: runs the ticket service. Configuration: `deploy/ticket.toml`.
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tierline_runtime::process::run("tierline-ticket", tierline_ticket::serve).await
}
