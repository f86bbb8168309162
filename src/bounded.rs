//! Reading a file that a bundle or an image controls (`config.json`, an `exec --process` file,
//! the image's `/etc/passwd`) without trusting it. Such a file must be a regular file: a FIFO
//! would hang the open or the read, a device such as `/dev/zero` never ends, and opening some
//! devices does something (a tape rewinds, a watchdog arms). So the path is first opened with
//! `O_PATH`, which opens nothing, and checked; only a regular file is then opened for reading,
//! non-blocking, checked again on the descriptor (the path may have changed meanwhile), and read
//! up to a limit. Symbolic links are followed, as runc follows them: what decides is the file
//! they lead to.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file but {kind}", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{} is larger than {}, the most berth reads of it", path.display(), size_text(*limit))]
    TooLarge { path: PathBuf, limit: u64 },
}

impl ReadError {
    /// Whether the file is simply not there.
    pub fn not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// The whole content of the regular file at `path`, which must hold at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    let too_large = || ReadError::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // One byte more than the limit tells a file that grew past it from one that fits.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// Opens the regular file at `path` for reading (non-blocking, close-on-exec), having made sure
/// before opening it, and again on the open descriptor, that it is one. Namespace files
/// (`/proc/PID/ns/net`, `/run/netns/NAME`) are regular files too.
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let check = |file: &File| -> Result<(), ReadError> {
        let kind = file.metadata().map_err(io)?.file_type();
        if kind.is_file() {
            return Ok(());
        }
        Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_name(kind),
        })
    };
    // O_PATH opens nothing: no FIFO waits for a writer, no device's open runs.
    let probe = File::options()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(path)
        .map_err(io)?;
    check(&probe)?;
    drop(probe);
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    check(&file)?;
    Ok(file)
}

fn size_text(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} bytes")
    }
}

fn kind_name(kind: std::fs::FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-bounded-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_regular_file_within_the_limit_is_read_whole() {
        let dir = scratch("ok");
        let path = dir.join("config.json");
        std::fs::write(&path, b"{}").unwrap();
        std::os::unix::fs::symlink(&path, dir.join("link")).unwrap();
        assert_eq!(read_regular(&path, 2).unwrap(), b"{}");
        assert_eq!(read_regular(&dir.join("link"), 2).unwrap(), b"{}");
        let err = read_regular(&path, 1).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is larger than 1 bytes, the most berth reads of it",
                path.display()
            )
        );
        assert!(read_regular(&dir.join("missing"), 1)
            .unwrap_err()
            .not_found());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn devices_fifos_and_directories_are_refused_without_reading_or_waiting() {
        let dir = scratch("hostile");
        let zero = dir.join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let started = Instant::now();
        for (path, kind) in [
            (&zero, "a character device"),
            (&fifo, "a FIFO"),
            (&dir, "a directory"),
        ] {
            let err = read_regular(path, 1 << 20).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("{} is not a regular file but {kind}", path.display())
            );
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
