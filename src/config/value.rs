//! Value kinds: the typed values an option can hold and the parser for each.
//!
//! A kind is a marker type implementing [`Kind`]; the option table names one per option and the
//! `Config` field gets the kind's `Out` type. Parsers take the text after placeholder expansion
//! and return either the value or a short reason (`"'abc' is not a number"`); the caller adds
//! `file:line: key:` in front. Nothing here knows where a value came from.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::{Gid, Uid};

use crate::net::addr::SocketSpec;
use crate::sys::privilege::Credentials;

/// One kind of option value.
pub(crate) trait Kind {
    /// What the `Config` field holds for one value of this kind.
    type Out;
    /// How `--help` shows the value (`--processes N`); empty for flags.
    const METAVAR: &'static str;
    /// The value assumed when the key is given alone (`vacuum` means `vacuum = true`).
    const BARE: Option<&'static str> = None;
    /// Whether one value may list several items separated by commas (`a,b`).
    const COMMA_LIST: bool = false;
    /// Parses one (already expanded) value.
    fn parse(text: &str) -> Result<Self::Out, String>;
}

/// The items of a comma-separated value, trimmed, empty ones skipped.
pub(crate) fn split_commas(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// `true/false/1/0/yes/no/on/off`, any case. Bare means true.
#[derive(Debug)]
pub(crate) struct Flag;

impl Kind for Flag {
    type Out = bool;
    const METAVAR: &'static str = "";
    const BARE: Option<&'static str> = Some("true");
    fn parse(text: &str) -> Result<bool, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(format!(
                "'{text}' is not a boolean (true/false, 1/0, yes/no, on/off)"
            )),
        }
    }
}

/// A count of things (processes, cores, threads) between `MIN` and `MAX`.
#[derive(Debug)]
pub(crate) struct Count<const MIN: usize, const MAX: usize>;

impl<const MIN: usize, const MAX: usize> Kind for Count<MIN, MAX> {
    type Out = usize;
    const METAVAR: &'static str = "N";
    fn parse(text: &str) -> Result<usize, String> {
        let n = parse_u64(text)?;
        let n = usize::try_from(n).map_err(|_| format!("{n} is too large"))?;
        in_range(n, MIN, MAX, &n.to_string())
    }
}

/// A plain integer between `MIN` and `MAX` (request counts, megabytes).
#[derive(Debug)]
pub(crate) struct Int<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> Kind for Int<MIN, MAX> {
    type Out = u64;
    const METAVAR: &'static str = "N";
    fn parse(text: &str) -> Result<u64, String> {
        let n = parse_u64(text)?;
        in_range(n, MIN, MAX, &n.to_string())
    }
}

/// A size in bytes: `65535`, `64k`, `1m`, `2g` (binary multiples), between `MIN` and `MAX`.
#[derive(Debug)]
pub(crate) struct Size<const MIN: u64, const MAX: u64>;

impl<const MIN: u64, const MAX: u64> Kind for Size<MIN, MAX> {
    type Out = u64;
    const METAVAR: &'static str = "SIZE";
    fn parse(text: &str) -> Result<u64, String> {
        let bytes = parse_size(text, 1)?;
        in_range(bytes, MIN, MAX, text.trim())
    }
}

/// A size where a plain number counts KiB (`stack-size = 256`), also `64k`, `1m`; the value is in
/// bytes. `MIN_KIB` and `MAX_KIB` bound it in KiB.
#[derive(Debug)]
pub(crate) struct KiB<const MIN_KIB: u64, const MAX_KIB: u64>;

impl<const MIN_KIB: u64, const MAX_KIB: u64> Kind for KiB<MIN_KIB, MAX_KIB> {
    type Out = usize;
    const METAVAR: &'static str = "KIB";
    fn parse(text: &str) -> Result<usize, String> {
        let bytes = parse_size(text, 1024)?;
        if bytes % 1024 != 0 {
            return Err(format!("'{}' is not a whole number of KiB", text.trim()));
        }
        let kib = bytes / 1024;
        if !(MIN_KIB..=MAX_KIB).contains(&kib) {
            let shown = text.trim();
            return Err(format!(
                "{shown} is out of range ({MIN_KIB} to {MAX_KIB} KiB)"
            ));
        }
        usize::try_from(kib * 1024).map_err(|_| format!("'{}' is too large", text.trim()))
    }
}

/// A duration where a plain number counts seconds, as in uWSGI (`harakiri = 30`); also `500ms`,
/// `2s`, `1m`, `1h`. Zero usually means "off"; the option's help says so.
#[derive(Debug)]
pub(crate) struct Seconds;

impl Kind for Seconds {
    type Out = Duration;
    const METAVAR: &'static str = "SECS";
    fn parse(text: &str) -> Result<Duration, String> {
        parse_duration(text, Duration::from_secs(1))
    }
}

