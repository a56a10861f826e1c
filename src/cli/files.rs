//! The CLI's own file access: inputs are read up to a cap (a path such as
//! `/dev/zero`, or a huge file, must fail at once, not exhaust memory), and
//! the state file is replaced atomically through a temporary file of its
//! own, created exclusively, so no other file and no symlink is ever written.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The largest manifest file `plan` / `apply` read (one set is ~1 KiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// The largest `--state` file read.
pub const MAX_STATE_BYTES: u64 = 64 << 20;

/// The text of `path`, or an error naming the limit once it passes `max` bytes.
pub fn read_capped(path: &Path, max: u64, what: &str) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes, the limit for a {what}"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// A temporary name next to `path` that no one else picks.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let unique = uuid::Uuid::new_v4().simple().to_string();
    path.with_file_name(format!(".{name}.{unique}.tmp"))
}

/// Replaces `path` with `contents`: written to a fresh file in the same
/// directory (create-new, so an existing file or symlink there is never
/// opened), flushed, then renamed over `path` (a symlink at `path` is
/// replaced, not followed).
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = temp_path(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Ownership records are nobody else's business.
        options.mode(0o600);
    }
    let result = options.open(&tmp).and_then(|mut f| {
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_zero_fails_fast_naming_the_limit() {
        let started = std::time::Instant::now();
        let e = read_capped(Path::new("/dev/zero"), MAX_MANIFEST_BYTES, "manifest").unwrap_err();
        assert!(e.to_string().contains("limit for a manifest"), "{e}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn reads_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.yaml");
        std::fs::write(&p, "a".repeat(100)).unwrap();
        assert_eq!(read_capped(&p, 100, "manifest").unwrap().len(), 100);
        assert!(read_capped(&p, 99, "manifest").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn replaces_a_symlink_without_writing_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let state = dir.path().join("state.json");
        std::os::unix::fs::symlink(&victim, &state).unwrap();
        // A planted fixed-name temp file is not used either.
        std::os::unix::fs::symlink(&victim, dir.path().join("state.tmp")).unwrap();
        write_atomic(&state, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(
            !std::fs::symlink_metadata(&state)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "{}");
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp") && n != "state.tmp")
            .collect();
        assert!(left.is_empty(), "no temporary file left: {left:?}");
    }
}
