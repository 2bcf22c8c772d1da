//! A data archive read through without writing anything, refusing by name what the
//! [`Extractor`](super::Extractor) would refuse while writing: for the packages the real dpkg
//! unpacks (its own archive reader, confined to the layer), so a hostile archive gets the same
//! refusal naming the package as one envkit extracts itself, before dpkg sees it.
//!
//! Without a tree to walk, symlinks are judged by the archive alone: an entry whose path goes
//! through a symlink the same archive declared is refused. dpkg-deb builds archives from a
//! folder it walks without following symlinks, so a real package never has one; an archive
//! that does is aiming a write somewhere its own link decides.

use std::collections::HashSet;
use std::io::{self, Read};

use super::ExtractError;
use super::walk::{components, shown};

/// Reads `archive` (a tar stream) to its end; the first entry the extractor would refuse is
/// the error, naming `package`.
pub fn screen(package: &str, archive: impl Read) -> Result<(), ExtractError> {
    let refuse = |entry: &str, reason: String| ExtractError::Unsafe {
        package: package.to_owned(),
        entry: entry.to_owned(),
        reason,
    };
    let unreadable = |source: io::Error| ExtractError::Archive {
        package: package.to_owned(),
        source,
    };
    let mut symlinks: HashSet<Vec<u8>> = HashSet::new();
    let through_symlink = |symlinks: &HashSet<Vec<u8>>, path: &[&[u8]]| -> Option<String> {
        (1..path.len())
            .map(|end| path[..end].join(&b'/'))
            .find(|prefix| symlinks.contains(prefix))
            .map(|prefix| shown(&prefix))
    };
    let mut archive = tar::Archive::new(archive);
    for entry in archive.entries().map_err(unreadable)? {
        let mut entry = entry.map_err(unreadable)?;
        let raw = entry.path_bytes().into_owned();
        let name = shown(&raw);
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let path =
            components(&raw).map_err(|reason| refuse(&name, format!("its path {reason}")))?;
        if let Some(link) = through_symlink(&symlinks, &path) {
            return Err(refuse(
                &name,
                format!("its path goes through `{link}`, a symlink the same package declares"),
            ));
        }
        let unsupported = |kind: &str| ExtractError::Unsupported {
            package: package.to_owned(),
            entry: name.clone(),
            kind: kind.to_owned(),
        };
        match kind {
            tar::EntryType::Char => return Err(unsupported("character device")),
            tar::EntryType::Block => return Err(unsupported("block device")),
            tar::EntryType::Fifo => return Err(unsupported("fifo")),
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().unwrap_or_default().into_owned();
                let target_name = shown(&target);
                let target_path = components(&target).map_err(|reason| {
                    refuse(
                        &name,
                        format!("its hard link target `{target_name}` {reason}"),
                    )
                })?;
                if target_path.is_empty() {
                    return Err(refuse(&name, "it is a hard link to the root folder".into()));
                }
                if let Some(link) = through_symlink(&symlinks, &target_path) {
                    return Err(refuse(
                        &name,
                        format!(
                            "its hard link target `{target_name}` goes through `{link}`, a symlink the same package declares"
                        ),
                    ));
                }
            }
            _ => {}
        }
        let joined = path.join(&b'/');
        if kind == tar::EntryType::Symlink {
            symlinks.insert(joined);
        } else {
            symlinks.remove(&joined);
        }
        // The tar reader skips an entry's data itself; reading it here makes a member that
        // declares more than the stream holds an error now rather than at the next header.
        io::copy(&mut entry, &mut io::sink()).map_err(unreadable)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::testing::Tar;

    fn screened(tar: &mut Tar) -> Result<(), String> {
        screen("evil-pkg", tar.finish().as_slice()).map_err(|error| error.to_string())
    }

    #[test]
    fn a_package_as_dpkg_deb_writes_it_passes() {
        let outcome = screened(
            Tar::new()
                .dir("./", 0o755)
                .dir("./usr/", 0o755)
                .dir("./usr/bin/", 0o755)
                .file("./usr/bin/tool", 0o4755, b"binary")
                .symlink("./usr/bin/alias", "tool")
                .symlink("./usr/bin/abs", "/etc/alternatives/tool")
                .hard_link("./usr/bin/again", "./usr/bin/tool"),
        );
        assert_eq!(outcome, Ok(()));
    }

    #[test]
    fn names_that_leave_the_root_are_refused_as_the_extractor_refuses_them() {
        let error = screened(Tar::new().file("../escape", 0o644, b"x")).unwrap_err();
        assert_eq!(
            error,
            "refusing entry `../escape` of package `evil-pkg`: its path has a `..` component"
        );
        let error = screened(Tar::new().file("/etc/evil", 0o644, b"x")).unwrap_err();
        assert!(error.contains("its path is absolute"), "{error}");
        let error = screened(Tar::new().hard_link("./x", "../../etc/shadow")).unwrap_err();
        assert!(
            error.contains("its hard link target `../../etc/shadow` has a `..` component"),
            "{error}"
        );
    }

    #[test]
    fn writing_through_a_symlink_the_archive_declares_is_refused() {
        let error = screened(Tar::new().symlink("./usr/evil", "../../../../tmp").file(
            "./usr/evil/payload",
            0o644,
            b"x",
        ))
        .unwrap_err();
        assert_eq!(
            error,
            "refusing entry `./usr/evil/payload` of package `evil-pkg`: its path goes through `usr/evil`, a symlink the same package declares"
        );
        let error = screened(
            Tar::new()
                .symlink("./evil", "/etc")
                .hard_link("./copy", "./evil/shadow"),
        )
        .unwrap_err();
        assert!(error.contains("goes through `evil`"), "{error}");
        // A symlink replaced by a folder is a folder again.
        assert_eq!(
            screened(
                Tar::new()
                    .symlink("./d", "elsewhere")
                    .dir("./d", 0o755)
                    .file("./d/f", 0o644, b"x")
            ),
            Ok(())
        );
    }

    #[test]
    fn device_nodes_and_fifos_are_refused() {
        let error =
            screened(Tar::new().push(tar::EntryType::Block, "./dev/sda", "", 0o660, 0, 0, b""))
                .unwrap_err();
        assert_eq!(
            error,
            "entry `./dev/sda` of package `evil-pkg` is a block device, which envkit does not extract (Debian binary packages do not ship them)"
        );
    }

    #[test]
    fn a_member_declaring_more_than_the_stream_holds_is_refused() {
        let data = crate::debian::testing::huge_member("huge");
        let error = screen("evil-pkg", data.as_slice()).unwrap_err();
        assert!(matches!(error, ExtractError::Archive { .. }), "{error}");
    }
}
