//! `tierline`: parse the command line, run it, report the outcome as the exit status
//! (0 success, 1 a call failed, 2 usage, 3 a service unreachable).
#![forbid(unsafe_code)]

use clap::Parser as _;
use tierline_cli::args::Cli;

fn main() {
    // Usage errors print clap's message and exit 2; --help and --version exit 0.
    let cli = Cli::parse();
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(tierline_cli::run(cli)) {
        Ok(()) => 0,
        Err(e) => {
            if json {
                eprintln!("{}", e.to_json());
            } else {
                eprintln!("{}", e.render());
            }
            e.exit_code()
        }
    };
    // A blocked read of standard input (the desktop's) must not hold the exit up.
    runtime.shutdown_background();
    std::process::exit(code);
}
