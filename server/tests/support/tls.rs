//! Certificates made at test time (rcgen): a test CA, the certificates it issues (for
//! `127.0.0.1` and `localhost`), the trust the test clients place in it, and a bare rustls
//! client that shows which certificate a handshake got.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};

/// A certificate authority.
pub(crate) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM, and the certificate as DER.
pub(crate) struct Issued {
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    pub(crate) der: CertificateDer<'static>,
}

impl Ca {
    pub(crate) fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("a CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("a CA certificate"),
        }
    }

    pub(crate) fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub(crate) fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A server certificate for `127.0.0.1` and `localhost`, with serial number `serial`.
    pub(crate) fn issue(&self, serial: u64) -> Issued {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server parameters");
        params.serial_number = Some(serial.into());
        params
            .distinguished_name
            .push(DnType::CommonName, "worklease test server");
        let key = KeyPair::generate().expect("a server key");
        let cert = params.signed_by(&key, &self.issuer).expect("signs");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

/// The CA of this test binary: the test clients trust it.
pub(crate) fn test_ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| Ca::new("worklease test CA"))
}

/// Where a server's TLS files are.
pub(crate) struct Files {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) ca: PathBuf,
}

impl Files {
    /// Writes `issued` and the test CA under `dir` (created).
    pub(crate) fn write(dir: &Path, issued: &Issued) -> Self {
        Self::write_with_ca(dir, issued, test_ca())
    }

    /// Writes `issued` and `ca` under `dir` (created).
    pub(crate) fn write_with_ca(dir: &Path, issued: &Issued, ca: &Ca) -> Self {
        std::fs::create_dir_all(dir).expect("a directory for the TLS files");
        let files = Self {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            ca: dir.join("ca.pem"),
        };
        std::fs::write(&files.ca, ca.pem()).expect("writes the CA");
        files.replace(issued);
        files
    }

    /// Replaces the pair as an operator would: each file written beside and renamed over.
    pub(crate) fn replace(&self, issued: &Issued) {
        for (path, text) in [(&self.key, &issued.key_pem), (&self.cert, &issued.cert_pem)] {
            let temporary = path.with_extension("new");
            std::fs::write(&temporary, text).expect("writes");
            std::fs::rename(&temporary, path).expect("renames");
        }
    }

    /// `--tls-cert C --tls-key K --tls-ca CA`.
    pub(crate) fn args(&self) -> Vec<String> {
        [
            ("--tls-cert", &self.cert),
            ("--tls-key", &self.key),
            ("--tls-ca", &self.ca),
        ]
        .into_iter()
        .flat_map(|(flag, path)| [flag.to_owned(), path.display().to_string()])
        .collect()
    }
}

/// What the test clients (ureq) trust: the test CA only.
pub(crate) fn ureq_config() -> ureq::tls::TlsConfig {
    let ca = ureq::tls::Certificate::from_der(test_ca().der().as_ref()).to_owned();
    ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
        .build()
}

/// One connection made with rustls directly, trusting `roots`.
pub(crate) struct Connection {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
}

impl Connection {
    /// Connects to `base` (`https://127.0.0.1:PORT`) and completes the handshake.
    ///
    /// # Errors
    ///
    /// The handshake's error (an untrusted certificate is `InvalidData` wrapping rustls').
    pub(crate) fn open(base: &str, roots: &[CertificateDer<'static>]) -> std::io::Result<Self> {
        let address = base.trim_start_matches("https://");
        let mut store = rustls::RootCertStore::empty();
        for root in roots {
            store.add(root.clone()).expect("a usable root");
        }
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(store)
            .with_no_client_auth();
        let name = ServerName::try_from("127.0.0.1")
            .expect("an IP address")
            .to_owned();
        let client = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
        let tcp = TcpStream::connect(address)?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut stream = rustls::StreamOwned::new(client, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(Self { stream })
    }

    /// The certificate the server presented in this connection's handshake.
    pub(crate) fn peer_certificate(&self) -> CertificateDer<'static> {
        self.stream
            .conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("a server certificate")
            .clone()
            .into_owned()
    }

    /// The cipher suite the handshake settled on.
    pub(crate) fn cipher_suite(&self) -> rustls::CipherSuite {
        self.stream
            .conn
            .negotiated_cipher_suite()
            .expect("a completed handshake")
            .suite()
    }

    /// `GET path` on this connection (kept alive); the status code.
    pub(crate) fn get(&mut self, path: &str) -> std::io::Result<u16> {
        write!(
            self.stream,
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\n\r\n",
            super::TOKEN
        )?;
        self.stream.flush()?;
        let mut reader = BufReader::new(&mut self.stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {status_line:?}")))?;
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        Ok(status)
    }
}
