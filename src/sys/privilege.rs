//! Process identity and environment: `uid`/`gid` (by name or number), dropping root, `umask`,
//! `chdir`.
//!
//! Owns the order of the privilege drop (supplementary groups, then gid, then uid: once the uid
//! is gone the others can no longer be changed). It must not decide when to drop (the master
//! does it after binding sockets and writing the pidfile) nor log.

use std::ffi::CString;
use std::io;
use std::path::Path;

use nix::sys::stat::Mode;

use super::error::{context, with_context};
use nix::unistd::{Gid, Group, Uid, User};

/// Who to become, resolved from the `uid` / `gid` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) uid: Option<Uid>,
    pub(crate) gid: Option<Gid>,
    /// The user's name, for `initgroups` (its supplementary groups); `None` for a bare number
    /// with no passwd entry.
    pub(crate) user_name: Option<CString>,
}

impl Credentials {
    /// Resolves `uid` and `gid` options (each a name or a number; either may be absent). With a
    /// user but no group, the user's primary group is used, as gunicorn does.
    ///
    /// Errors: `uid www: no such user`, `gid web: no such group`.
    pub(crate) fn resolve(uid: Option<&str>, gid: Option<&str>) -> io::Result<Credentials> {
        let user = uid.map(resolve_user).transpose()?;
        let explicit_gid = gid.map(resolve_group).transpose()?;
        let (uid, user_name, primary_gid) = match user {
            Some((uid, account)) => {
                let name = account
                    .as_ref()
                    .and_then(|user| CString::new(user.name.as_bytes()).ok());
                (Some(uid), name, account.map(|user| user.gid))
            }
            None => (None, None, None),
        };
        Ok(Credentials {
            uid,
            gid: explicit_gid.or(primary_gid),
            user_name,
        })
    }

    /// Whether there is anything to drop to.
    pub(crate) fn is_empty(&self) -> bool {
        self.uid.is_none() && self.gid.is_none()
    }
}

/// `www-data` or `33` -> the uid, with the passwd entry when there is one. A number without an
/// entry is accepted (containers often run with bare ids).
fn resolve_user(spec: &str) -> io::Result<(Uid, Option<User>)> {
    let lookup = |e: nix::Error| with_context(e.into(), format!("uid {spec}: getpwnam"));
    if let Ok(number) = spec.parse::<u32>() {
        let uid = Uid::from_raw(number);
        return Ok((uid, User::from_uid(uid).map_err(lookup)?));
    }
    match User::from_name(spec).map_err(lookup)? {
        Some(user) => Ok((user.uid, Some(user))),
        None => Err(not_found(format!("uid {spec}: no such user"))),
    }
}

/// `www-data` or `33` -> the gid.
fn resolve_group(spec: &str) -> io::Result<Gid> {
    if let Ok(number) = spec.parse::<u32>() {
        return Ok(Gid::from_raw(number));
    }
    let lookup = |e: nix::Error| with_context(e.into(), format!("gid {spec}: getgrnam"));
    match Group::from_name(spec).map_err(lookup)? {
        Some(group) => Ok(group.gid),
        None => Err(not_found(format!("gid {spec}: no such group"))),
    }
}

/// Becomes `credentials`: supplementary groups (the user's, via `initgroups`, or just the gid),
/// then the gid, then the uid, and checks that the uid cannot be regained.
///
/// Without root this can only "drop" to the ids the process already has; anything else fails
/// with `EPERM`. An empty `Credentials` is a no-op. Errors name the call: `setuid 33:
/// operation not permitted`.
pub(crate) fn drop_privileges(credentials: &Credentials) -> io::Result<()> {
    let failed = |call: String| move |e: nix::Error| with_context(e.into(), call);
    if let Some(gid) = credentials.gid {
        if is_root() {
            match &credentials.user_name {
                Some(name) => nix::unistd::initgroups(name, gid)
                    .map_err(failed(format!("initgroups {}", name.to_string_lossy())))?,
                None => {
                    nix::unistd::setgroups(&[gid]).map_err(failed(format!("setgroups {gid}")))?
                }
            }
        }
        nix::unistd::setgid(gid).map_err(failed(format!("setgid {gid}")))?;
    }
    if let Some(uid) = credentials.uid {
        nix::unistd::setuid(uid).map_err(failed(format!("setuid {uid}")))?;
        if !uid.is_root() && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
            return Err(io::Error::other(
                "privileges could be regained after setuid",
            ));
        }
    }
    Ok(())
}

