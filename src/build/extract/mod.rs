//! Extracting a tar stream into a folder, with every path confined to that folder.
//!
//! [`Extractor::extract`] does what `tar --keep-directory-symlink -x` does when run as root,
//! with one difference that matters for images: every path is resolved inside the root, as the
//! image itself will resolve it when it runs there. The build feeds it the `data.tar` of each
//! `.deb`.
//!
//! - Paths are looked up one component at a time from a handle on the root, with `O_NOFOLLOW`,
//!   so the kernel never follows a symlink on its own. A symlink met on the way is read and its
//!   target resolved by the same walk: an absolute target starts again from the root and `..`
//!   stops at the root, as in a chroot. So `bin -> usr/bin` (or `lib -> /usr/lib`) is followed
//!   into the root's own `usr`, and a link to `/etc/alternatives/x` means the root's
//!   `etc/alternatives/x`, never the host's. Nothing can be reached outside the root.
//! - Folders are only created for components the entry itself names; a symlink whose target
//!   does not lead to a folder is never "repaired" by creating one. Writing through such a link
//!   (`./evil -> /elsewhere`, then `./evil/payload`) is refused.
//! - A directory entry that meets a symlink to a folder keeps the symlink and changes nothing,
//!   which is `--keep-directory-symlink` and what keeps merged `/usr` intact.
//! - Entry names (and hard link targets) that are absolute or have a `..` component are
//!   refused: dpkg-deb writes every name as `./path`, so either means the archive was not made
//!   by it, and a name that would leave the root is an attack, not a package.
//! - Device nodes and fifos are refused: Debian binary packages do not ship them (`makedev`
//!   and friends create them in maintainer scripts), so one in a data archive means the file
//!   is not what it claims to be. In an OCI layer they are left out instead: roots made by
//!   debootstrap and its kin carry `/dev` nodes, which a session's own `/dev` covers.
//! - Existing files are unlinked and recreated, never written through; an existing folder is
//!   kept and gets the entry's owner, mode and time. Folder modes and times are set once the
//!   whole archive is written: writing into a folder changes its time, and a read-only folder
//!   would stop an unprivileged caller from filling it. (GNU tar sets them when it leaves the
//!   folder, so a folder written again later through `bin -> usr/bin` ends up with the time
//!   of extraction there; here it keeps the archive's.)
//! - Owners are the archive's numeric ids (names are never looked up). `chown` comes before
//!   `chmod`, because `chown` clears the setuid and setgid bits, and extended attributes come
//!   after both, because `chown` also drops `security.capability`.
//! - Extended attributes in pax `SCHILY.xattr.*` records are applied when the file system
//!   takes them; a failure is recorded in [`ExtractSummary::ignored_xattrs`] and extraction
//!   goes on. dpkg-deb writes none (file capabilities are set by maintainer scripts), so for
//!   Debian's own packages the list stays empty.
//!
//! `walk` looks paths up inside the root; `meta` reads what an entry says about its file;
//! `screen` applies the same rules to an archive without writing it (for what dpkg unpacks).

mod meta;
mod screen;
mod walk;

pub use screen::screen;

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use meta::Meta;
use walk::{MAX_SYMLINKS, Tree, WalkError, components, shown};

/// Read size when copying file contents: large enough that the decompressor, not the system
/// calls, sets the pace.
const COPY_BUFFER_LEN: usize = 256 << 10;

/// Errors while extracting an archive; each names the package the archive belongs to.
#[derive(thiserror::Error, Debug)]
pub enum ExtractError {
    /// The archive itself could not be read: cut short, or corrupt where it was compressed.
    #[error("cannot read the archive of package `{package}`")]
    Archive {
        package: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot open the root folder `{}` to extract package `{package}`", path.display())]
    Root {
        package: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("refusing entry `{entry}` of package `{package}`: {reason}")]
    Unsafe {
        package: String,
        entry: String,
        reason: String,
    },
    #[error(
        "entry `{entry}` of package `{package}` is a {kind}, which envkit does not extract (Debian binary packages do not ship them)"
    )]
    Unsupported {
        package: String,
        entry: String,
        kind: String,
    },
    #[error("cannot extract `{entry}` of package `{package}`: {reason}")]
    Conflict {
        package: String,
        entry: String,
        reason: String,
    },
    #[error("cannot extract `{entry}` of package `{package}`")]
    Write {
        package: String,
        entry: String,
        #[source]
        source: io::Error,
    },
}

