//! INI lexer: uWSGI-style text -> sections of `(line, key, value)` entries.
//!
//! Only tokenizes; it knows nothing about option names or value types (that is `load`'s job).
//! The syntax is uWSGI's: `key = value` lines (both sides trimmed, no quoting, no inline
//! comments), `;` or `#` at the start of a line for comments, a key without `=` as a bare flag,
//! `[name]` section headers. Repeated keys and repeated sections are kept, in order. Line
//! numbers are 1-based, as editors show them. CRLF files read the same as LF files.

/// One `key = value` (or bare `key`) line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) line: usize,
    pub(crate) key: String,
    /// `None` for a bare key (`vacuum` alone); `Some("")` for `key =`.
    pub(crate) value: Option<String>,
}

/// A line the lexer could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// One `[name]` header and the lines under it, up to the next header.
#[derive(Debug, Default)]
pub(crate) struct Section {
    pub(crate) name: String,
    pub(crate) entries: Vec<Entry>,
    pub(crate) errors: Vec<LexError>,
}

/// A whole file, tokenized.
#[derive(Debug, Default)]
pub(crate) struct IniText {
    /// In file order. Lines before the first header sit in a section named `""`, which is never
    /// selected (uWSGI ignores them too).
    pub(crate) sections: Vec<Section>,
    /// Malformed section headers: they cannot be attributed to a section, so they are always
    /// reported.
    pub(crate) header_errors: Vec<LexError>,
}

/// The section rcontainer reads when `--ini file` names none.
pub(crate) const OWN_SECTION: &str = "rcontainer";
/// The fallback, so existing uWSGI files load unchanged.
pub(crate) const UWSGI_SECTION: &str = "uwsgi";

/// Tokenizes `text`.
pub(crate) fn lex(text: &str) -> IniText {
    let mut ini = IniText {
        sections: vec![Section::default()],
        header_errors: Vec::new(),
    };
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        // `str::lines` already drops a trailing '\r'; trimming covers stray whitespace.
        let content = raw.trim();
        if content.is_empty() || content.starts_with(';') || content.starts_with('#') {
            continue;
        }
        if let Some(rest) = content.strip_prefix('[') {
            match rest.strip_suffix(']').map(str::trim) {
                Some(name) if !name.is_empty() && !name.contains(['[', ']']) => {
                    ini.sections.push(Section {
                        name: name.to_owned(),
                        ..Section::default()
                    });
                }
                _ => ini.header_errors.push(LexError {
                    line,
                    message: format!("malformed section header '{content}'"),
                }),
            }
            continue;
        }
        let section = ini
            .sections
            .last_mut()
            .expect("invariant: the unnamed leading section always exists");
        match lex_entry(line, content) {
            Ok(entry) => section.entries.push(entry),
            Err(error) => section.errors.push(error),
        }
    }
    ini
}

fn lex_entry(line: usize, content: &str) -> Result<Entry, LexError> {
    let (key, value) = match content.split_once('=') {
        Some((key, value)) => (key.trim(), Some(value.trim().to_owned())),
        None => (content, None),
    };
    let error = |message: String| LexError { line, message };
    if key.is_empty() {
        return Err(error(format!("missing key before '=' in '{content}'")));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(error(format!(
            "'{key}' is not a key (expected 'key = value' or a bare key)"
        )));
    }
    Ok(Entry {
        line,
        key: key.to_owned(),
        value,
    })
}

/// What [`IniText::select`] found.
#[derive(Debug)]
pub(crate) struct Selected<'a> {
    /// Entries of every header with that name, in file order.
    pub(crate) entries: Vec<&'a Entry>,
    /// Header errors plus the lexer errors inside the selected section, by line.
    pub(crate) errors: Vec<&'a LexError>,
}

