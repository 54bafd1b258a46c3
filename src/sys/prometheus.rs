//! The Prometheus text exposition format (version 0.0.4), which a `stats-http` stats server
//! answers `GET /metrics` with: a writer of metric families (`# HELP`, `# TYPE`, then one
//! sample per line), escaping what the format says must be escaped. What the metrics are is
//! the business of the stats' owner (the master, the emperor).

use std::fmt::Write;

/// The `Content-Type` of a document in this format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The type of a metric family (its `# TYPE` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only goes up (its name ends in `_total`); drops to 0 only when its process restarts.
    Counter,
    /// Any value, as it is now.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// A family with a sample per item (a worker, a vassal): its name, type, help, and the value
/// of an item.
pub(crate) type PerItem<T> = (&'static str, Kind, &'static str, fn(&T) -> f64);

/// A document being written: families, each with its samples.
#[derive(Debug, Default)]
pub(crate) struct MetricsText {
    text: String,
    /// The name of the family being written: its samples carry it.
    family: String,
}

impl MetricsText {
    pub(crate) fn new() -> MetricsText {
        MetricsText::default()
    }

    /// Begins the family `name` (a valid metric name, fixed by the caller) of `kind`,
    /// described by `help` (escaped here); the samples that follow belong to it.
    pub(crate) fn family(&mut self, name: &str, kind: Kind, help: &str) -> &mut MetricsText {
        debug_assert!(
            is_metric_name(name),
            "invariant: a valid metric name: {name}"
        );
        debug_assert!(
            kind != Kind::Counter || name.ends_with("_total"),
            "invariant: a counter's name ends in _total: {name}"
        );
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.name());
        self.family = name.to_string();
        self
    }

    /// One sample of the current family: its labels (names fixed by the caller, values
    /// escaped here) and value.
    pub(crate) fn sample(&mut self, labels: &[(&str, &str)], value: f64) -> &mut MetricsText {
        self.text.push_str(&self.family);
        if !labels.is_empty() {
            self.text.push('{');
            for (n, (name, value)) in labels.iter().enumerate() {
                debug_assert!(is_label_name(name), "invariant: a valid label name: {name}");
                if n > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{name}=\"{}\"", escape_label_value(value));
            }
            self.text.push('}');
        }
        self.text.push(' ');
        self.text.push_str(&format_value(value));
        self.text.push('\n');
        self
    }

    /// `rcontainer_build_info{version}` 1: the first family of every stats document.
    pub(crate) fn build_info(&mut self) -> &mut MetricsText {
        self.family(
            "rcontainer_build_info",
            Kind::Gauge,
            "The rcontainer version serving these stats (always 1).",
        )
        .sample(&[("version", env!("CARGO_PKG_VERSION"))], 1.0)
    }

    /// Every family of `families`, each with one sample per item of `items`: the item's value,
    /// labelled `label="KEY"` with the key it comes with.
    pub(crate) fn families_per_item<'a, T: 'a>(
        &mut self,
        families: &[PerItem<T>],
        label: &str,
        items: impl Iterator<Item = (&'a str, &'a T)> + Clone,
    ) -> &mut MetricsText {
        for (name, kind, help, value) in families {
            self.family(name, *kind, help);
            for (key, item) in items.clone() {
                self.sample(&[(label, key)], value(item));
            }
        }
        self
    }

    /// The document, as sent.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.text.into_bytes()
    }
}

/// A label value as the format writes it: `\`, `"` and a newline escaped.
pub(crate) fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A `# HELP` text: `\` and a newline escaped (a double quote stays as it is there).
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value: an integer without a fraction, `+Inf`/`-Inf`/`NaN` as the format spells
/// them.
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        // `Display` of an f64 never uses an exponent and drops a zero fraction: `5`, `0.00125`.
        value.to_string()
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(build: impl FnOnce(&mut MetricsText)) -> String {
        let mut text = MetricsText::new();
        build(&mut text);
        String::from_utf8(text.into_bytes()).expect("UTF-8")
    }

    #[test]
    fn a_family_has_its_help_and_type_lines_then_one_line_per_sample() {
        let text = render(|m| {
            m.family("app_requests_total", Kind::Counter, "Requests answered.")
                .sample(&[("worker", "1")], 3.0)
                .sample(&[("worker", "2")], 0.0);
            m.family("app_up", Kind::Gauge, "Whether it runs.")
                .sample(&[], 1.0);
        });
        assert_eq!(
            text,
            "# HELP app_requests_total Requests answered.\n\
             # TYPE app_requests_total counter\n\
             app_requests_total{worker=\"1\"} 3\n\
             app_requests_total{worker=\"2\"} 0\n\
             # HELP app_up Whether it runs.\n\
             # TYPE app_up gauge\n\
             app_up 1\n"
        );
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(escape_label_value(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label_value("two\nlines"), "two\\nlines");
        assert_eq!(escape_label_value("plain ünïcode"), "plain ünïcode");
        let text = render(|m| {
            m.family("x", Kind::Gauge, "A help\nwith a \\ and \"quotes\".")
                .sample(&[("path", "/v/we\"ird\n.ini"), ("b", "c")], 1.0);
        });
        assert!(
            text.contains("# HELP x A help\\nwith a \\\\ and \"quotes\".\n"),
            "{text}"
        );
        assert!(
            text.contains("x{path=\"/v/we\\\"ird\\n.ini\",b=\"c\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn values_are_integers_without_a_fraction_and_special_floats_are_spelt_out() {
        assert_eq!(format_value(42.0), "42");
        assert_eq!(format_value(0.00125), "0.00125");
        assert_eq!(format_value(1e20), "100000000000000000000");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn names_are_checked_against_the_format() {
        assert!(is_metric_name("rcontainer_worker_requests_total"));
        assert!(is_metric_name("a:b"));
        assert!(!is_metric_name("1abc"));
        assert!(!is_metric_name("a-b"));
        assert!(is_label_name("worker"));
        assert!(!is_label_name("__reserved"));
        assert!(!is_label_name("a:b"));
    }
}
