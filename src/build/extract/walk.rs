//! Looking archive paths up inside the root, so that nothing outside it can be reached.
//!
//! Every step is an `openat` with `O_NOFOLLOW` below a folder already reached, so the kernel
//! never follows a symlink on its own: a symlink met on the way is read and its target walked
//! the same way, from the root when it is absolute, with `..` stopping at the root, as in a
//! chroot.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Linux gives up after this many symlinks in one lookup (`MAXSYMLINKS`); so does the walk.
pub(super) const MAX_SYMLINKS: u32 = 40;

/// The components of an archive path, without `.` or empty components; an empty list is the
/// root itself. Absolute names and `..` are refused.
pub(super) fn components(path: &[u8]) -> Result<Vec<&[u8]>, &'static str> {
    if path.first() == Some(&b'/') {
        return Err("is absolute");
    }
    let mut parts = Vec::new();
    for part in path.split(|byte| *byte == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("has a `..` component"),
            _ => parts.push(part),
        }
    }
    Ok(parts)
}

/// An archive name as messages show it.
pub(super) fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Where a walk has got to: the folders entered below the root, each with its name, so `..`
/// can step back and errors can say where they happened.
type Stack = Vec<(Vec<u8>, Rc<OwnedFd>)>;

/// Why a walk from the root did not reach a folder.
pub(super) enum WalkError {
    /// A component is missing and the walk may not create it.
    Missing {
        at: String,
    },
    /// A component is something other than a folder or a symlink.
    NotDirectory {
        at: String,
    },
    /// A symlink on the way does not lead to a folder inside the root.
    BadLink {
        link: String,
        target: String,
        reason: String,
    },
    /// More symlinks than the kernel would follow.
    Loop {
        link: String,
    },
    Io {
        at: String,
        source: io::Error,
    },
}

impl WalkError {
    pub(super) fn describe(&self) -> String {
        match self {
            WalkError::Missing { at } => format!("`{at}` does not exist in the root"),
            WalkError::NotDirectory { at } => format!("`{at}` is not a folder"),
            WalkError::BadLink { link, .. } => format!("`{link}` does not lead to a folder"),
            WalkError::Loop { link } => format!("too many symlinks at `{link}`"),
            WalkError::Io { at, source } => format!("`{at}`: {source}"),
        }
    }
}

/// A root folder and the lookups below it.
pub(super) struct Tree {
    root: Rc<OwnedFd>,
    /// The components of the last path resolved, each with where it led. Archives list a
    /// folder's entries together and in order, so most lookups share a long prefix with the
    /// previous one.
    resolved: Vec<(Vec<u8>, Stack)>,
}

impl Tree {
    pub(super) fn new(root: OwnedFd) -> Tree {
        Tree {
            root: Rc::new(root),
            resolved: Vec::new(),
        }
    }

    pub(super) fn root(&self) -> &OwnedFd {
        &self.root
    }

    /// Drops the remembered lookups. Needed whenever a folder or symlink is removed, since a
    /// remembered walk may have passed through it.
    pub(super) fn forget(&mut self) {
        self.resolved.clear();
    }

