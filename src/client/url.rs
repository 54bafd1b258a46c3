//! [`Url`]: the parts of an `http://` or `https://` URL the client needs (scheme, host, port,
//! request target).

use std::fmt;

use super::Error;

/// Plain HTTP or HTTP over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// The port a URL without one means.
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// An `http://` or `https://` URL split into what a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) scheme: Scheme,
    /// The host as written, without brackets for IPv6 literals.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The request target: path and query (`/` when the URL has no path); no fragment.
    pub(crate) target: String,
}

impl Url {
    /// Parses `text`. Schemes other than `http` and `https` are refused as unsupported; user
    /// info and bad ports as invalid.
    pub(crate) fn parse(text: &str) -> Result<Url, Error> {
        let invalid = |why: &str| Error::invalid_url(text, why);
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err(invalid(
                "no scheme (expected http://host/... or https://host/...)",
            ));
        };
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            return Err(Error::unsupported_scheme(text));
        };
        let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err(invalid("user info in URLs is not supported"));
        }
        let (host, port) = split_host_port(authority, scheme.default_port())
            .ok_or_else(|| invalid("bad host or port"))?;
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(invalid("spaces or control characters in the path"));
        }
        Ok(Url {
            scheme,
            host: host.to_string(),
            port,
            target,
        })
    }

    /// The `Host` header value: the host, with the port unless it is the scheme's default.
    pub(crate) fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.scheme.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `scheme://host:port`, the upstream as error messages name it.
    pub(crate) fn origin(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{}://{host}:{}", self.scheme.as_str(), self.port)
    }

    /// Resolves a `Location` header against this URL: absolute URLs as they are, absolute
    /// paths on the same host.
    pub(crate) fn join(&self, location: &str) -> Result<Url, Error> {
        if location.contains("://") {
            Url::parse(location)
        } else if location.starts_with('/') {
            Ok(Url {
                target: location.to_string(),
                ..self.clone()
            })
        } else {
            Err(Error::invalid_url(
                location,
                "relative redirect locations are not supported",
            ))
        }
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.scheme.as_str();
        write!(f, "{scheme}://{}{}", self.host_header(), self.target)
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => default_port,
        Some(p) => p.parse().ok()?,
    };
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_target() {
        let url = Url::parse("http://example.com/a/b?q=1#frag").unwrap();
        assert_eq!(url.host, "example.com");
        assert_eq!(url.port, 80);
        assert_eq!(url.target, "/a/b?q=1");
        assert_eq!(url.host_header(), "example.com");
        let url = Url::parse("http://127.0.0.1:9000").unwrap();
        assert_eq!((url.port, url.target.as_str()), (9000, "/"));
        assert_eq!(url.host_header(), "127.0.0.1:9000");
        let url = Url::parse("HTTP://[::1]:81?x").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("::1", 81));
        assert_eq!(url.target, "/?x");
        assert_eq!(url.host_header(), "[::1]:81");
    }

    #[test]
    fn https_urls_default_to_port_443() {
        let url = Url::parse("HTTPS://example.com/s?wd=rust").unwrap();
        assert_eq!(url.scheme, Scheme::Https);
        assert_eq!((url.host.as_str(), url.port), ("example.com", 443));
        assert_eq!(url.host_header(), "example.com");
        assert_eq!(url.to_string(), "https://example.com/s?wd=rust");
        assert_eq!(url.origin(), "https://example.com:443");
        let url = Url::parse("https://[::1]:8443").unwrap();
        assert_eq!(url.host_header(), "[::1]:8443");
        assert_eq!(url.origin(), "https://[::1]:8443");
        // Port 80 is not the default of https: it is kept in the Host header.
        assert_eq!(Url::parse("https://h:80/").unwrap().host_header(), "h:80");
    }

    #[test]
    fn other_schemes_and_junk_are_refused_with_a_reason() {
        let err = Url::parse("ftp://example.com/").unwrap_err();
        assert_eq!(err.kind(), super::super::ErrorKind::UnsupportedScheme);
        assert!(err.to_string().contains("http:// and https://"), "{err}");
        for bad in [
            "example.com",
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://a:99999/",
            "http://u@h/",
            "http://h/a b",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_locations_resolve_against_the_request() {
        let url = Url::parse("http://h:8080/a").unwrap();
        assert_eq!(url.join("/b?c").unwrap().to_string(), "http://h:8080/b?c");
        assert_eq!(
            url.join("http://other/x").unwrap().to_string(),
            "http://other/x"
        );
        assert!(url.join("relative").is_err());
        let moved = url.join("https://secure/x").unwrap();
        assert_eq!((moved.scheme, moved.port), (Scheme::Https, 443));
    }
}
