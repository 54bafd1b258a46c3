//! Options the apps of a binary declare (the built-in `fetch` and static files, and a user's
//! own): loaded like the options of the table, from the same sources with the same rules and
//! `file:line` errors, then kept as checked text for the apps to read (`Config::app_options`).
//!
//! The command line turns each app's declaration into an [`AppOptionSpec`] and hands them to
//! `load` in [`Sources::app_options`](super::Sources); nothing here knows about apps themselves.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::Effective;
use super::error::{ConfigError, Origin};
use super::options::{Setting, roff_escape};
use super::value::{Flag, HttpUrl, Int, Kind, Path, Seconds};

/// The kind of value an app option takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ValueKind {
    Text,
    Url,
    Path,
    Integer,
    Seconds,
    Flag,
}

/// One option an app declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AppOptionSpec {
    pub(crate) key: &'static str,
    /// The app that declares it (`static-map` for the static-file server).
    pub(crate) app: String,
    pub(crate) kind: ValueKind,
    pub(crate) repeatable: bool,
    pub(crate) default: Option<&'static str>,
    pub(crate) help: &'static str,
    pub(crate) metavar: &'static str,
}

/// Checked values of every app option, by key, in the form the apps read them back:
/// durations as milliseconds (`1500ms`), flags as `true`/`false`, numbers in decimal.
pub(crate) type AppValues = BTreeMap<&'static str, Vec<String>>;

impl AppOptionSpec {
    /// The text a bare key means (`--flag`, a key without `=`).
    pub(crate) fn bare(&self) -> Option<&'static str> {
        (self.kind == ValueKind::Flag).then_some("true")
    }

    /// `text` checked against the kind, in its stored form.
    fn check(&self, text: &str) -> Result<String, String> {
        Ok(match self.kind {
            ValueKind::Text => text.to_string(),
            ValueKind::Url => HttpUrl::parse(text)?,
            ValueKind::Path => Path::parse(text)?.display().to_string(),
            ValueKind::Integer => Int::<0, { u64::MAX }>::parse(text)?.to_string(),
            ValueKind::Seconds => format!("{}ms", Seconds::parse(text)?.as_millis()),
            ValueKind::Flag => Flag::parse(text)?.to_string(),
        })
    }
}

/// Converts the settings of every app option (in precedence order, from `settings_for`) into
/// checked values; a bad value is an error at its origin.
pub(crate) fn convert<'a>(
    specs: &[AppOptionSpec],
    settings_for: impl Fn(&str) -> Vec<&'a Setting>,
    errors: &mut Vec<ConfigError>,
) -> AppValues {
    let mut values = AppValues::new();
    for spec in specs {
        let settings = settings_for(spec.key);
        let chosen: &[&Setting] = if spec.repeatable {
            &settings
        } else {
            settings.last().map_or(&[], std::slice::from_ref)
        };
        let mut texts = Vec::new();
        for setting in chosen {
            let text = match setting.value.as_deref().filter(|v| !v.trim().is_empty()) {
                Some(text) => text,
                None => match spec.bare() {
                    Some(bare) => bare,
                    None => {
                        errors.push(ConfigError::at(
                            &setting.origin,
                            &setting.written,
                            "needs a value",
                        ));
                        continue;
                    }
                },
            };
            match spec.check(text) {
                Ok(text) => texts.push(text),
                Err(why) => errors.push(ConfigError::at(&setting.origin, &setting.written, why)),
            }
        }
        if settings.is_empty()
            && let Some(default) = spec.default
        {
            match spec.check(default) {
                Ok(text) => texts.push(text),
                Err(why) => errors.push(ConfigError::at(&Origin::Default, spec.key, why)),
            }
        }
        if !texts.is_empty() {
            values.insert(spec.key, texts);
        }
    }
    values
}

