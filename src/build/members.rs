//! A layer's member list (beside its tree in the store): each tar member's path and digest as
//! the layer was built, so `env verify` can name the files that changed, not only the layer.
//!
//! Format, zstd-compressed text: `envkit-members 1`, then one line per member,
//! `<32 hex digits> <path>`, in tar order; in the path, bytes outside printable ASCII and `\`
//! are written `\xNN`, so any file name fits on one line.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::layer_tar::MemberDigest;

const HEADER: &str = "envkit-members 1";

#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    #[error("cannot write `{}`", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{}` line {line} is damaged", path.display())]
    Damaged { path: PathBuf, line: usize },
}

/// Writes `members` to `path`.
pub fn write(path: &Path, members: &[MemberDigest]) -> Result<(), MembersError> {
    let mut text = String::with_capacity(members.len() * 80);
    text.push_str(HEADER);
    text.push('\n');
    for member in members {
        for byte in member.digest {
            text.push_str(&format!("{byte:02x}"));
        }
        text.push(' ');
        for &byte in &member.path {
            if byte.is_ascii_graphic() && byte != b'\\' || byte == b' ' {
                text.push(char::from(byte));
            } else {
                text.push_str(&format!("\\x{byte:02x}"));
            }
        }
        text.push('\n');
    }
    let error = |source| MembersError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::create(path).map_err(error)?;
    let mut encoder = zstd::Encoder::new(file, 3).map_err(error)?;
    encoder.write_all(text.as_bytes()).map_err(error)?;
    encoder.finish().map_err(error)?;
    Ok(())
}

/// The members recorded at `path`; `None` when the layer has no list (built before lists).
pub fn read(path: &Path) -> Result<Option<Vec<MemberDigest>>, MembersError> {
    let error = |source| MembersError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error(e)),
    };
    let mut text = String::new();
    zstd::Decoder::new(file)
        .and_then(|mut decoder| decoder.read_to_string(&mut text))
        .map_err(error)?;
    let damaged = |line| MembersError::Damaged {
        path: path.to_path_buf(),
        line,
    };
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return Err(damaged(1));
    }
    let mut members = Vec::new();
    for (index, line) in lines.enumerate() {
        let parsed = line
            .split_once(' ')
            .and_then(|(hex, path)| Some((digest_of(hex)?, unescape(path)?)));
        let (digest, path) = parsed.ok_or_else(|| damaged(index + 2))?;
        members.push(MemberDigest { path, digest });
    }
    Ok(Some(members))
}

fn digest_of(hex: &str) -> Option<[u8; 16]> {
    if hex.len() != 32 {
        return None;
    }
    let mut digest = [0; 16];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

fn unescape(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut path = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            let hex = std::str::from_utf8(bytes.get(i + 2..i + 4)?).ok()?;
            if bytes.get(i + 1) != Some(&b'x') {
                return None;
            }
            path.push(u8::from_str_radix(hex, 16).ok()?);
            i += 4;
        } else {
            path.push(bytes[i]);
            i += 1;
        }
    }
    Some(path)
}

/// How a layer's members differ from the list recorded when it was built.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Differences {
    /// Contents, mode, owner, type or link target differ.
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl Differences {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.added.is_empty() && self.removed.is_empty()
    }
}

/// What differs between the recorded members and the current ones, paths sorted and shown
/// as text (`/` first, invalid UTF-8 replaced).
pub fn compare(recorded: &[MemberDigest], current: &[MemberDigest]) -> Differences {
    let map = |members: &[MemberDigest]| -> BTreeMap<Vec<u8>, [u8; 16]> {
        members.iter().map(|m| (m.path.clone(), m.digest)).collect()
    };
    let (before, after) = (map(recorded), map(current));
    let shown = |path: &[u8]| format!("/{}", String::from_utf8_lossy(path));
    let mut differences = Differences::default();
    for (path, digest) in &after {
        match before.get(path) {
            None => differences.added.push(shown(path)),
            Some(old) if old != digest => differences.changed.push(shown(path)),
            Some(_) => {}
        }
    }
    differences.removed = before
        .keys()
        .filter(|path| !after.contains_key(*path))
        .map(|path| shown(path))
        .collect();
    differences
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::layer_tar::{TarOptions, layer_digest};

    const OPTIONS: TarOptions = TarOptions {
        clamp_mtime: 1_700_000_000,
        overlay_upper: false,
    };

    #[test]
    fn a_list_reads_back_as_written_whatever_the_names() {
        let dir = tempfile::tempdir().unwrap();
        let members = vec![
            MemberDigest {
                path: b"usr/bin/".to_vec(),
                digest: [7; 16],
            },
            MemberDigest {
                path: b"odd name\\with\nnewline \xff".to_vec(),
                digest: [0xab; 16],
            },
        ];
        let path = dir.path().join("members.zst");
        write(&path, &members).unwrap();
        assert_eq!(read(&path).unwrap(), Some(members));
        assert_eq!(read(&dir.path().join("none.zst")).unwrap(), None);
        std::fs::write(
            &path,
            zstd::encode_all(&b"envkit-members 1\nxyz a\n"[..], 3).unwrap(),
        )
        .unwrap();
        let error = read(&path).unwrap_err();
        assert!(error.to_string().ends_with("line 2 is damaged"), "{error}");
    }

    #[test]
    fn changed_added_and_removed_files_are_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        for name in ["jq", "tree", "less"] {
            std::fs::write(root.join("usr/bin").join(name), name).unwrap();
        }
        let before = layer_digest(root, &OPTIONS).unwrap();
        assert_eq!(before.members.len() as u64, before.entries);
        assert!(compare(&before.members, &before.members).is_empty());

        std::fs::write(root.join("usr/bin/jq"), "not jq").unwrap();
        std::fs::set_permissions(
            root.join("usr/bin/tree"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();
        std::fs::remove_file(root.join("usr/bin/less")).unwrap();
        std::fs::write(root.join("usr/bin/new"), "").unwrap();
        let after = layer_digest(root, &OPTIONS).unwrap();
        assert_eq!(
            compare(&before.members, &after.members),
            Differences {
                changed: vec!["/usr/bin/jq".into(), "/usr/bin/tree".into()],
                added: vec!["/usr/bin/new".into()],
                removed: vec!["/usr/bin/less".into()],
            }
        );
    }
}
