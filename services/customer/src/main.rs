//! `tierline-customer`: runs the customer-profile service. Configuration: `deploy/customer.toml`.
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tierline_runtime::process::run("tierline-customer", tierline_customer::serve).await
}
