//! The command line: every flag, its `WORKLEASE_*` environment twin, and its validation. A bad
//! value is refused here, with a message naming the flag, before anything starts (exit 2).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;
use worklease::{Config, Ttl};

use crate::cluster_secret::{ClusterSecret, SecretText};

/// Serves the documented work endpoints (docs/contract.md §3) over HTTP, under both
/// `/api/v1/cloud/environments` and `/v1/environments`.
///
/// Every flag can also be given as an environment variable, named after it: `--listen` is
/// `WORKLEASE_LISTEN`, `--default-ttl-seconds` is `WORKLEASE_DEFAULT_TTL_SECONDS`, and so on.
/// A flag wins over its variable. The first line on stdout is `listening on http://ADDR`
/// (`https://` with --tls-cert).
#[derive(Debug, Parser)]
#[command(
    name = "worklease-server",
    version,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// Run a command instead of serving.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    /// Address to listen on, `HOST:PORT` (an IP address or a host name, resolved at start);
    /// port 0 picks a free one.
    #[arg(long, env = "WORKLEASE_LISTEN", value_name = "ADDR", default_value = "127.0.0.1:8080",
          value_parser = parse_listen)]
    pub(crate) listen: String,

    /// An admin token clients send (`Authorization: Bearer T` or `x-api-key: T`): it opens
    /// everything on the API. Give it more than once (or a comma-separated list) to rotate
    /// tokens without downtime; when none is given, one is generated and printed.
    #[arg(long, env = "WORKLEASE_TOKEN", value_name = "T", hide_env_values = true,
          value_parser = parse_token, value_delimiter = ',', action = clap::ArgAction::Append)]
    pub(crate) token: Vec<String>,

    /// Lease TTL of a heartbeat that names none and of the lease an ack opens: 10 to 600.
    #[arg(long, env = "WORKLEASE_DEFAULT_TTL_SECONDS", value_name = "N", default_value = "60",
          value_parser = parse_ttl)]
    pub(crate) default_ttl_seconds: Ttl,

    /// Stop an item whose lease lapsed N times [default: no limit].
    #[arg(long, env = "WORKLEASE_MAX_ATTEMPTS", value_name = "N")]
    pub(crate) max_attempts: Option<NonZeroU32>,

    /// Forget items stopped more than N seconds ago (purged every N seconds, at most every
    /// minute) [default: keep them all].
    #[arg(long, env = "WORKLEASE_KEEP_STOPPED_SECONDS", value_name = "N")]
    pub(crate) keep_stopped_seconds: Option<u64>,

    /// Durable mode (docs/contract.md §8): keep the table in DIR (a Raft log and snapshots), so that every
    /// 2xx to a change is fsynced before it is sent and survives `kill -9` and restarts. A new
    /// DIR is created; a damaged or foreign one is refused. [default: in memory]
    #[arg(long, env = "WORKLEASE_DATA_DIR", value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,

    /// Replicated mode (docs/contract.md §8): this member's id, one of `--peers`' ids. Needs `--data-dir`
    /// and `--peers`.
    #[arg(long, env = "WORKLEASE_NODE_ID", value_name = "N", requires = "peers",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) node_id: Option<u64>,

    /// Replicated mode: members' ids and `--listen` addresses, as `1=ADDR,2=ADDR,3=ADDR`
    /// (`HOST:PORT`, host names resolved at each connection). Seeds a new cluster only: the
    /// member with the lowest id initializes it with every one listed as a voter; a member
    /// started later lists itself and at least one current member, and waits until the
    /// cluster adds it (`POST /cluster/members`). Raft traffic and forwarding use internal
    /// routes on those listeners, which only --cluster-secret opens.
    #[arg(long, env = "WORKLEASE_PEERS", value_name = "ID=ADDR,…",
          requires_all = ["node_id", "data_dir"], value_parser = parse_peers)]
    pub(crate) peers: Option<Peers>,

    /// Replicated mode (required there): the secret every member presents to the others, and
    /// the only credential the internal routes (`/internal/…`: Raft traffic, forwarding)
    /// accept. The same on every member, different from every --token; 32 to 256 visible
    /// ASCII characters but the comma (`openssl rand -hex 32` makes one). Give it more than
    /// once (or a comma-separated list) to rotate it without stopping the cluster: a member
    /// sends the first and accepts each. docs/security.md.
    #[arg(long, env = "WORKLEASE_CLUSTER_SECRET", value_name = "SECRET", hide_env_values = true,
          value_parser = SecretText::parse, value_delimiter = ',',
          action = clap::ArgAction::Append)]
    pub(crate) cluster_secret: Vec<SecretText>,

    /// Durable and replicated modes: write a snapshot of the table, and drop the log behind
    /// it, every N commands applied (a restart then replays at most about N commands; fewer
    /// means faster restarts and more snapshot writes, each a copy of the whole table).
    #[arg(long, env = "WORKLEASE_SNAPSHOT_EVERY", value_name = "N", default_value = "100000",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) snapshot_every: u64,

    /// Durable and replicated modes: the size of each log segment file (`DIR/raft-*.wal`), in
    /// KiB. Each is zero-filled before use (so syncs are cheap) and deleted once a snapshot
    /// covers it; larger means fewer new files, smaller less disk between snapshots. The
    /// default holds ~300 000 heartbeats.
    #[arg(long, env = "WORKLEASE_LOG_SEGMENT_KIB", value_name = "KIB", default_value = "32768",
          value_parser = clap::value_parser!(u64).range(64..=4_194_304))]
    pub(crate) log_segment_kib: u64,

    /// Serve HTTPS only, presenting this certificate chain (PEM: this server's certificate
    /// first, then any intermediates). Needs --tls-key. Both files are read again when they
    /// change (checked every second, and on SIGHUP): new connections get the new pair, open
    /// ones keep theirs, and a pair that cannot be used is logged and the old one kept
    /// (docs/tls.md). [default: plain HTTP]
    #[arg(
        long,
        env = "WORKLEASE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub(crate) tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "WORKLEASE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_key: Option<PathBuf>,

    /// With --tls-cert in replicated mode: the CA (PEM) whose certificates the other members
    /// must present; members reach each other over HTTPS. [default: the system's roots]
    #[arg(
        long,
        env = "WORKLEASE_TLS_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub(crate) tls_ca: Option<PathBuf>,

    /// How log lines on stderr look.
    #[arg(long, env = "WORKLEASE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub(crate) log_format: LogFormat,

    /// Which events to log, as a tracing filter (`info`, `debug`,
    /// `warn,worklease_server=debug`, …) [default: $RUST_LOG, else `info,openraft=warn`].
    #[arg(long, env = "WORKLEASE_LOG_LEVEL", value_name = "FILTER", value_parser = parse_filter)]
    pub(crate) log_level: Option<String>,
}

