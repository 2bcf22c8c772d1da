//! A `.deb`'s data archive unpacked into a folder: [`Deb::data`] decompresses `data.tar` and
//! an [`Extractor`] writes it, confined to the folder.
//!
//! Decompressing (mostly xz) and writing files take about as long as each other, so the
//! archive is decompressed on a second thread a few chunks ahead of the writes; memory use
//! stays bounded whatever the package's size.

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender};

use crate::debian::deb::{Deb, DebError};

use super::extract::{ExtractError, ExtractOptions, ExtractSummary, Extractor};

/// Decompressed data is handed between threads in chunks of this size...
const PREFETCH_CHUNK_LEN: usize = 256 << 10;
/// ...with at most this many waiting, which bounds the memory the look-ahead takes.
const PREFETCH_CHUNKS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The `.deb` could not be read, including its data archive partway through.
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error(transparent)]
    Extract(#[from] ExtractError),
}

/// Extracts the data archive of `deb` into `root`, an existing folder (see
/// [`super::extract`] for the rules).
pub fn unpack(
    deb: &Deb,
    root: &Path,
    options: &ExtractOptions,
) -> Result<ExtractSummary, UnpackError> {
    let extractor = Extractor::open(root, deb.package(), options)?;
    let reader = deb.data()?;
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel(PREFETCH_CHUNKS);
        std::thread::Builder::new()
            .name("deb-decompress".into())
            .spawn_scoped(scope, move || prefetch(reader, &sender))
            .map_err(|source| deb.data_error(source))?;
        let mut prefetched = Prefetched {
            receiver,
            chunk: Vec::new(),
            position: 0,
        };
        let summary = extractor
            .extract(&mut prefetched)
            .map_err(|error| match error {
                // The archive's read errors are the `.deb`'s: they name its member and file.
                ExtractError::Archive { source, .. } => UnpackError::Deb(deb.data_error(source)),
                other => UnpackError::Extract(other),
            })?;
        // A tar ends before its compressed stream does: reading on to the end is what makes
        // the decompressor check its trailer (gzip's CRC, xz's check, zstd's checksum), so
        // data garbled in transit or by the packager is refused, not installed.
        std::io::copy(&mut prefetched, &mut std::io::sink())
            .map_err(|source| UnpackError::Deb(deb.data_error(source)))?;
        Ok(summary)
        // On an error the receiver goes with `prefetched`, which stops the decompressing
        // thread if it is still going.
    })
}

/// Reads `deb` through as [`unpack`] would, writing nothing: its control file within bounds,
/// every entry of its data archive one the extractor would write, the compressed stream
/// checked to its end. For packages the real dpkg unpacks: refused here, they are refused
/// naming the package and the reason, as the ones envkit extracts itself are.
pub fn screen(deb: &Deb) -> Result<(), UnpackError> {
    deb.control_fields()?;
    let mut reader = deb.data()?;
    super::extract::screen(deb.package(), &mut reader).map_err(|error| match error {
        ExtractError::Archive { source, .. } => UnpackError::Deb(deb.data_error(source)),
        other => UnpackError::Extract(other),
    })?;
    std::io::copy(&mut reader, &mut std::io::sink())
        .map_err(|source| UnpackError::Deb(deb.data_error(source)))?;
    Ok(())
}

