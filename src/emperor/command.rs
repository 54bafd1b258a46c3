//! What a vassal runs: `<binary> [--set K=V]... --ini FILE` in the file's directory, with the
//! emperor's environment minus what belongs to the emperor, and its end of the link; and the
//! `--check-config` run of the same command line that gates a reload.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::exit;
use crate::sys::emperor_link;
use crate::sys::notify;
use crate::sys::process;
use crate::sys::spawn::Program;

use super::vassal;

/// What every vassal is started with.
#[derive(Debug)]
pub(crate) struct VassalCommand {
    pub(crate) binary: PathBuf,
    /// Whether `binary` is rcontainer, which has `--check-config`.
    pub(crate) checks: bool,
    /// `--set K=V` for each `vassal-set`, after `--set logto=FILE` for the emperor's own log
    /// file (rcontainer vassals only).
    pub(crate) defaults: Vec<OsString>,
    /// The emperor's environment without what is the emperor's own (`NOTIFY_SOCKET`, its
    /// `RCONTAINER_*` options, a link of its own).
    pub(crate) env: Vec<(OsString, OsString)>,
}

impl VassalCommand {
    pub(crate) fn from_config(config: &Config) -> VassalCommand {
        let own = process::reexec_path();
        let (binary, checks) = match &config.emperor_wrapper {
            Some(wrapper) => {
                let named = wrapper
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("rcontainer"));
                (wrapper.clone(), named || same_file(wrapper, &own))
            }
            None => (own, true),
        };
        // An rcontainer vassal logs to the emperor's log file by opening it itself (unless its
        // INI or a vassal-set says otherwise), not through the emperor's descriptor: then it
        // reopens the file after a rotation when the emperor passes its USR1 on.
        let shared_log = (config.logto.as_ref())
            .or(config.daemonize.as_ref())
            .filter(|_| checks)
            .and_then(|file| std::path::absolute(file).ok())
            .map(|file| format!("logto={}", file.display()));
        let defaults = shared_log
            .into_iter()
            .chain((config.vassal_set.iter()).map(|pair| format!("{}={}", pair.name, pair.value)))
            .flat_map(|pair| ["--set".into(), pair.into()])
            .collect();
        let env = std::env::vars_os()
            .filter(|(key, _)| {
                let key = key.to_string_lossy();
                key != notify::NOTIFY_SOCKET_ENV
                    && key != emperor_link::FD_ENV
                    && !key.starts_with(crate::config::ENV_PREFIX)
            })
            .collect();
        VassalCommand {
            binary,
            checks,
            defaults,
            env,
        }
    }

    /// The program for the vassal of `file`, linked by `link_fd`.
    pub(crate) fn vassal(&self, file: &Path, link_fd: i32) -> Program {
        let mut env = self.env.clone();
        env.push((emperor_link::FD_ENV.into(), link_fd.to_string().into()));
        Program {
            path: self.binary.clone(),
            argv: self.argv(file, &[]),
            env,
            cwd: file.parent().map(Path::to_path_buf),
            keep: vec![link_fd],
            output: None,
            failure_code: u8::try_from(vassal::EXILE_CODE).expect("invariant: 26 fits"),
        }
    }

    /// The program that checks `file` loads, writing its errors to `output`.
    pub(crate) fn check(&self, file: &Path, output: i32) -> Program {
        Program {
            path: self.binary.clone(),
            argv: self.argv(file, &["--check-config"]),
            env: self.env.clone(),
            cwd: file.parent().map(Path::to_path_buf),
            keep: Vec::new(),
            output: Some(output),
            failure_code: exit::RUNTIME,
        }
    }

    fn argv(&self, file: &Path, extra: &[&str]) -> Vec<OsString> {
        let mut argv = vec![self.binary.clone().into_os_string()];
        argv.extend(self.defaults.iter().cloned());
        argv.push("--ini".into());
        argv.push(file.as_os_str().to_owned());
        argv.extend(extra.iter().map(OsString::from));
        argv
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vassal_runs_with_its_defaults_its_file_and_its_link_and_no_emperor_variables() {
        let command = VassalCommand {
            binary: PathBuf::from("/usr/bin/rcontainer"),
            checks: true,
            defaults: vec!["--set".into(), "processes=2".into()],
            env: vec![("PATH".into(), "/bin".into())],
        };
        let program = command.vassal(Path::new("/etc/vassals/app.ini"), 9);
        let argv: Vec<&str> = program.argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            argv,
            [
                "/usr/bin/rcontainer",
                "--set",
                "processes=2",
                "--ini",
                "/etc/vassals/app.ini"
            ]
        );
        assert_eq!(program.cwd.as_deref(), Some(Path::new("/etc/vassals")));
        assert_eq!(program.keep, [9]);
        assert!(
            program
                .env
                .contains(&("UWSGI_EMPEROR_FD".into(), "9".into()))
        );
        let check = command.check(Path::new("/etc/vassals/app.ini"), 4);
        assert_eq!(check.argv.last().unwrap(), "--check-config");
        assert_eq!(check.output, Some(4));
        assert!(check.keep.is_empty());
    }
}