/// What `worklease-server` can do besides serving.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Makes a data directory from a backup (`GET /cluster/snapshot`): start a server on it,
    /// as a one-member cluster, to serve exactly the backed-up table (docs/clustering.md,
    /// "Backing up and restoring").
    Restore(RestoreArgs),
}

/// `worklease-server restore`'s flags.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The backup file.
    #[arg(long, value_name = "FILE")]
    pub(crate) from: PathBuf,
    /// The data directory to make: new, or empty.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: PathBuf,
}

/// `--peers`: member ids and their addresses (`HOST:PORT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Peers(pub(crate) BTreeMap<u64, String>);

/// The log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line, fields included.
    Json,
}

impl Cli {
    /// What clap cannot check alone: the flags that must agree with each other.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let (Some(id), Some(Peers(peers))) = (self.node_id, &self.peers) {
            if !peers.contains_key(&id) {
                return Err(format!(
                    "--node-id {id} is not one of --peers' ids ({})",
                    peers
                        .keys()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            if self.token.is_empty() {
                return Err(
                    "replicated mode needs --token (or WORKLEASE_TOKEN): every member must \
                     share it"
                        .to_owned(),
                );
            }
            if self.cluster_secret.is_empty() {
                return Err(
                    "replicated mode needs --cluster-secret (or WORKLEASE_CLUSTER_SECRET): the \
                     same on every member, e.g. from `openssl rand -hex 32`"
                        .to_owned(),
                );
            }
        }
        if let Some(secret) = self.cluster_secret() {
            secret.differs_from_tokens(self.token.iter().map(String::as_str))?;
        }
        Ok(())
    }

    /// The cluster secrets given (`--cluster-secret`, in order: the first is sent); `None`
    /// when none was. Each call makes a new one: call it once.
    pub(crate) fn cluster_secret(&self) -> Option<ClusterSecret> {
        ClusterSecret::new(&self.cluster_secret)
    }

    /// The table's settings the flags chose.
    pub(crate) fn config(&self) -> Config {
        let mut config = Config::default();
        config.default_ttl = self.default_ttl_seconds;
        config.ack_ttl = self.default_ttl_seconds;
        config.max_attempts = self.max_attempts;
        config
    }

    /// How long stopped items are kept; `None`: forever.
    pub(crate) fn keep_stopped(&self) -> Option<Duration> {
        self.keep_stopped_seconds.map(Duration::from_secs)
    }

    /// The log filter: `--log-level`, else `$RUST_LOG`, else `info` (with openraft's own
    /// per-election chatter at `warn`).
    pub(crate) fn log_filter(&self) -> EnvFilter {
        let directives = self
            .log_level
            .clone()
            .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "info,openraft=warn".to_owned());
        // A bad RUST_LOG is not worth refusing to start over: fall back to `info`.
        EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"))
    }
}

