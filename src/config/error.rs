//! Where a setting came from ([`Origin`]), and the errors and warnings of loading a config.
//!
//! Every message names its place the same way, so a user can jump to it:
//! `conf/app.ini:3: prcesses: unknown option (did you mean processes?)` for a file line,
//! `--processes: ...` for the command line, `RCONTAINER_PROCESSES: ...` for the environment,
//! `conf/app.ini: ...` for a whole-file problem.

use std::fmt;
use std::sync::Arc;

/// Where one value came from; `--print-config` shows it beside every value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// The option table's default.
    Default,
    /// A line of an INI file; `file` is the path as the user wrote it.
    Ini { file: Arc<str>, line: usize },
    /// An `RCONTAINER_*` environment variable (its name).
    Env(String),
    /// A command-line option, as written (`--processes`).
    Cli(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::Ini { file, line } => write!(f, "{file}:{line}"),
            Origin::Env(name) | Origin::Cli(name) => f.write_str(name),
        }
    }
}

/// Where an error sits among the sources, so that errors can be reported in reading order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    /// A file, at a line (0 for the whole file).
    File {
        file: Arc<str>,
        line: usize,
    },
    Env,
    Cli,
    /// Defaults and combinations of settings.
    Overall,
}

/// A reason the configuration cannot be used. Loading reports all of them, not just the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError {
    position: Position,
    location: String,
    /// The key as the user wrote it; `None` when the location already names it (`--processes`).
    key: Option<String>,
    message: String,
}

impl ConfigError {
    /// A problem with the value or key written at `origin`.
    pub(crate) fn at(origin: &Origin, key: &str, message: impl Into<String>) -> ConfigError {
        let key = match origin {
            Origin::Ini { .. } | Origin::Default => Some(key.to_owned()),
            Origin::Env(_) | Origin::Cli(_) => None,
        };
        let position = match origin {
            Origin::Ini { file, line } => Position::File {
                file: Arc::clone(file),
                line: *line,
            },
            Origin::Env(_) => Position::Env,
            Origin::Cli(_) => Position::Cli,
            Origin::Default => Position::Overall,
        };
        ConfigError {
            position,
            location: origin.to_string(),
            key,
            message: message.into(),
        }
    }

    /// A problem with a line that has no key (a malformed line).
    pub(crate) fn at_line(file: &str, line: usize, message: impl Into<String>) -> ConfigError {
        ConfigError {
            position: Position::File {
                file: file.into(),
                line,
            },
            location: format!("{file}:{line}"),
            key: None,
            message: message.into(),
        }
    }

    /// A problem with a whole file (missing, unreadable, no section).
    pub(crate) fn in_file(file: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            position: Position::File {
                file: file.into(),
                line: 0,
            },
            location: file.to_owned(),
            key: None,
            message: message.into(),
        }
    }

    /// A problem with the combination of settings rather than with one of them.
    pub(crate) fn overall(message: impl Into<String>) -> ConfigError {
        ConfigError {
            position: Position::Overall,
            location: "config".to_owned(),
            key: None,
            message: message.into(),
        }
    }

    /// Where the error sits, for sorting.
    pub(crate) fn position(&self) -> &Position {
        &self.position
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.key {
            Some(key) => write!(f, "{}: {key}: {}", self.location, self.message),
            None => write!(f, "{}: {}", self.location, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Something worth telling that does not stop the load (an ignored uWSGI key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Warning {
    location: String,
    message: String,
}

impl Warning {
    pub(crate) fn at(origin: &Origin, message: impl Into<String>) -> Warning {
        Warning {
            location: origin.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_file_line_and_key() {
        let origin = Origin::Ini {
            file: "conf/x.ini".into(),
            line: 3,
        };
        let error = ConfigError::at(&origin, "prcesses", "unknown option");
        assert_eq!(error.to_string(), "conf/x.ini:3: prcesses: unknown option");
    }

    #[test]
    fn cli_and_env_errors_name_the_flag_or_variable_once() {
        let cli = ConfigError::at(&Origin::Cli("--processes".into()), "processes", "bad");
        assert_eq!(cli.to_string(), "--processes: bad");
        let env = ConfigError::at(&Origin::Env("RCONTAINER_X".into()), "x", "bad");
        assert_eq!(env.to_string(), "RCONTAINER_X: bad");
    }

    #[test]
    fn file_errors_name_the_file() {
        let error = ConfigError::in_file("conf/x.ini", "cannot read: not found");
        assert_eq!(error.to_string(), "conf/x.ini: cannot read: not found");
    }
}
