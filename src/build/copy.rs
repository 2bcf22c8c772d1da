//! `copy "SRC" at="/app"`: project files baked into a layer of their own (Docker's `COPY`),
//! keyed by their content, so an image runs the app with no mount.
//!
//! - A folder's contents go into `at`; a file becomes `at`, or goes into it when `at` ends
//!   with `/` (as Docker does).
//! - The project's ignore file, `.envkitignore` beside the env file (else `.dockerignore`),
//!   leaves paths out: one pattern per line, relative to the env file's folder, `*` and `?`
//!   within a name, `**` across folders, `!` to take a path back in, `#` for comments. A
//!   pattern that matches a folder leaves out everything in it.
//! - What the layer holds does not depend on the machine: owner root, mode 0755 for folders
//!   and for files with any execute bit, else 0644, and every time at the lock's
//!   SOURCE_DATE_EPOCH. So CI and a laptop give the same diff_id for the same files, whatever
//!   their umask or checkout times. Symlinks are kept as links; sockets, fifos and devices are
//!   refused by name.
//! - The key covers each file's path, kind, execute bit and contents (blake3), and `at`.

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

/// Ignore files, in the order they are looked for.
pub const IGNORE_FILES: &[&str] = &[".envkitignore", ".dockerignore"];

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("`copy \"{source_name}\"`: `{}` does not exist", path.display())]
    Missing { source_name: String, path: PathBuf },
    #[error("cannot read `{}`", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{}` is a {kind}, which `copy` does not put into images", path.display())]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error("`{}`: line {line} is not a pattern: {reason}", path.display())]
    Pattern {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("cannot write `{}` into the layer", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What one entry becomes in the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Folder,
    File { executable: bool },
    Symlink { target: PathBuf },
}

/// One entry of a copy, in the order it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyEntry {
    /// Where it goes, below the image's root (no leading `/`).
    pub at: PathBuf,
    /// Where it is read from.
    pub from: PathBuf,
    pub kind: EntryKind,
}

/// The ignore file's patterns, in order.
#[derive(Debug, Default)]
pub struct IgnoreRules {
    rules: Vec<(glob::Pattern, bool)>,
}

impl IgnoreRules {
    /// The rules of the project at `project_dir`, empty when it has no ignore file.
    pub fn of_project(project_dir: &Path) -> Result<IgnoreRules, CopyError> {
        for name in IGNORE_FILES {
            let path = project_dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => return IgnoreRules::parse(&text, &path),
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(CopyError::Read { path, source }),
            }
        }
        Ok(IgnoreRules::default())
    }

    fn parse(text: &str, path: &Path) -> Result<IgnoreRules, CopyError> {
        let mut rules = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keep, pattern) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let pattern = pattern.trim_start_matches('/').trim_end_matches('/');
            let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
            let compiled = glob::Pattern::new(pattern).map_err(|error| CopyError::Pattern {
                path: path.to_path_buf(),
                line: index + 1,
                reason: error.msg.to_string(),
            })?;
            rules.push((compiled, keep));
        }
        Ok(IgnoreRules { rules })
    }

    /// Whether `relative` (to the project folder) is left out: the last pattern that
    /// matches it, or one of its folders, decides.
    pub fn ignores(&self, relative: &Path) -> bool {
        let options = glob::MatchOptions {
            case_sensitive: true,
            require_literal_separator: true,
            require_literal_leading_dot: false,
        };
        let mut ignored = false;
        for (pattern, keep) in &self.rules {
            let matches = relative
                .ancestors()
                .filter(|a| !a.as_os_str().is_empty())
                .any(|a| pattern.matches_path_with(a, options));
            if matches {
                ignored = !keep;
            }
        }
        ignored
    }

    /// Whether a folder left out may still hold a path a `!` pattern takes back.
    fn takes_back_anything(&self) -> bool {
        self.rules.iter().any(|(_, keep)| *keep)
    }
}