/// `HOST:PORT`: an IP address (`[::1]:8080` for IPv6) or a host name, and a port. Host names
/// are resolved when the address is used, not here.
pub(crate) fn parse_listen(raw: &str) -> Result<String, String> {
    let refused = || format!("{raw:?} is not an address like 127.0.0.1:8080 or localhost:8080");
    if raw.parse::<SocketAddr>().is_ok() {
        return Ok(raw.to_owned());
    }
    let (host, port) = raw.rsplit_once(':').ok_or_else(refused)?;
    port.parse::<u16>().map_err(|_| refused())?;
    let label = |part: &str| {
        !part.is_empty()
            && part.len() <= 63
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    if host.is_empty() || host.len() > 253 || !host.split('.').all(label) {
        return Err(refused());
    }
    Ok(raw.to_owned())
}

/// The port of a `HOST:PORT` that [`parse_listen`] accepted.
fn port_of(address: &str) -> Option<u16> {
    address.rsplit_once(':')?.1.parse().ok()
}

/// A token must fit in a header and be typed without quoting.
pub(crate) fn parse_token(token: &str) -> Result<String, String> {
    if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a token is 1 to 256 visible ASCII characters".to_owned());
    }
    Ok(token.to_owned())
}

/// `1=127.0.0.1:7001,2=node2.internal:7002,…`: ids from 1, each once, each with an address.
fn parse_peers(raw: &str) -> Result<Peers, String> {
    let mut peers = BTreeMap::new();
    for member in raw.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (id, address) = member
            .split_once('=')
            .ok_or_else(|| format!("{member:?} is not ID=ADDR"))?;
        let id: u64 = id
            .trim()
            .parse()
            .map_err(|_| format!("{id:?} is not a member id (1, 2, …)"))?;
        let address = parse_listen(address.trim())?;
        if port_of(&address) == Some(0) {
            return Err(format!("member {id}: a peer address needs a port"));
        }
        if peers.insert(id, address).is_some() {
            return Err(format!("member {id} is named twice"));
        }
    }
    if peers.contains_key(&0) {
        return Err("member ids start at 1".to_owned());
    }
    if peers.is_empty() {
        return Err("no member named".to_owned());
    }
    Ok(Peers(peers))
}

