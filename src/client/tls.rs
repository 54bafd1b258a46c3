//! TLS for `https://` upstreams: which CAs are trusted, the `rustls` client configuration, a
//! TLS session driven over a coroutine stream, and errors that name the upstream and the reason.
//!
//! - **Trust**: the system's CA store (`rustls-native-certs`: the distribution's bundle, or
//!   `SSL_CERT_FILE` / `SSL_CERT_DIR` when set), plus the PEM bundle the worker hands over at
//!   start ([`configure`], from `client-ca-file`). Certificates and host names are always
//!   verified; SNI is sent for host names (not for IP literals, RFC 6066).
//! - **One configuration per process**: [`configure`] at worker start reads and checks the
//!   `client-ca-file` bundle; the configuration (with the system store) is built at the first
//!   `https://` request, on the offload pool (no certificate file is read on the worker
//!   thread while it serves), with the system store alone when nobody configured it (a plain
//!   thread, a test).
//! - **Driving**: `rustls` does no I/O itself; [`TlsStream`] moves its records with
//!   `read_tls`/`write_tls` over the non-blocking [`CoStream`], which parks the coroutine while
//!   the socket is not ready. Every socket wait is bounded by the request's deadline, the
//!   handshake's included.
//!
//! It must not know about configuration files or the worker: it is handed a path.

use std::io::{self, Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{CertificateError, ClientConfig, ClientConnection, RootCertStore};

use super::Error;
use super::exchange::remaining;
use crate::coro::{self, CoStream};
use crate::proto::date::format_http_date;

/// A client configuration and the identity the keep-alive pool files its connections under
/// (a connection verified against one set of CAs is never reused under another).
#[derive(Debug)]
pub(crate) struct TlsConfig {
    pub(crate) id: u64,
    config: Arc<ClientConfig>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The process's configuration: what [`configure`] asked for, built on first use.
#[derive(Debug)]
enum Shared {
    /// Not built yet: the system store plus these CAs will be trusted.
    Pending(Vec<CertificateDer<'static>>),
    /// Being built on the offload pool; the result lands here.
    Building,
    Built(Arc<TlsConfig>),
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);

/// How often a request that needs the configuration while another builds it looks again.
const BUILD_POLL: Duration = Duration::from_millis(2);

/// Sets the process's TLS configuration: the system store plus the CA certificates of the
/// PEM file `ca_file`, if any. Later `https://` requests of every thread use it. The file is
/// read and checked now; the system store is loaded at the first `https://` request, on the
/// offload pool (a worker that never makes one saves about 20 million instructions at boot
/// and 0.9 MB of RSS). Parts of the system store that cannot be read are logged as warnings
/// then (the rest is used).
///
/// # Errors
/// `ca_file` cannot be read or holds no valid CA certificate (see [`read_ca_file`]).
pub(crate) fn configure(ca_file: Option<&Path>) -> Result<(), String> {
    let bundle = match ca_file {
        Some(path) => read_ca_file(path)?,
        None => Vec::new(),
    };
    *lock_shared() = Some(Shared::Pending(bundle));
    Ok(())
}

/// The process's configuration (the system store alone if [`configure`] was never called),
/// built by the first caller: off the worker's thread (the coroutine parks meanwhile), and
/// once, whoever asks at the same time. A coroutine cancelled while it waits leaves the build
/// going on: the next caller gets its result.
pub(crate) fn shared() -> Arc<TlsConfig> {
    #[cfg(test)]
    if let Some(config) = TEST_CONFIG.with(|c| c.borrow().clone()) {
        return config;
    }
    loop {
        let bundle = {
            let mut shared = lock_shared();
            match shared.take() {
                Some(Shared::Built(config)) => {
                    *shared = Some(Shared::Built(Arc::clone(&config)));
                    return config;
                }
                Some(Shared::Building) => {
                    *shared = Some(Shared::Building);
                    None
                }
                Some(Shared::Pending(bundle)) => {
                    *shared = Some(Shared::Building);
                    Some(bundle)
                }
                None => {
                    *shared = Some(Shared::Building);
                    Some(Vec::new())
                }
            }
        };
        let waited = match bundle {
            Some(bundle) => coro::offload(move || {
                let config = build(bundle);
                *lock_shared() = Some(Shared::Built(config));
            }),
            None => {
                coro::sleep(BUILD_POLL);
                Ok(())
            }
        };
        if waited.is_err() {
            // Cancelled (or no offload thread): wait on this thread instead; the state is
            // only ever Building until the build stores its result.
            std::thread::sleep(BUILD_POLL);
        }
    }
}

fn lock_shared() -> std::sync::MutexGuard<'static, Option<Shared>> {
    SHARED.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
thread_local! {
    /// A configuration for this thread's requests only, so that tests running at once can
    /// trust different CAs.
    static TEST_CONFIG: std::cell::RefCell<Option<Arc<TlsConfig>>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes this thread's requests trust the system store plus `bundle` (tests only).
#[cfg(test)]
pub(crate) fn trust_on_this_thread(bundle: Vec<CertificateDer<'static>>) {
    let config = build(bundle);
    TEST_CONFIG.with(|c| *c.borrow_mut() = Some(config));
}

/// Reads the CA certificates of the PEM file at `path` (`-----BEGIN CERTIFICATE-----`
/// blocks; other blocks are skipped) and checks that each can be a trust anchor.
///
/// # Errors
/// A sentence starting with the path: the file cannot be read, a block is not valid base64,
/// a certificate cannot be parsed, or the file holds no certificate at all.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| match e {
            pem::Error::Io(e) if e.kind() == io::ErrorKind::NotFound => {
                format!("{shown}: no such file")
            }
            pem::Error::Io(e) => format!("{shown}: cannot read: {e}"),
            other => format!("{shown}: not a PEM certificate bundle: {other:?}"),
        })?;
    if certs.is_empty() {
        return Err(format!(
            "{shown}: no certificate in it (expected PEM blocks \
             -----BEGIN CERTIFICATE-----)"
        ));
    }
    let mut check = RootCertStore::empty();
    for (n, cert) in certs.iter().enumerate() {
        check
            .add(cert.clone())
            .map_err(|e| format!("{shown}: certificate {}: {e}", n + 1))?;
    }
    Ok(certs)
}

fn build(bundle: Vec<CertificateDer<'static>>) -> Arc<TlsConfig> {
    let native = rustls_native_certs::load_native_certs();
    for problem in &native.errors {
        log::warn!("https client: system CA store: {problem}");
    }
    let mut roots = RootCertStore::empty();
    let (system, _unparsable) = roots.add_parsable_certificates(native.certs);
    let mut added = 0;
    for cert in bundle {
        // Checked by `read_ca_file` already.
        if roots.add(cert).is_ok() {
            added += 1;
        }
    }
    log::debug!("https client roots system={system} bundle={added}");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("invariant: the ring provider supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(TlsConfig {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        config: Arc::new(config),
    })
}