/// Sends `reader`'s bytes in chunks until it ends, fails, or the receiving side is gone.
fn prefetch(mut reader: impl Read, sender: &SyncSender<io::Result<Vec<u8>>>) {
    loop {
        let mut chunk = vec![0; PREFETCH_CHUNK_LEN];
        let mut filled = 0;
        while filled < chunk.len() {
            match reader.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(count) => filled += count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    let _ = sender.send(Err(error));
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        chunk.truncate(filled);
        if sender.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// The reading end of [`prefetch`]: the end of the channel is the end of the data.
struct Prefetched {
    receiver: Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    position: usize,
}

impl Read for Prefetched {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.position >= self.chunk.len() {
            match self.receiver.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.position = 0;
                }
                Ok(Err(error)) => return Err(error),
                Err(mpsc::RecvError) => return Ok(0),
            }
        }
        let available = &self.chunk[self.position..];
        let count = available.len().min(buf.len());
        buf[..count].copy_from_slice(&available[..count]);
        self.position += count;
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debian::testing::{ALL, MTIME, Tar, Z, ar, compress, write_deb};
    use std::collections::BTreeMap;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::PathBuf;
    use std::process::Command;
    use std::time::Instant;

    /// Whether this process can give files away (the ids of a new file are the caller's).
    fn is_root(dir: &Path) -> bool {
        let probe = dir.join(".probe");
        std::fs::write(&probe, b"").unwrap();
        let root = std::fs::metadata(&probe).unwrap().uid() == 0;
        std::fs::remove_file(probe).unwrap();
        root
    }

    fn must_work() -> bool {
        std::env::var("ENVKIT_MUST_WORK").is_ok_and(|value| value == "1")
    }

    /// Skips with the reason, unless `ENVKIT_MUST_WORK=1` (CI) forbids skipping.
    fn skip(reason: &str) {
        assert!(!must_work(), "ENVKIT_MUST_WORK=1 but {reason}");
        eprintln!("skipped: {reason}");
    }

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn mtime(path: &Path) -> i64 {
        std::fs::symlink_metadata(path).unwrap().mtime()
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn reports_a_corrupt_data_archive() {
        let dir = tempdir();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let data = Tar::new()
            .dir("./", 0o755)
            .file("./big", 0o644, &vec![7; 1 << 20])
            .finish();
        let mut xz = compress(&data, Z::Xz);
        let middle = xz.len() / 2;
        xz.truncate(middle);
        let control = compress(&Tar::new().file("./control", 0o644, b"x").finish(), Z::Gzip);
        let path = dir.path().join("cut.deb");
        std::fs::write(
            &path,
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", &control),
                ("data.tar.xz", &xz),
            ]),
        )
        .unwrap();
        let error = unpack(
            &Deb::open(&path, "cut").unwrap(),
            &root,
            &ExtractOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(error, UnpackError::Deb(DebError::Member { .. })),
            "{error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!(
                "cannot read `data.tar.xz` in `{}` of package `cut`",
                path.display()
            )
        );
    }

    /// A `.deb` of package `name` at `dir/name.deb` whose members are given as they are.
    fn raw_deb(dir: &Path, name: &str, control: &[u8], data_name: &str, data: &[u8]) -> PathBuf {
        let path = dir.join(format!("{name}.deb"));
        std::fs::write(
            &path,
            ar(&[
                ("debian-binary", b"2.0\n"),
                ("control.tar.gz", control),
                (data_name, data),
            ]),
        )
        .unwrap();
        path
    }

    fn small_control() -> Vec<u8> {
        compress(
            &Tar::new()
                .file(
                    "./control",
                    0o644,
                    b"Package: x\nVersion: 1\nArchitecture: amd64\n",
                )
                .finish(),
            Z::Gzip,
        )
    }

    /// Hostile packages: each is refused naming the package, quickly, without writing outside
    /// the root and without allocating what the archive claims.
    #[test]
    fn a_member_declaring_a_hundred_gigabytes_is_refused_without_allocating_them() {
        let dir = tempdir();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        // A header that says 100 GB, followed by a few bytes and the end of the stream.
        let data = crate::debian::testing::huge_member("huge");
        let path = raw_deb(dir.path(), "huge", &small_control(), "data.tar", &data);
        let started = Instant::now();
        let error = unpack(
            &Deb::open(&path, "huge").unwrap(),
            &root,
            &ExtractOptions::default(),
        )
        .unwrap_err();
        assert!(error.to_string().contains("`huge`"), "{error}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let beside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(beside.len(), 2, "only the root and the .deb");
    }

    #[test]
    fn corrupt_data_in_each_compression_is_refused_naming_the_package() {
        for z in [Z::Gzip, Z::Xz, Z::Zstd] {
            let dir = tempdir();
            let root = dir.path().join("root");
            std::fs::create_dir(&root).unwrap();
            let compressed = crate::debian::testing::garbled_data("big", z);
            let name = format!("data.tar{}", crate::debian::testing::suffix(z));
            let path = raw_deb(dir.path(), "garbled", &small_control(), &name, &compressed);
            let outcome = Deb::open(&path, "garbled")
                .map_err(UnpackError::from)
                .and_then(|deb| unpack(&deb, &root, &ExtractOptions::default()));
            let error = outcome
                .expect_err(&format!("{z:?}: corrupt data must be refused"))
                .to_string();
            assert!(error.contains("package `garbled`"), "{z:?}: {error}");
        }
    }

    #[test]
    fn a_truncated_deb_is_refused_naming_the_package() {
        let dir = tempdir();
        let data = Tar::new()
            .dir("./", 0o755)
            .file("./f", 0o644, b"x")
            .finish();
        let whole = std::fs::read(raw_deb(
            dir.path(),
            "whole",
            &small_control(),
            "data.tar",
            &data,
        ))
        .unwrap();
        for cut in [8, 60, whole.len() / 2, whole.len() - 3] {
            let path = dir.path().join("cut.deb");
            std::fs::write(&path, &whole[..cut]).unwrap();
            let root = dir.path().join(format!("root-{cut}"));
            std::fs::create_dir(&root).unwrap();
            let outcome = Deb::open(&path, "cut")
                .map_err(UnpackError::from)
                .and_then(|deb| unpack(&deb, &root, &ExtractOptions::default()));
            let error = outcome.expect_err("a cut .deb must be refused").to_string();
            assert!(error.contains("`cut`"), "cut at {cut}: {error}");
        }
    }

    #[test]
    fn a_control_file_with_a_ten_megabyte_field_is_refused() {
        let dir = tempdir();
        let field = format!(
            "Package: big\nVersion: 1\nArchitecture: amd64\nDescription: {}\n",
            "x".repeat(10 << 20)
        );
        let control = compress(
            &Tar::new()
                .file("./control", 0o644, field.as_bytes())
                .finish(),
            Z::Gzip,
        );
        let data = Tar::new().dir("./", 0o755).finish();
        let path = raw_deb(dir.path(), "big", &control, "data.tar", &data);
        let error = Deb::open(&path, "big")
            .unwrap()
            .control_fields()
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("more than a control file can be") && error.contains("`big`"),
            "{error}"
        );
    }

    #[test]
    fn extracts_every_kind_of_entry_in_every_compression() {
        for z in ALL {
            let dir = tempdir();
            let root = dir.path().join("root");
            std::fs::create_dir(&root).unwrap();
            let root_user = is_root(dir.path());
            let data = Tar::new()
                .dir("./", 0o755)
                .dir("./usr/", 0o755)
                .dir("./usr/bin/", 0o755)
                .file("./usr/bin/tool", 0o755, b"#!/bin/sh\necho tool\n")
                .push(
                    tar::EntryType::Regular,
                    "./usr/bin/su",
                    "",
                    0o4755,
                    0,
                    0,
                    b"su",
                )
                .push(
                    tar::EntryType::Regular,
                    "./usr/bin/chage",
                    "",
                    0o2755,
                    0,
                    42,
                    b"chage",
                )
                .symlink("./usr/bin/alias", "tool")
                .hard_link("./usr/bin/tool2", "./usr/bin/tool")
                .dir("./var/", 0o755)
                .push(
                    tar::EntryType::Directory,
                    "./var/mail/",
                    "",
                    0o2775,
                    0,
                    8,
                    b"",
                )
                // No `./usr/share/` entry: tar creates missing folders itself.
                .dir("./usr/share/doc/demo/", 0o755)
                .file("./usr/share/doc/demo/copyright", 0o644, b"free")
                .finish();
            let deb = write_deb(dir.path(), "demo", &data, z);
            let options = ExtractOptions {
                preserve_owners: root_user,
                oci_whiteouts: false,
            };
            let summary = unpack(&deb, &root, &options).unwrap();
            assert_eq!(
                summary,
                ExtractSummary {
                    files: 4,
                    bytes: 20 + 2 + 5 + 4,
                    dirs: 6,
                    symlinks: 1,
                    hard_links: 1,
                    kept_dir_symlinks: 0,
                    ignored_xattrs: Vec::new(),
                    skipped_special: 0,
                },
                "{z:?}"
            );

            let bin = root.join("usr/bin");
            assert_eq!(
                std::fs::read(bin.join("tool")).unwrap(),
                b"#!/bin/sh\necho tool\n"
            );
            assert_eq!(
                std::fs::read_link(bin.join("alias")).unwrap(),
                Path::new("tool")
            );
            let tool = std::fs::metadata(bin.join("tool")).unwrap();
            let tool2 = std::fs::metadata(bin.join("tool2")).unwrap();
            assert_eq!((tool.ino(), tool.nlink()), (tool2.ino(), 2));
            assert_eq!(mode(&bin.join("tool")), 0o755);
            assert_eq!(mode(&root.join("usr/share/doc/demo/copyright")), 0o644);
            assert_eq!(mode(&root.join("usr/share")), 0o755);
            assert_eq!(mode(&root), 0o755);
            // Folder times are set after their contents are written.
            for path in [
                "",
                "usr",
                "usr/bin",
                "usr/bin/tool",
                "usr/bin/alias",
                "var/mail",
            ] {
                assert_eq!(mtime(&root.join(path)), MTIME as i64, "{path}");
            }

            if root_user {
                assert_eq!(mode(&bin.join("su")), 0o4755);
                assert_eq!(mode(&bin.join("chage")), 0o2755);
                assert_eq!(mode(&root.join("var/mail")), 0o2775);
                let chage = std::fs::metadata(bin.join("chage")).unwrap();
                assert_eq!((chage.uid(), chage.gid()), (0, 42));
                let mail = std::fs::metadata(root.join("var/mail")).unwrap();
                assert_eq!((mail.uid(), mail.gid()), (0, 8));
            } else {
                skip("not root: owners and setuid/setgid bits of extracted files are not checked");
            }
        }
    }

    /// Real `.deb`s from the machine's caches, or downloaded with `apt-get download` when
    /// `ENVKIT_MUST_WORK=1`; bash and coreutils when present.
    fn real_debs(work: &Path) -> Result<Vec<PathBuf>, String> {
        let cache = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache/envkit/debs"))
            .unwrap_or_else(|| PathBuf::from("/root/.cache/envkit/debs"));
        for folder in [cache.as_path(), Path::new("/var/cache/apt/archives")] {
            let Ok(entries) = std::fs::read_dir(folder) else {
                continue;
            };
            let mut debs: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
                .collect();
            debs.sort();
            let wanted: Vec<PathBuf> = debs
                .iter()
                .filter(|path| {
                    let name = path.file_name().unwrap().to_string_lossy();
                    name.starts_with("bash_") || name.starts_with("coreutils_")
                })
                .cloned()
                .collect();
            if !wanted.is_empty() {
                return Ok(wanted);
            }
            if !debs.is_empty() {
                debs.truncate(2);
                return Ok(debs);
            }
        }
        if !must_work() {
            return Err("no `.deb` in the envkit or apt caches (with ENVKIT_MUST_WORK=1 the test downloads bash and coreutils)".into());
        }
        // apt downloads as `_apt` when that user can write the folder, and warns otherwise.
        std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o777)).unwrap();
        let status = Command::new("apt-get")
            .args(["download", "bash", "coreutils"])
            .current_dir(work)
            .status()
            .map_err(|error| format!("cannot run `apt-get download`: {error}"))?;
        if !status.success() {
            return Err(format!(
                "`apt-get download bash coreutils` failed: {status}"
            ));
        }
        let mut debs: Vec<PathBuf> = std::fs::read_dir(work)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
            .collect();
        debs.sort();
        Ok(debs)
    }

    /// `ls -l`'s type and permission letters, as `dpkg-deb -c` prints them.
    fn letters(metadata: &std::fs::Metadata) -> String {
        let mode = metadata.permissions().mode();
        let kind = if metadata.is_dir() {
            'd'
        } else if metadata.is_symlink() {
            'l'
        } else {
            '-'
        };
        let bit = |mask: u32, letter: char| if mode & mask != 0 { letter } else { '-' };
        let special = |exec: u32, special: u32, set: char, unset: char| match (
            mode & exec != 0,
            mode & special != 0,
        ) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        };
        [
            kind,
            bit(0o400, 'r'),
            bit(0o200, 'w'),
            special(0o100, 0o4000, 's', 'S'),
            bit(0o040, 'r'),
            bit(0o020, 'w'),
            special(0o010, 0o2000, 's', 'S'),
            bit(0o004, 'r'),
            bit(0o002, 'w'),
            special(0o001, 0o1000, 't', 'T'),
        ]
        .iter()
        .collect()
    }

    /// One line of `dpkg-deb -c`: letters, path without `./` or a trailing `/`, and the
    /// symlink or hard link target.
    struct Listed {
        letters: String,
        link: Option<String>,
        hard_link: Option<String>,
    }

    fn dpkg_deb_list(deb: &Path) -> BTreeMap<String, Listed> {
        let output = Command::new("dpkg-deb")
            .arg("-c")
            .arg(deb)
            .output()
            .unwrap();
        assert!(output.status.success(), "dpkg-deb -c {}", deb.display());
        let text = String::from_utf8(output.stdout).unwrap();
        let mut listed = BTreeMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.splitn(6, char::is_whitespace).collect();
            let letters = fields[0].to_owned();
            // The name starts after the time column, at the first `./`.
            let name = &line[line.find(" ./").unwrap() + 1..];
            let (name, link, hard_link) = if let Some((name, target)) = name.split_once(" -> ") {
                (name, Some(target.to_owned()), None)
            } else if let Some((name, target)) = name.split_once(" link to ") {
                (name, None, Some(target.trim_start_matches("./").to_owned()))
            } else {
                (name, None, None)
            };
            let path = name
                .trim_start_matches("./")
                .trim_end_matches('/')
                .to_owned();
            listed.insert(
                path,
                Listed {
                    letters,
                    link,
                    hard_link,
                },
            );
        }
        listed
    }

    fn tree(root: &Path, under: &Path, into: &mut Vec<String>) {
        for entry in std::fs::read_dir(under).unwrap() {
            let path = entry.unwrap().path();
            into.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if std::fs::symlink_metadata(&path).unwrap().is_dir() {
                tree(root, &path, into);
            }
        }
    }

    #[test]
    fn extracts_real_packages_as_dpkg_deb_does() {
        let work = tempdir();
        let debs = match real_debs(work.path()) {
            Ok(debs) => debs,
            Err(reason) => return skip(&reason),
        };
        if Command::new("dpkg-deb").arg("--version").output().is_err() {
            return skip("`dpkg-deb` is not installed to compare with");
        }
        let root_user = is_root(work.path());
        let options = ExtractOptions {
            preserve_owners: root_user,
            oci_whiteouts: false,
        };
        for deb_path in &debs {
            let name = deb_path.file_name().unwrap().to_string_lossy().into_owned();
            let ours = work.path().join(format!("ours-{name}"));
            let theirs = work.path().join(format!("theirs-{name}"));
            std::fs::create_dir(&ours).unwrap();
            let deb = Deb::open(deb_path, &name).unwrap();
            let control = deb.control_fields().unwrap();
            assert!(name.starts_with(&format!("{}_", control.package)), "{name}");
            unpack(&deb, &ours, &options).unwrap();
            let status = Command::new("dpkg-deb")
                .arg("-x")
                .arg(deb_path)
                .arg(&theirs)
                .status()
                .unwrap();
            assert!(status.success());

            let listed = dpkg_deb_list(deb_path);
            let mut found = Vec::new();
            tree(&ours, &ours, &mut found);
            found.sort();
            let expected: Vec<String> = listed.keys().filter(|p| !p.is_empty()).cloned().collect();
            assert_eq!(found, expected, "{name}");

            for (path, entry) in &listed {
                let mine = ours.join(path);
                let reference = theirs.join(path);
                let metadata = std::fs::symlink_metadata(&mine).unwrap();
                let other = std::fs::symlink_metadata(&reference).unwrap();
                let mut wanted = entry.letters.clone();
                if wanted.starts_with('h') {
                    wanted.replace_range(..1, "-");
                }
                assert_eq!(letters(&metadata), wanted, "{name}: {path}");
                // `dpkg-deb -x` leaves folders with the time of extraction.
                if !metadata.is_dir() {
                    assert_eq!(metadata.mtime(), other.mtime(), "{name}: {path}");
                }
                if root_user {
                    assert_eq!((metadata.uid(), metadata.gid()), (other.uid(), other.gid()));
                }
                if let Some(target) = &entry.link {
                    assert_eq!(std::fs::read_link(&mine).unwrap(), Path::new(target));
                } else if let Some(target) = &entry.hard_link {
                    let target = std::fs::metadata(ours.join(target)).unwrap();
                    assert_eq!(metadata.ino(), target.ino(), "{name}: {path}");
                } else if metadata.is_file() {
                    assert!(
                        std::fs::read(&mine).unwrap() == std::fs::read(&reference).unwrap(),
                        "{name}: {path} differs"
                    );
                }
            }
        }

        // All of them into one merged-/usr root, as the build does.
        let merged = work.path().join("merged");
        for sub in ["bin", "sbin", "lib", "lib64"] {
            std::fs::create_dir_all(merged.join("usr").join(sub)).unwrap();
            std::os::unix::fs::symlink(format!("usr/{sub}"), merged.join(sub)).unwrap();
        }
        let started = Instant::now();
        let mut files = 0;
        let mut bytes = 0;
        for deb_path in &debs {
            let name = deb_path.file_name().unwrap().to_string_lossy().into_owned();
            let summary = unpack(&Deb::open(deb_path, &name).unwrap(), &merged, &options).unwrap();
            files += summary.files;
            bytes += summary.bytes;
        }
        eprintln!(
            "extracted {} packages ({files} files, {bytes} bytes) into a merged-/usr root in {:?}",
            debs.len(),
            started.elapsed()
        );
        for sub in ["bin", "sbin", "lib", "lib64"] {
            let metadata = std::fs::symlink_metadata(merged.join(sub)).unwrap();
            assert!(metadata.is_symlink(), "{sub} was replaced");
        }
        if debs.iter().any(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("bash_")
        }) {
            assert!(merged.join("usr/bin/bash").is_file());
        }
    }
}
