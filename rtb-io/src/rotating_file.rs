//! Owns a file written in appended records with size-based rotation: when the next record
//! would take the file past its limit, `PATH` becomes `PATH.1` (`PATH.1` becomes `PATH.2`, and
//! so on; the oldest beyond `keep` is deleted) and a new `PATH` starts. A record is never split
//! across files. Writes are buffered; [`RotatingFile::flush`] hands them to the kernel.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::{Path, PathBuf},
};

use crate::spool::SpoolSink;

/// Bytes buffered before a write reaches the kernel.
const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// A size-rotated append-only file.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    bytes_max: u64,
    keep: u32,
    file: BufWriter<File>,
    bytes: u64,
}

impl RotatingFile {
    /// Opens (or creates) `path` for appending; an existing file's size counts toward the limit.
    /// `keep` is how many rotated files (`PATH.1` .. `PATH.keep`) are kept.
    pub fn open(path: &Path, bytes_max: u64, keep: u32) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let bytes = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            bytes_max: bytes_max.max(1),
            keep,
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, file),
            bytes,
        })
    }

    /// `PATH.n`.
    pub fn rotated_path(path: &Path, n: u32) -> PathBuf {
        let mut name = path.as_os_str().to_os_string();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = Self::rotated_path(&self.path, n);
                match std::fs::rename(&from, Self::rotated_path(&self.path, n + 1)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            std::fs::rename(&self.path, Self::rotated_path(&self.path, 1))?;
        }
        self.file = BufWriter::with_capacity(WRITE_BUFFER_BYTES, open_append(&self.path)?);
        self.bytes = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl SpoolSink for RotatingFile {
    fn write(&mut self, record: &[u8]) -> io::Result<()> {
        let len = record.len() as u64;
        if self.bytes > 0 && self.bytes + len > self.bytes_max {
            self.rotate()?;
        }
        self.file.write_all(record)?;
        self.bytes += len;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rtb-rotate-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn rotates_by_size_keeps_n_and_never_splits_a_record() {
        let dir = temp_dir("keep");
        let path = dir.join("ledger.jsonl");
        let mut f = RotatingFile::open(&path, 100, 2).unwrap();
        for i in 0..40 {
            f.write(format!("record-{i:03}-padding-to-30b\n").as_bytes())
                .unwrap();
        }
        f.flush().unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        let current = read(&path);
        let one = read(&RotatingFile::rotated_path(&path, 1));
        let two = read(&RotatingFile::rotated_path(&path, 2));
        assert!(!RotatingFile::rotated_path(&path, 3).exists());
        for text in [&current, &one, &two] {
            assert!(text.len() <= 100, "{}", text.len());
            assert!(text.lines().all(|l| l.len() == 25), "{text}");
        }
        // Newest last: the current file ends with the last record, .1 holds the ones before.
        assert!(current.ends_with("record-039-padding-to-30b\n"));
        let last_of_one = one.lines().last().unwrap();
        let first_of_current = current.lines().next().unwrap();
        assert!(last_of_one < first_of_current);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reopening_appends_and_counts_the_existing_size() {
        let dir = temp_dir("reopen");
        let path = dir.join("l");
        std::fs::write(&path, vec![b'x'; 90]).unwrap();
        let mut f = RotatingFile::open(&path, 100, 1).unwrap();
        f.write(&[b'y'; 20]).unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![b'y'; 20]);
        assert_eq!(
            std::fs::read(RotatingFile::rotated_path(&path, 1)).unwrap(),
            vec![b'x'; 90]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
