//! The `worklease-server` binary: everything is in the library (`worklease_server::main`).

use std::process::ExitCode;

fn main() -> ExitCode {
    worklease_server::main()
}