impl IniText {
    /// Picks `requested`, or `[rcontainer]`, or `[uwsgi]`. `Err` says what was looked for.
    pub(crate) fn select(&self, requested: Option<&str>) -> Result<Selected<'_>, String> {
        let has = |name: &str| self.sections.iter().any(|s| s.name == name);
        let name = match requested {
            Some(name) if has(name) => name,
            Some(name) => return Err(format!("no [{name}] section")),
            None if has(OWN_SECTION) => OWN_SECTION,
            None if has(UWSGI_SECTION) => UWSGI_SECTION,
            None => {
                return Err(format!(
                    "no [{OWN_SECTION}] or [{UWSGI_SECTION}] section (use --ini FILE:SECTION for another)"
                ));
            }
        };
        let chosen = || self.sections.iter().filter(move |s| s.name == name);
        let mut errors: Vec<&LexError> = self.header_errors.iter().collect();
        errors.extend(chosen().flat_map(|s| &s.errors));
        errors.sort_by_key(|e| e.line);
        Ok(Selected {
            entries: chosen().flat_map(|s| &s.entries).collect(),
            errors,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(text: &str, section: Option<&str>) -> Vec<(usize, String, Option<String>)> {
        let ini = lex(text);
        let selected = ini.select(section).unwrap();
        assert!(selected.errors.is_empty(), "{:?}", selected.errors);
        selected
            .entries
            .iter()
            .map(|e| (e.line, e.key.clone(), e.value.clone()))
            .collect()
    }

    fn kv(line: usize, key: &str, value: Option<&str>) -> (usize, String, Option<String>) {
        (line, key.to_owned(), value.map(str::to_owned))
    }

    #[test]
    fn key_value_lines_are_trimmed_and_keep_their_line_numbers() {
        let text = "[rcontainer]\n  processes   =  4  \nsocket=:3031\n";
        assert_eq!(
            entries(text, None),
            vec![
                kv(2, "processes", Some("4")),
                kv(3, "socket", Some(":3031"))
            ]
        );
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let text = "; top\n[rcontainer]\n# hash comment\n\n   ; indented\nmaster = true\n";
        assert_eq!(entries(text, None), vec![kv(6, "master", Some("true"))]);
    }

    #[test]
    fn a_semicolon_after_a_value_is_part_of_the_value() {
        let text = "[rcontainer]\nlog-format = a ; b\n";
        assert_eq!(
            entries(text, None),
            vec![kv(2, "log-format", Some("a ; b"))]
        );
    }

    #[test]
    fn a_bare_key_is_a_flag_and_an_empty_value_is_empty() {
        let text = "[rcontainer]\nvacuum\nchdir =\n";
        assert_eq!(
            entries(text, None),
            vec![kv(2, "vacuum", None), kv(3, "chdir", Some(""))]
        );
    }

    #[test]
    fn repeated_keys_and_repeated_sections_are_kept_in_order() {
        let text =
            "[rcontainer]\nsocket = :1\nsocket = :2\n[other]\nx = 1\n[rcontainer]\nsocket = :3\n";
        let got: Vec<_> = entries(text, None).into_iter().map(|e| e.2).collect();
        assert_eq!(
            got,
            vec![Some(":1".into()), Some(":2".into()), Some(":3".into())]
        );
    }

    #[test]
    fn crlf_files_read_like_lf_files() {
        let text = "[rcontainer]\r\nprocesses = 2\r\nvacuum\r\n";
        assert_eq!(
            entries(text, None),
            vec![kv(2, "processes", Some("2")), kv(3, "vacuum", None)]
        );
    }

    #[test]
    fn values_keep_equals_signs_after_the_first() {
        let text = "[rcontainer]\nenv = A=b=c\n";
        assert_eq!(entries(text, None), vec![kv(2, "env", Some("A=b=c"))]);
    }

    #[test]
    fn the_uwsgi_section_is_the_fallback() {
        let text = "[uwsgi]\nprocesses = 2\n";
        assert_eq!(entries(text, None), vec![kv(2, "processes", Some("2"))]);
    }

    #[test]
    fn the_rcontainer_section_wins_over_uwsgi() {
        let text = "[uwsgi]\nprocesses = 2\n[rcontainer]\nprocesses = 3\n";
        assert_eq!(entries(text, None), vec![kv(4, "processes", Some("3"))]);
    }

    #[test]
    fn a_requested_section_is_used_and_a_missing_one_is_an_error() {
        let text = "[rcontainer]\nprocesses = 2\n[staging]\nprocesses = 5\n";
        assert_eq!(
            entries(text, Some("staging")),
            vec![kv(4, "processes", Some("5"))]
        );
        assert_eq!(
            lex(text).select(Some("prod")).unwrap_err(),
            "no [prod] section"
        );
    }

    #[test]
    fn a_file_without_a_known_section_is_an_error() {
        let err = lex("processes = 2\n").select(None).unwrap_err();
        assert!(
            err.starts_with("no [rcontainer] or [uwsgi] section"),
            "{err}"
        );
    }

    #[test]
    fn lines_before_any_header_are_ignored() {
        let text = "stray = 1\n[rcontainer]\nmaster\n";
        assert_eq!(entries(text, None), vec![kv(3, "master", None)]);
    }

    #[test]
    fn odd_lines_are_errors_with_line_numbers() {
        let text = "[rcontainer]\n= value\nnot a key\nok = 1\n[broken\n";
        let ini = lex(text);
        let selected = ini.select(None).unwrap();
        let errors: Vec<_> = selected
            .errors
            .iter()
            .map(|e| (e.line, e.message.as_str()))
            .collect();
        assert_eq!(
            errors,
            vec![
                (2, "missing key before '=' in '= value'"),
                (
                    3,
                    "'not a key' is not a key (expected 'key = value' or a bare key)"
                ),
                (5, "malformed section header '[broken'"),
            ]
        );
        assert_eq!(selected.entries.len(), 1);
    }

    #[test]
    fn odd_lines_in_other_sections_are_not_our_business() {
        let text = "[rcontainer]\nmaster\n[other]\nnot a key\n";
        assert!(lex(text).select(None).unwrap().errors.is_empty());
    }
}