/// A duration where a plain number counts milliseconds, as uWSGI's `log-slow` does.
#[derive(Debug)]
pub(crate) struct Millis;

impl Kind for Millis {
    type Out = Duration;
    const METAVAR: &'static str = "MSECS";
    fn parse(text: &str) -> Result<Duration, String> {
        parse_duration(text, Duration::from_millis(1))
    }
}

/// An octal permission mode or mask: `660`, `0660`, `022`.
#[derive(Debug)]
pub(crate) struct Mode;

impl Kind for Mode {
    type Out = u32;
    const METAVAR: &'static str = "MODE";
    fn parse(text: &str) -> Result<u32, String> {
        parse_mode(text)
    }
}

/// A unix-socket mode; given bare (`chmod-socket` alone) it is `666`, as in uWSGI.
#[derive(Debug)]
pub(crate) struct SocketMode;

impl Kind for SocketMode {
    type Out = u32;
    const METAVAR: &'static str = "MODE";
    const BARE: Option<&'static str> = Some("666");
    fn parse(text: &str) -> Result<u32, String> {
        parse_mode(text)
    }
}

/// A listener address, see [`SocketSpec`].
#[derive(Debug)]
pub(crate) struct Socket;

impl Kind for Socket {
    type Out = SocketSpec;
    const METAVAR: &'static str = "ADDR";
    fn parse(text: &str) -> Result<SocketSpec, String> {
        text.parse()
    }
}

/// `NAME=VALUE`, as in `env = LANG=C.UTF-8` (the value may be empty or contain `=`).
#[derive(Debug)]
pub(crate) struct KeyValue;

/// One `NAME=VALUE` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pair {
    pub(crate) name: String,
    pub(crate) value: String,
}

impl Kind for KeyValue {
    type Out = Pair;
    const METAVAR: &'static str = "K=V";
    fn parse(text: &str) -> Result<Pair, String> {
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| format!("'{text}' is not NAME=VALUE"))?;
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("'{text}': the name before '=' must be one word"));
        }
        Ok(Pair {
            name: name.to_owned(),
            value: value.trim().to_owned(),
        })
    }
}

/// `/prefix=target`, as in `mount = /api=echo` or `static-map = /static=/srv/www`.
#[derive(Debug)]
pub(crate) struct Prefixed;

/// One path prefix and what serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PrefixMap {
    /// Starts with `/`; `/` alone matches everything.
    pub(crate) prefix: String,
    /// An app name (`mount`) or a file-system path (`static-map`).
    pub(crate) target: String,
}

impl Kind for Prefixed {
    type Out = PrefixMap;
    const METAVAR: &'static str = "/PREFIX=TARGET";
    fn parse(text: &str) -> Result<PrefixMap, String> {
        let (prefix, target) = text
            .split_once('=')
            .ok_or_else(|| format!("'{text}' is not /prefix=target"))?;
        let (prefix, target) = (prefix.trim(), target.trim());
        if !prefix.starts_with('/') {
            return Err(format!("'{text}': the prefix must start with '/'"));
        }
        if target.is_empty() {
            return Err(format!("'{text}': nothing after '='"));
        }
        Ok(PrefixMap {
            prefix: prefix.to_owned(),
            target: target.to_owned(),
        })
    }
}

/// Free text (a name, a format string).
#[derive(Debug)]
pub(crate) struct Text;

impl Kind for Text {
    type Out = String;
    const METAVAR: &'static str = "TEXT";
    fn parse(text: &str) -> Result<String, String> {
        Ok(text.to_owned())
    }
}

/// `log-format`: `json`, or a request-log line with uWSGI's `%(var)` variables. Every variable
/// is checked when the configuration loads: an unknown one is an error, not literal text.
#[derive(Debug)]
pub(crate) struct LogFormat;

/// A parsed `log-format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestLogFormat {
    /// One JSON object per line.
    Json,
    /// A line of text and variables, with the text it was parsed from.
    Line { source: String, parts: Vec<LogPart> },
}

impl RequestLogFormat {
    #[cfg(test)]
    /// The value as written.
    pub(crate) fn source(&self) -> &str {
        match self {
            RequestLogFormat::Json => "json",
            RequestLogFormat::Line { source, .. } => source,
        }
    }
}

/// A piece of a `log-format` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogPart {
    /// Written as it is.
    Text(String),
    /// Replaced by the request's value (`-` when empty, as uWSGI does).
    Var(LogVar),
}

