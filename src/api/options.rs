//! Options of apps: what an app reads from the configuration, declared when it is registered.
//!
//! An app declares its options ([`AppOption`]: key, kind, default, help) when it is added to a
//! [`Server`](crate::Server). They are then options like rcontainer's own: `key = value` in the
//! INI (with `file:line` errors for a bad value), `--key value` on the command line,
//! `RCONTAINER_KEY` in the environment, listed by `--help` and `--print-config`. Each worker
//! builds the app with an [`AppConfig`] holding the values of its own options, checked already.
//!
//! ```
//! use std::time::Duration;
//! use rcontainer::{AppConfig, AppOption, OptionKind, Response, Server};
//!
//! let server = Server::new().app_with_options(
//!     "greeter",
//!     vec![
//!         AppOption::new("greeting", OptionKind::Text, "What to say.").default("hello"),
//!         AppOption::new("greeter-pause", OptionKind::Seconds, "How long to think first."),
//!     ],
//!     |config: &AppConfig| {
//!         let greeting = config.text("greeting").unwrap_or("hello").to_string();
//!         let pause = config.seconds("greeter-pause").unwrap_or(Duration::ZERO);
//!         Ok(move |_req: &mut rcontainer::Request| {
//!             rcontainer::rt::sleep(pause);
//!             Response::text(greeting.clone())
//!         })
//!     },
//! );
//! # drop(server);
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The kind of value an [`AppOption`] takes, checked when the configuration loads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OptionKind {
    /// Any text.
    Text,
    /// An `http://` or `https://` URL with a host.
    Url,
    /// A file or directory path.
    Path,
    /// A whole number, 0 or more.
    Integer,
    /// A duration: seconds, or a number with `ms`, `s`, `m` or `h`.
    Seconds,
    /// A flag: `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`); a bare key is `true`.
    Flag,
}

/// An option of an app, declared when the app is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppOption {
    pub(crate) key: &'static str,
    pub(crate) kind: OptionKind,
    pub(crate) help: &'static str,
    pub(crate) default: Option<&'static str>,
    pub(crate) repeatable: bool,
    pub(crate) required: bool,
}

impl AppOption {
    /// An option named `key` (lower-case, `-` between words, e.g. `search-upstream`), taking
    /// values of `kind`, described by `help` (one line, for `--help`).
    pub fn new(key: &'static str, kind: OptionKind, help: &'static str) -> AppOption {
        AppOption {
            key,
            kind,
            help,
            default: None,
            repeatable: false,
            required: false,
        }
    }

    /// The value when the configuration sets none (checked like a configured value).
    pub fn default(mut self, value: &'static str) -> AppOption {
        self.default = Some(value);
        self
    }

    /// The option may be given several times (every value is kept, in order).
    pub fn repeatable(mut self) -> AppOption {
        self.repeatable = true;
        self
    }

    /// An instance that serves this app (its `module`, or a `mount`) must set this option:
    /// otherwise the configuration does not load.
    pub fn required(mut self) -> AppOption {
        self.required = true;
        self
    }

    /// The option's key.
    pub fn key(&self) -> &'static str {
        self.key
    }
}

/// The values of an app's own options, as the configuration set them (or their defaults).
/// Every value was checked against its [`OptionKind`] when the configuration loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppConfig {
    values: BTreeMap<&'static str, Vec<String>>,
}

impl AppConfig {
    /// An app config holding `values` (key, values in order): for tests of an app's builder.
    ///
    /// ```
    /// let config = rcontainer::AppConfig::from_values([("greeting", "hi")]);
    /// assert_eq!(config.text("greeting"), Some("hi"));
    /// ```
    pub fn from_values<V: Into<String>>(
        values: impl IntoIterator<Item = (&'static str, V)>,
    ) -> AppConfig {
        let mut config = AppConfig::default();
        for (key, value) in values {
            config.values.entry(key).or_default().push(value.into());
        }
        config
    }

    pub(crate) fn insert(&mut self, key: &'static str, values: Vec<String>) {
        self.values.insert(key, values);
    }

    /// The value of `key` (the last one given, for a repeatable option), if it has one.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.values.get(key)?.last().map(String::as_str)
    }

    /// Every value of a repeatable option, in order (empty when unset).
    pub fn all(&self, key: &str) -> &[String] {
        self.values.get(key).map_or(&[], Vec::as_slice)
    }

    /// The value of a [`OptionKind::Url`] option.
    pub fn url(&self, key: &str) -> Option<&str> {
        self.text(key)
    }

    /// The value of a [`OptionKind::Path`] option.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.text(key).map(PathBuf::from)
    }

    /// The value of an [`OptionKind::Integer`] option; `None` when unset (or not a number).
    pub fn integer(&self, key: &str) -> Option<u64> {
        self.text(key)?.parse().ok()
    }

    /// The value of an [`OptionKind::Seconds`] option; `None` when unset (or not a duration).
    /// The configuration stores durations as milliseconds (`1500ms`).
    pub fn seconds(&self, key: &str) -> Option<Duration> {
        let text = self.text(key)?;
        let millis = text.strip_suffix("ms").unwrap_or(text).parse().ok()?;
        Some(Duration::from_millis(millis))
    }

    /// The value of an [`OptionKind::Flag`] option (`false` when unset). The configuration
    /// stores flags as `true` or `false`.
    pub fn flag(&self, key: &str) -> bool {
        self.text(key) == Some("true")
    }
}

/// What `--help` shows for a value of `kind`.
pub(crate) fn metavar(kind: OptionKind) -> &'static str {
    match kind {
        OptionKind::Text => "TEXT",
        OptionKind::Url => "URL",
        OptionKind::Path => "PATH",
        OptionKind::Integer => "N",
        OptionKind::Seconds => "SECS",
        OptionKind::Flag => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_config_reads_each_kind_in_its_stored_form() {
        let config = AppConfig::from_values([
            ("u", "https://x/"),
            ("n", "7"),
            ("d", "120000ms"),
            ("f", "true"),
            ("l", "a"),
            ("l", "b"),
        ]);
        assert_eq!(config.url("u"), Some("https://x/"));
        assert_eq!(config.integer("n"), Some(7));
        assert_eq!(config.seconds("d"), Some(Duration::from_secs(120)));
        assert!(config.flag("f"));
        assert!(!config.flag("missing"));
        assert_eq!(config.all("l"), ["a", "b"]);
        assert_eq!(config.text("l"), Some("b"));
        assert!(config.all("missing").is_empty());
    }
}
