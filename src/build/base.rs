//! The base layer: a Debian root built from the lock's base packages by the image's own dpkg.
//!
//! The recipe measured in `notes/debian-rootfs.md`, as mmdebstrap's minbase does it:
//! 1. a skeleton: dpkg's database folders with an empty status, the architecture, apt's
//!    folders, and the merged-/usr links (`bin`, `sbin`, `lib`, `lib64` -> `usr/...`), which
//!    bookworm's `usr-is-merged` insists on and trixie's base-files ships anyway;
//! 2. the data of the Essential closure extracted (keeping those links), so a shell, libc and
//!    dpkg exist inside;
//! 3. inside the sandbox, one `dpkg --install --force-depends` of the Essential closure (dpkg
//!    does not order by Pre-Depends, hence the force; every file is already there);
//! 4. daemons blocked (`policy-rc.d` exits 101, `start-stop-daemon` stubbed), then the rest of
//!    the base in install batches: a package's Pre-Depends are configured in an earlier call;
//! 5. the build-time changes undone and what differs from run to run removed (logs, caches,
//!    machine-id, `/tmp`, `/run`), `SOURCE_DATE_EPOCH` set throughout so tools write
//!    reproducible data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::kernel::sandbox::{Bind, RunAs, SandboxError, SandboxNetwork, SandboxSpec};
use crate::solve::lockfile::{Layer, Lock, LockedPackage};

use super::download::deb_path;
use super::extract::ExtractOptions;
use super::unpack::{UnpackError, unpack};
use crate::cache::Cache;
use crate::debian::deb::{Deb, DebError};

/// Where the cached `.deb`s appear inside the root while dpkg runs.
const DEBS_INSIDE: &str = "/var/cache/envkit-debs";

#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error("cannot prepare `{}`", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Deb(#[from] DebError),
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error("{what} failed; its output is in `{}`", log.display())]
    Step { what: String, log: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BaseError + '_ {
    move |source| BaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds the base layer of `lock` into `tree` (an empty folder), with `.deb`s from the cache.
pub fn build_base(
    tree: &Path,
    lock: &Lock,
    cache_dir: &Path,
    source_date_epoch: u64,
    log: &Path,
) -> Result<(), BaseError> {
    skeleton(tree, &lock.architecture)?;
    let mut base: Vec<&LockedPackage> = lock.layer(Layer::Base).collect();
    base.sort_by(|a, b| (a.batch, &a.name).cmp(&(b.batch, &b.name)));
    let essential: Vec<&LockedPackage> = base.iter().copied().filter(|p| p.essential).collect();
    let options = ExtractOptions {
        preserve_owners: true,
        oci_whiteouts: false,
    };
    for package in &essential {
        let deb = Deb::open(&deb_path(cache_dir, &package.sha256), &package.name)?;
        unpack(&deb, tree, &options)?;
    }
    let others: Vec<&LockedPackage> = base.iter().copied().filter(|p| !p.essential).collect();
    screen_all(&others, cache_dir)?;
    let dpkg = Dpkg {
        root: tree,
        overlay: None,
        cache_dir,
        source_date_epoch,
        log,
    };
    let run_dpkg =
        |what: &str, args: &[&str], packages: &[&LockedPackage]| dpkg.install(what, args, packages);
    run_dpkg(
        "installing the essential set",
        &["--install", "--force-depends"],
        &essential,
    )?;
    block_daemons(tree)?;
    let mut batches: BTreeMap<u32, Vec<&LockedPackage>> = BTreeMap::new();
    for package in others {
        batches.entry(package.batch).or_default().push(package);
    }
    for (batch, packages) in &batches {
        run_dpkg(
            &format!("installing base batch {batch}"),
            &["--install"],
            packages,
        )?;
    }
    unblock_daemons(tree)?;
    clean(tree)?;
    Ok(())
}

/// Screens (see [`super::unpack::screen`]) the `.deb`s of `packages` the real dpkg is about
/// to unpack, on every core: the first refusal is the error.
pub fn screen_all(packages: &[&LockedPackage], cache_dir: &Path) -> Result<(), BaseError> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let screen_next = || -> Result<(), BaseError> {
        loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some(package) = packages.get(index) else {
                return Ok(());
            };
            let deb = Deb::open(&deb_path(cache_dir, &package.sha256), &package.name)?;
            super::unpack::screen(&deb)?;
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(packages.len()))
            .map(|_| scope.spawn(screen_next))
            .collect();
        // Every worker is joined before the first error is returned; a panic is passed on.
        let outcomes: Vec<Result<(), BaseError>> = handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        outcomes.into_iter().collect()
    })
}

