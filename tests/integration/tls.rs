//! HTTPS in `rcontainer::client` on the real binary: the `fetch` app calling a local nginx that
//! serves TLS with certificates of a throw-away CA, made by each test with the `openssl`
//! command (Debian's `openssl` package; `.ci/run` installs it). A good certificate works
//! (with `client-ca-file` naming the CA), an unknown CA and a certificate for another name are
//! refused with their reason in the log, and three calls at once overlap.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::harness::client::Addr;
use crate::harness::client::{Proto, http_get};
use crate::harness::nginx::Nginx;
use crate::harness::{Instance, Scratch, Target, run_cli};

/// A CA made for one test, and server certificates it signed, in the test's scratch dir.
struct TestCa {
    dir: PathBuf,
}

impl TestCa {
    /// Makes the CA (`ca.pem`) and two server certificates: `good` for `127.0.0.1` and
    /// `localhost`, `other` for `other.example` only.
    fn make(scratch: &Scratch) -> TestCa {
        let dir = scratch.path().join("pki");
        std::fs::create_dir_all(&dir).expect("create pki dir");
        let ca = TestCa { dir };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        ca.openssl(&[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
            &["-subj", "/CN=rcontainer throw-away test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE"],
            &["-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]);
        for (serial, name, names) in [
            ("1", "good", "IP:127.0.0.1,DNS:localhost"),
            ("2", "other", "DNS:other.example"),
        ] {
            let ext = format!("{name}.ext");
            let extensions = format!(
                "subjectAltName={names}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            );
            std::fs::write(ca.dir.join(&ext), extensions).expect("write extensions");
            let (key, csr, pem) = (
                format!("{name}.key"),
                format!("{name}.csr"),
                format!("{name}.pem"),
            );
            let subject = format!("/CN={name}");
            ca.openssl(&[
                &["req"][..],
                &ec,
                &["-keyout", &key, "-out", &csr, "-subj", &subject],
            ]);
            ca.openssl(&[
                &[
                    "x509", "-req", "-in", &csr, "-CA", "ca.pem", "-CAkey", "ca.key",
                ][..],
                &[
                    "-set_serial",
                    serial,
                    "-days",
                    "2",
                    "-extfile",
                    &ext,
                    "-out",
                    &pem,
                ],
            ]);
        }
        ca
    }

    fn openssl(&self, args: &[&[&str]]) {
        let args = args.concat();
        let out = Command::new("openssl")
            .args(&args)
            .current_dir(&self.dir)
            .output()
            .expect("run openssl (Debian package openssl; .ci/run installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The CA's certificate (PEM): what `client-ca-file` names.
    fn ca_file(&self) -> String {
        self.dir.join("ca.pem").display().to_string()
    }

    /// nginx serving TLS with the certificate `name`, `location` in its `location /`.
    fn nginx(&self, scratch: &Scratch, name: &str, location: &str) -> Nginx {
        let cert = self.dir.join(format!("{name}.pem"));
        let key = self.dir.join(format!("{name}.key"));
        Nginx::tls_server(scratch, &cert, &key, location)
    }
}

fn port(nginx: &Nginx) -> u16 {
    match &nginx.target.addr {
        Addr::Tcp(addr) => addr.port(),
        other => panic!("nginx on {other:?}"),
    }
}

/// rcontainer with the `fetch` app calling `fetch_url`, plus `extra` INI lines.
fn fetch_server(name: &str, fetch_url: &str, extra: &str) -> Instance {
    Instance::start(
        name,
        &format!(
            "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = fetch\nfetch-url = {fetch_url}\n{extra}\n"
        ),
        &[],
    )
}

fn http(instance: &Instance) -> &Target {
    (instance.sockets.iter())
        .find(|t| t.proto == Proto::Http)
        .expect("an http socket in the ready line")
}

/// nginx answers with the request URI and how many requests its TLS connection has carried.
const SAY_WHO: &str = r#"default_type text/x-secure;
            return 200 "secure upstream saw $request_uri on request $connection_requests of its connection";"#;

#[test]
fn fetch_over_https_with_client_ca_file_answers_200_with_the_upstream_body() {
    let scratch = Scratch::new("tls-good");
    let ca = TestCa::make(&scratch);
    let nginx = ca.nginx(&scratch, "good", SAY_WHO);
    let server = fetch_server(
        "tls-good",
        &format!("https://127.0.0.1:{}/s", port(&nginx)),
        &format!("client-ca-file = {}", ca.ca_file()),
    );
    for n in 1..=2 {
        // Twice: the second call goes over the worker's pooled TLS connection.
        let response = http_get(http(&server), "/?wd=rust");
        assert_eq!(response.status, 200, "{}", server.logs());
        assert_eq!(response.header("content-type"), Some("text/x-secure"));
        assert_eq!(
            response.text(),
            format!("secure upstream saw /s?wd=rust on request {n} of its connection")
        );
    }
}

#[test]
fn fetch_over_https_without_the_ca_answers_502_and_logs_the_unknown_issuer() {
    let scratch = Scratch::new("tls-unknown-ca");
    let ca = TestCa::make(&scratch);
    let nginx = ca.nginx(&scratch, "good", SAY_WHO);
    let origin = format!("https://127.0.0.1:{}", port(&nginx));
    let mut server = fetch_server("tls-unknown-ca", &format!("{origin}/"), "");
    let response = http_get(http(&server), "/");
    assert_eq!(response.status, 502);
    let line = server.wait_for_log("fetch: upstream failed");
    eprintln!("{line}");
    assert!(
        line.contains(&format!("{origin}: certificate rejected: unknown issuer")),
        "{line}"
    );
    // The client told nginx why, with a TLS alert (nginx logs it when it reads the alert,
    // which may be after our answer came back: wait for the line).
    let deadline = Instant::now() + crate::harness::DEADLINE;
    let mut told = nginx.error_log();
    while !told.contains("alert unknown ca") && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
        told = nginx.error_log();
    }
    assert!(
        told.contains("alert unknown ca"),
        "nginx error log:\n{told}"
    );
}

#[test]
fn fetch_over_https_refuses_a_certificate_for_another_name() {
    let scratch = Scratch::new("tls-mismatch");
    let ca = TestCa::make(&scratch);
    let nginx = ca.nginx(&scratch, "other", SAY_WHO);
    let origin = format!("https://127.0.0.1:{}", port(&nginx));
    let mut server = fetch_server(
        "tls-mismatch",
        &format!("{origin}/"),
        &format!("client-ca-file = {}", ca.ca_file()),
    );
    let response = http_get(http(&server), "/");
    assert_eq!(response.status, 502);
    let line = server.wait_for_log("fetch: upstream failed");
    eprintln!("{line}");
    assert!(
        line.contains(&format!(
            "{origin}: certificate rejected: name mismatch (certificate is for other.example)"
        )),
        "{line}"
    );
}

/// A plain HTTP upstream (behind nginx) that holds every request until `want` of them have
/// arrived (or 5 s passed), then answers them all after [`UPSTREAM_DELAY`]: requests that
/// the worker made one after the other never meet there.
struct Gathering {
    port: u16,
    seen: Arc<(Mutex<Seen>, Condvar)>,
}

#[derive(Default)]
struct Seen {
    arrived: usize,
    in_flight: usize,
    most_at_once: usize,
}

impl Gathering {
    fn start(want: usize) -> Gathering {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let port = listener.local_addr().expect("upstream address").port();
        let seen = Arc::new((Mutex::new(Seen::default()), Condvar::new()));
        let shared = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut request_line = String::new();
                    let mut line = String::from("?");
                    reader.read_line(&mut request_line).unwrap_or(0);
                    while !line.trim().is_empty() {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                    }
                    let (lock, arrival) = &*shared;
                    let mut seen = lock.lock().expect("upstream lock");
                    seen.arrived += 1;
                    seen.in_flight += 1;
                    seen.most_at_once = seen.most_at_once.max(seen.in_flight);
                    arrival.notify_all();
                    let wait = Duration::from_secs(5);
                    let (mut seen, _) = arrival
                        .wait_timeout_while(seen, wait, |seen| seen.arrived < want)
                        .expect("upstream lock");
                    seen.in_flight -= 1;
                    drop(seen);
                    thread::sleep(UPSTREAM_DELAY);
                    let target = request_line.split(' ').nth(1).unwrap_or("?").to_string();
                    let body = format!("gathered {target}");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = reader.get_mut().write_all(reply.as_bytes());
                });
            }
        });
        Gathering { port, seen }
    }

