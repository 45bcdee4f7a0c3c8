//! TLS (docs/contract.md §11): the listener's certificate, which rotates without a restart, and
//! the trust the members place in each other's certificates.
//!
//! - [`Certificate`] holds the pair `--tls-cert`/`--tls-key` as rustls uses it. rustls asks it
//!   for the certificate at every handshake, so swapping the `Arc` it holds changes what the
//!   next handshake gets while connections already open keep the session they negotiated.
//! - [`watch`] reads the two files again every [`RELOAD_EVERY`] and on SIGHUP; a new pair is
//!   swapped in only once it parses and its key belongs to its certificate; otherwise the old
//!   pair stays and the refusal is logged (once per distinct content, not once per poll).
//! - [`Listener`] accepts TCP connections and runs each handshake in its own task, so a slow
//!   or silent client never holds up the others, then hands the connection to axum.
//! - [`client_config`] is what a member trusts when it calls another: `--tls-ca` when given,
//!   else the system's roots.
//!
//! Everything cryptographic is rustls with the `ring` provider.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How often the certificate files are read again.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// How long a client may take to complete its handshake before its connection is closed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The same warning is logged at most once per this interval (a refused peer retries often).
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why a certificate, key or CA file cannot be used. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TlsError {
    /// The file could not be read at all.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file holds no PEM section of the kind expected, or a broken one.
    #[error("{path} holds no usable PEM {kind} ({error})")]
    Pem {
        path: String,
        kind: &'static str,
        error: rustls_pki_types::pem::Error,
    },
    /// rustls refused the key, or the key does not belong to the certificate.
    #[error("the private key in {key} cannot serve the certificate in {cert}: {error}")]
    Pair {
        cert: String,
        key: String,
        error: rustls::Error,
    },
    /// A CA certificate rustls cannot use as a trust anchor.
    #[error("{path}: not a usable CA certificate: {error}")]
    Anchor { path: String, error: rustls::Error },
    /// Without `--tls-ca`, the system offered no root certificate.
    #[error(
        "no system root certificate could be loaded ({0}); give the members' CA with --tls-ca"
    )]
    NoSystemRoots(String),
}

/// The crypto provider every TLS configuration here uses: ring's, with the AES-128-GCM suites
/// first.
///
/// Why ring: it builds with a C compiler alone, and aws-lc-rs (rustls' default, for its
/// post-quantum key exchange) needs CMake on some targets, builds several times slower and
/// spends no fewer instructions per heartbeat on records this small (callgrind,
/// `scripts/request-instructions.sh`).
///
/// Why not ring's own order (AES-256-GCM first): every request and answer is its own small
/// record, so the cipher's per-record cost is a visible part of each request (about 2 200 of
/// the 7 300 instructions TLS adds to a heartbeat are AES-GCM), and AES-128 runs 10 rounds
/// where AES-256 runs 14. AES-128-GCM is TLS 1.3's mandatory suite and a recommended one of
/// TLS 1.2; nothing weaker is offered. The server's order decides (`ignore_client_order` in
/// [`Certificate::server_config`]), since clients such as OpenSSL's ask for AES-256 first.
// rustls deprecates ring's provider for lacking post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| !is_aes_128_gcm(suite.suite()));
    Arc::new(provider)
}

