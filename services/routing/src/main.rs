//! `tierline-routing`: runs the routing service. Configuration: `deploy/routing.toml`.
#![forbid(unsafe_code)]

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tierline_runtime::process::run("tierline-routing", tierline_routing::serve).await
}