fn parse_ttl(raw: &str) -> Result<Ttl, String> {
    let seconds: u64 = raw
        .parse()
        .map_err(|_| format!("{raw:?} is not a number"))?;
    Ttl::from_seconds(seconds).map_err(|error| error.to_string())
}

fn parse_filter(raw: &str) -> Result<String, String> {
    EnvFilter::try_new(raw)
        .map(|_| raw.to_owned())
        .map_err(|error| format!("{raw:?} is not a log filter: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("worklease-server").chain(args.iter().copied()))
    }

    #[test]
    fn the_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_parse_in_both_forms() {
        let cli = parse(&[
            "--listen",
            "127.0.0.1:0",
            "--default-ttl-seconds=30",
            "--max-attempts",
            "3",
            "--keep-stopped-seconds=86400",
            "--log-format=json",
            "--log-level",
            "warn,worklease_server=debug",
            "--data-dir=some/dir",
            "--snapshot-every=500",
            "--tls-cert=c.pem",
            "--tls-key",
            "k.pem",
            "--tls-ca=ca.pem",
        ])
        .unwrap();
        assert_eq!(cli.data_dir, Some(PathBuf::from("some/dir")));
        assert_eq!(cli.snapshot_every, 500);
        assert_eq!(cli.keep_stopped(), Some(Duration::from_secs(86_400)));
        assert_eq!(cli.listen, "127.0.0.1:0");
        let config = cli.config();
        assert_eq!(config.default_ttl.seconds(), 30);
        assert_eq!(config.ack_ttl.seconds(), 30);
        assert_eq!(config.max_attempts.map(NonZeroU32::get), Some(3));
        assert_eq!(cli.log_format, LogFormat::Json);
        assert_eq!(cli.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(cli.tls_key, Some(PathBuf::from("k.pem")));
        assert_eq!(cli.tls_ca, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn restore_is_a_command_of_its_own() {
        let cli = parse(&["restore", "--from", "backup.wlbk", "--data-dir", "d"]).unwrap();
        let Some(Command::Restore(args)) = cli.command else {
            panic!("no restore command: {cli:?}");
        };
        assert_eq!(args.from, PathBuf::from("backup.wlbk"));
        assert_eq!(args.data_dir, PathBuf::from("d"));
        assert!(parse(&["restore", "--from", "b"]).is_err());
        assert!(parse(&[
            "--listen",
            "127.0.0.1:1",
            "restore",
            "--from",
            "b",
            "--data-dir",
            "d"
        ])
        .is_err());
    }

    #[test]
    fn replicated_flags_must_agree() {
        let peers = "1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003";
        let secret = "0123456789abcdef0123456789abcdef";
        let base = [
            "--data-dir",
            "d",
            "--peers",
            peers,
            "--token",
            "t",
            "--cluster-secret",
            secret,
        ];
        let cli = parse(&[&base[..], &["--node-id", "2"]].concat()).unwrap();
        assert_eq!(cli.check(), Ok(()));
        assert_eq!(cli.peers.as_ref().map(|p| p.0.len()), Some(3));
        let named = parse(&[
            "--data-dir",
            "d",
            "--peers",
            "1=localhost:7001,4=node-4.example:7004",
            "--token",
            "t",
            "--node-id",
            "4",
            "--listen",
            "node-4.example:7004",
            "--cluster-secret",
            secret,
        ])
        .unwrap();
        assert_eq!(named.check(), Ok(()));
        assert_eq!(named.listen, "node-4.example:7004");
        let outsider = parse(&[&base[..], &["--node-id", "4"]].concat()).unwrap();
        assert!(outsider.check().unwrap_err().contains("--node-id 4"));
        let no_token = parse(&["--data-dir", "d", "--peers", peers, "--node-id", "1"]).unwrap();
        assert!(no_token.check().unwrap_err().contains("--token"));
        let no_secret = parse(&[&base[..6], &["--node-id", "1"]].concat()).unwrap();
        assert!(no_secret.check().unwrap_err().contains("--cluster-secret"));
        let same = parse(
            &[
                &base[..4],
                &[
                    "--node-id",
                    "1",
                    "--token",
                    secret,
                    "--cluster-secret",
                    secret,
                ],
            ]
            .concat(),
        )
        .unwrap();
        let refusal = same.check().unwrap_err();
        assert!(refusal.contains("differ from every --token"), "{refusal}");
        assert!(!refusal.contains(secret), "{refusal}");
    }

    #[test]
    fn cluster_secrets_rotate_the_first_sent_and_each_accepted() {
        let old = "0123456789abcdef0123456789abcdef";
        let new = "fedcba9876543210fedcba9876543210";
        let base = [
            "--data-dir",
            "d",
            "--peers",
            "1=127.0.0.1:7001",
            "--node-id",
            "1",
        ];
        for given in [
            &["--cluster-secret", old, "--cluster-secret", new][..],
            &["--cluster-secret", &format!("{old},{new}")],
        ] {
            let cli = parse(&[&base[..], &["--token", "t"], given].concat()).unwrap();
            assert_eq!(cli.check(), Ok(()));
            let secret = cli.cluster_secret().expect("secrets");
            assert_eq!(secret.as_str(), old, "the first is sent");
            assert_eq!(secret.accepted(), 2);
            assert!(secret.is(old.as_bytes()) && secret.is(new.as_bytes()));
            // The second secret is a cluster secret too: no token may equal it.
            let token_is_second = parse(&[&base[..], &["--token", new], given].concat()).unwrap();
            let refusal = token_is_second.check().unwrap_err();
            assert!(refusal.contains("--cluster-secret"), "{refusal}");
            assert!(!refusal.contains(new), "{refusal}");
        }
        let refusal = parse(&["--cluster-secret", &format!("{old},short")]).unwrap_err();
        assert!(refusal.to_string().contains("32 to 256"), "{refusal}");
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
            &["--cluster-secret", "short"],
            &["--log-format", "xml"],
            &["--verbose"],
            &["--snapshot-every", "0"],
            &["--tls-cert", "c.pem"],
            &["--tls-key", "k.pem"],
            &["--tls-ca", "ca.pem"],
            &["--tls-ca", "ca.pem", "--tls-key", "k.pem"],
            &["--node-id", "1"],
            &["--peers", "1=127.0.0.1:1"],
            &[
                "--data-dir",
                "d",
                "--node-id",
                "1",
                "--peers",
                "1=127.0.0.1:1,1=127.0.0.1:2",
            ],
            &[
                "--data-dir",
                "d",
                "--node-id",
                "1",
                "--peers",
                "0=127.0.0.1:1,1=127.0.0.1:2",
            ],
            &["--data-dir", "d", "--node-id", "1", "--peers", "1=nowhere"],
            &[
                "--data-dir",
                "d",
                "--node-id",
                "1",
                "--peers",
                "1=bad_host:1",
            ],
            &["--listen", "localhost"],
            &["--listen", "localhost:http"],
            &[
                "--data-dir",
                "d",
                "--node-id",
                "1",
                "--peers",
                "1=127.0.0.1:0",
            ],
            &[
                "--data-dir",
                "d",
                "--node-id",
                "0",
                "--peers",
                "1=127.0.0.1:1",
            ],
        ] {
            let error = parse(args).unwrap_err();
            assert_eq!(error.exit_code(), 2, "{args:?}");
            assert!(!error.to_string().is_empty(), "{args:?}");
        }
    }
}