/// Whether the effective user is root.
pub(crate) fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sets the file-mode creation mask (e.g. `0o022`) and returns the previous one.
pub(crate) fn set_umask(mask: u32) -> u32 {
    let previous = nix::sys::stat::umask(Mode::from_bits_truncate(mask));
    previous.bits()
}

/// `chdir`, with the path in the error (`chdir /srv/app: no such file or directory`).
pub(crate) fn change_dir(path: &Path) -> io::Result<()> {
    std::env::set_current_dir(path).map_err(context(format_args!("chdir {}", path.display())))
}

fn not_found(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::rerun;

    #[test]
    fn root_resolves_by_name_and_by_number() {
        let by_name = Credentials::resolve(Some("root"), None).expect("root");
        assert_eq!(by_name.uid, Some(Uid::from_raw(0)));
        assert_eq!(by_name.gid, Some(Gid::from_raw(0)), "primary group");
        assert_eq!(by_name.user_name.as_deref(), Some(c"root"));
        let by_number = Credentials::resolve(Some("0"), Some("0")).expect("0");
        assert_eq!(by_number.uid, Some(Uid::from_raw(0)));
        assert_eq!(by_number.gid, Some(Gid::from_raw(0)));
        let group_only = Credentials::resolve(None, Some("root")).expect("group");
        assert_eq!(
            (group_only.uid, group_only.gid),
            (None, Some(Gid::from_raw(0)))
        );
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        let err = Credentials::resolve(Some("no-such-user-rc"), None).expect_err("user");
        assert_eq!(err.to_string(), "uid no-such-user-rc: no such user");
        let err = Credentials::resolve(None, Some("no-such-group-rc")).expect_err("group");
        assert_eq!(err.to_string(), "gid no-such-group-rc: no such group");
        assert!(Credentials::resolve(None, None).expect("none").is_empty());
    }

    #[test]
    fn bare_numbers_without_entries_are_accepted() {
        let creds = Credentials::resolve(Some("4000123"), Some("4000124")).expect("numbers");
        assert_eq!(creds.uid, Some(Uid::from_raw(4_000_123)));
        assert_eq!(creds.gid, Some(Gid::from_raw(4_000_124)));
        assert_eq!(creds.user_name, None);
    }

    #[test]
    fn chdir_errors_name_the_directory() {
        let err = change_dir(Path::new("/no/such/dir")).expect_err("missing");
        assert!(err.to_string().starts_with("chdir /no/such/dir: "), "{err}");
    }

    /// Changes the ids of the whole process: runs in a child copy of the test binary.
    #[test]
    fn dropping_privileges_changes_every_id_in_a_child_process() {
        rerun::in_child_process(
            "sys::privilege::tests::dropping_privileges_changes_every_id_in_a_child_process",
            || {
                let creds = Credentials::resolve(Some("65534"), Some("65534")).expect("ids");
                if !is_root() {
                    assert!(drop_privileges(&creds).is_err(), "only root can switch");
                    return;
                }
                drop_privileges(&creds).expect("drop");
                assert_eq!(nix::unistd::getuid(), Uid::from_raw(65534));
                assert_eq!(nix::unistd::geteuid(), Uid::from_raw(65534));
                assert_eq!(nix::unistd::getgid(), Gid::from_raw(65534));
                let groups = nix::unistd::getgroups().expect("groups");
                assert!(
                    !groups.contains(&Gid::from_raw(0)),
                    "root group kept: {groups:?}"
                );
                let previous = set_umask(0o027);
                assert_eq!(set_umask(previous), 0o027);
            },
        );
    }
}
