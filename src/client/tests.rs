//! Client tests against tiny std-thread HTTP servers (plain, and TLS with `rustls`' server
//! side and certificates of a throw-away CA made with the `openssl` command), both inside a
//! coroutine runtime and outside one (plain blocking calls).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::*;
use crate::coro::{Runtime, RuntimeConfig};

/// A server answering each request with `answer(request_line)`; counts connections. With
/// `close_after_one`, it closes every connection after its first response without saying so
/// (over TLS: after a `close_notify`, as nginx closes an idle keep-alive connection).
struct Upstream {
    scheme: &'static str,
    port: u16,
    connections: Arc<AtomicUsize>,
    /// The server name (SNI) each TLS client sent, in order of the handshakes.
    sni: Arc<Mutex<Vec<Option<String>>>>,
}

impl Upstream {
    fn start(close_after_one: bool, answer: fn(&str) -> Vec<u8>) -> Upstream {
        Upstream::listen(None, close_after_one, answer)
    }

    /// The same over TLS with the certificate `cert` of the test CA (see [`Pki`]).
    fn start_tls(cert: &str, close_after_one: bool, answer: fn(&str) -> Vec<u8>) -> Upstream {
        Upstream::listen(
            Some(Pki::get().server_config(cert)),
            close_after_one,
            answer,
        )
    }

    fn listen(
        tls: Option<Arc<rustls::ServerConfig>>,
        close_after_one: bool,
        answer: fn(&str) -> Vec<u8>,
    ) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let sni = Arc::new(Mutex::new(Vec::new()));
        let names = sni.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                counter.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                let names = names.clone();
                thread::spawn(move || match tls {
                    None => serve(stream, close_after_one, answer),
                    Some(config) => {
                        let session = rustls::ServerConnection::new(config).unwrap();
                        let mut tls = rustls::StreamOwned::new(session, stream);
                        while tls.conn.is_handshaking() {
                            if tls.conn.complete_io(&mut tls.sock).is_err() {
                                return; // the client refused the certificate
                            }
                        }
                        let name = tls.conn.server_name().map(str::to_string);
                        names.lock().unwrap().push(name);
                        serve(&mut tls, close_after_one, answer);
                        if close_after_one {
                            tls.conn.send_close_notify();
                            let _ = tls.flush();
                        }
                    }
                });
            }
        });
        Upstream {
            scheme,
            port,
            connections,
            sni,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }
}

fn serve(stream: impl Read + Write, close_after_one: bool, answer: fn(&str) -> Vec<u8>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let writer = reader.get_mut();
        let sent = writer
            .write_all(&answer(line.trim_end()))
            .and_then(|()| writer.flush());
        if sent.is_err() || close_after_one {
            return;
        }
    }
}

fn ok_with_path(line: &str) -> Vec<u8> {
    let path = line.split(' ').nth(1).unwrap_or("");
    format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{path}",
        path.len()
    )
    .into_bytes()
}

fn chunked(_: &str) -> Vec<u8> {
    b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\nX-Up: yes\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec()
}

fn in_runtime<T: 'static>(f: impl FnOnce() -> T + 'static) -> T {
    let mut rt = Runtime::new(RuntimeConfig {
        stack_size: 128 * 1024,
        max_coroutines: 16,
        max_tasks: 16,
        offload_threads: 1,
    })
    .unwrap();
    rt.block_on(f).unwrap()
}

#[test]
fn a_get_outside_a_coroutine_reads_a_length_framed_body() {
    let upstream = Upstream::start(false, ok_with_path);
    let response = get(&upstream.url("/a?b=1")).unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text(), "/a?b=1");
    assert_eq!(response.header("content-length"), Some("6"));
}

#[test]
fn a_get_inside_a_coroutine_reads_a_chunked_body() {
    let upstream = Upstream::start(false, chunked);
    let url = upstream.url("/");
    let response = in_runtime(move || get(&url).unwrap());
    assert_eq!(response.status(), 201);
    assert_eq!(response.body(), b"hello world");
    assert_eq!(response.header("x-up"), Some("yes"));
}