/// How [`Extractor::extract`] treats what the caller may not be allowed to do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Give every entry the archive's numeric uid and gid. Needs root, or a user namespace
    /// that maps every id the packages use; with a single-id mapping leave it off (files then
    /// belong to the caller). Modes are applied either way, setuid and setgid bits included,
    /// though the kernel drops setgid when the caller is not in the file's group.
    pub preserve_owners: bool,
    /// Read the archive as an OCI layer: `.wh.NAME` becomes an overlayfs whiteout hiding NAME
    /// of the layers below (a character device 0:0) and `.wh..wh..opq` makes its folder
    /// opaque (`user.overlay.opaque`, which envkit's `userxattr` overlay mounts read). Without
    /// it such names are files like any other.
    pub oci_whiteouts: bool,
}

/// What [`Extractor::extract`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Regular files written.
    pub files: u64,
    /// Bytes of regular file contents written.
    pub bytes: u64,
    /// Directory entries created or updated.
    pub dirs: u64,
    /// Symlinks created.
    pub symlinks: u64,
    /// Hard links created.
    pub hard_links: u64,
    /// Directory entries left alone because the root holds a symlink to a folder there
    /// (merged `/usr`).
    pub kept_dir_symlinks: u64,
    /// Extended attributes the file system would not take.
    pub ignored_xattrs: Vec<IgnoredXattr>,
    /// OCI layers only: device nodes and fifos left out.
    pub skipped_special: u64,
}

/// An extended attribute from the archive that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredXattr {
    /// The entry, as named in the archive.
    pub entry: String,
    /// The attribute's name, such as `security.capability`.
    pub name: String,
    /// Why it was not applied.
    pub reason: String,
}

/// A folder whose mode and time are set once the archive is written: writing into a folder
/// changes its time, and a mode without write permission would stop an unprivileged caller
/// from filling it. Checked by identity, so a folder replaced in the meantime is left alone.
struct PendingDir {
    name: String,
    path: Vec<Vec<u8>>,
    dev: u64,
    ino: u64,
    mode: u32,
    mtime: Timespec,
}

/// One archive's extraction into a root folder.
pub struct Extractor {
    /// The package the archive belongs to, for errors.
    package: String,
    tree: Tree,
    options: ExtractOptions,
    pending_dirs: Vec<PendingDir>,
    buffer: Vec<u8>,
    summary: ExtractSummary,
}