/// A `log-format` variable, with uWSGI's names and meanings (its docs' LogFormat page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LogVar {
    /// `uri`: `REQUEST_URI`.
    Uri,
    /// `method`: `REQUEST_METHOD`.
    Method,
    /// `user`: `REMOTE_USER`.
    User,
    /// `addr`: `REMOTE_ADDR`.
    Addr,
    /// `host`: `HTTP_HOST`.
    Host,
    /// `proto`: `SERVER_PROTOCOL`.
    Proto,
    /// `uagent`: `HTTP_USER_AGENT`.
    Uagent,
    /// `referer`: `HTTP_REFERER`.
    Referer,
    /// `status`: the response status code.
    Status,
    /// `micros`: response time in microseconds.
    Micros,
    /// `msecs`: response time in milliseconds.
    Msecs,
    /// `secs`: response time in seconds, with six decimals.
    Secs,
    /// `time`: the request's start, in seconds since the epoch.
    Time,
    /// `tmsecs`: the request's start, in milliseconds since the epoch.
    Tmsecs,
    /// `tmicros`: the request's start, in microseconds since the epoch.
    Tmicros,
    /// `ctime`: the request's start as C's `ctime` (UTC).
    Ctime,
    /// `ltime`: the request's start as Apache logs it (`23/Nov/2026:17:45:01 +0000`, UTC).
    Ltime,
    /// `epoch`: the time the line is written, in seconds since the epoch.
    Epoch,
    /// `size`: response headers plus body, in bytes.
    Size,
    /// `rsize`: response body, in bytes.
    Rsize,
    /// `hsize`: response headers (with the status line), in bytes.
    Hsize,
    /// `headers`: how many response headers.
    Headers,
    /// `cl`: the request's `CONTENT_LENGTH` (0 when none).
    Cl,
    /// `vars`: how many CGI vars the request has.
    Vars,
    /// `pid`: the worker's pid.
    Pid,
    /// `wid`: the worker's id.
    Wid,
    /// `core`: the core (coroutine slot) that ran the request.
    Core,
    /// `var.NAME`: the request's CGI var `NAME`.
    Var(String),
}

impl LogVar {
    /// Every variable name (`var.NAME` aside), for messages and `--help`.
    pub(crate) const NAMES: [&'static str; 27] = [
        "uri", "method", "user", "addr", "host", "proto", "uagent", "referer", "status", "micros",
        "msecs", "secs", "time", "tmsecs", "tmicros", "ctime", "ltime", "epoch", "size", "rsize",
        "hsize", "headers", "cl", "vars", "pid", "wid", "core",
    ];

    /// uWSGI variables rcontainer does not provide: named in the error, so it says why.
    const NOT_PROVIDED: [&'static str; 13] = [
        "switches",
        "rss",
        "vsz",
        "rssM",
        "vszM",
        "pktsize",
        "modifier1",
        "modifier2",
        "rerr",
        "werr",
        "ioerr",
        "ftime",
        "metric.",
    ];

    /// The variable named `name` (what is between `%(` and `)`).
    pub(crate) fn from_name(name: &str) -> Option<LogVar> {
        use LogVar::*;
        Some(match name {
            "uri" => Uri,
            "method" => Method,
            "user" => User,
            "addr" => Addr,
            "host" => Host,
            "proto" => Proto,
            "uagent" => Uagent,
            "referer" => Referer,
            "status" => Status,
            "micros" => Micros,
            "msecs" => Msecs,
            "secs" => Secs,
            "time" => Time,
            "tmsecs" => Tmsecs,
            "tmicros" => Tmicros,
            "ctime" => Ctime,
            "ltime" => Ltime,
            "epoch" => Epoch,
            "size" => Size,
            "rsize" => Rsize,
            "hsize" => Hsize,
            "headers" => Headers,
            "cl" => Cl,
            "vars" => Vars,
            "pid" => Pid,
            "wid" => Wid,
            "core" => Core,
            _ => match name.strip_prefix("var.") {
                Some(var) if !var.is_empty() => Var(var.to_string()),
                _ => return None,
            },
        })
    }

    /// The request var this variable shows, if it shows one.
    pub(crate) fn request_var(&self) -> Option<&str> {
        match self {
            LogVar::User => Some("REMOTE_USER"),
            LogVar::Host => Some("HTTP_HOST"),
            LogVar::Uagent => Some("HTTP_USER_AGENT"),
            LogVar::Referer => Some("HTTP_REFERER"),
            LogVar::Cl => Some("CONTENT_LENGTH"),
            LogVar::Var(name) => Some(name),
            _ => None,
        }
    }
}