    fn most_at_once(&self) -> usize {
        self.seen.0.lock().expect("upstream lock").most_at_once
    }
}

/// How long the gathering upstream takes to answer once its requests are all there.
const UPSTREAM_DELAY: Duration = Duration::from_millis(300);

#[test]
fn three_https_fetches_at_once_on_one_worker_overlap() {
    // The built-in apps make one upstream call per request, so the fan-out is three requests
    // at once to one worker, each making its HTTPS call (the unit test
    // `three_https_calls_fanned_out_with_spawn_and_join_all_overlap` fans out in one handler).
    let scratch = Scratch::new("tls-parallel");
    let ca = TestCa::make(&scratch);
    let upstream = Gathering::start(3);
    let nginx = ca.nginx(
        &scratch,
        "good",
        &format!("proxy_pass http://127.0.0.1:{};", upstream.port),
    );
    let server = fetch_server(
        "tls-parallel",
        &format!("https://127.0.0.1:{}/slow", port(&nginx)),
        &format!("processes = 1\nclient-ca-file = {}", ca.ca_file()),
    );
    let target = http(&server).clone();
    let started = Instant::now();
    let calls: Vec<_> = (1..=3)
        .map(|n| {
            let target = target.clone();
            thread::spawn(move || http_get(&target, &format!("/?n={n}")))
        })
        .collect();
    let responses: Vec<_> = (calls.into_iter())
        .map(|call| call.join().expect("client thread"))
        .collect();
    eprintln!(
        "three HTTPS fetches at once took {:?} (one takes {UPSTREAM_DELAY:?} at the upstream \
         once all three are there; one after the other, each would wait 5 s for the others)",
        started.elapsed()
    );
    for (n, response) in (1..=3).zip(&responses) {
        assert_eq!(response.status, 200, "{}", server.logs());
        assert_eq!(response.text(), format!("gathered /slow?n={n}"));
    }
    assert_eq!(
        upstream.most_at_once(),
        3,
        "the three calls did not overlap"
    );
}