impl Extractor {
    /// Opens `root`, an existing folder, to extract an archive of `package` (the name errors
    /// give) into.
    pub fn open(
        root: &Path,
        package: &str,
        options: &ExtractOptions,
    ) -> Result<Extractor, ExtractError> {
        let root_fd = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| ExtractError::Root {
            package: package.to_owned(),
            path: root.to_owned(),
            source: errno.into(),
        })?;
        Ok(Extractor {
            package: package.to_owned(),
            tree: Tree::new(root_fd),
            options: *options,
            pending_dirs: Vec::new(),
            buffer: vec![0; COPY_BUFFER_LEN],
            summary: ExtractSummary::default(),
        })
    }

    /// Extracts the tar stream `archive` into the root, as `tar --keep-directory-symlink -x`
    /// does when run as root, except that every path, symlinks included, is resolved inside
    /// the root (see the module documentation for the rules).
    pub fn extract(mut self, archive: impl Read) -> Result<ExtractSummary, ExtractError> {
        let mut archive = tar::Archive::new(archive);
        let entries = archive
            .entries()
            .map_err(|source| self.archive_error(source))?;
        for entry in entries {
            let mut entry = entry.map_err(|source| self.archive_error(source))?;
            self.entry(&mut entry)?;
        }
        self.finish()
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), ExtractError> {
        let raw = entry.path_bytes().into_owned();
        let name = shown(&raw);
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // A global header would change defaults for later entries; dpkg-deb never writes
            // one and nothing in it decides where files go.
            return Ok(());
        }
        let path = components(&raw)
            .map_err(|reason| self.unsafe_entry(&name, format!("its path {reason}")))?;
        if self.options.oci_whiteouts
            && let Some((last, parent_path)) = path.split_last()
            && let Some(hidden) = last.strip_prefix(b".wh.")
        {
            return self.whiteout(parent_path, hidden, &name);
        }
        let meta = Meta::read(entry).map_err(|error| match error {
            meta::MetaError::Invalid(_) => self.conflict(&name, error.to_string()),
            meta::MetaError::Read(source) => self.archive_error(source),
        })?;
        match kind {
            tar::EntryType::Directory => self.directory(&path, &name, &meta),
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(&path, &name, &meta, entry)
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.symlink(&path, &name, &meta, target)
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned());
                self.hard_link(&path, &name, target)
            }
            // Image makers' roots (debootstrap's, mmdebstrap's) carry `/dev` nodes; sessions
            // mount a `/dev` of their own over them, and a device node of the image's
            // choosing is not one envkit makes on the host: left out, like a rootless engine.
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo
                if self.options.oci_whiteouts =>
            {
                self.summary.skipped_special += 1;
                Ok(())
            }
            tar::EntryType::Char => Err(self.unsupported(&name, "character device")),
            tar::EntryType::Block => Err(self.unsupported(&name, "block device")),
            tar::EntryType::Fifo => Err(self.unsupported(&name, "fifo")),
            other => Err(self.unsupported(
                &name,
                &format!("tar entry of type `{}`", char::from(other.as_byte())),
            )),
        }
    }

    /// An OCI whiteout entry: `hidden` (a name in the folder `parent_path`) is removed from
    /// what the layers below show, or with `.wh..opq` the whole folder is.
    fn whiteout(
        &mut self,
        parent_path: &[&[u8]],
        hidden: &[u8],
        name: &str,
    ) -> Result<(), ExtractError> {
        let parent = self.parent(parent_path, name)?;
        if hidden == b".wh..opq" {
            // The walk holds folders as `O_PATH` handles, which take no xattrs.
            return rustix::fs::openat(
                &*parent,
                ".",
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .and_then(|folder| {
                rustix::fs::fsetxattr(&folder, "user.overlay.opaque", b"y", XattrFlags::empty())
            })
            .map_err(|errno| self.write_error(name, errno));
        }
        if hidden.is_empty() || hidden.starts_with(b".wh.") {
            return Err(self.unsafe_entry(name, "it is not a whiteout OCI layers know".into()));
        }
        self.remove(&parent, hidden, name)?;
        rustix::fs::mknodat(
            &*parent,
            hidden,
            FileType::CharacterDevice,
            Mode::empty(),
            0,
        )
        .map_err(|errno| self.write_error(name, errno))?;
        Ok(())
    }

    fn directory(&mut self, path: &[&[u8]], name: &str, meta: &Meta) -> Result<(), ExtractError> {
        let Some((last, parent_path)) = path.split_last() else {
            // `./` is the root itself; tar gives it the entry's attributes too.
            let root = rustix::io::fcntl_dupfd_cloexec(self.tree.root(), 0)
                .map_err(|errno| self.write_error(name, errno))?;
            return self.finish_directory(root, Vec::new(), name, meta);
        };
        let parent = self.parent(parent_path, name)?;
        match rustix::fs::statat(&*parent, *last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => {}
                FileType::Symlink => {
                    if self.tree.resolve(path, false).is_ok() {
                        self.summary.kept_dir_symlinks += 1;
                        return Ok(());
                    }
                    // tar replaces a symlink that does not lead to a folder.
                    self.remove(&parent, last, name)?;
                    self.make_dir(&parent, last, name)?;
                }
                _ => {
                    self.remove(&parent, last, name)?;
                    self.make_dir(&parent, last, name)?;
                }
            },
            Err(Errno::NOENT) => self.make_dir(&parent, last, name)?,
            Err(errno) => return Err(self.write_error(name, errno)),
        }
        let dir = rustix::fs::openat(
            &*parent,
            *last,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| self.write_error(name, errno))?;
        let owned_path = path.iter().map(|part| part.to_vec()).collect();
        self.finish_directory(dir, owned_path, name, meta)
    }

    fn finish_directory(
        &mut self,
        dir: OwnedFd,
        path: Vec<Vec<u8>>,
        name: &str,
        meta: &Meta,
    ) -> Result<(), ExtractError> {
        self.apply(&dir, name, meta, false)?;
        let stat = rustix::fs::fstat(&dir).map_err(|errno| self.write_error(name, errno))?;
        self.pending_dirs.push(PendingDir {
            name: name.to_owned(),
            path,
            dev: stat.st_dev,
            ino: stat.st_ino,
            mode: meta.mode,
            mtime: meta.mtime,
        });
        self.summary.dirs += 1;
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        path: &[&[u8]],
        name: &str,
        meta: &Meta,
        contents: &mut R,
    ) -> Result<(), ExtractError> {
        let Some((last, parent_path)) = path.split_last() else {
            return Err(self.conflict(name, "the root folder cannot be a file".into()));
        };
        let parent = self.parent(parent_path, name)?;
        self.remove(&parent, last, name)?;
        let fd = rustix::fs::openat(
            &*parent,
            *last,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|errno| self.write_error(name, errno))?;
        let mut file = File::from(fd);
        let mut written = 0u64;
        loop {
            let count = match contents.read(&mut self.buffer) {
                Ok(0) => break,
                Ok(count) => count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(self.archive_error(source)),
            };
            let chunk = &self.buffer[..count];
            if let Err(source) = file.write_all(chunk) {
                return Err(self.write_error(name, source));
            }
            written += count as u64;
        }
        self.apply(&file, name, meta, true)?;
        rustix::fs::futimens(&file, &times(meta.mtime))
            .map_err(|errno| self.write_error(name, errno))?;
        self.summary.files += 1;
        self.summary.bytes += written;
        Ok(())
    }

    fn symlink(
        &mut self,
        path: &[&[u8]],
        name: &str,
        meta: &Meta,
        target: Option<Vec<u8>>,
    ) -> Result<(), ExtractError> {
        let Some(target) = target.filter(|target| !target.is_empty()) else {
            return Err(self.conflict(name, "it is a symlink without a target".into()));
        };
        let Some((last, parent_path)) = path.split_last() else {
            return Err(self.conflict(name, "the root folder cannot be a symlink".into()));
        };
        let parent = self.parent(parent_path, name)?;
        self.remove(&parent, last, name)?;
        // The target is stored as written: where it leads is only decided when something
        // walks through it, and the walk keeps that inside the root.
        rustix::fs::symlinkat(target.as_slice(), &*parent, *last)
            .map_err(|errno| self.write_error(name, errno))?;
        if self.options.preserve_owners {
            rustix::fs::chownat(
                &*parent,
                *last,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|errno| self.write_error(name, errno))?;
        }
        for (attribute, _) in &meta.xattrs {
            // Linux offers no fd-based call for a symlink's attributes, and a path-based one
            // would mean handing the kernel a path to resolve.
            self.summary.ignored_xattrs.push(IgnoredXattr {
                entry: name.to_owned(),
                name: attribute.clone(),
                reason: "extended attributes are not set on symlinks".into(),
            });
        }
        rustix::fs::utimensat(
            &*parent,
            *last,
            &times(meta.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|errno| self.write_error(name, errno))?;
        self.summary.symlinks += 1;
        Ok(())
    }

    fn hard_link(
        &mut self,
        path: &[&[u8]],
        name: &str,
        target: Option<Vec<u8>>,
    ) -> Result<(), ExtractError> {
        let Some(target) = target.filter(|target| !target.is_empty()) else {
            return Err(self.conflict(name, "it is a hard link without a target".into()));
        };
        let target_name = shown(&target);
        let target_path = components(&target).map_err(|reason| {
            self.unsafe_entry(
                name,
                format!("its hard link target `{target_name}` {reason}"),
            )
        })?;
        let Some((target_last, target_parent_path)) = target_path.split_last() else {
            return Err(self.unsafe_entry(name, "it is a hard link to the root folder".into()));
        };
        let target_parent = self
            .tree
            .resolve(target_parent_path, false)
            .map_err(|error| self.walk_error(name, error))?;
        let target_stat =
            match rustix::fs::statat(&target_parent, *target_last, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                Err(Errno::NOENT) => {
                    return Err(self.conflict(
                        name,
                        format!("its hard link target `{target_name}` does not exist"),
                    ));
                }
                Err(errno) => return Err(self.write_error(name, errno)),
            };
        let Some((last, parent_path)) = path.split_last() else {
            return Err(self.conflict(name, "the root folder cannot be a hard link".into()));
        };
        let parent = self.parent(parent_path, name)?;
        if let Ok(stat) = rustix::fs::statat(&*parent, *last, AtFlags::SYMLINK_NOFOLLOW)
            && stat.st_dev == target_stat.st_dev
            && stat.st_ino == target_stat.st_ino
        {
            // Already the same file: unlinking it first could remove the only name it has.
            self.summary.hard_links += 1;
            return Ok(());
        }
        self.remove(&parent, last, name)?;
        // Without `AT_SYMLINK_FOLLOW`, a link to a symlink links the symlink itself, as tar does.
        rustix::fs::linkat(
            &target_parent,
            *target_last,
            &*parent,
            *last,
            AtFlags::empty(),
        )
        .map_err(|errno| self.write_error(name, errno))?;
        self.summary.hard_links += 1;
        Ok(())
    }

    /// Owner, mode (unless `chmod` is false: folders get theirs at the end) and extended
    /// attributes, in the only order that keeps all three.
    fn apply(
        &mut self,
        fd: &impl AsFd,
        name: &str,
        meta: &Meta,
        chmod: bool,
    ) -> Result<(), ExtractError> {
        if self.options.preserve_owners {
            rustix::fs::fchown(
                fd,
                Some(Uid::from_raw(meta.uid)),
                Some(Gid::from_raw(meta.gid)),
            )
            .map_err(|errno| self.write_error(name, errno))?;
        }
        if chmod {
            rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
                .map_err(|errno| self.write_error(name, errno))?;
        }
        for (attribute, value) in &meta.xattrs {
            if let Err(errno) =
                rustix::fs::fsetxattr(fd, attribute.as_str(), value, XattrFlags::empty())
            {
                self.summary.ignored_xattrs.push(IgnoredXattr {
                    entry: name.to_owned(),
                    name: attribute.clone(),
                    reason: io::Error::from(errno).to_string(),
                });
            }
        }
        Ok(())
    }

    /// Sets the mode and time of every folder written, now that nothing more goes into them.
    fn finish(mut self) -> Result<ExtractSummary, ExtractError> {
        let pending_dirs = std::mem::take(&mut self.pending_dirs);
        for dir in pending_dirs.iter().rev() {
            let parts: Vec<&[u8]> = dir.path.iter().map(Vec::as_slice).collect();
            let Some(fd) = self.tree.open_dir(&parts) else {
                continue;
            };
            let same = rustix::fs::fstat(&fd)
                .is_ok_and(|stat| stat.st_dev == dir.dev && stat.st_ino == dir.ino);
            if same {
                rustix::fs::fchmod(&fd, Mode::from_raw_mode(dir.mode))
                    .and_then(|()| rustix::fs::futimens(&fd, &times(dir.mtime)))
                    .map_err(|errno| self.write_error(&dir.name, errno))?;
            }
        }
        Ok(self.summary)
    }

    /// The folder that holds an entry, created as needed.
    fn parent(&mut self, path: &[&[u8]], name: &str) -> Result<Rc<OwnedFd>, ExtractError> {
        self.tree
            .resolve(path, true)
            .map_err(|error| self.walk_error(name, error))
    }

    fn make_dir(&mut self, parent: &OwnedFd, last: &[u8], name: &str) -> Result<(), ExtractError> {
        rustix::fs::mkdirat(parent, last, Mode::from_raw_mode(0o700))
            .map_err(|errno| self.write_error(name, errno))
    }

    /// Removes whatever is at `last` in `parent` so a new entry can take its place: tar's
    /// default for existing files, and the reason nothing is ever written through a symlink
    /// at the entry's own name.
    fn remove(&mut self, parent: &OwnedFd, last: &[u8], name: &str) -> Result<(), ExtractError> {
        let kind = match rustix::fs::statat(parent, last, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => FileType::from_raw_mode(stat.st_mode),
            Err(Errno::NOENT) => return Ok(()),
            Err(errno) => return Err(self.write_error(name, errno)),
        };
        let flags = if kind == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(parent, last, flags) {
            Ok(()) => {}
            Err(Errno::NOTEMPTY | Errno::EXIST) => {
                return Err(self.conflict(
                    name,
                    "a folder that is not empty is in the way (an earlier package ships files inside it)"
                        .into(),
                ));
            }
            Err(errno) => return Err(self.write_error(name, errno)),
        }
        if kind != FileType::RegularFile {
            self.tree.forget();
        }
        Ok(())
    }

    fn walk_error(&self, name: &str, error: WalkError) -> ExtractError {
        match error {
            WalkError::Missing { .. } | WalkError::NotDirectory { .. } => {
                self.conflict(name, error.describe())
            }
            WalkError::BadLink {
                link,
                target,
                reason,
            } => self.unsafe_entry(
                name,
                format!(
                    "its path goes through the symlink `{link}` -> `{target}`, which does not lead to a folder inside the root: {reason}"
                ),
            ),
            WalkError::Loop { link } => self.unsafe_entry(
                name,
                format!("more than {MAX_SYMLINKS} symlinks on its path (a loop at `{link}`?)"),
            ),
            WalkError::Io { at, source } => ExtractError::Write {
                package: self.package.clone(),
                entry: name.to_owned(),
                source: io::Error::new(source.kind(), format!("at `{at}`: {source}")),
            },
        }
    }

    fn archive_error(&self, source: io::Error) -> ExtractError {
        ExtractError::Archive {
            package: self.package.clone(),
            source,
        }
    }

    fn unsafe_entry(&self, name: &str, reason: String) -> ExtractError {
        ExtractError::Unsafe {
            package: self.package.clone(),
            entry: name.to_owned(),
            reason,
        }
    }

    fn unsupported(&self, name: &str, kind: &str) -> ExtractError {
        ExtractError::Unsupported {
            package: self.package.clone(),
            entry: name.to_owned(),
            kind: kind.to_owned(),
        }
    }

    fn conflict(&self, name: &str, reason: String) -> ExtractError {
        ExtractError::Conflict {
            package: self.package.clone(),
            entry: name.to_owned(),
            reason,
        }
    }

    fn write_error(&self, name: &str, source: impl Into<io::Error>) -> ExtractError {
        ExtractError::Write {
            package: self.package.clone(),
            entry: name.to_owned(),
            source: source.into(),
        }
    }
}