    /// Opens the folder at `path` for changing its attributes, without following a symlink
    /// in its last component; `None` when it is no longer there.
    pub(super) fn open_dir(&mut self, path: &[&[u8]]) -> Option<OwnedFd> {
        let Some((last, parent_path)) = path.split_last() else {
            return rustix::io::fcntl_dupfd_cloexec(&*self.root, 0).ok();
        };
        let parent = self.resolve(parent_path, false).ok()?;
        rustix::fs::openat(
            &*parent,
            *last,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()
    }

    /// The folder an archive path leads to, walked on from the longest prefix it shares with
    /// the previous lookup.
    pub(super) fn resolve(
        &mut self,
        path: &[&[u8]],
        create: bool,
    ) -> Result<Rc<OwnedFd>, WalkError> {
        let shared = self
            .resolved
            .iter()
            .zip(path)
            .take_while(|((resolved, _), part)| resolved.as_slice() == **part)
            .count();
        self.resolved.truncate(shared);
        for part in path.iter().skip(shared) {
            let from = self
                .resolved
                .last()
                .map(|(_, stack)| stack.clone())
                .unwrap_or_default();
            let stack = self.walk(from, part, create)?;
            self.resolved.push((part.to_vec(), stack));
        }
        let top = self
            .resolved
            .last()
            .and_then(|(_, stack)| stack.last())
            .map(|(_, fd)| fd);
        Ok(Rc::clone(top.unwrap_or(&self.root)))
    }

    /// Walks one archive path component from `dirs`, following symlinks by reading them and
    /// walking their targets from the root (absolute) or from the folder that holds them
    /// (relative), with `..` stopping at the root. The kernel never follows a link itself:
    /// every step is an `openat` with `O_NOFOLLOW` below a folder already reached. With
    /// `create`, a missing `part` is created; components that come from a symlink's target
    /// never are.
    fn walk(&self, mut dirs: Stack, part: &[u8], create: bool) -> Result<Stack, WalkError> {
        // Components still to walk, last one first; `true` marks those from a symlink target.
        let mut pending: Vec<(Vec<u8>, bool)> = vec![(part.to_vec(), false)];
        let mut links = 0;
        let mut last_link: Option<(String, String)> = None;
        let at = |dirs: &Stack, part: &[u8]| {
            let mut parts: Vec<&[u8]> = dirs.iter().map(|(name, _)| name.as_slice()).collect();
            parts.push(part);
            format!("/{}", shown(&parts.join(&b'/')))
        };
        // A dead end met while following a symlink is blamed on the symlink.
        let bad_link = |last_link: &Option<(String, String)>, other: WalkError| match last_link {
            Some((link, target)) => WalkError::BadLink {
                link: link.clone(),
                target: target.clone(),
                reason: other.describe(),
            },
            None => other,
        };
        while let Some((part, from_link)) = pending.pop() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    dirs.pop();
                    continue;
                }
                _ => {}
            }
            let here = dirs.last().map_or(&self.root, |(_, fd)| fd).as_fd();
            let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(here, part.as_slice(), flags, Mode::empty()) {
                Ok(fd) => dirs.push((part, Rc::new(fd))),
                Err(Errno::NOENT) if create && !from_link => {
                    let fd = make_dir_at(here, &part).map_err(|source| WalkError::Io {
                        at: at(&dirs, &part),
                        source,
                    })?;
                    dirs.push((part, Rc::new(fd)));
                }
                Err(Errno::NOENT) => {
                    let missing = WalkError::Missing {
                        at: at(&dirs, &part),
                    };
                    return Err(if from_link {
                        bad_link(&last_link, missing)
                    } else {
                        missing
                    });
                }
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let place = at(&dirs, &part);
                    let stat = rustix::fs::statat(here, part.as_slice(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|errno| WalkError::Io {
                            at: place.clone(),
                            source: errno.into(),
                        })?;
                    if FileType::from_raw_mode(stat.st_mode) != FileType::Symlink {
                        let not_dir = WalkError::NotDirectory { at: place.clone() };
                        return Err(if from_link {
                            bad_link(&last_link, not_dir)
                        } else {
                            not_dir
                        });
                    }
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(WalkError::Loop { link: place });
                    }
                    let target = rustix::fs::readlinkat(here, part.as_slice(), Vec::new())
                        .map_err(|errno| WalkError::Io {
                            at: place.clone(),
                            source: errno.into(),
                        })?
                        .into_bytes();
                    if target.starts_with(b"/") {
                        dirs.clear();
                    }
                    pending.extend(
                        target
                            .split(|byte| *byte == b'/')
                            .rev()
                            .map(|part| (part.to_vec(), true)),
                    );
                    last_link = Some((place, shown(&target)));
                }
                Err(errno) => {
                    return Err(WalkError::Io {
                        at: at(&dirs, &part),
                        source: errno.into(),
                    });
                }
            }
        }
        Ok(dirs)
    }
}

/// Creates a folder for a missing path component, as tar does: mode 0755 whatever the umask,
/// owned by the caller.
fn make_dir_at(parent: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755))?;
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o755))?;
    Ok(fd)
}