/// Every entry `copy "source" at="at"` puts into the layer, sorted by where it goes. `source`
/// is resolved against `project_dir`, which ignore patterns are relative to.
pub fn collect(
    project_dir: &Path,
    source_name: &str,
    source: &Path,
    at: &str,
    ignore: &IgnoreRules,
) -> Result<Vec<CopyEntry>, CopyError> {
    let read_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CopyError::Read { path, source }
    };
    let meta = match std::fs::symlink_metadata(source) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(CopyError::Missing {
                source_name: source_name.to_string(),
                path: source.to_path_buf(),
            });
        }
        Err(error) => return Err(read_error(source)(error)),
    };
    let at_root = PathBuf::from(at.trim_start_matches('/'));
    let mut entries = Vec::new();
    if !meta.is_dir() {
        let name = source.file_name().map(PathBuf::from).unwrap_or_default();
        let at = if at.ends_with('/') {
            at_root.join(name)
        } else {
            at_root
        };
        entries.push(entry(source, at, &meta)?);
        return Ok(entries);
    }
    entries.push(CopyEntry {
        at: at_root.clone(),
        from: source.to_path_buf(),
        kind: EntryKind::Folder,
    });
    let mut walk = walkdir::WalkDir::new(source)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
        .into_iter();
    while let Some(item) = walk.next() {
        let item = item.map_err(|error| {
            let path = error.path().unwrap_or(source).to_path_buf();
            CopyError::Read {
                path,
                source: error.into(),
            }
        })?;
        let path = item.path();
        let relative_to_project = path.strip_prefix(project_dir).unwrap_or(path);
        if ignore.ignores(relative_to_project) {
            if item.file_type().is_dir() && !ignore.takes_back_anything() {
                walk.skip_current_dir();
            }
            continue;
        }
        let meta = item.metadata().map_err(|error| CopyError::Read {
            path: path.to_path_buf(),
            source: error.into(),
        })?;
        let relative = path.strip_prefix(source).unwrap_or(path);
        entries.push(entry(path, at_root.join(relative), &meta)?);
    }
    // A path a `!` pattern took back inside a folder left out still needs that folder.
    let mut places: std::collections::BTreeSet<PathBuf> =
        entries.iter().map(|e| e.at.clone()).collect();
    let mut missing = Vec::new();
    for entry in &entries {
        for ancestor in entry.at.ancestors().skip(1) {
            if ancestor.starts_with(&at_root) && places.insert(ancestor.to_path_buf()) {
                let relative = ancestor.strip_prefix(&at_root).unwrap_or(ancestor);
                missing.push(CopyEntry {
                    at: ancestor.to_path_buf(),
                    from: source.join(relative),
                    kind: EntryKind::Folder,
                });
            }
        }
    }
    entries.extend(missing);
    entries.sort_by(|a, b| a.at.cmp(&b.at));
    Ok(entries)
}

