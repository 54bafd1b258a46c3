//! Touch files: a changed modification time asks for a reload (or a log reopen).
//!
//! A file that does not exist yet counts as "no time"; creating it is a change, as in uWSGI.

use std::fs;
use std::path::PathBuf;
use std::time::SystemTime;

use super::action::TouchKind;
use crate::config::Config;

/// The watched files and the modification time each had when last looked at.
#[derive(Debug, Default)]
pub(crate) struct TouchFiles {
    files: Vec<(TouchKind, PathBuf, Option<SystemTime>)>,
}

impl TouchFiles {
    /// Watches every `touch-*` file of `config`, starting from their current times.
    pub(crate) fn from_config(config: &Config) -> TouchFiles {
        let lists = [
            (TouchKind::Reload, &config.touch_reload),
            (TouchKind::ChainReload, &config.touch_chain_reload),
            (TouchKind::WorkersReload, &config.touch_workers_reload),
            (TouchKind::LogReopen, &config.touch_logreopen),
        ];
        let files = lists
            .into_iter()
            .flat_map(|(kind, paths)| paths.iter().map(move |p| (kind, p.clone(), mtime(p))))
            .collect();
        TouchFiles { files }
    }

    /// The kinds whose files changed since the last call (each kind at most once).
    pub(crate) fn changed(&mut self) -> Vec<TouchKind> {
        let mut kinds = Vec::new();
        for (kind, path, seen) in &mut self.files {
            let now = mtime(path);
            if now != *seen {
                *seen = now;
                if now.is_some() && !kinds.contains(kind) {
                    kinds.push(*kind);
                }
            }
        }
        kinds
    }
}

fn mtime(path: &PathBuf) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn touching_creating_and_deleting_files_are_seen_once_each() {
        let dir = std::env::temp_dir().join(format!("rc-touch-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let reload = dir.join("reload");
        let logs = dir.join("logs");
        fs::write(&reload, "").unwrap();
        let mut files = TouchFiles {
            files: vec![
                (TouchKind::Reload, reload.clone(), mtime(&reload)),
                (TouchKind::LogReopen, logs.clone(), mtime(&logs)),
            ],
        };
        assert!(files.changed().is_empty(), "nothing changed yet");

        let later = SystemTime::now() + Duration::from_secs(5);
        fs::File::options()
            .write(true)
            .open(&reload)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(files.changed(), [TouchKind::Reload]);
        assert!(files.changed().is_empty(), "seen once");

        fs::write(&logs, "").unwrap();
        assert_eq!(files.changed(), [TouchKind::LogReopen]);

        fs::remove_file(&logs).unwrap();
        assert!(files.changed().is_empty(), "a removal asks for nothing");
        fs::remove_dir_all(&dir).unwrap();
    }
}
