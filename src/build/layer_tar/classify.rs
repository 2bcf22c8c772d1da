//! What one entry of a tree is in the tar, from its file type and extended attributes: where
//! overlayfs's whiteouts and opaque folders become OCI's, what is refused, and the one xattr
//! that is kept (the rules are in the parent module's docs).

use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::io::Errno;

use super::{LayerTarError, read_error};

/// Starts the name of a whiteout in the tar; reserved, so no entry of a tree may start so.
pub(super) const WHITEOUT_PREFIX: &[u8] = b".wh.";
/// The name, inside an opaque folder, that marks it opaque in the tar.
pub(super) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Whiteout,
    Directory { opaque: bool },
    File,
    Symlink,
}

/// An entry's kind and the file capability it carries.
pub(super) struct Classified {
    pub kind: Kind,
    pub capability: Option<Vec<u8>>,
}

/// Classifies the entry `name` at `path`; with `overlay_upper`, the tree is an overlayfs upper
/// folder.
pub(super) fn classify(
    path: &Path,
    name: &OsStr,
    meta: &Metadata,
    overlay_upper: bool,
) -> Result<Classified, LayerTarError> {
    let path_buf = || path.to_path_buf();
    if name.as_bytes().starts_with(WHITEOUT_PREFIX) {
        return Err(LayerTarError::ReservedName { path: path_buf() });
    }
    let file_type = meta.file_type();
    let attrs = read_attributes(path, overlay_upper).map_err(read_error(path))?;
    let kind = if file_type.is_dir() {
        Kind::Directory {
            opaque: overlay_upper && attrs.opaque,
        }
    } else if file_type.is_file() {
        if overlay_upper && attrs.whiteout && meta.len() == 0 {
            Kind::Whiteout
        } else {
            Kind::File
        }
    } else if file_type.is_symlink() {
        Kind::Symlink
    } else if overlay_upper && file_type.is_char_device() && meta.rdev() == 0 {
        Kind::Whiteout
    } else {
        let kind = if file_type.is_char_device() {
            "character device"
        } else if file_type.is_block_device() {
            "block device"
        } else if file_type.is_fifo() {
            "fifo"
        } else {
            "file of unknown type"
        };
        return Err(LayerTarError::Unsupported {
            path: path_buf(),
            kind,
        });
    };
    if let Some(xattr) = attrs.lower_reference
        && kind != Kind::Whiteout
    {
        return Err(LayerTarError::LowerReference {
            path: path_buf(),
            xattr,
        });
    }
    Ok(Classified {
        kind,
        capability: attrs.capability,
    })
}

/// The extended attributes that matter for the tar; all others are dropped.
#[derive(Default)]
struct Attributes {
    capability: Option<Vec<u8>>,
    opaque: bool,
    whiteout: bool,
    /// The name of an `overlay.redirect` or `overlay.metacopy` xattr.
    lower_reference: Option<String>,
}

fn read_attributes(path: &Path, overlay_upper: bool) -> io::Result<Attributes> {
    let mut attributes = Attributes::default();
    let mut small = [0u8; 1024];
    let mut large = Vec::new();
    let names = match rustix::fs::llistxattr(path, &mut small[..]) {
        Ok(len) => &small[..len],
        Err(Errno::RANGE) => {
            large.resize(rustix::fs::llistxattr_query(path)?, 0);
            let len = rustix::fs::llistxattr(path, &mut large[..])?;
            &large[..len]
        }
        Err(Errno::OPNOTSUPP) => return Ok(attributes),
        Err(errno) => return Err(errno.into()),
    };
    for name in names
        .split(|&byte| byte == 0)
        .filter(|name| !name.is_empty())
    {
        if name == b"security.capability" {
            attributes.capability = Some(xattr_value(path, name)?);
            continue;
        }
        if !overlay_upper {
            continue;
        }
        let Some(key) = name
            .strip_prefix(b"trusted.overlay.")
            .or_else(|| name.strip_prefix(b"user.overlay."))
        else {
            continue;
        };
        match key {
            b"opaque" => attributes.opaque = xattr_value(path, name)? == b"y",
            b"whiteout" => attributes.whiteout = true,
            b"redirect" | b"metacopy" => {
                attributes.lower_reference = Some(String::from_utf8_lossy(name).into_owned());
            }
            _ => {}
        }
    }
    Ok(attributes)
}