fn entry(path: &Path, at: PathBuf, meta: &std::fs::Metadata) -> Result<CopyEntry, CopyError> {
    let file_type = meta.file_type();
    let kind = if file_type.is_dir() {
        EntryKind::Folder
    } else if file_type.is_file() {
        EntryKind::File {
            executable: meta.permissions().mode() & 0o111 != 0,
        }
    } else if file_type.is_symlink() {
        let target = std::fs::read_link(path).map_err(|source| CopyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        EntryKind::Symlink { target }
    } else {
        use std::os::unix::fs::FileTypeExt;
        let kind = if file_type.is_socket() {
            "socket"
        } else if file_type.is_fifo() {
            "fifo"
        } else {
            "device"
        };
        return Err(CopyError::Unsupported {
            path: path.to_path_buf(),
            kind,
        });
    };
    Ok(CopyEntry {
        at,
        from: path.to_path_buf(),
        kind,
    })
}

/// blake3 of everything the layer will hold: each entry's place, kind, execute bit, link
/// target and contents. Equal digests, equal layers.
pub fn digest(entries: &[CopyEntry]) -> Result<String, CopyError> {
    let mut hasher = blake3::Hasher::new();
    for entry in entries {
        hasher.update(entry.at.as_os_str().as_encoded_bytes());
        hasher.update(b"\0");
        match &entry.kind {
            EntryKind::Folder => {
                hasher.update(b"d");
            }
            EntryKind::Symlink { target } => {
                hasher.update(b"l");
                hasher.update(target.as_os_str().as_encoded_bytes());
            }
            EntryKind::File { executable } => {
                hasher.update(if *executable { b"x" } else { b"f" });
                let mut file = File::open(&entry.from).map_err(|source| CopyError::Read {
                    path: entry.from.clone(),
                    source,
                })?;
                let mut contents = blake3::Hasher::new();
                contents
                    .update_reader(&mut file)
                    .map_err(|source| CopyError::Read {
                        path: entry.from.clone(),
                        source,
                    })?;
                hasher.update(contents.finalize().as_bytes());
            }
        }
        hasher.update(b"\0");
    }
    Ok(hasher.finalize().to_hex().to_string())
}

/// Writes `entries` into `tree` (an empty layer folder), with the folders above the first
/// entry's place, normalised as the module docs say.
pub fn write(tree: &Path, entries: &[CopyEntry], clamp_mtime: u64) -> Result<(), CopyError> {
    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CopyError::Write { path, source }
    };
    let mut folders: Vec<PathBuf> = Vec::new();
    if let Some(first) = entries.first() {
        for ancestor in first.at.ancestors().skip(1) {
            if !ancestor.as_os_str().is_empty() {
                folders.push(tree.join(ancestor));
            }
        }
        if let Some(parent) = first.at.parent() {
            std::fs::create_dir_all(tree.join(parent)).map_err(write_error(tree))?;
        }
    }
    for entry in entries {
        let target = tree.join(&entry.at);
        match &entry.kind {
            EntryKind::Folder => {
                match std::fs::create_dir(&target) {
                    Ok(()) => {}
                    Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(error) => return Err(write_error(&target)(error)),
                }
                folders.push(target);
            }
            EntryKind::File { executable } => {
                std::fs::copy(&entry.from, &target).map_err(write_error(&target))?;
                let mode = if *executable { 0o755 } else { 0o644 };
                std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                    .map_err(write_error(&target))?;
                set_time(&target, clamp_mtime).map_err(write_error(&target))?;
            }
            EntryKind::Symlink { target: link } => {
                std::os::unix::fs::symlink(link, &target).map_err(write_error(&target))?;
                set_time(&target, clamp_mtime).map_err(write_error(&target))?;
            }
        }
    }
    // Deepest first: setting a folder's time must come after everything written inside it.
    folders.sort_by_key(|folder| std::cmp::Reverse(folder.components().count()));
    for folder in folders {
        std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755))
            .map_err(write_error(&folder))?;
        set_time(&folder, clamp_mtime).map_err(write_error(&folder))?;
    }
    Ok(())
}