impl Kind for LogFormat {
    type Out = RequestLogFormat;
    const METAVAR: &'static str = "FORMAT";
    fn parse(text: &str) -> Result<RequestLogFormat, String> {
        if text.trim() == "json" {
            return Ok(RequestLogFormat::Json);
        }
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%(") {
            if start > 0 {
                parts.push(LogPart::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find(')')
                .ok_or_else(|| format!("'%({after}' has no closing ')'"))?;
            let name = &after[..end];
            let var = LogVar::from_name(name).ok_or_else(|| unknown_log_var(name))?;
            parts.push(LogPart::Var(var));
            rest = &after[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(LogPart::Text(rest.to_string()));
        }
        Ok(RequestLogFormat::Line {
            source: text.to_string(),
            parts,
        })
    }
}

fn unknown_log_var(name: &str) -> String {
    let known = format!("{}, var.NAME", LogVar::NAMES.join(", "));
    let from_uwsgi = LogVar::NOT_PROVIDED
        .iter()
        .any(|n| name == *n || (n.ends_with('.') && name.starts_with(n)));
    if from_uwsgi {
        format!("uWSGI variable '{name}' is not available in rcontainer (known: {known})")
    } else {
        format!("unknown variable '{name}' (known: {known})")
    }
}

/// A file-system path; not checked for existence here (it may be created later).
#[derive(Debug)]
pub(crate) struct Path;

impl Kind for Path {
    type Out = PathBuf;
    const METAVAR: &'static str = "PATH";
    fn parse(text: &str) -> Result<PathBuf, String> {
        Ok(PathBuf::from(text))
    }
}

/// `req-logger = file:PATH`: where request lines go. uWSGI's other loggers (`syslog`,
/// `socket:`, `udp:`, ...) are refused, not ignored: requests would silently go elsewhere.
#[derive(Debug)]
pub(crate) struct ReqLogger;

impl Kind for ReqLogger {
    type Out = PathBuf;
    const METAVAR: &'static str = "file:PATH";
    fn parse(text: &str) -> Result<PathBuf, String> {
        let text = text.trim();
        match text.strip_prefix("file:") {
            Some(path) if !path.trim().is_empty() => Ok(PathBuf::from(path.trim())),
            Some(_) => Err("file: needs a path (file:/var/log/app/requests.log)".to_string()),
            None => {
                let scheme = text.split(':').next().unwrap_or(text);
                Err(format!(
                    "only file:PATH is supported (uWSGI's '{scheme}' logger is not)"
                ))
            }
        }
    }
}

/// `uid`: a user name or number, resolved (with its primary group) when the configuration
/// loads, so a user that does not exist stops `--check-config`.
#[derive(Debug)]
pub(crate) struct User;

/// A resolved `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UserSpec {
    /// As written (for messages).
    pub(crate) text: String,
    /// The uid, the user's primary group and its name (for `initgroups`).
    pub(crate) credentials: Credentials,
}

impl Kind for User {
    type Out = UserSpec;
    const METAVAR: &'static str = "USER";
    fn parse(text: &str) -> Result<UserSpec, String> {
        let text = text.trim();
        let credentials = Credentials::resolve(Some(text), None).map_err(resolve_error)?;
        Ok(UserSpec {
            text: text.to_string(),
            credentials,
        })
    }
}

/// `gid`: a group name or number, resolved when the configuration loads.
#[derive(Debug)]
pub(crate) struct Group;

/// A resolved `gid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupSpec {
    pub(crate) text: String,
    pub(crate) gid: Gid,
}

impl Kind for Group {
    type Out = GroupSpec;
    const METAVAR: &'static str = "GROUP";
    fn parse(text: &str) -> Result<GroupSpec, String> {
        let text = text.trim();
        let resolved = Credentials::resolve(None, Some(text)).map_err(resolve_error)?;
        let gid = resolved.gid.ok_or_else(|| format!("no group '{text}'"))?;
        Ok(GroupSpec {
            text: text.to_string(),
            gid,
        })
    }
}

/// `chown-socket = user[:group]`, resolved when the configuration loads.
#[derive(Debug)]
pub(crate) struct Owner;

/// A resolved `chown-socket`: the owner to give unix sockets (the group defaults to the
/// user's primary group).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerSpec {
    pub(crate) text: String,
    pub(crate) uid: Option<Uid>,
    pub(crate) gid: Option<Gid>,
}

impl Kind for Owner {
    type Out = OwnerSpec;
    const METAVAR: &'static str = "USER[:GROUP]";
    fn parse(text: &str) -> Result<OwnerSpec, String> {
        let text = text.trim();
        let (user, group) = match text.split_once(':') {
            Some((user, group)) => (user, Some(group)),
            None => (text, None),
        };
        let user = Some(user).filter(|u| !u.is_empty());
        let group = group.filter(|g| !g.is_empty());
        if user.is_none() && group.is_none() {
            return Err("needs a user, user:group or :group".to_string());
        }
        let resolved = Credentials::resolve(user, group).map_err(resolve_error)?;
        Ok(OwnerSpec {
            text: text.to_string(),
            uid: resolved.uid,
            gid: resolved.gid,
        })
    }
}

/// `no such user 'www'` rather than the lookup's own `uid www: no such user`.
fn resolve_error(error: std::io::Error) -> String {
    let text = error.to_string();
    let parts = text
        .split_once(": ")
        .and_then(|(what, why)| Some((what.split_once(' ')?.1, why)));
    match parts {
        Some((name, why)) => format!("{why} '{name}'"),
        None => text,
    }
}