/// Access and modification time both set to the entry's time, so the result does not depend
/// on when it was extracted.
fn times(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::testing::{MTIME, Tar};
    use std::os::unix::fs::MetadataExt;

    fn extract(root: &Path, package: &str, data: &[u8]) -> Result<ExtractSummary, ExtractError> {
        Extractor::open(root, package, &ExtractOptions::default())?.extract(data)
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn keeps_merged_usr_symlinks_and_resolves_them_inside_the_root() {
        let dir = tempdir();
        let root = dir.path().join("root");
        for sub in ["usr/bin", "usr/lib", "usr/sbin"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", root.join("sbin")).unwrap();
        // An absolute link: followed as the image will follow it, to the root's own `/usr/lib`.
        std::os::unix::fs::symlink("/usr/lib", root.join("lib")).unwrap();
        let marker = format!("envkit-deb-test-{}.so", std::process::id());

        let data = Tar::new()
            .dir("./", 0o755)
            .dir("./bin/", 0o755)
            .file("./bin/sh", 0o755, b"shell")
            .dir("./lib/", 0o755)
            .file(&format!("./lib/{marker}"), 0o644, b"library")
            .dir("./sbin/", 0o755)
            .dir("./usr/", 0o755)
            .dir("./usr/bin/", 0o755)
            .finish();
        let summary = extract(&root, "dash", &data).unwrap();
        assert_eq!(summary.kept_dir_symlinks, 3);

        for (link, target) in [
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
            ("lib", "/usr/lib"),
        ] {
            assert_eq!(
                std::fs::read_link(root.join(link)).unwrap(),
                Path::new(target),
                "{link}"
            );
        }
        assert_eq!(std::fs::read(root.join("usr/bin/sh")).unwrap(), b"shell");
        assert_eq!(
            std::fs::read(root.join("usr/lib").join(&marker)).unwrap(),
            b"library"
        );
        assert!(!Path::new("/usr/lib").join(&marker).exists());

        // A later package replaces the file through the same link, and trixie's base-files
        // ships the link itself.
        let data = Tar::new()
            .dir("./", 0o755)
            .symlink("./bin", "usr/bin")
            .file("./bin/sh", 0o755, b"newer shell")
            .finish();
        extract(&root, "base-files", &data).unwrap();
        assert_eq!(
            std::fs::read_link(root.join("bin")).unwrap(),
            Path::new("usr/bin")
        );
        assert_eq!(
            std::fs::read(root.join("usr/bin/sh")).unwrap(),
            b"newer shell"
        );
    }

    #[test]
    fn replaces_existing_names_instead_of_writing_through_them() {
        let dir = tempdir();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"original").unwrap();
        std::os::unix::fs::symlink(outside.join("victim"), root.join("etc/z")).unwrap();

        let first = Tar::new()
            .dir("./etc/", 0o755)
            .file("./etc/x", 0o644, b"one")
            .hard_link("./etc/y", "./etc/x")
            .finish();
        extract(&root, "first", &first).unwrap();
        let second = Tar::new()
            .dir("./etc/", 0o700)
            .file("./etc/x", 0o600, b"two")
            .file("./etc/z", 0o644, b"mine")
            .finish();
        extract(&root, "second", &second).unwrap();

        assert_eq!(std::fs::read(root.join("etc/x")).unwrap(), b"two");
        assert_eq!(mode(&root.join("etc/x")), 0o600);
        assert_eq!(std::fs::read(root.join("etc/y")).unwrap(), b"one");
        assert_eq!(std::fs::read(root.join("etc/z")).unwrap(), b"mine");
        assert!(
            std::fs::symlink_metadata(root.join("etc/z"))
                .unwrap()
                .is_file()
        );
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"original");
        // An existing folder is kept and takes the newer entry's attributes.
        assert_eq!(mode(&root.join("etc")), 0o700);
    }

    #[test]
    fn refuses_absolute_names_and_follows_absolute_links_inside_the_root() {
        let dir = tempdir();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("inside")).unwrap();
        let data = Tar::new()
            .symlink("./link", "/inside")
            .file("./link/payload", 0o644, b"payload")
            .finish();
        extract(&root, "abs", &data).unwrap();
        assert_eq!(
            std::fs::read(root.join("inside/payload")).unwrap(),
            b"payload"
        );
        assert!(!Path::new("/inside/payload").exists());

        let name = format!("envkit-deb-test-abs-{}", std::process::id());
        let error = refused(|tar, _| {
            tar.file(&format!("/etc/{name}"), 0o644, b"absolute");
        });
        assert_eq!(
            error,
            format!("refusing entry `/etc/{name}` of package `evil-pkg`: its path is absolute")
        );
        let error = refused(|tar, _| {
            tar.file("./etc/real", 0o644, b"x")
                .hard_link("./etc/copy", "/etc/real");
        });
        assert!(
            error.contains("its hard link target `/etc/real` is absolute"),
            "{error}"
        );
        assert!(!Path::new("/etc").join(&name).exists());
    }

    /// Extracts an archive built by `build` into a fresh root beside a folder `outside` that
    /// holds `victim`; returns the error and checks nothing outside the root changed.
    fn refused(build: impl FnOnce(&mut Tar, &Path)) -> String {
        let dir = tempdir();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("victim"), b"original").unwrap();
        let mut tar = Tar::new();
        build(&mut tar, &outside);
        let data = tar.finish();
        let error = extract(&root, "evil-pkg", &data).unwrap_err().to_string();
        assert!(error.contains("package `evil-pkg`"), "{error}");
        let mut outside_now: Vec<_> = std::fs::read_dir(&outside)
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        outside_now.sort();
        assert_eq!(outside_now, ["victim"], "{error}");
        assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"original");
        assert_eq!(
            std::fs::metadata(outside.join("victim")).unwrap().nlink(),
            1
        );
        let mut beside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        beside.sort();
        assert_eq!(beside, ["outside", "root"], "{error}");
        error
    }

    #[test]
    fn refuses_entries_that_climb_out_of_the_root() {
        let error = refused(|tar, _| {
            tar.file("../escape", 0o644, b"x");
        });
        assert_eq!(
            error,
            "refusing entry `../escape` of package `evil-pkg`: its path has a `..` component"
        );
        let error = refused(|tar, _| {
            tar.dir("./a/", 0o755).file("./a/../../escape", 0o644, b"x");
        });
        assert!(error.contains("`./a/../../escape`"), "{error}");
    }

    #[test]
    fn refuses_to_write_through_a_symlink_that_leaves_the_root() {
        let error = refused(|tar, outside| {
            tar.symlink("./evil", outside.to_str().unwrap())
                .file("./evil/payload", 0o644, b"x");
        });
        assert!(
            error.starts_with("refusing entry `./evil/payload`"),
            "{error}"
        );
        assert!(
            error.contains("its path goes through the symlink `/evil` -> `/"),
            "{error}"
        );

        let error = refused(|tar, _| {
            tar.symlink("./rel", "../outside")
                .dir("./rel/sub/", 0o755)
                .file("./rel/sub/payload", 0o644, b"x");
        });
        assert!(error.starts_with("refusing entry `./rel/sub/`"), "{error}");
        assert!(error.contains("`/rel` -> `../outside`"), "{error}");

        // A symlink in the middle of the path, through a folder the package created.
        let error = refused(|tar, outside| {
            tar.dir("./usr/", 0o755)
                .symlink(
                    "./usr/share",
                    &format!("../../../../../../../../{}", outside.display()),
                )
                .file("./usr/share/victim", 0o644, b"overwritten");
        });
        assert!(error.contains("`./usr/share/victim`"), "{error}");

        let error = refused(|tar, _| {
            tar.symlink("./loop1", "loop2")
                .symlink("./loop2", "loop1")
                .file("./loop1/x", 0o644, b"x");
        });
        assert!(error.contains("symlinks on its path"), "{error}");
    }

    #[test]
    fn refuses_hard_links_to_files_outside_the_root() {
        let error = refused(|tar, _| {
            tar.hard_link("./x", "../../outside/victim");
        });
        assert_eq!(
            error,
            "refusing entry `./x` of package `evil-pkg`: its hard link target `../../outside/victim` has a `..` component"
        );
        let error = refused(|tar, outside| {
            tar.symlink("./evil", outside.to_str().unwrap())
                .hard_link("./y", "./evil/victim");
        });
        assert!(error.starts_with("refusing entry `./y`"), "{error}");
    }

    #[test]
    fn an_image_layers_device_nodes_and_fifos_are_left_out() {
        let dir = tempdir();
        let mut tar = Tar::new();
        tar.dir("./dev", 0o755);
        for (kind, name) in [
            (tar::EntryType::Char, "./dev/console"),
            (tar::EntryType::Block, "./dev/sda"),
            (tar::EntryType::Fifo, "./dev/initctl"),
        ] {
            tar.push(kind, name, "", 0o600, 0, 0, b"");
        }
        tar.file("./etc/hostname", 0o644, b"image\n");
        let options = ExtractOptions {
            oci_whiteouts: true,
            ..ExtractOptions::default()
        };
        let summary = Extractor::open(dir.path(), "image-1", &options)
            .unwrap()
            .extract(&tar.finish()[..])
            .unwrap();
        assert_eq!(summary.skipped_special, 3);
        assert_eq!(
            std::fs::read_dir(dir.path().join("dev")).unwrap().count(),
            0
        );
        assert!(dir.path().join("etc/hostname").is_file());
    }

    #[test]
    fn refuses_device_nodes_and_fifos() {
        for (kind, name) in [
            (tar::EntryType::Char, "character device"),
            (tar::EntryType::Block, "block device"),
            (tar::EntryType::Fifo, "fifo"),
        ] {
            let error = refused(|tar, _| {
                tar.push(kind, "./dev/node", "", 0o644, 0, 0, b"");
            });
            assert_eq!(
                error,
                format!(
                    "entry `./dev/node` of package `evil-pkg` is a {name}, which envkit does not extract (Debian binary packages do not ship them)"
                )
            );
        }
    }

    #[test]
    fn a_directory_entry_replaces_a_symlink_that_does_not_lead_to_a_folder() {
        let dir = tempdir();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let data = Tar::new()
            .symlink("./evil", outside.to_str().unwrap())
            .dir("./evil/", 0o755)
            .file("./evil/payload", 0o644, b"x")
            .finish();
        extract(&root, "evil-pkg", &data).unwrap();
        assert!(
            std::fs::symlink_metadata(root.join("evil"))
                .unwrap()
                .is_dir()
        );
        assert!(root.join("evil/payload").is_file());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn applies_pax_times_and_records_extended_attributes_it_cannot_set() {
        let dir = tempdir();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([
                ("mtime", b"1600000000.5".as_slice()),
                ("SCHILY.xattr.user.envkit", b"yes".as_slice()),
                ("SCHILY.xattr.bogus.name", b"no".as_slice()),
            ])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_path("./file").unwrap();
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(4);
        header.set_mtime(MTIME);
        header.set_cksum();
        builder.append(&header, b"data".as_slice()).unwrap();
        let data = builder.into_inner().unwrap();
        let summary = extract(&root, "xattrs", &data).unwrap();
        let metadata = std::fs::metadata(root.join("file")).unwrap();
        assert_eq!(
            (metadata.mtime(), metadata.mtime_nsec()),
            (1_600_000_000, 500_000_000)
        );
        // `bogus.` is no namespace Linux knows; `user.` works where the file system allows it.
        assert!(
            summary
                .ignored_xattrs
                .iter()
                .any(|x| x.name == "bogus.name")
        );
        assert!(summary.ignored_xattrs.iter().all(|x| x.entry == "file"));
    }
}
