//! TLS (docs/contract.md §11) with certificates made at test time: HTTPS only, the certificate
//! served, rotation without a restart (the next handshake gets the new certificate, open
//! connections keep working, a bad pair is refused and the old one kept), a bad pair refused
//! at startup, and each answer sent as one TLS record. The three-member TLS cluster is
//! in tests/cluster.rs.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use support::tls::{test_ca, Ca, Connection, Files};
use support::{Server, TempDir};

fn start(files: &Files) -> Server {
    let args = files.args();
    Server::start(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// The certificate a new handshake with `server` gets.
fn served(server: &Server) -> CertificateDer<'static> {
    Connection::open(&server.base, &[test_ca().der()])
        .expect("a trusting client connects")
        .peer_certificate()
}

/// Waits up to 5 s for new handshakes to get `expected`.
fn wait_served(server: &Server, expected: &CertificateDer<'_>) -> bool {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if served(server) == *expected {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_tls_server_answers_https_with_its_certificate_and_nothing_over_plain_http() {
    let dir = TempDir::new("tls-serve");
    let issued = test_ca().issue(1);
    let files = Files::write(&dir.0, &issued);
    let server = start(&files);
    assert!(server.base.starts_with("https://"), "{}", server.base);

    let reply = server.get("/v1/environments");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(server.get("/healthz").status, 200);
    assert_eq!(served(&server), issued.der);
    // The server's cipher order decides: the test client (ring's default order) asks for
    // AES-256-GCM first and gets AES-128-GCM.
    let connection = Connection::open(&server.base, &[test_ca().der()]).expect("a handshake");
    assert_eq!(
        connection.cipher_suite(),
        rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
    );

    // Plain HTTP on the same port gets no HTTP answer.
    let address = server.base.trim_start_matches("https://");
    let mut plain = TcpStream::connect(address).expect("connects");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("a timeout");
    let _ = plain.write_all(b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn a_client_that_does_not_trust_the_ca_is_refused() {
    let dir = TempDir::new("tls-untrusted");
    let files = Files::write(&dir.0, &test_ca().issue(1));
    let server = start(&files);
    let stranger = Ca::new("another CA");
    let error = Connection::open(&server.base, &[stranger.der()])
        .err()
        .expect("an untrusting client fails its handshake");
    assert!(
        error.to_string().contains("invalid peer certificate"),
        "{error}"
    );
    assert!(
        server.logged("a client refused this server's TLS certificate"),
        "{}",
        server.stderr.lock()
    );
}

#[test]
fn a_rotated_certificate_is_served_to_the_next_handshake_while_open_connections_keep_working() {
    let dir = TempDir::new("tls-rotate");
    let first = test_ca().issue(1);
    let files = Files::write(&dir.0, &first);
    let server = start(&files);
    let mut open = Connection::open(&server.base, &[test_ca().der()]).expect("connects");
    assert_eq!(open.get("/healthz").expect("answers"), 200);
    assert_eq!(open.peer_certificate(), first.der);

    let second = test_ca().issue(2);
    files.replace(&second);
    assert!(
        wait_served(&server, &second.der),
        "the new certificate (serial 2) was not served; stderr:\n{}",
        server.stderr.lock()
    );
    assert!(server.logged("TLS certificate reloaded"));
    // The connection opened before the rotation still works, under its own handshake.
    assert_eq!(open.get("/v1/environments").expect("still answers"), 200);
    assert_eq!(open.peer_certificate(), first.der);

    // SIGHUP reads the files at once (and the poll would anyway): a third one is served too.
    let third = test_ca().issue(3);
    files.replace(&third);
    let hup = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(hup.success());
    assert!(wait_served(&server, &third.der), "{}", server.stderr.lock());
}

#[test]
fn a_bad_rotation_keeps_the_old_certificate() {
    let dir = TempDir::new("tls-bad-rotation");
    let good = test_ca().issue(1);
    let files = Files::write(&dir.0, &good);
    let server = start(&files);
    assert_eq!(served(&server), good.der);

    // A key that belongs to another certificate.
    let other = test_ca().issue(2);
    std::fs::write(&files.key, &other.key_pem).expect("writes");
    assert!(
        server.logged("cannot be used; still serving the old ones"),
        "{}",
        server.stderr.lock()
    );
    assert_eq!(served(&server), good.der);
    let logged = server.stderr.lock().clone();
    assert!(logged.contains("server.key"), "{logged}");

    // A certificate file that is not PEM.
    std::fs::write(&files.key, &good.key_pem).expect("writes");
    std::fs::write(&files.cert, "not a certificate\n").expect("writes");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(served(&server), good.der);
    assert!(server
        .stderr
        .lock()
        .contains("holds no usable PEM certificate"));

    // A good pair again is served.
    files.replace(&other);
    assert!(wait_served(&server, &other.der), "{}", server.stderr.lock());
}

#[test]
fn a_missing_or_mismatched_pair_is_refused_at_startup_naming_the_file() {
    let dir = TempDir::new("tls-refused");
    let files = Files::write(&dir.0, &test_ca().issue(1));
    let other = Files::write(&dir.0.join("other"), &test_ca().issue(2));
    let missing = dir.0.join("missing.pem");
    let missing = missing.display().to_string();
    let cert = files.cert.display().to_string();
    let key = files.key.display().to_string();
    let other_key = other.key.display().to_string();
    let data = dir.data();
    for (args, named) in [
        (vec!["--tls-cert", &missing, "--tls-key", &key], &missing),
        (vec!["--tls-cert", &cert, "--tls-key", &missing], &missing),
        (vec!["--tls-cert", &key, "--tls-key", &key], &key),
        (vec!["--tls-cert", &cert, "--tls-key", &cert], &cert),
        (
            vec!["--tls-cert", &cert, "--tls-key", &other_key],
            &other_key,
        ),
        // A member's CA file is read before its data directory is opened.
        (
            vec![
                "--tls-cert",
                &cert,
                "--tls-key",
                &key,
                "--tls-ca",
                &missing,
                "--data-dir",
                &data,
                "--node-id",
                "1",
                "--peers",
                "1=127.0.0.1:9",
                "--cluster-secret",
                support::CLUSTER_SECRET,
            ],
            &missing,
        ),
    ] {
        // A server that starts anyway would serve forever: give it 20 s, then stop it.
        let (out, err) = (dir.0.join("stdout"), dir.0.join("stderr"));
        let mut child = Command::new(support::binary())
            .args(["--listen", "127.0.0.1:0", "--token", support::TOKEN])
            .args(&args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).expect("a file"))
            .stderr(std::fs::File::create(&err).expect("a file"))
            .spawn()
            .expect("runs");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if started.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                break child.wait().expect("waits");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stdout = std::fs::read(&out).expect("reads stdout");
        let stderr = std::fs::read_to_string(&err).expect("reads stderr");
        assert!(!status.success(), "{args:?} started");
        assert!(stdout.is_empty(), "{args:?} printed a listening line");
        assert!(stderr.contains(named.as_str()), "{args:?}: {stderr}");
    }
    assert!(!dir.0.join("data").exists(), "a data directory was created");
}

#[test]
fn plain_http_beyond_loopback_is_warned_about() {
    let loopback = Server::start(&[]);
    assert!(loopback.base.starts_with("http://"));
    assert!(loopback.logged("serving"));
    assert!(!loopback.stderr.lock().contains("clear text"));
    let everywhere = Server::start_raw(&["--listen", "0.0.0.0:0", "--token", support::TOKEN], &[]);
    assert!(
        everywhere.logged("travel in clear text"),
        "{}",
        everywhere.stderr.lock()
    );
}

/// The socket of [`each_answer_leaves_as_one_tls_record`]'s client, keeping a copy of every byte
/// it reads so the records that arrived can be counted.
struct Recording {
    tcp: TcpStream,
    read: Vec<u8>,
}

impl Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.tcp.read(buf)?;
        self.read.extend_from_slice(&buf[..n]);
        Ok(n)
    }
}

