//! The reference HTTP server: the documented work endpoints over one [`LeaseTable`].
//!
//! ```text
//! cargo run --release --example server --features serde -- [--listen ADDR] [--token T]
//!     [--default-ttl-seconds N] [--max-attempts N] [--keep-stopped-seconds N]
//! ```
//!
//! Routes, under `/api/v1/cloud/environments/{environment_id}/work` and, identically, under
//! `/v1/environments/{environment_id}/work`: `GET /poll`, `POST /{work_id}/ack`,
//! `POST /{work_id}/heartbeat`, `POST /{work_id}/stop`, `GET /` (list), `GET /{work_id}`,
//! `POST /{work_id}` (metadata patch), `GET /stats`; plus `POST …/environments` and
//! `POST …/environments/{environment_id}/work`, which a real deployment fills from its own
//! session service.
//!
//! The first line on stdout is `listening on http://ADDR`, so scripts (and the tests) can start
//! it on port 0 and read the port back. Lease lapses and stops are logged on stderr.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use worklease::{Config, LeaseTable, Ttl};

mod app;
mod edge;

const USAGE: &str = "\
usage: server [--listen ADDR] [--token T] [--default-ttl-seconds N] [--max-attempts N]
              [--keep-stopped-seconds N]

  --listen ADDR              address to listen on (default 127.0.0.1:8080; port 0 picks one)
  --token T                  the bearer token clients must send (default: $WORKLEASE_TOKEN,
                             else one is generated and printed)
  --default-ttl-seconds N    lease TTL when a heartbeat names none, and of the lease an ack
                             opens: 10 to 600 (default 60)
  --max-attempts N           stop an item whose lease lapsed N times (default: no limit)
  --keep-stopped-seconds N   forget items stopped more than N seconds ago (checked every
                             N seconds, at most every minute; default: keep them all)";

/// The command line, checked.
#[derive(Debug)]
struct Options {
    listen: SocketAddr,
    token: Option<String>,
    config: Config,
    keep_stopped: Option<Duration>,
}

fn parse_options(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
    let mut listen: SocketAddr = ([127, 0, 0, 1], 8080).into();
    let mut token = None;
    let mut config = Config::default();
    let mut keep_stopped = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        if flag == "--help" || flag == "-h" {
            return Err(String::new());
        }
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => {
                let raw = value()?;
                listen = raw.parse().map_err(|_| {
                    format!("--listen: {raw:?} is not an address like 127.0.0.1:8080")
                })?;
            }
            "--token" => {
                let raw = value()?;
                check_token(&raw).map_err(|why| format!("--token: {why}"))?;
                token = Some(raw);
            }
            "--default-ttl-seconds" => {
                let raw = value()?;
                let seconds: u64 = raw
                    .parse()
                    .map_err(|_| format!("--default-ttl-seconds: {raw:?} is not a number"))?;
                let ttl = Ttl::from_seconds(seconds)
                    .map_err(|error| format!("--default-ttl-seconds: {error}"))?;
                config.default_ttl = ttl;
                config.ack_ttl = ttl;
            }
            "--max-attempts" => {
                let raw = value()?;
                let attempts: NonZeroU32 = raw
                    .parse()
                    .map_err(|_| format!("--max-attempts: {raw:?} is not a positive number"))?;
                config.max_attempts = Some(attempts);
            }
            "--keep-stopped-seconds" => {
                let raw = value()?;
                let seconds: u64 = raw.parse().map_err(|_| {
                    format!("--keep-stopped-seconds: {raw:?} is not a number of seconds")
                })?;
                keep_stopped = Some(Duration::from_secs(seconds));
            }
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    Ok(Options {
        listen,
        token,
        config,
        keep_stopped,
    })
}

/// A token must fit in a header and be typed without quoting.
fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token is 1 to 256 visible ASCII characters");
    }
    Ok(())
}

fn main() -> ExitCode {
    let options = match parse_options(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("server: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(options: Options) -> Result<(), String> {
    let from_env = std::env::var("WORKLEASE_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if let Some(token) = &from_env {
        check_token(token).map_err(|why| format!("WORKLEASE_TOKEN: {why}"))?;
    }
    let given = options.token.or(from_env);
    let generated = given.is_none();
    let mint = edge::Mint::new();
    let token = given.unwrap_or_else(|| format!("wl_{}", mint.hex128()));

    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", options.listen))?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;
    let mut shared = app::Shared::new(LeaseTable::new(options.config), token);
    shared.keep_stopped = options.keep_stopped;
    let shared = Arc::new(shared);
    let sweeper = tokio::spawn(app::sweeper(shared.clone()));

    println!("listening on http://{address}");
    if generated {
        println!(
            "token (generated; set --token or WORKLEASE_TOKEN to choose one): {}",
            shared.token
        );
        println!(
            "try: curl -s -X POST http://{address}/v1/environments -H 'Authorization: Bearer {}' \
             -H 'content-type: application/json' -d '{{\"name\": \"demo\", \"config\": {{\"type\": \"self_hosted\"}}}}'",
            shared.token
        );
    }
    eprintln!(
        "default ttl {}, max attempts {}",
        options.config.default_ttl,
        options
            .config
            .max_attempts
            .map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
    );
    if let Some(keep) = options.keep_stopped {
        eprintln!("stopped items are forgotten after {} s", keep.as_secs());
    }

    let served = axum::serve(listener, app::router(shared))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    sweeper.abort();
    served.map_err(|error| format!("serving failed: {error}"))?;
    eprintln!("shut down cleanly");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    eprintln!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        parse_options(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn flags_parse_in_both_forms() {
        let options = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--default-ttl-seconds=30",
            "--max-attempts",
            "3",
            "--keep-stopped-seconds=86400",
        ])
        .unwrap();
        assert_eq!(options.keep_stopped, Some(Duration::from_secs(86_400)));
        assert_eq!(options.listen.port(), 0);
        assert_eq!(options.config.default_ttl.seconds(), 30);
        assert_eq!(options.config.ack_ttl.seconds(), 30);
        assert_eq!(options.config.max_attempts.map(NonZeroU32::get), Some(3));
    }

    #[test]
    fn bad_flags_are_refused_with_a_reason() {
        for args in [
            &["--default-ttl-seconds", "5"][..],
            &["--default-ttl-seconds", "x"],
            &["--max-attempts", "0"],
            &["--keep-stopped-seconds", "-1"],
            &["--listen", "nowhere"],
            &["--listen"],
            &["--token", "has space"],
            &["--verbose"],
        ] {
            let error = parse(args).unwrap_err();
            assert!(!error.is_empty(), "{args:?}");
        }
    }
}