/// Runs the image's own dpkg in the sandbox with the cached `.deb`s visible.
pub struct Dpkg<'a> {
    /// The root (an empty mount point when `overlay` is set).
    pub root: &'a Path,
    pub overlay: Option<crate::kernel::sandbox::Overlay>,
    pub cache_dir: &'a Path,
    pub source_date_epoch: u64,
    pub log: &'a Path,
}

impl Dpkg<'_> {
    /// `dpkg ARGS PACKAGES...`; `what` names the step in the error.
    pub fn install(
        &self,
        what: &str,
        args: &[&str],
        packages: &[&LockedPackage],
    ) -> Result<(), BaseError> {
        // dpkg would fsync every file it unpacks; the store syncs the whole file system once
        // before a layer is published instead (see `store`), which is as durable and far faster.
        let mut argv: Vec<String> = vec!["dpkg".into(), "--force-unsafe-io".into()];
        argv.extend(args.iter().map(|a| a.to_string()));
        argv.extend(
            packages
                .iter()
                .map(|p| format!("{DEBS_INSIDE}/{}.deb", p.sha256)),
        );
        let mut environment = build_environment(self.source_date_epoch);
        for (name, value) in &mut environment {
            if name == "PATH" {
                *value = format!("{PATH_STUBS_INSIDE}:{value}");
            }
        }
        let spec = SandboxSpec {
            root: self.root.to_path_buf(),
            overlay: self.overlay.clone(),
            binds: vec![
                Bind {
                    source: Cache::new(self.cache_dir).debs_dir(),
                    target: DEBS_INSIDE.into(),
                    readonly: true,
                },
                Bind {
                    source: path_stubs(self.cache_dir)?,
                    target: PATH_STUBS_INSIDE.into(),
                    readonly: true,
                },
            ],
            tmpfs: vec![],
            hostname: "envkit-build".into(),
            network: SandboxNetwork::None,
            environment,
            workdir: "/".into(),
            argv,
            log: Some(self.log.to_path_buf()),
            run_as: RunAs::Builder,
            terminal: None,
            forward_signals: false,
            discard_syncs: true,
            service: false,
        };
        match crate::kernel::sandbox::run(&spec)? {
            exit if exit.success() => Ok(()),
            _ => Err(BaseError::Step {
                what: format!("dpkg ({what})"),
                log: self.log.to_path_buf(),
            }),
        }
    }
}

/// The environment dpkg and maintainer scripts run with.
pub fn build_environment(source_date_epoch: u64) -> Vec<(String, String)> {
    [
        (
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
        ),
        ("DEBIAN_FRONTEND", "noninteractive".into()),
        ("DEBCONF_NONINTERACTIVE_SEEN", "true".into()),
        ("LC_ALL", "C.UTF-8".into()),
        ("LANG", "C.UTF-8".into()),
        ("LANGUAGE", "C.UTF-8".into()),
        ("HOME", "/root".into()),
        ("SOURCE_DATE_EPOCH", source_date_epoch.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// What dpkg needs before the first package: merged `/usr`, its database folders, and its
/// native architecture, the lock's (dpkg refuses packages of another).
fn skeleton(tree: &Path, architecture: &str) -> Result<(), BaseError> {
    for link in ["bin", "sbin", "lib", "lib64"] {
        let target = tree.join("usr").join(link);
        std::fs::create_dir_all(&target).map_err(io(&target))?;
        let path = tree.join(link);
        std::os::unix::fs::symlink(format!("usr/{link}"), &path).map_err(io(&path))?;
    }
    for dir in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
        "var/lib/dpkg/alternatives",
        "etc/apt/apt.conf.d",
        "etc/apt/sources.list.d",
        "etc/apt/preferences.d",
        "etc/dpkg/dpkg.cfg.d",
        "var/cache/apt/archives/partial",
        "var/lib/apt/lists/partial",
        "var/log/apt",
        "tmp",
        "dev",
        "proc",
        "sys",
        "root",
    ] {
        let path = tree.join(dir);
        std::fs::create_dir_all(&path).map_err(io(&path))?;
    }
    use std::os::unix::fs::PermissionsExt;
    let tmp = tree.join("tmp");
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).map_err(io(&tmp))?;
    let architecture = format!("{architecture}\n");
    for (file, content) in [
        ("var/lib/dpkg/status", ""),
        ("var/lib/dpkg/arch", architecture.as_str()),
        ("etc/fstab", "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"),
    ] {
        let path = tree.join(file);
        std::fs::write(&path, content).map_err(io(&path))?;
    }
    Ok(())
}

/// Programs replaced while packages install: maintainer scripts must not start services.
pub(crate) const STUBS: &[(&str, &str)] = &[(
    "usr/sbin/start-stop-daemon",
    "#!/bin/sh\necho 'Warning: start-stop-daemon is stubbed during the build' >&2\n",
)];

/// Where the programs found first on dpkg's PATH appear inside the root: an `ischroot` that
/// says yes, so maintainer scripts behave as in any build chroot (libc6's, for one, would
/// otherwise restart init and sleep a second). A PATH entry rather than a replaced file,
/// because the essential set's own install would overwrite a replacement.
const PATH_STUBS_INSIDE: &str = "/var/cache/envkit-stubs";
const PATH_STUBS: &[(&str, &str)] = &[("ischroot", "#!/bin/sh\nexit 0\n")];

/// The host folder holding [`PATH_STUBS`], written once into envkit's cache.
fn path_stubs(cache_dir: &Path) -> Result<PathBuf, BaseError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = Cache::new(cache_dir).stubs_dir();
    for (name, script) in PATH_STUBS {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|bytes| bytes == script.as_bytes()) {
            continue;
        }
        crate::fetch::write_bytes_atomically(&path, script.as_bytes())
            .map_err(|e| std::io::Error::other(e.to_string()))
            .map_err(io(&path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(io(&path))?;
    }
    Ok(dir)
}

/// Maintainer scripts must not start services in a build.
pub(crate) fn block_daemons(tree: &Path) -> Result<(), BaseError> {
    use std::os::unix::fs::PermissionsExt;
    let policy = tree.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n").map_err(io(&policy))?;
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o755))
        .map_err(io(&policy))?;
    for (program, stub) in STUBS {
        let path = tree.join(program);
        if path.exists() {
            let real = tree.join(format!("{program}.REAL"));
            std::fs::rename(&path, &real).map_err(io(&path))?;
            std::fs::write(&path, stub).map_err(io(&path))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&path))?;
        }
    }
    Ok(())
}