/// `module` and the app of a `mount`: the name of an app of this binary (which ones exist is
/// checked once the configuration is loaded).
#[derive(Debug)]
pub(crate) struct AppName;

impl Kind for AppName {
    type Out = String;
    const METAVAR: &'static str = "APP";
    fn parse(text: &str) -> Result<String, String> {
        let name = text.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(format!("'{text}' is not an app name"));
        }
        Ok(name.to_string())
    }
}

/// `module = pkg.mod` or `pkg.mod:callable` read as a Python WSGI target: a dotted path of
/// Python names, then optionally `:` and the name of the callable in that module (which then
/// wins over `callable`). `module` itself is an [`AppName`]: only a name that is no app of the
/// binary is read this way (see `config::python`).
#[derive(Debug)]
pub(crate) struct PythonTarget;

/// A Python module to import and, when the value named one, the callable in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModuleTarget {
    /// The dotted module path (`project.wsgi`).
    pub(crate) module: String,
    /// The callable after `:` (`pkg.mod:app`); `None` means the `callable` option's.
    pub(crate) callable: Option<String>,
}

impl Kind for PythonTarget {
    type Out = ModuleTarget;
    const METAVAR: &'static str = "PKG.MOD[:CALLABLE]";
    fn parse(text: &str) -> Result<ModuleTarget, String> {
        let text = text.trim();
        let (module, callable) = match text.split_once(':') {
            Some((module, callable)) => (module, Some(callable)),
            None => (text, None),
        };
        if module.is_empty() || !module.split('.').all(is_python_name) {
            return Err(format!(
                "'{text}' is not a Python module path (pkg.mod or pkg.mod:callable)"
            ));
        }
        if let Some(callable) = callable {
            PyName::parse(callable).map_err(|why| format!("'{text}': {why}"))?;
        }
        Ok(ModuleTarget {
            module: module.to_owned(),
            callable: callable.map(str::to_owned),
        })
    }
}

/// `callable = application`: the name of a Python object (the WSGI callable).
#[derive(Debug)]
pub(crate) struct PyName;

impl Kind for PyName {
    type Out = String;
    const METAVAR: &'static str = "NAME";
    fn parse(text: &str) -> Result<String, String> {
        let name = text.trim();
        if name.ends_with("()") {
            return Err(format!(
                "'{name}' is a call: an app factory is not supported, name the WSGI callable itself"
            ));
        }
        if !is_python_name(name) {
            return Err(format!("'{name}' is not a Python name"));
        }
        Ok(name.to_owned())
    }
}

/// Whether `name` is a Python identifier (a letter or `_`, then letters, digits or `_`).
fn is_python_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first == '_' || first.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

/// `plugins = python3,gevent`: the name of a uWSGI plugin, as uWSGI finds its file:
/// `/usr/lib/uwsgi/plugins/python3_plugin.so` is `python3`. Which names mean something is
/// decided by `config::python` (it warns about the others).
#[derive(Debug)]
pub(crate) struct Plugin;

impl Kind for Plugin {
    type Out = String;
    const METAVAR: &'static str = "NAME";
    const COMMA_LIST: bool = true;
    fn parse(text: &str) -> Result<String, String> {
        let text = text.trim();
        let base = text.rsplit('/').next().unwrap_or(text);
        let base = base.strip_suffix(".so").unwrap_or(base);
        let base = base.strip_suffix("_plugin").unwrap_or(base);
        if base.is_empty() || base.contains(char::is_whitespace) {
            return Err(format!("'{text}' is not a plugin name"));
        }
        Ok(base.to_owned())
    }
}

/// An `http://` or `https://` URL with a host, for the HTTP client.
#[derive(Debug)]
pub(crate) struct HttpUrl;

impl Kind for HttpUrl {
    type Out = String;
    const METAVAR: &'static str = "URL";
    fn parse(text: &str) -> Result<String, String> {
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"));
        match rest {
            Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(text.to_owned()),
            _ => Err(format!(
                "'{text}' is not an http:// or https:// URL with a host"
            )),
        }
    }
}

/// A peer allowed to talk uwsgi over TCP: an IP address or `*`; a value may list several,
/// comma-separated.
#[derive(Debug)]
pub(crate) struct Peer;

/// Who may connect to a TCP uwsgi socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AllowedPeer {
    /// `*`: anyone.
    Any,
    /// This exact address.
    Ip(IpAddr),
}

