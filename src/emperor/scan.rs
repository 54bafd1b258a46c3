//! Which vassal files exist, and how the emperor learns that they changed.
//!
//! A monitor is a directory (every `*.ini` file in it, symlinks followed) or a glob
//! (`/srv/*/vassal.ini`). A scan stats every file and keeps its identity: device, inode, size
//! and modification time in nanoseconds, so two edits within one second both count and a file
//! replaced by a rename counts too. Comparing two scans ([`diff`]) gives what was added,
//! changed and removed; that comparison is pure and unit-tested.
//!
//! Scans run when inotify reports something in a watched directory ([`Watcher`]) and every
//! `emperor-freq` as a safety net (a symlink's target changing elsewhere, a directory created
//! later under a glob). Nothing here starts or stops anything.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::sys::glob;

/// Where vassal files are found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Monitor {
    /// Every `*.ini` file in this directory.
    Dir(PathBuf),
    /// Every file matching this pattern.
    Glob(PathBuf),
}

impl Monitor {
    /// `emperor = TEXT`: a pattern with wildcards is a glob, anything else a directory (which
    /// must exist); relative to `cwd`.
    pub(crate) fn parse(text: &str, cwd: &Path) -> Result<Monitor, String> {
        let path = cwd.join(text.trim());
        if glob::is_pattern(text) {
            return Ok(Monitor::Glob(path));
        }
        if path.is_dir() {
            Ok(Monitor::Dir(path))
        } else {
            Err(format!(
                "emperor {}: not a directory (a directory of *.ini files or a glob such as dir/*.ini)",
                path.display()
            ))
        }
    }

    /// How stats and the log name it (uWSGI shows the monitor string).
    pub(crate) fn describe(&self) -> String {
        match self {
            Monitor::Dir(path) | Monitor::Glob(path) => path.display().to_string(),
        }
    }

    /// The files it matches now (not yet checked to be regular files).
    fn candidates(&self) -> Vec<PathBuf> {
        match self {
            Monitor::Dir(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "ini"))
                    .collect(),
                Err(_) => Vec::new(),
            },
            Monitor::Glob(pattern) => glob::expand(pattern).unwrap_or_default(),
        }
    }

    /// The directories inotify should watch, given what the last scan found: the directory
    /// itself, or for a glob the deepest directory without wildcards and each directory
    /// holding a match.
    fn watch_dirs<'a>(&'a self, found: impl Iterator<Item = &'a PathBuf>) -> BTreeSet<PathBuf> {
        match self {
            Monitor::Dir(dir) => BTreeSet::from([dir.clone()]),
            Monitor::Glob(pattern) => {
                let mut dirs: BTreeSet<PathBuf> = found
                    .filter(|path| self.owns(path))
                    .filter_map(|path| path.parent().map(Path::to_path_buf))
                    .collect();
                let literal: PathBuf = pattern
                    .components()
                    .take_while(|c| !glob::is_pattern(&c.as_os_str().to_string_lossy()))
                    .collect();
                if literal != *pattern {
                    dirs.insert(literal);
                }
                dirs
            }
        }
    }

    fn owns(&self, path: &Path) -> bool {
        match self {
            Monitor::Dir(dir) => path.parent() == Some(dir),
            Monitor::Glob(_) => true,
        }
    }
}

/// What identifies one version of a vassal file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub(crate) struct FileId {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub(crate) mtime_ns: i128,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// The modification time in whole seconds (uWSGI's `last_mod`).
    pub(crate) fn mtime_secs(&self) -> i64 {
        i64::try_from(self.mtime_ns.div_euclid(1_000_000_000)).unwrap_or(0)
    }
}

/// Every vassal file the monitors see now: path -> identity. A path two monitors match is one
/// vassal.
pub(crate) fn scan(monitors: &[Monitor]) -> BTreeMap<PathBuf, FileId> {
    let mut files = BTreeMap::new();
    for monitor in monitors {
        for path in monitor.candidates() {
            // `metadata` follows symlinks: a link to a vassal file is that file.
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
            {
                files.insert(path, FileId::of(&meta));
            }
        }
    }
    files
}

/// How one vassal file differs between two scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    Added(PathBuf, FileId),
    Changed(PathBuf, FileId),
    Removed(PathBuf),
}

/// What changed from `before` to `after`, in path order.
pub(crate) fn diff(
    before: &BTreeMap<PathBuf, FileId>,
    after: &BTreeMap<PathBuf, FileId>,
) -> Vec<Change> {
    let mut changes = Vec::new();
    for (path, id) in after {
        match before.get(path) {
            None => changes.push(Change::Added(path.clone(), *id)),
            Some(old) if old != id => changes.push(Change::Changed(path.clone(), *id)),
            Some(_) => {}
        }
    }
    for path in before.keys().filter(|path| !after.contains_key(*path)) {
        changes.push(Change::Removed(path.clone()));
    }
    changes
}

/// inotify watches on the monitored directories; readable when something in them changed.
#[derive(Debug)]
pub(crate) struct Watcher {
    inotify: Inotify,
    watched: BTreeMap<PathBuf, WatchDescriptor>,
}