fn xattr_value(path: &Path, name: &[u8]) -> io::Result<Vec<u8>> {
    let mut value = vec![0; rustix::fs::lgetxattr_query(path, name)?];
    if value.is_empty() {
        return Ok(value);
    }
    let len = rustix::fs::lgetxattr(path, name, &mut value[..])?;
    value.truncate(len);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::super::layer_digest;
    use super::super::tests::{CLAMP, members, members_paths, options, pax_value, skip, tar_of};
    use super::super::ustar::{DIRECTORY, REGULAR};
    use super::*;
    use rustix::fs::{CWD, FileType, Mode, XattrFlags};
    use std::fs;

    /// Sets an xattr, or says why the machine cannot.
    fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), String> {
        rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
            .map_err(|errno| format!("cannot set `{name}` on `{}`: {errno}", path.display()))
    }

    fn whiteout_device(path: &Path) -> Result<(), String> {
        rustix::fs::mknodat(
            CWD,
            path,
            FileType::CharacterDevice,
            Mode::empty(),
            rustix::fs::makedev(0, 0),
        )
        .map_err(|errno| format!("cannot create whiteout `{}`: {errno}", path.display()))
    }

    /// A file capability blob (VFS_CAP_REVISION_2, effective): cap_net_raw, as ping has.
    const CAP_NET_RAW: [u8; 20] = [
        0x01, 0, 0, 0x02, 0x00, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn overlay_upper(up: &Path) -> Result<(), String> {
        for dir in [
            "etc",
            "usr/bin",
            "usr/share/doc",
            "var/lib/apt/lists/partial",
            "var/cache",
            "var/log",
        ] {
            fs::create_dir_all(up.join(dir)).unwrap();
        }
        fs::write(up.join("etc/hostname"), "envkit\n").unwrap();
        fs::write(up.join("etc/empty"), "").unwrap();
        fs::write(up.join("etc/-dash"), "sorts before .wh.\n").unwrap();
        fs::write(up.join("usr/bin/ping"), "\x7fELF ping").unwrap();
        fs::write(up.join("var/log/dpkg.log"), "").unwrap();
        whiteout_device(&up.join("etc/motd"))?;
        // Newer kernels share one whiteout inode between all whiteouts: not a hard link here.
        fs::hard_link(up.join("etc/motd"), up.join("usr/share/doc/python3")).unwrap();
        set_xattr(up, "trusted.overlay.opaque", b"y")?;
        set_xattr(
            &up.join("var/lib/apt/lists"),
            "trusted.overlay.opaque",
            b"y",
        )?;
        set_xattr(&up.join("var/log"), "trusted.overlay.opaque", b"x")?;
        set_xattr(&up.join("var/cache"), "user.overlay.opaque", b"y")?;
        set_xattr(&up.join("var/log/dpkg.log"), "user.overlay.whiteout", b"")?;
        set_xattr(&up.join("usr/bin"), "trusted.overlay.impure", b"y")?;
        let ping = up.join("usr/bin/ping");
        set_xattr(&ping, "trusted.overlay.origin", b"\x00\xfb\x21\x00\x01")?;
        set_xattr(&ping, "user.comment", b"dropped")?;
        set_xattr(&ping, "security.capability", &CAP_NET_RAW)?;
        Ok(())
    }

    /// Needs root: whiteout devices (CAP_MKNOD), `trusted.*` xattrs and file capabilities.
    #[test]
    fn overlay_whiteouts_and_opaque_directories_become_oci_markers() {
        let upper = tempfile::tempdir().unwrap();
        let up = upper.path();
        if let Err(reason) = overlay_upper(up) {
            skip(&format!("needs root: {reason}"));
            return;
        }
        let (bytes, digest) = tar_of(up, &options(true));
        let members = members(&bytes);
        let listing: Vec<&str> = members.iter().map(|m| m.path.as_str()).collect();
        assert_eq!(
            listing,
            [
                "etc/",
                "etc/.wh.motd",
                "etc/-dash",
                "etc/empty",
                "etc/hostname",
                "usr/",
                "usr/bin/",
                "usr/bin/ping",
                "usr/share/",
                "usr/share/doc/",
                "usr/share/doc/.wh.python3",
                "var/",
                "var/cache/",
                "var/cache/.wh..wh..opq",
                "var/lib/",
                "var/lib/apt/",
                "var/lib/apt/lists/",
                "var/lib/apt/lists/.wh..wh..opq",
                "var/lib/apt/lists/partial/",
                "var/log/",
                "var/log/.wh.dpkg.log",
            ]
        );
        assert_eq!(digest.entries, members.len() as u64);
        for member in &members {
            assert!(member.kind == REGULAR || member.kind == DIRECTORY);
            if member
                .path
                .rsplit('/')
                .next()
                .unwrap_or("")
                .starts_with(".wh.")
            {
                assert_eq!(
                    (
                        member.mode,
                        member.uid,
                        member.gid,
                        member.mtime,
                        member.size
                    ),
                    (0o644, 0, 0, CLAMP, 0),
                    "{}",
                    member.path
                );
            }
            let expected_pax: &[&str] = if member.path == "usr/bin/ping" {
                &["SCHILY.xattr.security.capability"]
            } else {
                &[]
            };
            let keys: Vec<&str> = member.pax.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, expected_pax, "{}", member.path);
        }
        let ping = members.iter().find(|m| m.path == "usr/bin/ping").unwrap();
        assert_eq!(
            pax_value(ping, "SCHILY.xattr.security.capability"),
            Some(&CAP_NET_RAW[..])
        );

        // The same tree is not a valid full root: its whiteout devices are refused.
        match layer_digest(up, &options(false)) {
            Err(LayerTarError::Unsupported { path, kind }) => {
                assert_eq!((path, kind), (up.join("etc/motd"), "character device"));
            }
            other => panic!("expected a refused device, got {other:?}"),
        }

        // A renamed directory's contents partly live below: refused, not silently wrong.
        set_xattr(&up.join("var/lib"), "trusted.overlay.redirect", b"/var/old").unwrap();
        match layer_digest(up, &options(true)) {
            Err(error @ LayerTarError::LowerReference { .. }) => assert_eq!(
                error.to_string(),
                format!(
                    "`{}` carries `trusted.overlay.redirect`, so part of it lives in a lower \
                     layer and the upper dir alone cannot become a layer tar",
                    up.join("var/lib").display()
                )
            ),
            other => panic!("expected a lower reference, got {other:?}"),
        }
    }

    /// The `userxattr` variant needs no privilege where the file system has `user.*` xattrs.
    #[test]
    fn user_xattr_whiteouts_and_opaque_directories() {
        let upper = tempfile::tempdir().unwrap();
        let up = upper.path();
        fs::create_dir_all(up.join("a")).unwrap();
        fs::create_dir_all(up.join("b")).unwrap();
        fs::write(up.join("a/inside"), "x").unwrap();
        fs::write(up.join("gone"), "").unwrap();
        fs::write(up.join("keep"), "not empty, so not a whiteout").unwrap();
        let set = [
            (up.join("a"), "user.overlay.opaque", &b"y"[..]),
            (up.join("b"), "user.overlay.opaque", b"x"),
            (up.join("gone"), "user.overlay.whiteout", b""),
            (up.join("keep"), "user.overlay.whiteout", b""),
            (up.join("keep"), "user.overlay.origin", b"\x00"),
        ];
        for (path, name, value) in set {
            if let Err(reason) = set_xattr(&path, name, value) {
                skip(&format!(
                    "the temporary folder has no `user.*` xattrs: {reason}"
                ));
                return;
            }
        }
        let (bytes, _) = tar_of(up, &options(true));
        let members = members(&bytes);
        let listing: Vec<(&str, u64)> = members.iter().map(|m| (m.path.as_str(), m.size)).collect();
        assert_eq!(
            listing,
            [
                (".wh.gone", 0),
                ("a/", 0),
                ("a/.wh..wh..opq", 0),
                ("a/inside", 1),
                ("b/", 0),
                ("keep", 28),
            ]
        );
        assert!(members.iter().all(|m| m.pax.is_empty()));

        // Outside overlay mode the same xattrs mean nothing and are dropped.
        let (plain, _) = tar_of(up, &options(false));
        let listing: Vec<String> = members_paths(&plain);
        assert_eq!(listing, ["a/", "a/inside", "b/", "gone", "keep"]);
    }
}
