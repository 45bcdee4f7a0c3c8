//! `worklease-server`: the documented work endpoints (docs/contract.md §3) over HTTP, with the operations
//! endpoints of docs/contract.md §8. `worklease-server --help` lists the flags.
//!
//! The first line on stdout is `listening on http://ADDR` (`https://` with `--tls-cert`), so scripts (and the tests) can start
//! it on port 0 and read the port back. Logs go to stderr.

use std::process::ExitCode;

use clap::Parser;

mod access;
mod app;
mod backup;
mod cli;
mod clock;
mod cluster_secret;
#[cfg(test)]
mod cluster_tests;
mod http;
mod metrics;
mod mint;
mod origin;
mod pollers;
mod raft;
mod request;
mod run;
mod submit;
mod sweeper;
mod tls;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    if let Some(cli::Command::Restore(args)) = &cli.command {
        return backup::restore(args);
    }
    if let Err(message) = cli.check() {
        use clap::CommandFactory;
        cli::Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, message)
            .exit();
    }
    run::main(cli)
}
