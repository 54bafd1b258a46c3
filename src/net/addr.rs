//! Socket specs: the text a user writes after `socket =`, `http-socket =` or `stats =`, parsed
//! into a [`SocketSpec`].
//!
//! Pure: no I/O and no name resolution. A host name (`localhost:3031`) is kept as written and
//! resolved later by whoever binds the socket. `Display` writes a spec back in a form that parses
//! to the same value, so logs and `--print-config` show something a user can paste into an INI.

use std::fmt;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::str::FromStr;

/// Where a listener lives.
///
/// | written                       | parsed as                                  |
/// |-------------------------------|--------------------------------------------|
/// | `127.0.0.1:3031`, `[::1]:3031` | `Tcp { host: Ip(..), port }`               |
/// | `:3031`                       | `Tcp { host: Any, port }` (all interfaces) |
/// | `localhost:3031`              | `Tcp { host: Name("localhost"), port }`    |
/// | `/run/app.sock`, `unix:x.sock`, `app.sock` | `Unix(path)`                  |
/// | `fd://3`                      | `Fd(3)` (inherited, already listening)     |
///
/// Port 0 is allowed: the kernel picks a free port and the master reports the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SocketSpec {
    /// A TCP listener.
    Tcp { host: Host, port: u16 },
    /// A unix stream socket at this path (relative paths are relative to the working directory
    /// at bind time, as in uWSGI).
    Unix(PathBuf),
    /// A listening socket inherited as this file descriptor (systemd, the emperor, a re-exec).
    Fd(RawFd),
}

/// The host part of a TCP spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// `:3031`: every interface (bound as `0.0.0.0`; dual-stack is the binder's choice).
    Any,
    /// A literal address.
    Ip(IpAddr),
    /// A name to resolve at bind time.
    Name(String),
}

impl FromStr for SocketSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err("empty socket address".to_owned());
        }
        if let Some(fd) = text.strip_prefix("fd://") {
            return fd
                .parse::<RawFd>()
                .ok()
                .filter(|fd| *fd >= 0)
                .map(SocketSpec::Fd)
                .ok_or_else(|| format!("'{text}': fd:// needs a file descriptor number"));
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("'{text}': unix: needs a path"));
            }
            return Ok(SocketSpec::Unix(PathBuf::from(path)));
        }
        // Paths are recognised before host:port so that `/run/a:b.sock` stays a path; anything
        // without a colon is a (relative) unix path, as uWSGI reads it.
        if text.starts_with('/') || text.starts_with('.') || !text.contains(':') {
            return Ok(SocketSpec::Unix(PathBuf::from(text)));
        }
        parse_tcp(text)
    }
}

fn parse_tcp(text: &str) -> Result<SocketSpec, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("'{text}': missing ']' after the IPv6 address"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("'{text}': missing ':port' after ']'"))?;
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("'{text}': '{ip}' is not an IPv6 address"))?;
        (Host::Ip(ip), port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .expect("invariant: the caller only passes text containing ':'");
        let host = if host.is_empty() {
            Host::Any
        } else if host.contains(':') {
            return Err(format!(
                "'{text}': write IPv6 addresses in brackets, as in [::1]:3031"
            ));
        } else if let Ok(ip) = host.parse::<IpAddr>() {
            Host::Ip(ip)
        } else if is_host_name(host) {
            Host::Name(host.to_owned())
        } else {
            return Err(format!("'{text}': '{host}' is not a host name or address"));
        };
        (host, port)
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("'{text}': '{port}' is not a port number (0-65535)"))?;
    Ok(SocketSpec::Tcp { host, port })
}

fn is_host_name(host: &str) -> bool {
    host.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

impl fmt::Display for SocketSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketSpec::Tcp { host, port } => write!(f, "{host}:{port}"),
            SocketSpec::Unix(path) => {
                let text = path.to_string_lossy();
                // Without the prefix, a relative path with a colon would read back as host:port.
                if text.starts_with('/') || text.starts_with('.') || !text.contains(':') {
                    write!(f, "{text}")
                } else {
                    write!(f, "unix:{text}")
                }
            }
            SocketSpec::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Any => Ok(()),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Name(name) => write!(f, "{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn parse(text: &str) -> SocketSpec {
        text.parse().unwrap()
    }

    #[test]
    fn ipv4_host_and_port_parse() {
        assert_eq!(
            parse("127.0.0.1:3031"),
            SocketSpec::Tcp {
                host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                port: 3031
            }
        );
    }

    #[test]
    fn bare_port_means_every_interface() {
        assert_eq!(
            parse(":3031"),
            SocketSpec::Tcp {
                host: Host::Any,
                port: 3031
            }
        );
    }

    #[test]
    fn bracketed_ipv6_parses() {
        assert_eq!(
            parse("[::1]:3031"),
            SocketSpec::Tcp {
                host: Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                port: 3031
            }
        );
    }

    #[test]
    fn host_names_are_kept_for_later_resolution() {
        assert_eq!(
            parse("localhost:3031"),
            SocketSpec::Tcp {
                host: Host::Name("localhost".into()),
                port: 3031
            }
        );
    }

    #[test]
    fn paths_and_unix_prefix_are_unix_sockets() {
        assert_eq!(
            parse("/run/app.sock"),
            SocketSpec::Unix("/run/app.sock".into())
        );
        assert_eq!(
            parse("unix:/run/app.sock"),
            SocketSpec::Unix("/run/app.sock".into())
        );
        assert_eq!(parse("app.sock"), SocketSpec::Unix("app.sock".into()));
        assert_eq!(
            parse("/run/a:b.sock"),
            SocketSpec::Unix("/run/a:b.sock".into())
        );
    }

    #[test]
    fn fd_urls_are_inherited_descriptors() {
        assert_eq!(parse("fd://3"), SocketSpec::Fd(3));
    }

    #[test]
    fn port_zero_is_allowed_for_ephemeral_ports() {
        assert_eq!(
            parse("127.0.0.1:0"),
            SocketSpec::Tcp {
                host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                port: 0
            }
        );
    }

    #[test]
    fn malformed_specs_are_rejected_with_a_reason() {
        for bad in [
            "",
            "127.0.0.1:99999",
            "127.0.0.1:",
            "127.0.0.1:http",
            "::1:3031",
            "[::1]3031",
            "[nope]:80",
            "bad host:80",
            "fd://",
            "fd://-1",
            "unix:",
        ] {
            let err = bad.parse::<SocketSpec>().unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "127.0.0.1:3031",
            ":3031",
            "[::1]:3031",
            "localhost:0",
            "/run/app.sock",
            "app.sock",
            "./a:b.sock",
            "unix:a:b.sock",
            "fd://3",
        ] {
            let spec = parse(text);
            assert_eq!(spec.to_string(), text);
            assert_eq!(parse(&spec.to_string()), spec);
        }
        assert_eq!(parse("unix:/run/app.sock").to_string(), "/run/app.sock");
    }
}
