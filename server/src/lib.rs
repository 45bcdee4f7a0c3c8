//! `worklease-server`: the documented work endpoints (docs/contract.md §3) over HTTP, with the
//! operations endpoints of docs/contract.md §8, as a library with one entry point ([`main`]),
//! which the `worklease-server` binary calls. Everything else is the crate's own.
//!
//! The fault injectors the server's tests drive (cutting a member's links, dropping forwarded
//! answers, skewing a member's clock) are compiled into the crate's own tests and, for other
//! builds, only with feature `testing`; release builds have none of them.

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
mod log;
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

/// Parses the command line (`worklease-server --help` lists the flags), runs the server until
/// it is stopped, and says how it ended.
///
/// The first line on stdout is `listening on http://ADDR` (`https://` with `--tls-cert`), so
/// scripts (and the tests) can start it on port 0 and read the port back. Logs go to stderr.
#[must_use]
pub fn main() -> ExitCode {
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