#[test]
fn keep_alive_reuses_one_connection_for_sequential_requests() {
    let upstream = Upstream::start(false, ok_with_path);
    let url = upstream.url("/k");
    let bodies = in_runtime(move || {
        let client = Client::new();
        (0..3)
            .map(|_| client.get(&url).send().unwrap().text())
            .collect::<Vec<_>>()
    });
    assert_eq!(bodies, ["/k", "/k", "/k"]);
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_replaced() {
    let upstream = Upstream::start(true, ok_with_path);
    let url = upstream.url("/s");
    for _ in 0..3 {
        // The upstream closes silently after each response; the pool notices (or the retry
        // does) and every request still succeeds.
        assert_eq!(get(&url).unwrap().text(), "/s");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 3);
    assert_eq!(
        pool::idle_count(Scheme::Http, "127.0.0.1", upstream.port),
        1
    );
}

/// GETs `url` with a 200 ms time limit (in a runtime), expecting it to fail: the error.
fn get_failing_within_200ms(url: String) -> Error {
    in_runtime(move || {
        Client::new()
            .timeout(Duration::from_millis(200))
            .get(&url)
            .send()
            .unwrap_err()
    })
}

#[test]
fn a_silent_upstream_hits_the_time_limit() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let started = Instant::now();
    let err = get_failing_within_200ms(url);
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(listener);
}

#[test]
fn a_closed_port_is_a_connect_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = get(&format!("http://127.0.0.1:{port}/")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Connect, "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[test]
fn schemes_other_than_http_and_https_are_refused() {
    let err = get("ftp://example.com/").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedScheme);
    assert!(err.to_string().contains("unsupported scheme"), "{err}");
}

fn redirect(line: &str) -> Vec<u8> {
    if line.contains("/old") {
        b"HTTP/1.1 302 Found\r\nLocation: /new\r\nContent-Length: 0\r\n\r\n".to_vec()
    } else {
        ok_with_path(line)
    }
}

#[test]
fn redirects_are_returned_unless_the_client_follows_them() {
    let upstream = Upstream::start(false, redirect);
    let response = get(&upstream.url("/old")).unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.header("location"), Some("/new"));
    let followed = Client::new()
        .redirects(2)
        .get(&upstream.url("/old"))
        .send()
        .unwrap();
    assert_eq!((followed.status(), followed.text().as_str()), (200, "/new"));
}

fn echo_post(_: &str) -> Vec<u8> {
    b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()
}

#[test]
fn posts_send_their_form_body_and_no_body_comes_back_on_204() {
    let upstream = Upstream::start(false, echo_post);
    let response = Client::new()
        .post(&upstream.url("/f"))
        .form(&[("a", "1 2"), ("b", "&")])
        .send()
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(response.body().is_empty());
    assert_eq!(encode_form(&[("a", "1 2"), ("b", "&")]), "a=1+2&b=%26");
}

fn slow_300ms(line: &str) -> Vec<u8> {
    thread::sleep(Duration::from_millis(300));
    ok_with_path(line)
}

/// GETs every one of `urls` at once (`spawn` + `join_all` in one runtime): the bodies, in
/// order, and how long that took.
fn get_all_at_once(urls: Vec<String>) -> (Vec<String>, Duration) {
    let started = Instant::now();
    let bodies = in_runtime(move || {
        let calls: Vec<_> = urls
            .into_iter()
            .map(|url| coro::spawn(move || get(&url).map(|r| r.text())))
            .collect();
        coro::join_all(calls)
    });
    let elapsed = started.elapsed();
    let bodies = bodies
        .into_iter()
        .map(|r| r.expect("joined").expect("fetched"))
        .collect();
    (bodies, elapsed)
}

#[test]
fn three_upstream_calls_fanned_out_with_spawn_and_join_all_overlap() {
    let upstream = Upstream::start(false, slow_300ms);
    let urls: Vec<String> = (1..=3)
        .map(|n| upstream.url(&format!("/part{n}")))
        .collect();
    let (bodies, elapsed) = get_all_at_once(urls);
    eprintln!(
        "three 300 ms upstream calls with spawn + join_all took {elapsed:?} (sequential: ~900 ms)"
    );
    assert_eq!(bodies, ["/part1", "/part2", "/part3"]);
}