fn set_time(path: &Path, unix: u64) -> io::Result<()> {
    let time = Timespec {
        tv_sec: i64::try_from(unix).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: time,
            last_modification: time,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn project() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("app/pkg")).unwrap();
        std::fs::create_dir_all(root.join("app/__pycache__")).unwrap();
        std::fs::create_dir_all(root.join("app/node_modules/x")).unwrap();
        std::fs::write(root.join("app/main.py"), "print('hi')\n").unwrap();
        std::fs::write(root.join("app/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(
            root.join("app/run.sh"),
            std::fs::Permissions::from_mode(0o775),
        )
        .unwrap();
        std::fs::write(root.join("app/pkg/mod.py"), "x = 1\n").unwrap();
        std::fs::write(root.join("app/__pycache__/main.pyc"), "junk").unwrap();
        std::fs::write(root.join("app/node_modules/x/keep.js"), "kept").unwrap();
        std::fs::write(root.join("app/secret.env"), "TOKEN=1").unwrap();
        std::os::unix::fs::symlink("main.py", root.join("app/entry.py")).unwrap();
        dir
    }

    fn places(entries: &[CopyEntry]) -> Vec<String> {
        entries
            .iter()
            .map(|e| e.at.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_folder_goes_into_at_without_what_the_ignore_file_leaves_out() {
        let dir = project();
        std::fs::write(
            dir.path().join(".envkitignore"),
            "# build junk\n**/__pycache__\napp/node_modules\n!app/node_modules/x/keep.js\n*.env\napp/*.env\n",
        )
        .unwrap();
        let ignore = IgnoreRules::of_project(dir.path()).unwrap();
        let entries = collect(
            dir.path(),
            "app",
            &dir.path().join("app"),
            "/srv/app",
            &ignore,
        )
        .unwrap();
        assert_eq!(
            places(&entries),
            [
                "srv/app",
                "srv/app/entry.py",
                "srv/app/main.py",
                "srv/app/node_modules",
                "srv/app/node_modules/x",
                "srv/app/node_modules/x/keep.js",
                "srv/app/pkg",
                "srv/app/pkg/mod.py",
                "srv/app/run.sh",
            ]
        );
        assert!(
            entries
                .iter()
                .any(|e| e.kind == EntryKind::File { executable: true })
        );
    }

    #[test]
    fn a_file_becomes_at_or_goes_into_it() {
        let dir = project();
        let ignore = IgnoreRules::default();
        let file = dir.path().join("app/main.py");
        let named = collect(dir.path(), "app/main.py", &file, "/srv/start.py", &ignore).unwrap();
        assert_eq!(places(&named), ["srv/start.py"]);
        let into = collect(dir.path(), "app/main.py", &file, "/srv/", &ignore).unwrap();
        assert_eq!(places(&into), ["srv/main.py"]);
        let missing = collect(dir.path(), "nope", &dir.path().join("nope"), "/x", &ignore);
        assert!(matches!(missing, Err(CopyError::Missing { .. })));
    }

    #[test]
    fn the_layer_is_the_same_whatever_the_umask_and_the_times() {
        let ignore = IgnoreRules::default();
        let mut digests = Vec::new();
        let mut trees = Vec::new();
        for mode in [0o644, 0o664] {
            let dir = project();
            std::fs::set_permissions(
                dir.path().join("app/main.py"),
                std::fs::Permissions::from_mode(mode),
            )
            .unwrap();
            let entries =
                collect(dir.path(), "app", &dir.path().join("app"), "/app", &ignore).unwrap();
            digests.push(digest(&entries).unwrap());
            let tree = tempfile::tempdir().unwrap();
            write(tree.path(), &entries, 1_700_000_000).unwrap();
            let layer = crate::build::layer_tar::layer_digest(
                tree.path(),
                &crate::build::layer_tar::TarOptions::for_layer(
                    &crate::build::layer_kind::LayerKind::Copy(0),
                    1_700_000_000,
                ),
            )
            .unwrap();
            trees.push(layer.diff_id);
            let meta = std::fs::metadata(tree.path().join("app/run.sh")).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o755);
            assert_eq!(meta.mtime(), 1_700_000_000);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(digests[0], digests[1]);
        assert_eq!(trees[0], trees[1]);
    }

    #[test]
    fn changed_contents_change_the_digest() {
        let dir = project();
        let ignore = IgnoreRules::default();
        let source = dir.path().join("app");
        let before = digest(&collect(dir.path(), "app", &source, "/app", &ignore).unwrap());
        std::fs::write(dir.path().join("app/pkg/mod.py"), "x = 2\n").unwrap();
        let after = digest(&collect(dir.path(), "app", &source, "/app", &ignore).unwrap());
        assert_ne!(before.unwrap(), after.unwrap());
    }
}
