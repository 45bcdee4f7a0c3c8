//! Starting, serving and stopping: logging, the listener, the sweeper, clean shutdown.

use std::future::IntoFuture;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use crate::app::Shared;
use crate::cli::{self, Cli, LogFormat};
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::mint::Mint;
use crate::submit::Submit;
use crate::{http, raft, sweeper, tls};

/// Runs the server until Ctrl-C or SIGTERM; the process's exit code.
pub(crate) fn main(cli: Cli) -> ExitCode {
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(cli: &Cli) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(cli.log_filter())
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn serve(cli: Cli) -> Result<(), String> {
    let generated = cli.token.is_empty();
    // Before anything else starts: a bad pair is refused, naming the file.
    let certificate = match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            tls::Certificate::load(cert, key).map_err(|error| error.to_string())?,
        )),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cli.listen.as_str())
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", cli.listen))?;
    let shared = open(&cli, &listener, Arc::new(Clock::new())).await?;
    let address = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;

    let scheme = if certificate.is_some() {
        "https"
    } else {
        "http"
    };
    println!("listening on {scheme}://{address}");
    if generated {
        println!(
            "token (generated; set --token or WORKLEASE_TOKEN to choose one): {}",
            shared.token
        );
        println!(
            "try: curl -s{} -X POST {scheme}://{address}/v1/environments -H 'Authorization: Bearer {}' \
             -H 'content-type: application/json' -d '{{\"name\": \"demo\", \"config\": {{\"type\": \"self_hosted\"}}}}'",
            cli.tls_ca
                .as_ref()
                .map(|ca| format!(" --cacert {}", ca.display()))
                .unwrap_or_default(),
            shared.token
        );
    }
    let config = cli.config();
    tracing::info!(
        %address,
        mode = %if cli.peers.is_some() {
            "replicated"
        } else if cli.data_dir.is_some() {
            "durable"
        } else {
            "in-memory"
        },
        node_id = cli.node_id,
        data_dir = cli.data_dir.as_ref().map(|dir| dir.display().to_string()),
        default_ttl_seconds = config.default_ttl.seconds(),
        max_attempts = config.max_attempts.map(|n| n.get()),
        keep_stopped_seconds = cli.keep_stopped_seconds,
        tls = certificate.is_some(),
        "serving"
    );
    let Some(certificate) = certificate else {
        if !address.ip().is_loopback() {
            tracing::warn!(
                %address,
                "serving plain HTTP on a non-loopback address: tokens (and, between members, \
                 Raft messages) travel in clear text; give --tls-cert and --tls-key to serve HTTPS"
            );
        }
        return serve_on(shared, listener, cli.keep_stopped(), shutdown_signal()).await;
    };
    let watcher = tokio::spawn(tls::watch(certificate.clone()));
    let listener = tls::Listener::new(listener, certificate.server_config());
    let served = serve_on(shared, listener, cli.keep_stopped(), shutdown_signal()).await;
    watcher.abort();
    served
}

/// Everything a node needs before it serves: the token, the metrics and the write path (in
/// durable and replicated modes, the data directory opened and Raft started).
pub(crate) async fn open(
    cli: &Cli,
    listener: &tokio::net::TcpListener,
    clock: Arc<Clock>,
) -> Result<Arc<Shared>, String> {
    let tokens = if cli.token.is_empty() {
        vec![format!("wl_{}", Mint::new().hex128())]
    } else {
        cli.token.clone()
    };
    debug_assert!(tokens.iter().all(|token| cli::parse_token(token).is_ok()));
    let address = listener
        .local_addr()
        .map_err(|error| format!("cannot read the bound address: {error}"))?;
    let config = cli.config();
    let metrics = Arc::new(Metrics::new());
    let cluster_secret = cli.cluster_secret();
    if let Some(secret) = cluster_secret
        .as_ref()
        .filter(|secret| secret.accepted() > 1)
    {
        tracing::warn!(
            accepted = secret.accepted(),
            "this member accepts {} cluster secrets and sends the first: a rotation is under \
             way (docs/security.md); finish it with the new secret alone",
            secret.accepted()
        );
    }
    let submit = match &cli.data_dir {
        None => Submit::new(config, metrics.clone(), clock),
        Some(dir) => {
            let options = raft::Options {
                dir: dir.clone(),
                config,
                snapshot_every: cli.snapshot_every,
                segment_bytes: cli.log_segment_kib * 1024,
                address,
                node_id: cli.node_id.unwrap_or(raft::SOLE_NODE),
                peers: cli.peers.clone().map(|peers| peers.0).unwrap_or_default(),
                cluster_secret: cluster_secret.clone(),
                // Only members call anyone: a lone server needs no trust roots.
                tls: match (&cli.tls_cert, &cli.peers) {
                    (Some(_), Some(_)) => Some(
                        tls::client_config(cli.tls_ca.as_deref())
                            .map_err(|error| error.to_string())?,
                    ),
                    _ => None,
                },
            };
            let durable = raft::open(&options, clock.clone())
                .await
                .map_err(|error| error.to_string())?;
            Submit::logged(durable, metrics.clone(), clock)
        }
    };
    Ok(Arc::new(
        Shared::with_admin_tokens(submit, &tokens, metrics).with_cluster_secret(cluster_secret),
    ))
}

/// Serves on `listener` (plain TCP, or [`tls::Listener`]) until `shutdown` resolves, then
/// stops cleanly: the sweeper, the listener (letting requests in flight finish), then the log.
///
/// # Errors
///
/// Why, when serving failed, or when the Raft core, the log writer or the sweeper stopped
/// while serving: a node without them cannot answer truthfully (its API would answer 503
/// forever while `/healthz` said 200), so it stops at once and the process exits non-zero,
/// for a supervisor to restart it from its data directory. Likewise when the cluster removed
/// this member: it has nothing left to serve.
pub(crate) async fn serve_on<L>(
    shared: Arc<Shared>,
    listener: L,
    keep_stopped: Option<std::time::Duration>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), String>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let mut sweeper = tokio::spawn(sweeper::run(shared.clone(), keep_stopped));
    let serving = axum::serve(listener, http::router(shared.clone()))
        .with_graceful_shutdown(shutdown)
        .into_future();
    let failed = async {
        let part = tokio::select! {
            stopped = &mut sweeper => match stopped {
                Ok(()) => "the sweeper stopped".to_owned(),
                Err(error) => format!("the sweeper stopped: {error}"),
            },
            why = shared.submit.stopped() => why,
            why = shared.submit.removed() => return format!("{why}; stopping"),
        };
        format!("{part}; stopping: this node cannot answer without it")
    };
    let served = tokio::select! {
        served = serving => served,
        why = failed => {
            tracing::error!("{why}");
            sweeper.abort();
            shared.submit.shutdown().await;
            return Err(why);
        }
    };
    sweeper.abort();
    shared.submit.shutdown().await;
    served.map_err(|error| format!("serving failed: {error}"))?;
    tracing::info!("shut down cleanly");
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
    let signal = tokio::select! {
        () = ctrl_c => "interrupt",
        () = terminate => "terminate",
    };
    tracing::info!(%signal, "shutting down");
}
