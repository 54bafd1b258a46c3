//! Probes a running master makes before it re-executes: would the new image be able to create
//! its files, and does the binary on disk run at all?
//!
//! They are done by the running image as the user the new image will run as (a re-exec keeps
//! the credentials), so what they find is what the new image would find. They create nothing
//! that stays and they never wait long.

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Checks that a file can be created in `dir` by creating a uniquely named one there
/// (`O_CREAT|O_EXCL|O_NOFOLLOW`) and removing it.
pub(crate) fn can_create_in(dir: &Path) -> io::Result<()> {
    let nanos = super::clock::unix_now().subsec_nanos();
    let name = format!(".rcontainer-probe-{}-{nanos}", std::process::id());
    let path = dir.join(name);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)?;
    std::fs::remove_file(&path)
}

/// Runs `program --version` and returns the first line it printed; an error if it cannot be
/// started, is killed, exits with a failure or takes longer than `timeout` (it is then killed).
pub(crate) fn version_of(program: &Path, timeout: Duration) -> io::Result<String> {
    let spawn = || {
        Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .env_clear()
            .spawn()
    };
    let mut child = super::process::retry_text_busy(spawn)?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("--version gave no answer within {}s", timeout.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    if !status.success() {
        return Err(io::Error::other(format!("--version ended with {status}")));
    }
    Ok(out.lines().next().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::tempdir::TempDir;

    #[test]
    fn a_writable_directory_is_creatable_and_left_as_it_was() {
        let dir = TempDir::new("probe-create");
        can_create_in(dir.path()).expect("creatable");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        assert!(can_create_in(&dir.join("missing")).is_err());
    }

    #[test]
    fn version_of_reads_the_first_line_and_refuses_failures() {
        let dir = TempDir::new("probe-version");
        let script = dir.join("fake");
        std::fs::write(&script, "#!/bin/sh\necho 'rcontainer 9.9'\necho more\n").expect("write");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        let first = version_of(&script, Duration::from_secs(10)).expect("runs");
        assert_eq!(first, "rcontainer 9.9");
        std::fs::write(&script, "#!/bin/sh\nexit 3\n").expect("write");
        assert!(version_of(&script, Duration::from_secs(10)).is_err());
        std::fs::write(&script, "not a program").expect("write");
        assert!(version_of(&script, Duration::from_secs(10)).is_err());
    }
}
