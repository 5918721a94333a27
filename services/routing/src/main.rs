//! `tierline-routing`: runs the routing service. Configuration: `deploy/routing.toml`.
#![forbid(unsafe_code)]

/// mimalloc rather than glibc malloc: the services allocate from many threads at once, and
/// glibc's arena locks and consolidation were a third of the router's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tierline_runtime::process::run("tierline-routing", tierline_routing::serve).await
}