/// A TLS session over a connected stream.
pub(crate) struct TlsStream {
    sock: CoStream,
    tls: ClientConnection,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("version", &self.tls.protocol_version())
            .finish()
    }
}

impl TlsStream {
    /// Runs the handshake with `host` (`origin` names it in errors) on `sock`, verifying its
    /// certificate, before `deadline`.
    pub(crate) fn handshake(
        sock: CoStream,
        host: &str,
        origin: &str,
        config: &TlsConfig,
        deadline: Option<Instant>,
    ) -> Result<TlsStream, Error> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| Error::tls(format!("{origin}: {host:?} is not a valid TLS name")))?;
        let tls = ClientConnection::new(config.config.clone(), name)
            .map_err(|e| Error::tls(format!("{origin}: TLS setup failed: {e}")))?;
        let mut stream = TlsStream { sock, tls };
        let failed = |e: io::Error| Error::io(&format!("{origin}: TLS handshake"), e);
        while stream.tls.is_handshaking() {
            if stream.tls.wants_write() {
                stream.flush(deadline).map_err(failed)?;
                continue;
            }
            match stream.fill(deadline) {
                Ok(0) => {
                    return Err(Error::tls(format!(
                        "{origin}: TLS handshake: the server closed the connection"
                    )));
                }
                Ok(_) => {}
                Err(Fill::Io(e)) => return Err(failed(e)),
                Err(Fill::Tls(e)) => return Err(Error::tls(describe(origin, &e))),
            }
        }
        stream.flush(deadline).map_err(failed)?;
        Ok(stream)
    }

    /// The socket underneath.
    pub(crate) fn socket(&self) -> &CoStream {
        &self.sock
    }

    /// Whether the session holds nothing unread: no decrypted bytes, no `close_notify`.
    pub(crate) fn is_drained(&mut self) -> bool {
        match self.tls.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed(),
            Err(_) => false,
        }
    }

    /// Reads decrypted bytes into `buf`, waiting for records no later than `deadline`.
    /// `Ok(0)` is the server's `close_notify`; a connection closed without one is an
    /// `UnexpectedEof` error (a cut body must not pass for a whole one).
    pub(crate) fn read(&mut self, buf: &mut [u8], deadline: Option<Instant>) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                done => return done,
            }
            match self.fill(deadline) {
                Ok(_) => {}
                Err(Fill::Io(e)) => return Err(e),
                Err(Fill::Tls(e)) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
    }

    /// Encrypts and sends all of `buf` before `deadline`.
    pub(crate) fn write_all(
        &mut self,
        mut buf: &[u8],
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.tls.writer().write(buf)?;
            buf = &buf[n..];
            self.flush(deadline)?;
        }
        Ok(())
    }

    /// Reads one batch of records from the socket and processes them (a reply the session
    /// owes, such as an alert, is sent first).
    fn fill(&mut self, deadline: Option<Instant>) -> Result<usize, Fill> {
        self.flush(deadline).map_err(Fill::Io)?;
        self.sock
            .set_read_timeout(remaining(deadline).map_err(Fill::Io)?);
        let n = self.tls.read_tls(&mut &self.sock).map_err(Fill::Io)?;
        if let Err(e) = self.tls.process_new_packets() {
            // Tell the server why (the alert rustls queued): best effort, one small record.
            let _ = self.flush(deadline);
            return Err(Fill::Tls(e));
        }
        Ok(n)
    }

    /// Sends every record the session has queued.
    fn flush(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        while self.tls.wants_write() {
            self.sock.set_write_timeout(remaining(deadline)?);
            if self.tls.write_tls(&mut &self.sock)? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }
}