impl Kind for Peer {
    type Out = AllowedPeer;
    const METAVAR: &'static str = "IP,...";
    const COMMA_LIST: bool = true;
    fn parse(text: &str) -> Result<AllowedPeer, String> {
        match text.trim() {
            "*" => Ok(AllowedPeer::Any),
            ip => ip
                .parse()
                .map(AllowedPeer::Ip)
                .map_err(|_| format!("'{ip}' is not an IP address or '*'")),
        }
    }
}

fn parse_u64(text: &str) -> Result<u64, String> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("'{text}' is not a whole number"));
    }
    text.parse().map_err(|_| format!("'{text}' is too large"))
}

fn in_range<T: PartialOrd + std::fmt::Display>(
    n: T,
    min: T,
    max: T,
    shown: &str,
) -> Result<T, String> {
    if n < min || n > max {
        Err(format!("{shown} is out of range ({min} to {max})"))
    } else {
        Ok(n)
    }
}

/// `unit` is what a plain number counts (1 for bytes, 1024 for KiB).
fn parse_size(text: &str, unit: u64) -> Result<u64, String> {
    let trimmed = text.trim();
    if trimmed.contains(char::is_whitespace) {
        return Err(format!("'{trimmed}' is not a size (like 65535, 64k, 1m)"));
    }
    let lower = trimmed.to_ascii_lowercase();
    let (digits, multiplier) = match lower.as_bytes().last() {
        Some(b'k') => (&lower[..lower.len() - 1], 1 << 10),
        Some(b'm') => (&lower[..lower.len() - 1], 1 << 20),
        Some(b'g') => (&lower[..lower.len() - 1], 1 << 30),
        _ => (lower.as_str(), unit),
    };
    let n = parse_u64(digits)
        .map_err(|_| format!("'{trimmed}' is not a size (like 65535, 64k, 1m)"))?;
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("'{trimmed}' is too large"))
}

