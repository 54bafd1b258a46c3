//! Shell-style wildcards over the file system (`/etc/vassals/*.ini`, `/srv/*/app.ini`): libc's
//! `glob(3)`, so patterns mean exactly what they mean in a shell (`*`, `?`, `[...]`).

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Whether `pattern` has a wildcard, i.e. is a glob rather than a plain path.
pub(crate) fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// The paths matching `pattern`, sorted; none is not an error.
pub(crate) fn expand(pattern: &Path) -> io::Result<Vec<PathBuf>> {
    let c_pattern = CString::new(pattern.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the pattern"))?;
    // SAFETY: glob_t is a plain C struct for which all-zero is the documented initial state.
    let mut found: libc::glob_t = unsafe { std::mem::zeroed() };
    // SAFETY: `c_pattern` is a valid C string, `found` a zeroed glob_t that glob fills; no error
    // callback. globfree below releases what it allocated, whatever the result.
    let result = unsafe { libc::glob(c_pattern.as_ptr(), 0, None, &mut found) };
    let mut paths = Vec::new();
    if result == 0 {
        for i in 0..found.gl_pathc {
            // SAFETY: glob filled `gl_pathv` with `gl_pathc` valid C strings.
            let entry = unsafe { CStr::from_ptr(*found.gl_pathv.add(i)) };
            paths.push(PathBuf::from(OsStr::from_bytes(entry.to_bytes())));
        }
    }
    // SAFETY: `found` was initialised (zeroed, then filled or left) by glob.
    unsafe { libc::globfree(&mut found) };
    match result {
        0 | libc::GLOB_NOMATCH => {
            paths.sort();
            Ok(paths)
        }
        libc::GLOB_NOSPACE => Err(io::Error::new(
            io::ErrorKind::OutOfMemory,
            "glob: no memory",
        )),
        _ => Err(io::Error::other("glob: read error")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_matches_files_by_wildcard_and_a_miss_is_empty() {
        let dir = crate::sys::tempdir::TempDir::new("glob");
        for name in ["a.ini", "b.ini", "c.txt"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let got = expand(&dir.path().join("*.ini")).unwrap();
        assert_eq!(got, [dir.path().join("a.ini"), dir.path().join("b.ini")]);
        assert!(expand(&dir.path().join("*.xml")).unwrap().is_empty());
        assert!(is_pattern("/etc/*.ini") && is_pattern("a?.ini") && !is_pattern("/etc/vassals"));
    }
}