enum Fill {
    Io(io::Error),
    Tls(rustls::Error),
}

/// `origin: certificate rejected: <reason>`, or `origin: TLS handshake failed: <error>`.
fn describe(origin: &str, error: &rustls::Error) -> String {
    let rustls::Error::InvalidCertificate(cert) = error else {
        return format!("{origin}: TLS handshake failed: {error}");
    };
    let reason = match cert {
        CertificateError::UnknownIssuer => "unknown issuer (no trusted CA signed it)".to_string(),
        CertificateError::NotValidForName => "name mismatch".to_string(),
        CertificateError::NotValidForNameContext { presented, .. } if presented.is_empty() => {
            "name mismatch (certificate names no host)".to_string()
        }
        CertificateError::NotValidForNameContext { presented, .. } => {
            let names: Vec<&str> = presented.iter().map(|n| plain_name(n)).collect();
            format!("name mismatch (certificate is for {})", names.join(", "))
        }
        CertificateError::Expired => "expired".to_string(),
        CertificateError::ExpiredContext { not_after, .. } => format!(
            "expired (not valid after {})",
            format_http_date(not_after.as_secs())
        ),
        CertificateError::NotValidYet => "not valid yet".to_string(),
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "not valid yet (not before {})",
            format_http_date(not_before.as_secs())
        ),
        CertificateError::BadSignature => "bad signature".to_string(),
        CertificateError::Revoked => "revoked".to_string(),
        other => other.to_string(),
    };
    format!("{origin}: certificate rejected: {reason}")
}

/// `other.example` from webpki's `DnsName("other.example")`, `10.0.0.1` from
/// `IpAddress(10.0.0.1)`; anything else as it is.
fn plain_name(presented: &str) -> &str {
    let inner = |prefix: &str| {
        presented
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(')'))
    };
    if let Some(dns) = inner("DnsName(") {
        return dns.trim_matches('"');
    }
    inner("IpAddress(").unwrap_or(presented)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;

    #[test]
    fn certificate_errors_name_the_upstream_and_the_reason() {
        let origin = "https://127.0.0.1:8443";
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        assert_eq!(
            describe(origin, &unknown),
            "https://127.0.0.1:8443: certificate rejected: unknown issuer (no trusted CA signed it)"
        );
        let mismatch =
            rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from("127.0.0.1").unwrap(),
                presented: vec![
                    "DnsName(\"other.example\")".to_string(),
                    "IpAddress(10.0.0.1)".to_string(),
                ],
            });
        assert_eq!(
            describe(origin, &mismatch),
            "https://127.0.0.1:8443: certificate rejected: name mismatch \
             (certificate is for other.example, 10.0.0.1)"
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_000_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(946_684_800)),
        });
        assert_eq!(
            describe(origin, &expired),
            "https://127.0.0.1:8443: certificate rejected: expired \
             (not valid after Sat, 01 Jan 2000 00:00:00 GMT)"
        );
        let other = rustls::Error::General("boom".to_string());
        assert!(describe(origin, &other).starts_with(&format!("{origin}: TLS handshake failed")));
    }

    #[test]
    fn a_ca_file_must_exist_and_hold_a_certificate() {
        let dir = std::env::temp_dir().join(format!("rc-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let err = read_ca_file(&missing).unwrap_err();
        assert!(err.ends_with("missing.pem: no such file"), "{err}");
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "just some text\n").unwrap();
        let err = read_ca_file(&empty).unwrap_err();
        assert!(err.contains("no certificate in it"), "{err}");
        let junk = dir.join("junk.pem");
        std::fs::write(
            &junk,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = read_ca_file(&junk).unwrap_err();
        assert!(err.contains("certificate 1"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