impl Write for Recording {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.tcp.flush()
    }
}

/// The content types of the TLS records in `bytes`, which hold whole records.
fn record_types(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while let [kind, _, _, high, low, rest @ ..] = bytes {
        let length = usize::from(u16::from_be_bytes([*high, *low]));
        assert!(rest.len() >= length, "a cut record: {bytes:?}");
        types.push(*kind);
        bytes = &rest[length..];
    }
    assert!(bytes.is_empty(), "a cut record header: {bytes:?}");
    types
}

/// Sends `request` on `client` and reads until its whole answer (head and `content-length`
/// bytes of body) has arrived; the answer.
fn exchange(
    client: &mut rustls::ClientConnection,
    socket: &mut Recording,
    request: &str,
) -> String {
    client
        .writer()
        .write_all(request.as_bytes())
        .expect("buffers");
    while client.wants_write() {
        client.write_tls(socket).expect("sends");
    }
    let mut answer = Vec::new();
    loop {
        let mut chunk = [0; 4096];
        match client.reader().read(&mut chunk) {
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(error) => panic!("reading the answer: {error}"),
        }
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))
                .and_then(|value| value.parse().ok())
                .expect("a content-length");
            if body.len() >= length {
                return text;
            }
        }
        assert!(client.read_tls(socket).expect("reads") > 0, "closed early");
        client.process_new_packets().expect("valid records");
    }
}

#[test]
fn each_answer_leaves_as_one_tls_record() {
    // One record per answer (hyper hands its head and body to rustls together) means one seal
    // here and one open, one record header read, in the client.
    let dir = TempDir::new("tls-records");
    let server = start(&Files::write(&dir.0, &test_ca().issue(1)));
    let mut roots = rustls::RootCertStore::empty();
    roots.add(test_ca().der()).expect("a usable root");
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("an IP address");
    let mut client = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
    let tcp = TcpStream::connect(server.base.trim_start_matches("https://")).expect("connects");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let mut socket = Recording {
        tcp,
        read: Vec::new(),
    };
    while client.is_handshaking() {
        client.complete_io(&mut socket).expect("a handshake");
    }
    let request = format!(
        "GET /v1/environments HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {}\r\n\r\n",
        support::TOKEN
    );
    // The first answer follows the session tickets TLS 1.3 servers send after a handshake.
    let first = exchange(&mut client, &mut socket, &request);
    assert!(first.starts_with("HTTP/1.1 200 "), "{first}");
    for _ in 0..3 {
        socket.read.clear();
        let answer = exchange(&mut client, &mut socket, &request);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        // 23: application data, the outer type of every TLS 1.3 record after the handshake.
        assert_eq!(record_types(&socket.read), [23], "{answer}");
    }
}