impl Watcher {
    pub(crate) fn new() -> io::Result<Watcher> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        Ok(Watcher {
            inotify,
            watched: BTreeMap::new(),
        })
    }

    /// Watches every directory the monitors need after a scan that found `files` (directories
    /// already watched are kept; one that cannot be watched is left to the periodic rescan).
    pub(crate) fn watch(&mut self, monitors: &[Monitor], files: &BTreeMap<PathBuf, FileId>) {
        let flags = AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MODIFY
            | AddWatchFlags::IN_ATTRIB
            | AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_DELETE_SELF
            | AddWatchFlags::IN_MOVE_SELF;
        for monitor in monitors {
            for dir in monitor.watch_dirs(files.keys()) {
                if self.watched.contains_key(&dir) {
                    continue;
                }
                match self.inotify.add_watch(&dir, flags) {
                    Ok(wd) => {
                        self.watched.insert(dir, wd);
                    }
                    Err(e) => log::debug!("emperor: cannot watch {}: {e}", dir.display()),
                }
            }
        }
    }

    /// Reads every pending event; whether one may concern a vassal file (with directory
    /// monitors only, events about other files, such as the vassals' own sockets created
    /// beside their INI files, do not). A watched directory that went away is forgotten
    /// (watched again if it comes back and a scan finds it).
    pub(crate) fn drain(&mut self, monitors: &[Monitor]) -> bool {
        let only_ini = monitors.iter().all(|m| matches!(m, Monitor::Dir(_)));
        let mut any = false;
        loop {
            match self.inotify.read_events() {
                Ok(events) if events.is_empty() => return any,
                Ok(events) => {
                    for event in events {
                        if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                            self.watched.retain(|_, wd| *wd != event.wd);
                        }
                        any |= !only_ini
                            || event.name.as_ref().is_none_or(|name| {
                                Path::new(name).extension().is_some_and(|ext| ext == "ini")
                            });
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return any,
            }
        }
    }
}

crate::sys::fd_event_source!(Watcher, |watcher| watcher.inotify.as_fd().as_raw_fd());

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64, mtime_ns: i128) -> FileId {
        FileId {
            dev: 1,
            ino,
            size: 10,
            mtime_ns,
        }
    }

    #[test]
    fn files_added_changed_and_removed_are_told_apart() {
        let before = BTreeMap::from([
            (PathBuf::from("/v/a.ini"), id(1, 100)),
            (PathBuf::from("/v/b.ini"), id(2, 100)),
            (PathBuf::from("/v/c.ini"), id(3, 100)),
        ]);
        let after = BTreeMap::from([
            (PathBuf::from("/v/a.ini"), id(1, 100)),
            // Touched within the same second: only the nanoseconds differ.
            (PathBuf::from("/v/b.ini"), id(2, 101)),
            (PathBuf::from("/v/d.ini"), id(4, 100)),
        ]);
        assert_eq!(
            diff(&before, &after),
            [
                Change::Changed(PathBuf::from("/v/b.ini"), id(2, 101)),
                Change::Added(PathBuf::from("/v/d.ini"), id(4, 100)),
                Change::Removed(PathBuf::from("/v/c.ini")),
            ]
        );
        // A file replaced by a rename has a new inode: a change even with the same mtime.
        let renamed = BTreeMap::from([(PathBuf::from("/v/a.ini"), id(9, 100))]);
        let one = BTreeMap::from([(PathBuf::from("/v/a.ini"), id(1, 100))]);
        assert_eq!(
            diff(&one, &renamed),
            [Change::Changed(PathBuf::from("/v/a.ini"), id(9, 100))]
        );
    }

    #[test]
    fn a_directory_monitor_finds_ini_files_and_symlinks_to_them() {
        let dir = crate::sys::tempdir::TempDir::new("emperor-scan");
        std::fs::write(dir.join("a.ini"), "x").unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        std::fs::write(dir.join("target.conf"), "x").unwrap();
        std::os::unix::fs::symlink(dir.join("target.conf"), dir.join("b.ini")).unwrap();
        std::os::unix::fs::symlink(dir.join("missing"), dir.join("dangling.ini")).unwrap();
        let monitor = Monitor::parse(&dir.path().to_string_lossy(), Path::new("/")).unwrap();
        let found: Vec<PathBuf> = scan(&[monitor]).into_keys().collect();
        assert_eq!(found, [dir.join("a.ini"), dir.join("b.ini")]);
        let glob = Monitor::parse(&format!("{}/*.conf", dir.path().display()), Path::new("/"));
        let found: Vec<PathBuf> = scan(&[glob.unwrap()]).into_keys().collect();
        assert_eq!(found, [dir.join("target.conf")]);
        assert!(Monitor::parse("/nonexistent/vassals", Path::new("/")).is_err());
    }

    #[test]
    fn a_glob_watches_its_literal_directory_and_the_directories_of_its_matches() {
        let monitor = Monitor::Glob(PathBuf::from("/srv/*/vassal.ini"));
        let found = [PathBuf::from("/srv/a/vassal.ini")];
        let dirs = monitor.watch_dirs(found.iter());
        assert_eq!(
            dirs,
            BTreeSet::from([PathBuf::from("/srv"), PathBuf::from("/srv/a")])
        );
    }
}
