//! Placeholder expansion in INI values: `$(ENV)`, `%(key)`, `%d`, `%n`, `%p`, `%k`, `%%`.
//!
//! Expansion is one pass, left to right; substituted text is not expanded again. Following
//! uWSGI, a `%(name)` that names no earlier key and an unknown `%x` are left as written, so
//! `log-format = %(method) %(uri)` survives untouched. An unset `$(VAR)` is an error: silently
//! expanding it to nothing is how typos turn into wrong paths.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::Path;

/// The magic values of one config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileMagic {
    /// `%d`: absolute directory of the file, with a trailing slash.
    pub(crate) dir: String,
    /// `%n`: file name without its extension.
    pub(crate) name: String,
    /// `%p`: absolute path of the file.
    pub(crate) path: String,
}

impl FileMagic {
    /// Computes the magic values for `file`, relative to `cwd` when not absolute. Symlinks and
    /// `..` are resolved when the file exists, as uWSGI's `realpath` does.
    pub(crate) fn for_file(file: &Path, cwd: &Path) -> FileMagic {
        // Relative to the given working directory, not the process's: they differ in tests
        // and after `chdir`.
        let joined = cwd.join(file);
        let absolute = std::fs::canonicalize(&joined).unwrap_or(joined);
        let dir = absolute
            .parent()
            .map(|d| d.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = if dir.ends_with('/') { dir } else { dir + "/" };
        FileMagic {
            dir,
            name: absolute
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: absolute.to_string_lossy().into_owned(),
        }
    }
}

/// Everything a value may refer to.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub(crate) file: &'a FileMagic,
    pub(crate) env: &'a BTreeMap<String, String>,
    /// Values of earlier keys, expanded, by the name as written and by the canonical key.
    pub(crate) earlier: &'a HashMap<String, String>,
    pub(crate) cpu_count: usize,
}

/// Expands every placeholder in `value`; `Err` is a reason without location.
pub(crate) fn expand(value: &str, ctx: &Context<'_>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find(['$', '%']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let consumed = if let Some(inner) = tail.strip_prefix("$(") {
            let (name, _) = inner
                .split_once(')')
                .ok_or_else(|| format!("'$(' without ')' in '{value}'"))?;
            let found = ctx
                .env
                .get(name)
                .ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(found);
            2 + name.len() + 1
        } else if let Some(inner) = tail.strip_prefix("%(") {
            match inner.split_once(')') {
                Some((name, _)) if ctx.earlier.contains_key(name) => {
                    out.push_str(&ctx.earlier[name]);
                    2 + name.len() + 1
                }
                _ => {
                    out.push_str("%(");
                    2
                }
            }
        } else {
            let magic = match (tail.as_bytes()[0], tail.as_bytes().get(1)) {
                (b'%', Some(b'd')) => Some(ctx.file.dir.clone()),
                (b'%', Some(b'n')) => Some(ctx.file.name.clone()),
                (b'%', Some(b'p')) => Some(ctx.file.path.clone()),
                (b'%', Some(b'k')) => Some(ctx.cpu_count.to_string()),
                (b'%', Some(b'%')) => Some("%".to_owned()),
                _ => None,
            };
            match magic {
                Some(text) => {
                    out.push_str(&text);
                    2
                }
                None => {
                    out.push_str(&tail[..1]);
                    1
                }
            }
        };
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The names of every `%(name)` in `value`, scanned as [`expand`] reads it (`%%(x)` is a
/// literal, not a reference). `load` uses them to tell a user's own placeholder key (`base =
/// /srv`, used as `%(base)`) from a typo.
pub(crate) fn referenced_keys(value: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let mut rest = value;
    while let Some(at) = rest.find('%') {
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("%%") {
            rest = after;
        } else if let Some((name, _)) = tail.strip_prefix("%(").and_then(|i| i.split_once(')')) {
            names.push(name);
            rest = &tail[2 + name.len() + 1..];
        } else {
            rest = &tail[1..];
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixture {
        file: FileMagic,
        env: BTreeMap<String, String>,
        earlier: HashMap<String, String>,
    }

    fn fixture() -> Fixture {
        Fixture {
            file: FileMagic {
                dir: "/etc/app/".into(),
                name: "site".into(),
                path: "/etc/app/site.ini".into(),
            },
            env: BTreeMap::from([("HOME".to_owned(), "/home/me".to_owned())]),
            earlier: HashMap::from([("base".to_owned(), "/srv".to_owned())]),
        }
    }

    fn run(value: &str) -> Result<String, String> {
        let f = fixture();
        let ctx = Context {
            file: &f.file,
            env: &f.env,
            earlier: &f.earlier,
            cpu_count: 4,
        };
        expand(value, &ctx)
    }

    #[test]
    fn environment_variables_expand() {
        assert_eq!(run("$(HOME)/app").unwrap(), "/home/me/app");
    }

    #[test]
    fn an_unset_environment_variable_is_an_error() {
        assert_eq!(
            run("$(NOPE)").unwrap_err(),
            "environment variable NOPE is not set"
        );
        assert!(run("$(HOME").is_err());
    }

    #[test]
    fn earlier_keys_expand() {
        assert_eq!(run("%(base)/static").unwrap(), "/srv/static");
    }

    #[test]
    fn unknown_percent_names_are_left_alone_for_log_formats() {
        assert_eq!(
            run("%(method) %(uri) %(base)").unwrap(),
            "%(method) %(uri) /srv"
        );
        assert_eq!(run("50%x %(open").unwrap(), "50%x %(open");
        assert_eq!(run("$d $ 5$").unwrap(), "$d $ 5$");
    }

    #[test]
    fn file_magic_expands() {
        assert_eq!(run("%d").unwrap(), "/etc/app/");
        assert_eq!(run("/run/%n.sock").unwrap(), "/run/site.sock");
        assert_eq!(run("%p").unwrap(), "/etc/app/site.ini");
        assert_eq!(run("%k").unwrap(), "4");
    }

    #[test]
    fn double_percent_is_a_literal_percent() {
        assert_eq!(run("100%%d").unwrap(), "100%d");
        assert_eq!(run("%").unwrap(), "%");
    }

    #[test]
    fn substituted_text_is_not_expanded_again() {
        let mut f = fixture();
        f.env.insert("TRICK".into(), "%d".into());
        let ctx = Context {
            file: &f.file,
            env: &f.env,
            earlier: &f.earlier,
            cpu_count: 1,
        };
        assert_eq!(expand("$(TRICK)", &ctx).unwrap(), "%d");
    }

    #[test]
    fn references_are_found_as_expansion_reads_them() {
        assert_eq!(
            referenced_keys("%(base)/%(project).sock"),
            vec!["base", "project"]
        );
        assert_eq!(referenced_keys("100%%(x) %d %(open"), Vec::<&str>::new());
        assert_eq!(referenced_keys("%%%(y)"), vec!["y"]);
    }

    #[test]
    fn file_magic_of_a_relative_path_is_absolute_with_a_trailing_slash() {
        let magic = FileMagic::for_file(Path::new("conf/app.ini"), Path::new("/work/x"));
        assert_eq!(magic.dir, "/work/x/conf/");
        assert_eq!(magic.name, "app");
        assert_eq!(magic.path, "/work/x/conf/app.ini");
    }
}