/// The `--print-config` rows of the app options: what was set (as written, after
/// expansion), else the default.
pub(crate) fn effective_rows<'a>(
    specs: &[AppOptionSpec],
    settings_for: impl Fn(&str) -> Vec<&'a Setting>,
) -> Vec<Effective> {
    let mut rows = Vec::new();
    for spec in specs {
        let settings = settings_for(spec.key);
        let chosen: Vec<&Setting> = if spec.repeatable {
            settings
        } else {
            settings.last().copied().into_iter().collect()
        };
        if chosen.is_empty() {
            rows.push(Effective {
                key: spec.key,
                value: spec.default.map(str::to_owned),
                origin: Origin::Default,
            });
        }
        for setting in chosen {
            rows.push(Effective {
                key: spec.key,
                value: setting.value.clone().or(spec.bare().map(str::to_owned)),
                origin: setting.origin.clone(),
            });
        }
    }
    rows
}

/// The `--help` lines of the app options, grouped by app, in the style of the table's.
pub(crate) fn render_help(specs: &[AppOptionSpec]) -> String {
    let mut out = String::new();
    for spec in specs {
        let mut head = format!("  --{}", spec.key);
        if !spec.metavar.is_empty() {
            let _ = write!(head, " {}", spec.metavar);
        }
        let mut notes = vec![format!("app {}", spec.app)];
        if let Some(default) = spec.default {
            notes.push(format!("default: {default}"));
        }
        if spec.repeatable {
            notes.push("repeatable".to_owned());
        }
        let _ = writeln!(
            out,
            "{head}\n          {} [{}]",
            spec.help,
            notes.join("; ")
        );
    }
    out
}

/// The README table rows of the app options (after the table's own rows).
#[cfg_attr(not(test), allow(dead_code))] // only the README test writes it
pub(crate) fn render_markdown_rows(specs: &[AppOptionSpec]) -> String {
    let mut out = String::new();
    for spec in specs {
        let default = spec
            .default
            .map_or_else(|| "—".to_owned(), |d| format!("`{d}`"));
        let repeat = if spec.repeatable { " Repeatable." } else { "" };
        let _ = writeln!(
            out,
            "| `{}` | | {default} | {} App `{}`.{repeat} |",
            spec.key,
            spec.help.replace('|', "\\|"),
            spec.app,
        );
    }
    out
}

/// The man page items of the app options, in the style of the table's (`render_man_options`).
pub(crate) fn render_man_items(specs: &[AppOptionSpec]) -> String {
    let mut out = String::new();
    for spec in specs {
        let mut head = format!("\\fB\\-\\-{}\\fR", roff_escape(spec.key));
        if !spec.metavar.is_empty() {
            let _ = write!(head, " \\fI{}\\fR", roff_escape(spec.metavar));
        }
        let mut body = format!(
            "{} App \\fB{}\\fR.",
            roff_escape(spec.help),
            roff_escape(&spec.app)
        );
        if let Some(default) = spec.default {
            let _ = write!(body, " Default: \\fB{}\\fR.", roff_escape(default));
        }
        if spec.repeatable {
            body.push_str(" Repeatable.");
        }
        let _ = writeln!(out, ".TP\n{head}\n{body}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(key: &'static str, kind: ValueKind) -> AppOptionSpec {
        AppOptionSpec {
            key,
            app: "app".into(),
            kind,
            repeatable: false,
            default: None,
            help: "help",
            metavar: "X",
        }
    }

    #[test]
    fn values_are_kept_in_the_form_apps_read() {
        assert_eq!(
            spec("a", ValueKind::Seconds).check("2s"),
            Ok("2000ms".into())
        );
        assert_eq!(
            spec("a", ValueKind::Seconds).check("30"),
            Ok("30000ms".into())
        );
        assert_eq!(spec("a", ValueKind::Flag).check("yes"), Ok("true".into()));
        assert_eq!(spec("a", ValueKind::Integer).check("0012"), Ok("12".into()));
        assert!(spec("a", ValueKind::Integer).check("-1").is_err());
        assert!(spec("a", ValueKind::Url).check("ftp://x").is_err());
        assert_eq!(spec("a", ValueKind::Flag).bare(), Some("true"));
        assert_eq!(spec("a", ValueKind::Text).bare(), None);
    }
}
