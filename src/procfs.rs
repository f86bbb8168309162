//! Reading the files the kernel makes up as they are read (`/proc/self/mountinfo`,
//! `/proc/PID/stat`, `/proc/self/cgroup`). They report a size of 0, so `fs::read_to_string`
//! starts with a 32-byte read and doubles it: eight system calls for a mountinfo of 2 KiB, each
//! one a trip through the file's generator. A buffer of a few pages takes them in one or two.

use std::io::Read;
use std::path::Path;

/// What one read asks for: more than these files hold on most hosts.
const CHUNK: usize = 16 << 10;

/// The whole text of the generated file at `path`.
pub fn read(path: impl AsRef<Path>) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(CHUNK);
    loop {
        if bytes.capacity() - bytes.len() < CHUNK / 2 {
            bytes.reserve(CHUNK);
        }
        let start = bytes.len();
        let room = bytes.capacity() - start;
        bytes.resize(start + room, 0);
        match file.read(&mut bytes[start..]) {
            Ok(0) => {
                bytes.truncate(start);
                break;
            }
            Ok(n) => bytes.truncate(start + n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => bytes.truncate(start),
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_generated_files_whole() {
        let ours = read("/proc/self/mountinfo").unwrap();
        assert!(ours.lines().count() > 0);
        assert!(ours.ends_with('\n'));
        // A file longer than one read arrives whole.
        let tmp = crate::testutil::TempDir::new("procfs");
        let long = tmp.path().join("long");
        let text: String = (0..10_000).map(|i| format!("{i}\n")).collect();
        std::fs::write(&long, &text).unwrap();
        assert_eq!(read(&long).unwrap(), text);
        assert!(read(tmp.path().join("missing")).is_err());
    }
}