fn interim_then_close_delimited(_: &str) -> Vec<u8> {
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"
        .to_vec()
}

#[test]
fn interim_responses_are_skipped_and_a_close_delimited_body_is_read_to_the_end() {
    let upstream = Upstream::start(true, interim_then_close_delimited);
    let response = get(&upstream.url("/")).unwrap();
    assert_eq!(
        (response.status(), response.text().as_str()),
        (200, "until close")
    );
    // Such a connection cannot carry another request: it is not pooled.
    assert_eq!(
        pool::idle_count(Scheme::Http, "127.0.0.1", upstream.port),
        0
    );
}

/// A throw-away CA and two server certificates it signed, made once per test process with the
/// `openssl` command: `good` for `127.0.0.1` and `localhost`, `other` for `other.example`.
/// Kept in memory; the files are removed once read.
struct Pki {
    ca: Vec<CertificateDer<'static>>,
    servers: Vec<(&'static str, Vec<CertificateDer<'static>>, Vec<u8>)>,
}

impl Pki {
    fn get() -> &'static Pki {
        static PKI: OnceLock<Pki> = OnceLock::new();
        PKI.get_or_init(Pki::make)
    }

    fn make() -> Pki {
        let dir =
            std::env::temp_dir().join(format!("rcontainer-client-pki-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("the openssl command (Debian package openssl)");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let ca = [
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rcontainer test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ];
        openssl(&[&["req", "-x509"], &ec[..], &ca[..]].concat());
        let mut servers = Vec::new();
        for (serial, (name, san)) in [
            ("good", "IP:127.0.0.1,DNS:localhost"),
            ("other", "DNS:other.example"),
        ]
        .into_iter()
        .enumerate()
        {
            let (key, csr, pem, ext) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
                format!("{name}.ext"),
            );
            std::fs::write(
                dir.join(&ext),
                format!(
                    "subjectAltName={san}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                ),
            )
            .unwrap();
            let subject = format!("/CN={name}");
            openssl(
                &[
                    &["req"],
                    &ec[..],
                    &["-keyout", &key, "-out", &csr, "-subj", &subject],
                ]
                .concat(),
            );
            let serial = (serial + 1).to_string();
            openssl(&[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial,
                "-days",
                "2",
                "-extfile",
                &ext,
                "-out",
                &pem,
            ]);
            let chain = CertificateDer::pem_file_iter(dir.join(&pem))
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            servers.push((name, chain, std::fs::read(dir.join(&key)).unwrap()));
        }
        let ca = read_ca_file(&dir.join("ca.pem")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        Pki { ca, servers }
    }

    fn server_config(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let (_, chain, key) = self.servers.iter().find(|(n, _, _)| *n == name).unwrap();
        let key = PrivateKeyDer::from_pem_slice(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key)
            .unwrap();
        Arc::new(config)
    }
}

/// This thread's requests trust the test CA (besides the system store).
fn trust_the_test_ca() {
    tls::trust_on_this_thread(Pki::get().ca.clone());
}

#[test]
fn an_https_get_inside_a_coroutine_is_verified_against_a_private_ca() {
    let upstream = Upstream::start_tls("good", false, chunked);
    let url = upstream.url("/");
    trust_the_test_ca();
    let response = in_runtime(move || get(&url).unwrap());
    assert_eq!(response.status(), 201);
    assert_eq!(response.body(), b"hello world");
    // An IP literal is verified against the certificate's IP names and sends no SNI.
    assert_eq!(*upstream.sni.lock().unwrap(), [None]);
}

#[test]
fn a_host_name_is_verified_and_sent_as_sni() {
    let upstream = Upstream::start_tls("good", false, ok_with_path);
    let url = format!("https://localhost:{}/by-name", upstream.port);
    trust_the_test_ca();
    assert_eq!(get(&url).unwrap().text(), "/by-name");
    assert_eq!(
        *upstream.sni.lock().unwrap(),
        [Some("localhost".to_string())]
    );
}

#[test]
fn sequential_https_requests_reuse_one_tls_connection() {
    let upstream = Upstream::start_tls("good", false, ok_with_path);
    let url = upstream.url("/k");
    trust_the_test_ca();
    let client = Client::new();
    for _ in 0..3 {
        assert_eq!(client.get(&url).send().unwrap().text(), "/k");
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        pool::idle_count(Scheme::Https, "127.0.0.1", upstream.port),
        1
    );
}

#[test]
fn a_pooled_tls_connection_the_upstream_closed_is_replaced() {
    let upstream = Upstream::start_tls("good", true, ok_with_path);
    let url = upstream.url("/s");
    trust_the_test_ca();
    for _ in 0..3 {
        // The upstream sends close_notify and closes after each response; the pool sees it
        // (or the retry does) and every request still succeeds.
        assert_eq!(get(&url).unwrap().text(), "/s");
        thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 3);
}

#[test]
fn an_unknown_ca_is_refused_naming_the_upstream_and_the_reason() {
    let upstream = Upstream::start_tls("good", false, ok_with_path);
    tls::trust_on_this_thread(Vec::new()); // the system store alone
    let err = get(&upstream.url("/")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "https://127.0.0.1:{}: certificate rejected: unknown issuer (no trusted CA signed it)",
            upstream.port
        )
    );
}

