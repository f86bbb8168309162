//! Subcommands that read and write files: cat, write, stat and ls.

use crate::probes::report;
use crate::{format, Failure, Outcome};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

pub fn cat(args: &[String]) -> Outcome {
    let [path] = args else {
        return Err(Failure::Usage);
    };
    copy_to_stdout(path)
}

/// Writes TEXT (exactly, no newline added) to FILE, creating or truncating it; prints `ok` or the
/// errno name (`EROFS`), so tests can probe read-only and masked paths.
pub fn write(args: &[String]) -> Outcome {
    let [path, text] = args else {
        return Err(Failure::Usage);
    };
    report(fs::write(path, text))
}

/// Prints `type=TYPE mode=OCTAL uid=N gid=N`, plus `rdev=MAJOR:MINOR` for devices, of PATH
/// itself (a symlink is not followed).
pub fn stat(args: &[String]) -> Outcome {
    let [path] = args else {
        return Err(Failure::Usage);
    };
    let metadata = fs::symlink_metadata(path).map_err(|error| Failure::io(path, error))?;
    let file_type = metadata.file_type();
    let type_name = if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_char_device() {
        "char"
    } else if file_type.is_block_device() {
        "block"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "file"
    };
    let mut line = format!(
        "type={type_name} mode={} uid={} gid={}",
        format::permissions(metadata.mode()),
        metadata.uid(),
        metadata.gid()
    );
    if file_type.is_char_device() || file_type.is_block_device() {
        let device = metadata.rdev();
        line += &format!(" rdev={}:{}", libc::major(device), libc::minor(device));
    }
    println!("{line}");
    Ok(0)
}

/// Prints the names in DIR, sorted, one per line.
pub fn ls(args: &[String]) -> Outcome {
    let [directory] = args else {
        return Err(Failure::Usage);
    };
    let mut names = list_names(directory)?;
    names.sort();
    for name in names {
        println!("{name}");
    }
    Ok(0)
}

pub fn copy_to_stdout(path: &str) -> Outcome {
    let mut file = File::open(path).map_err(|error| Failure::io(path, error))?;
    io::copy(&mut file, &mut io::stdout().lock()).map_err(|error| Failure::io(path, error))?;
    Ok(0)
}

/// The names in `directory`; its descriptor is closed again when this returns.
pub fn list_names(directory: &str) -> Result<Vec<String>, Failure> {
    let entries = fs::read_dir(directory).map_err(|error| Failure::io(directory, error))?;
    entries
        .map(|entry| {
            let entry = entry.map_err(|error| Failure::io(directory, error))?;
            Ok(entry.file_name().to_string_lossy().into_owned())
        })
        .collect()
}