pub(crate) fn unblock_daemons(tree: &Path) -> Result<(), BaseError> {
    for (program, _) in STUBS {
        let real = tree.join(format!("{program}.REAL"));
        if real.exists() {
            let path = tree.join(program);
            std::fs::rename(&real, &path).map_err(io(&real))?;
        }
    }
    let policy = tree.join("usr/sbin/policy-rc.d");
    std::fs::remove_file(&policy).map_err(io(&policy))
}

/// Removes what differs from build to build, as mmdebstrap's reproducible cleanup does.
pub(crate) fn clean(tree: &Path) -> Result<(), BaseError> {
    for file in [
        "var/log/dpkg.log",
        "var/log/alternatives.log",
        "var/log/apt/history.log",
        "var/log/apt/term.log",
        "var/log/apt/eipp.log.xz",
        "var/cache/ldconfig/aux-cache",
        "var/lib/dbus/machine-id",
        "var/lib/dpkg/status-old",
        "var/lib/dpkg/available-old",
        "etc/resolv.conf",
        "etc/hostname",
    ] {
        let path = tree.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(BaseError::Io { path, source }),
        }
    }
    let machine_id = tree.join("etc/machine-id");
    if machine_id.exists() {
        std::fs::write(&machine_id, "").map_err(io(&machine_id))?;
    }
    for dir in [
        "tmp",
        "var/cache/apt/archives/partial",
        DEBS_INSIDE.trim_start_matches('/'),
    ] {
        let path = tree.join(dir);
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let target = entry.path();
            let removed = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&target)
            } else {
                std::fs::remove_file(&target)
            };
            removed.map_err(io(&target))?;
        }
    }
    for mount_point in [DEBS_INSIDE, PATH_STUBS_INSIDE] {
        let _ = std::fs::remove_dir(tree.join(mount_point.trim_start_matches('/')));
    }
    for (file, name) in [
        ("var/cache/apt", "pkgcache.bin"),
        ("var/cache/apt", "srcpkgcache.bin"),
    ] {
        let _ = std::fs::remove_file(tree.join(file).join(name));
    }
    Ok(())
}

/// SOURCE_DATE_EPOCH for a lock: the newest signed index date, so the same lock always builds
/// with the same clock.
pub fn source_date_epoch(lock: &Lock) -> u64 {
    lock.indexes
        .iter()
        .filter_map(|i| crate::civil_time::rfc2822_epoch(&i.date))
        .max()
        .unwrap_or(0)
}