#[test]
fn a_certificate_for_another_name_is_refused_as_a_name_mismatch() {
    let upstream = Upstream::start_tls("other", false, ok_with_path);
    trust_the_test_ca();
    let err = get(&upstream.url("/")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Tls, "{err}");
    assert!(
        err.to_string()
            .ends_with("certificate rejected: name mismatch (certificate is for other.example)"),
        "{err}"
    );
}

#[test]
fn a_tls_handshake_that_never_ends_hits_the_time_limit() {
    // Accepts (in the kernel's backlog) and never answers the ClientHello.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/", listener.local_addr().unwrap());
    let err = get_failing_within_200ms(url);
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("TLS handshake"), "{err}");
    drop(listener);
}

#[test]
fn three_https_calls_fanned_out_with_spawn_and_join_all_overlap() {
    let upstream = Upstream::start_tls("good", false, slow_300ms);
    let urls: Vec<String> = (1..=3)
        .map(|n| upstream.url(&format!("/part{n}")))
        .collect();
    trust_the_test_ca();
    let (bodies, elapsed) = get_all_at_once(urls);
    eprintln!(
        "three 300 ms https calls with spawn + join_all took {elapsed:?} (sequential: ~900 ms)"
    );
    assert_eq!(bodies, ["/part1", "/part2", "/part3"]);
    // Three at once: three handshakes, three connections.
    assert_eq!(upstream.connections.load(Ordering::SeqCst), 3);
}

/// An upstream call (connect, request, wait, response) costs its caller at most 3 KiB of
/// coroutine stack optimized (2,471 bytes when written; 6,647 before the TLS handshake, the
/// head's field array and the big locals moved out of the frames the wait goes through), 13
/// KiB in a debug build (11,607; 16,191 before). Bytes written on a fresh stack, a count.
/// Length-framed: a chunked body adds `proto::http1::body`'s trailer check.
#[test]
fn an_upstream_call_costs_its_caller_at_most_3_kib_of_stack() {
    let bound = if cfg!(debug_assertions) {
        13 * 1024
    } else {
        3 * 1024
    };
    let upstream = Upstream::start(false, ok_with_path);
    let url = upstream.url("/a");
    let (first, again) = in_runtime(move || {
        let call = || Client::new().get(&url).send().unwrap().into_body();
        let (body, first) = coro::stack_written_by(call).unwrap();
        assert_eq!(body, b"/a");
        let (_, again) = coro::stack_written_by(call).unwrap();
        (first, again)
    });
    assert!(first > 0, "nothing measured");
    assert!(first <= bound, "{first} bytes of stack, over {bound}");
    assert!(
        again <= bound,
        "on a pooled connection: {again} bytes, over {bound}"
    );
}