fn is_aes_128_gcm(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite::{
        TLS13_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    };
    matches!(
        suite,
        TLS13_AES_128_GCM_SHA256
            | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
    )
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// PEM certificates in `bytes` (read from `path`), in order; at least one.
fn certificates(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |error| TlsError::Pem {
        path: path.display().to_string(),
        kind: "certificate (BEGIN CERTIFICATE)",
        error,
    };
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem)?;
    if certs.is_empty() {
        return Err(pem(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The certificate chain and private key the listener presents.
#[derive(Debug)]
pub(crate) struct Certificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' contents last looked at (served, or refused and logged).
    seen: Mutex<(Vec<u8>, Vec<u8>)>,
}

/// What a look at the files found.
#[derive(Debug)]
pub(crate) enum Reloaded {
    /// The files hold what was looked at last time.
    Unchanged,
    /// A new pair is served from the next handshake on.
    Rotated,
    /// The files changed but cannot be used; the old pair is still served.
    Refused(TlsError),
}

impl Certificate {
    /// Reads and checks the pair.
    ///
    /// # Errors
    ///
    /// A missing or unreadable file, a file without PEM of the right kind, or a key that
    /// does not belong to the certificate; the message names the file.
    pub(crate) fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let cert = read(cert_path)?;
        let key = read(key_path)?;
        let current = Self::parse(cert_path, &cert, key_path, &key)?;
        Ok(Self {
            cert_path: cert_path.to_owned(),
            key_path: key_path.to_owned(),
            current: RwLock::new(Arc::new(current)),
            seen: Mutex::new((cert, key)),
        })
    }

    fn parse(
        cert_path: &Path,
        cert: &[u8],
        key_path: &Path,
        key: &[u8],
    ) -> Result<CertifiedKey, TlsError> {
        let chain = certificates(cert_path, cert)?;
        let private = PrivateKeyDer::from_pem_slice(key).map_err(|error| TlsError::Pem {
            path: key_path.display().to_string(),
            kind: "private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY)",
            error,
        })?;
        CertifiedKey::from_der(chain, private, &provider()).map_err(|error| TlsError::Pair {
            cert: cert_path.display().to_string(),
            key: key_path.display().to_string(),
            error,
        })
    }

    /// The certificate file's path.
    pub(crate) fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// Reads the files again and serves their pair if it changed and can be used.
    pub(crate) fn reload(&self) -> Reloaded {
        let files = read(&self.cert_path).and_then(|cert| Ok((cert, read(&self.key_path)?)));
        let (cert, key) = match files {
            Ok(files) => files,
            // Between an operator's `rm` and `mv` a file may be missing for a moment; the
            // next poll reads it.
            Err(error) => return Reloaded::Refused(error),
        };
        let mut seen = self.seen.lock();
        if seen.0 == cert && seen.1 == key {
            return Reloaded::Unchanged;
        }
        let parsed = Self::parse(&self.cert_path, &cert, &self.key_path, &key);
        *seen = (cert, key);
        match parsed {
            Ok(pair) => {
                *self.current.write() = Arc::new(pair);
                Reloaded::Rotated
            }
            Err(error) => Reloaded::Refused(error),
        }
    }

    /// The server configuration that presents this certificate: HTTP/1.1 over TLS 1.2 or 1.3.
    pub(crate) fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("invariant: ring's provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config.ignore_client_order = true;
        config
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// Reads the certificate files again every [`RELOAD_EVERY`] and on SIGHUP, forever; logs each
/// rotation (info) and each refused new pair (warn).
pub(crate) async fn watch(certificate: Arc<Certificate>) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut ticks = tokio::time::interval(RELOAD_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut missing_logged = false;
    loop {
        #[cfg(unix)]
        let signalled = async {
            match hangup.as_mut() {
                Some(signal) => signal.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let signalled = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = ticks.tick() => {}
            _ = signalled => tracing::info!("SIGHUP: reading the TLS certificate and key again"),
        }
        let file = certificate.cert_path().display().to_string();
        match certificate.reload() {
            Reloaded::Unchanged => missing_logged = false,
            Reloaded::Rotated => {
                missing_logged = false;
                tracing::info!(%file, "TLS certificate reloaded: new handshakes get the new one");
            }
            Reloaded::Refused(error @ TlsError::Read { .. }) => {
                if !std::mem::replace(&mut missing_logged, true) {
                    tracing::warn!(%error, "cannot read the TLS files; still serving the old certificate");
                }
            }
            Reloaded::Refused(error) => {
                missing_logged = false;
                tracing::warn!(%error, "the new TLS certificate and key cannot be used; still serving the old ones");
            }
        }
    }
}

/// What a member trusts in the other members' certificates: the CA certificates in `ca`
/// (PEM), else the system's roots. Speaks HTTP/1.1.
///
/// # Errors
///
/// An unreadable CA file, one without a usable certificate, or no system roots at all.
pub(crate) fn client_config(ca: Option<&Path>) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for anchor in certificates(path, &read(path)?)? {
                roots.add(anchor).map_err(|error| TlsError::Anchor {
                    path: path.display().to_string(),
                    error,
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let why = found
                    .errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(TlsError::NoSystemRoots(if why.is_empty() {
                    "none found".to_owned()
                } else {
                    why
                }));
            }
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("invariant: ring's provider supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The rustls error behind `error` (a reqwest or I/O error), if TLS is what failed.
pub(crate) fn rustls_cause<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(found) = error.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        // `io::Error::source` skips the error it wraps (tokio-rustls wraps rustls' error in
        // one, and hyper's connector that in another): step into it explicitly.
        next = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    None
}

/// Lets a warning through at most once per [`WARN_EVERY`].
#[derive(Debug)]
pub(crate) struct Throttle {
    start: Instant,
    /// Milliseconds after `start` of the last warning let through, plus one (0: never).
    last: AtomicU64,
}

impl Default for Throttle {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Throttle {
    /// Whether a warning may be logged now.
    pub(crate) fn allows(&self) -> bool {
        let now = u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let every = u64::try_from(WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
        self.last
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                (last == 0 || now.saturating_sub(last) >= every).then_some(now)
            })
            .is_ok()
    }
}

/// The listener of a TLS server: hands axum connections whose handshake completed.
pub(crate) struct Listener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
    refused: Arc<Throttle>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("tcp", &self.tcp)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl Listener {
    /// Serves TLS with `config` on connections `tcp` accepts.
    pub(crate) fn new(tcp: TcpListener, config: rustls::ServerConfig) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            handshakes: JoinSet::new(),
            refused: Arc::new(Throttle::default()),
        }
    }
}

/// Completes the server side of a handshake; `None` (logged) when it fails.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    refused: Arc<Throttle>,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    // Responses leave in one write each; no reason to hold the last segment back.
    let _ = stream.set_nodelay(true);
    let error = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => return Some((stream, peer)),
        Ok(Err(error)) => error,
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return None;
        }
    };
    // A client that refuses this server's certificate is worth an operator's attention (a
    // member with the wrong CA, an expired certificate); anything else (plain HTTP on this
    // port, a scanner, a dropped connection) is the client's business.
    match rustls_cause(&error) {
        Some(rustls::Error::AlertReceived(alert)) if refused.allows() => {
            tracing::warn!(
                %peer,
                alert = ?alert,
                "a client refused this server's TLS certificate: is --tls-cert signed by the CA \
                 that clients and the other members (--tls-ca) trust, and still valid?"
            );
        }
        _ => tracing::debug!(%peer, %error, "TLS handshake failed"),
    }
    None
}

impl axum::serve::Listener for Listener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Both branches are cancel-safe: axum drops this future at shutdown.
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        self.handshakes.spawn(handshake(
                            self.acceptor.clone(),
                            stream,
                            peer,
                            self.refused.clone(),
                        ));
                    }
                    Err(error) => accept_failed(error).await,
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(connection)) = done {
                        return connection;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// As axum's own TCP listener does: a connection that failed before it was accepted is
/// skipped; anything else (out of file descriptors) is waited out for a second.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_throttle_lets_one_warning_through_per_interval() {
        let throttle = Throttle::default();
        assert!(throttle.allows());
        assert!(!throttle.allows());
        assert!(!throttle.allows());
    }

    #[test]
    fn the_rustls_cause_is_found_through_nested_io_errors() {
        let refused = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, refused);
        let outer = std::io::Error::other(inner);
        assert!(matches!(
            rustls_cause(&outer),
            Some(rustls::Error::InvalidCertificate(_))
        ));
        assert!(rustls_cause(&std::io::Error::other("refused")).is_none());
    }

    #[test]
    fn a_missing_file_is_named() {
        let error = Certificate::load(Path::new("no/such/cert.pem"), Path::new("no/key.pem"))
            .expect_err("no such file");
        assert!(error.to_string().contains("no/such/cert.pem"), "{error}");
        let error = client_config(Some(Path::new("no/such/ca.pem"))).expect_err("no such file");
        assert!(error.to_string().contains("no/such/ca.pem"), "{error}");
    }

    #[test]
    fn a_file_without_pem_is_named() {
        let dir = std::env::temp_dir().join(format!("worklease-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let junk = dir.join("junk.pem");
        std::fs::write(&junk, "not PEM at all\n").expect("writes");
        let error = Certificate::load(&junk, &junk).expect_err("no PEM");
        assert!(
            error.to_string().contains("junk.pem") && error.to_string().contains("certificate"),
            "{error}"
        );
        let error = client_config(Some(&junk)).expect_err("no PEM");
        assert!(error.to_string().contains("junk.pem"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