#[test]
fn a_bad_client_ca_file_is_a_config_error_with_file_and_line() {
    let scratch = Scratch::new("tls-bad-ca");
    scratch.write("not-pem.txt", "this is no certificate\n");
    for (value, why) in [
        ("%dmissing.pem", "missing.pem: no such file"),
        ("%dnot-pem.txt", "not-pem.txt: no certificate in it"),
    ] {
        scratch.write(
            "app.ini",
            &format!(
                "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = fetch\n\
                 fetch-url = https://127.0.0.1:1/\nclient-ca-file = {value}\n"
            ),
        );
        let out = run_cli(scratch.path(), &["--ini", "app.ini", "--check-config"]);
        assert_eq!(out.code(), Some(1), "stderr: {}", out.stderr);
        assert!(
            out.stderr.contains("app.ini:5: client-ca-file: ") && out.stderr.contains(why),
            "stderr: {}",
            out.stderr
        );
    }
}

#[test]
fn a_worker_loads_the_ca_store_at_its_first_https_request_not_at_boot() {
    let scratch = Scratch::new("tls-lazy");
    let ca = TestCa::make(&scratch);
    let nginx = ca.nginx(&scratch, "good", SAY_WHO);
    let ini = format!(
        "[rcontainer]\nhttp-socket = 127.0.0.1:0\nmodule = fetch\nfetch-url = https://127.0.0.1:{}/s\nclient-ca-file = {}\n",
        port(&nginx),
        ca.ca_file()
    );
    let mut server = Instance::start_with_env("tls-lazy", &ini, &[("RUST_LOG", "debug")]);
    server.wait_for_log("worker ready");
    assert!(
        !server.logs().contains("https client roots"),
        "the CA store was loaded before any https request:\n{}",
        server.logs()
    );
    let response = http_get(http(&server), "/?wd=lazy");
    assert_eq!(response.status, 200, "{}", server.logs());
    assert_eq!(
        response.text(),
        "secure upstream saw /s?wd=lazy on request 1 of its connection"
    );
    server.wait_for_log("https client roots system=");
    assert!(server.logs().contains("bundle=1"), "{}", server.logs());
}
