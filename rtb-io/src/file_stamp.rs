//! Owns which version of a file is behind a path: its inode, size and modification time, read
//! anew through the path each time, so a control thread notices a change without reading the
//! file, including a symlink swapped to a new file (a Kubernetes ConfigMap update changes the
//! inode). The exchange's roster file and the resolver's `/etc/hosts` are watched this way.

use std::{os::unix::fs::MetadataExt, path::Path, time::SystemTime};

/// Which file is behind a path, and which version of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    /// The stamp of the file at `path` now; `None` when it cannot be looked at.
    pub fn of(path: &Path) -> Option<FileStamp> {
        let meta = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_behind_the_path_or_new_content_changes_the_stamp() {
        let dir = std::env::temp_dir().join(format!("thin-file-stamp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("watched");
        assert_eq!(FileStamp::of(&path), None, "no file yet");
        std::fs::write(&path, "one").unwrap();
        let first = FileStamp::of(&path).unwrap();
        assert_eq!(FileStamp::of(&path), Some(first), "unchanged");
        std::fs::write(&path, "longer").unwrap();
        let grown = FileStamp::of(&path).unwrap();
        assert_ne!(grown, first, "the size changed");
        let other = dir.join("other");
        std::fs::write(&other, "longer").unwrap();
        std::fs::rename(&other, &path).unwrap();
        assert_ne!(FileStamp::of(&path), Some(grown), "another inode");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