/// `unit` is what a plain number counts.
fn parse_duration(text: &str, unit: Duration) -> Result<Duration, String> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (digits, suffix) = lower.split_at(split);
    let bad = || format!("'{trimmed}' is not a duration (like 30, 500ms, 2s, 1m)");
    let n: u32 = parse_u64(digits)
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(bad)?;
    let unit = match suffix {
        "" => unit,
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    unit.checked_mul(n).ok_or_else(bad)
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0o").unwrap_or(trimmed);
    let mode = u32::from_str_radix(digits, 8)
        .ok()
        .filter(|_| !digits.is_empty() && digits.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .ok_or_else(|| format!("'{trimmed}' is not an octal mode (like 660)"))?;
    if mode > 0o7777 {
        return Err(format!("'{trimmed}' is larger than 7777"));
    }
    Ok(mode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn booleans_accept_the_usual_spellings() {
        for yes in ["true", "1", "yes", "on", "TRUE", " Yes "] {
            assert_eq!(Flag::parse(yes), Ok(true), "{yes}");
        }
        for no in ["false", "0", "no", "off", "Off"] {
            assert_eq!(Flag::parse(no), Ok(false), "{no}");
        }
        assert!(Flag::parse("maybe").is_err());
        assert!(Flag::parse("").is_err());
    }

    #[test]
    fn counts_and_ints_check_their_range() {
        assert_eq!(Count::<1, 8>::parse("4"), Ok(4));
        assert_eq!(
            Count::<1, 8>::parse("0").unwrap_err(),
            "0 is out of range (1 to 8)"
        );
        assert!(Count::<1, 8>::parse("9").is_err());
        assert!(Count::<1, 8>::parse("-1").is_err());
        assert!(Count::<1, 8>::parse("four").is_err());
        assert!(Count::<1, 8>::parse("1.5").is_err());
        assert_eq!(
            Int::<0, { u64::MAX }>::parse("18446744073709551615"),
            Ok(u64::MAX)
        );
        assert!(Int::<0, { u64::MAX }>::parse("18446744073709551616").is_err());
    }

    #[test]
    fn sizes_take_binary_suffixes() {
        type Any = Size<0, { u64::MAX }>;
        assert_eq!(Any::parse("65535"), Ok(65535));
        assert_eq!(Any::parse("64k"), Ok(64 * 1024));
        assert_eq!(Any::parse("64K"), Ok(64 * 1024));
        assert_eq!(Any::parse("1m"), Ok(1 << 20));
        assert_eq!(Any::parse("2g"), Ok(2 << 30));
        for bad in ["", "k", "1.5m", "10x", "-1", "1 m"] {
            assert!(Any::parse(bad).is_err(), "{bad}");
        }
        assert!(Size::<1024, 2048>::parse("4k").is_err());
    }

    #[test]
    fn kib_sizes_count_kib_when_plain_and_return_bytes() {
        type Stack = KiB<64, 65536>;
        assert_eq!(Stack::parse("256"), Ok(256 * 1024));
        assert_eq!(Stack::parse("64k"), Ok(64 * 1024));
        assert_eq!(Stack::parse("1m"), Ok(1024 * 1024));
        assert_eq!(
            Stack::parse("32").unwrap_err(),
            "32 is out of range (64 to 65536 KiB)"
        );
    }

    #[test]
    fn durations_default_to_seconds_and_take_units() {
        assert_eq!(Seconds::parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(Seconds::parse("0"), Ok(Duration::ZERO));
        assert_eq!(Seconds::parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(Seconds::parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(Seconds::parse("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(Seconds::parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(Millis::parse("250"), Ok(Duration::from_millis(250)));
        assert_eq!(Millis::parse("2s"), Ok(Duration::from_secs(2)));
        for bad in ["", "s", "1.5s", "10 s", "5d", "-3"] {
            assert!(Seconds::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!(Mode::parse("660"), Ok(0o660));
        assert_eq!(Mode::parse("0660"), Ok(0o660));
        assert_eq!(Mode::parse("022"), Ok(0o022));
        assert_eq!(Mode::parse("0o755"), Ok(0o755));
        for bad in ["", "8", "rw", "77777", "-1"] {
            assert!(Mode::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(SocketMode::BARE, Some("666"));
    }

    #[test]
    fn key_value_pairs_split_at_the_first_equals() {
        assert_eq!(
            KeyValue::parse("A=b=c"),
            Ok(Pair {
                name: "A".into(),
                value: "b=c".into()
            })
        );
        assert_eq!(
            KeyValue::parse("EMPTY=").map(|p| p.value),
            Ok(String::new())
        );
        assert!(KeyValue::parse("novalue").is_err());
        assert!(KeyValue::parse("=x").is_err());
        assert!(KeyValue::parse("A B=x").is_err());
    }

    #[test]
    fn prefix_maps_need_a_slash_and_a_target() {
        assert_eq!(
            Prefixed::parse("/static=/srv/www"),
            Ok(PrefixMap {
                prefix: "/static".into(),
                target: "/srv/www".into()
            })
        );
        assert!(Prefixed::parse("/=hello").is_ok());
        assert!(Prefixed::parse("static=/srv").is_err());
        assert!(Prefixed::parse("/static=").is_err());
        assert!(Prefixed::parse("/static").is_err());
    }

    #[test]
    fn sockets_parse_through_socket_spec() {
        assert!(Socket::parse(":3031").is_ok());
        assert!(Socket::parse("1.2.3.4:99999").is_err());
    }

    #[test]
    fn urls_are_http_or_https_with_a_host() {
        assert!(HttpUrl::parse("http://127.0.0.1:9000/x").is_ok());
        assert!(HttpUrl::parse("https://example.com").is_ok());
        assert!(HttpUrl::parse("https://").is_err());
        assert!(HttpUrl::parse("ftp://example.com").is_err());
        assert!(HttpUrl::parse("http://").is_err());
        assert!(HttpUrl::parse("https:///path").is_err());
    }

    #[test]
    fn req_logger_is_file_colon_path_and_other_loggers_are_refused() {
        assert_eq!(
            ReqLogger::parse("file:/var/log/req.log"),
            Ok(PathBuf::from("/var/log/req.log"))
        );
        let error = ReqLogger::parse("syslog:app").expect_err("syslog");
        assert!(error.contains("'syslog'"), "{error}");
        assert!(ReqLogger::parse("file:").is_err());
    }

    #[test]
    fn users_groups_and_owners_are_resolved_when_loaded() {
        let root = User::parse("root").expect("root exists");
        assert_eq!(root.credentials.uid, Some(Uid::from_raw(0)));
        assert_eq!(
            root.credentials.gid,
            Some(Gid::from_raw(0)),
            "its primary group"
        );
        assert_eq!(
            User::parse("4000123").expect("a bare id").credentials.uid,
            Some(Uid::from_raw(4000123))
        );
        let error = User::parse("no-such-user-rc").expect_err("missing");
        assert_eq!(error, "no such user 'no-such-user-rc'");
        assert_eq!(Group::parse("0").expect("gid 0").gid, Gid::from_raw(0));
        assert!(Group::parse("no-such-group-rc").is_err());
        let owner = Owner::parse("root:0").expect("owner");
        assert_eq!(
            (owner.uid, owner.gid),
            (Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))
        );
        assert!(Owner::parse(":").is_err());
        assert!(Owner::parse("no-such-user-rc").is_err());
    }

    #[test]
    fn app_names_are_single_words() {
        assert_eq!(AppName::parse(" echo "), Ok("echo".to_string()));
        assert!(AppName::parse("two words").is_err());
        assert!(AppName::parse("").is_err());
    }

    #[test]
    fn python_targets_are_dotted_modules_with_an_optional_callable() {
        let target = |module: &str, callable: Option<&str>| ModuleTarget {
            module: module.to_owned(),
            callable: callable.map(str::to_owned),
        };
        assert_eq!(
            PythonTarget::parse(" project.wsgi "),
            Ok(target("project.wsgi", None))
        );
        assert_eq!(PythonTarget::parse("myapp"), Ok(target("myapp", None)));
        assert_eq!(
            PythonTarget::parse("pkg.mod:app"),
            Ok(target("pkg.mod", Some("app")))
        );
        assert_eq!(
            PythonTarget::parse("_private.v2:make_app"),
            Ok(target("_private.v2", Some("make_app")))
        );
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "project/wsgi.py",
            "my-app",
            "2fast",
            ":app",
            "a:",
            "a:b:c",
            "a:b.c",
        ] {
            assert!(PythonTarget::parse(bad).is_err(), "{bad}");
        }
        let factory = PythonTarget::parse("app:create_app()").unwrap_err();
        assert!(
            factory.contains("app factory is not supported"),
            "{factory}"
        );
    }

    #[test]
    fn callables_are_python_names() {
        assert_eq!(PyName::parse(" app "), Ok("app".to_owned()));
        assert_eq!(PyName::parse("application"), Ok("application".to_owned()));
        assert!(PyName::parse("my app").is_err());
        assert!(PyName::parse("a.b").is_err());
        assert!(PyName::parse("").is_err());
    }

    #[test]
    fn plugin_names_are_taken_from_names_and_plugin_files() {
        assert_eq!(Plugin::parse(" python3 "), Ok("python3".to_owned()));
        assert_eq!(
            Plugin::parse("/usr/lib/uwsgi/plugins/python311_plugin.so"),
            Ok("python311".to_owned())
        );
        assert_eq!(
            Plugin::parse("gevent_python3"),
            Ok("gevent_python3".to_owned())
        );
        let items: Vec<_> = split_commas("python3, gevent").map(Plugin::parse).collect();
        assert_eq!(
            items,
            vec![Ok("python3".to_owned()), Ok("gevent".to_owned())]
        );
    }

    #[test]
    fn peers_are_addresses_or_star_and_may_be_comma_separated() {
        assert_eq!(Peer::parse("*"), Ok(AllowedPeer::Any));
        assert_eq!(
            Peer::parse("127.0.0.1"),
            Ok(AllowedPeer::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        );
        assert!(Peer::parse("localhost").is_err());
        let items: Vec<_> = split_commas(" 127.0.0.1, ::1,").map(Peer::parse).collect();
        assert_eq!(items.len(), 2);
        assert!(items.iter().all(Result::is_ok));
    }

    #[test]
    fn log_formats_are_json_or_known_variables_between_text() {
        assert_eq!(LogFormat::parse(" json "), Ok(RequestLogFormat::Json));
        let format = LogFormat::parse("%(method) %(uri) %(var.X_Y)%(status)!").unwrap();
        let RequestLogFormat::Line { source, parts } = &format else {
            panic!("a line format");
        };
        assert_eq!(source, "%(method) %(uri) %(var.X_Y)%(status)!");
        assert_eq!(
            parts,
            &[
                LogPart::Var(LogVar::Method),
                LogPart::Text(" ".into()),
                LogPart::Var(LogVar::Uri),
                LogPart::Text(" ".into()),
                LogPart::Var(LogVar::Var("X_Y".into())),
                LogPart::Var(LogVar::Status),
                LogPart::Text("!".into()),
            ]
        );
        assert_eq!(format.source(), "%(method) %(uri) %(var.X_Y)%(status)!");
        assert_eq!(
            LogFormat::parse("100% %(nope)").unwrap_err(),
            format!(
                "unknown variable 'nope' (known: {}, var.NAME)",
                LogVar::NAMES.join(", ")
            )
        );
        assert!(
            LogFormat::parse("%(rssM)")
                .unwrap_err()
                .starts_with("uWSGI variable 'rssM' is not available")
        );
        assert!(
            LogFormat::parse("%(metric.x)")
                .unwrap_err()
                .starts_with("uWSGI")
        );
        assert!(
            LogFormat::parse("%(var.)")
                .unwrap_err()
                .starts_with("unknown")
        );
        assert_eq!(
            LogFormat::parse("a %(method").unwrap_err(),
            "'%(method' has no closing ')'"
        );
    }

    #[test]
    fn every_log_variable_name_parses() {
        for name in LogVar::NAMES {
            assert!(LogVar::from_name(name).is_some(), "{name}");
        }
        for name in LogVar::NOT_PROVIDED {
            assert!(LogVar::from_name(name).is_none(), "{name}");
        }
    }

    #[test]
    fn text_and_paths_take_anything() {
        assert_eq!(
            Text::parse("%(method) %(uri)"),
            Ok("%(method) %(uri)".into())
        );
        assert_eq!(Path::parse("/tmp/x"), Ok(PathBuf::from("/tmp/x")));
    }
}
