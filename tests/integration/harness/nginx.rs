//! A real nginx (Debian's package): in front of rcontainer for `uwsgi_pass` tests, or behind
//! it as a TLS upstream for the HTTPS client.
//!
//! Each test gets its own nginx: a config in the scratch dir, one process (`master_process
//! off`, so it keeps the test's privileges), logs in the scratch dir, a free loopback port.
//! Dropping it kills it.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{Addr, Proto, Target};
use super::{DEADLINE, Scratch};

/// A running nginx: a proxy to one uwsgi upstream, or a TLS server.
#[derive(Debug)]
pub(crate) struct Nginx {
    child: Child,
    dir: PathBuf,
    /// Where clients talk to nginx (HTTP; over TLS for [`Nginx::tls_server`]).
    pub(crate) target: Target,
}

impl Nginx {
    /// Whether the nginx binary is installed (tests that need it fail with a clear message
    /// when it is not: `.ci/run` installs it).
    pub(crate) fn binary() -> &'static str {
        for candidate in ["/usr/sbin/nginx", "/usr/local/sbin/nginx"] {
            if Path::new(candidate).exists() {
                return candidate;
            }
        }
        panic!("nginx is not installed: run `apt-get install nginx` (as .ci/run does)");
    }

    /// Starts nginx with `uwsgi_pass` to `upstream` (a uwsgi listener of rcontainer) and
    /// `extra` directives inside the `location /` block.
    pub(crate) fn uwsgi_proxy(scratch: &Scratch, upstream: &Target, extra: &str) -> Nginx {
        assert_eq!(upstream.proto, Proto::Uwsgi, "nginx needs a uwsgi socket");
        let pass = match &upstream.addr {
            Addr::Tcp(addr) => addr.to_string(),
            Addr::Unix(path) => format!("unix:{}", path.display()),
        };
        Nginx::start(scratch, |port| {
            format!(
                r#"listen 127.0.0.1:{port};
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_pass {pass};
            {extra}
        }}"#
            )
        })
    }

    /// Starts nginx serving TLS with the PEM files `cert` (the chain) and `key`, and
    /// `location` as the body of its `location /` block (`return 200 "...";`,
    /// `proxy_pass http://...;`).
    pub(crate) fn tls_server(scratch: &Scratch, cert: &Path, key: &Path, location: &str) -> Nginx {
        let (cert, key) = (cert.display(), key.display());
        Nginx::start(scratch, |port| {
            format!(
                r#"listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            {location}
        }}"#
            )
        })
    }

    /// Starts nginx with one `server` block, `server(port)` its directives.
    fn start(scratch: &Scratch, server: impl FnOnce(u16) -> String) -> Nginx {
        let config = NginxConfig::write(scratch, |port| {
            format!(
                r#"server {{
        {}
    }}"#,
                server(port)
            )
        });
        Nginx::run(config)
    }

    /// Starts nginx on `config` and waits until it listens on the config's port.
    pub(crate) fn run(config: NginxConfig) -> Nginx {
        let NginxConfig { dir, path, port } = config;
        let child = Command::new(Nginx::binary())
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("stderr.log")).expect("nginx stderr file"))
            .spawn()
            .expect("spawn nginx");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut nginx = Nginx {
            child,
            dir,
            target: Target {
                proto: Proto::Http,
                addr: Addr::Tcp(addr),
            },
        };
        nginx.wait_until_listening(addr);
        nginx
    }

    /// nginx's error log so far.
    pub(crate) fn error_log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self, addr: SocketAddr) {
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "nginx exited ({status}) at start:\n{}\n{}",
                    self.error_log(),
                    fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default()
                );
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "nginx not listening on {addr} within {DEADLINE:?}\n{}",
                    self.error_log()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("nginx error log:\n{}", self.error_log());
        }
    }
}

/// An nginx configuration in a scratch dir (`nginx/nginx.conf`), not started yet: a test can
/// put files beside it (relative `include`s are read from its directory) and check it.
#[derive(Debug)]
pub(crate) struct NginxConfig {
    /// The directory of `nginx.conf`, nginx's prefix (temp dirs, logs, pid).
    pub(crate) dir: PathBuf,
    /// `nginx.conf` itself.
    pub(crate) path: PathBuf,
    /// The free loopback port its server is to listen on.
    pub(crate) port: u16,
}

impl NginxConfig {
    /// Writes `nginx.conf` for one process logging to the scratch dir, with `http(port)` as
    /// the rest of its `http` block (`server { ... }` blocks, `include`s).
    pub(crate) fn write(scratch: &Scratch, http: impl FnOnce(u16) -> String) -> NginxConfig {
        let dir = scratch.path().join("nginx");
        for sub in ["body", "uwsgi", "proxy", "fastcgi", "scgi"] {
            fs::create_dir_all(dir.join(sub)).expect("create nginx temp dir");
        }
        let port = free_port();
        let http = http(port);
        let d = dir.display();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 4096; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/body;
    uwsgi_temp_path {d}/uwsgi;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    scgi_temp_path {d}/scgi;
    client_max_body_size 64m;
    large_client_header_buffers 4 64k;
    {http}
}}
"#
        );
        let path = dir.join("nginx.conf");
        fs::write(&path, conf).expect("write nginx.conf");
        NginxConfig { dir, path, port }
    }

    /// `nginx -t` on this configuration (with a deadline).
    pub(crate) fn test(&self) -> super::Output {
        let (dir, error_log, path) = (
            self.dir.to_str().expect("utf-8 path"),
            self.dir.join("error.log"),
            self.path.to_str().expect("utf-8 path"),
        );
        let error_log = error_log.to_str().expect("utf-8 path");
        super::run_program(
            Path::new(Nginx::binary()),
            &self.dir,
            &["-t", "-p", dir, "-e", error_log, "-c", path],
        )
    }
}

/// A loopback port that was free a moment ago (nginx cannot be told to pick one itself).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}
