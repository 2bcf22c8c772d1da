//! The layers above the base: each is the upper folder of an overlay whose lower folders are
//! the layers below, so it holds exactly what its step changed (whiteouts included).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::kernel::sandbox::{Bind, Overlay, RunAs, SandboxNetwork, SandboxSpec};
use crate::solve::lockfile::LockedPackage;

use super::base::{BaseError, Dpkg, build_environment, clean};

/// Scratch folders of one overlay step: the mount point and overlayfs's work folder.
pub struct OverlayScratch {
    pub merged: PathBuf,
    pub work: PathBuf,
}

/// Installs one group of the lock's packages layer into `upper`, over `lowers` (top first),
/// which hold the groups below it.
pub fn build_packages(
    upper: &Path,
    scratch: &OverlayScratch,
    lowers: &[PathBuf],
    packages: &[&LockedPackage],
    cache_dir: &Path,
    source_date_epoch: u64,
    log: &Path,
) -> Result<(), BaseError> {
    // The stubs that keep maintainer scripts from starting daemons go straight into the
    // upper folder, so removing them afterwards leaves no trace in the layer.
    super::base::screen_all(packages, cache_dir)?;
    let stubs = Stubs::place(upper, lowers)?;
    let dpkg = Dpkg {
        root: &scratch.merged,
        overlay: Some(Overlay {
            lowers: lowers.to_vec(),
            upper: upper.to_path_buf(),
            work: scratch.work.clone(),
        }),
        cache_dir,
        source_date_epoch,
        log,
    };
    let mut batches: BTreeMap<u32, Vec<&LockedPackage>> = BTreeMap::new();
    for &package in packages {
        batches.entry(package.batch).or_default().push(package);
    }
    for (batch, packages) in &batches {
        dpkg.install(
            &format!("installing packages batch {batch}"),
            &["--install"],
            packages,
        )?;
    }
    stubs.remove()?;
    clean(upper)
}

/// Runs one `setup` step with the network on and the project folder visible read-only at
/// `project_at`, recording its changes in `upper`.
#[allow(clippy::too_many_arguments)]
pub fn build_setup(
    upper: &Path,
    scratch: &OverlayScratch,
    lowers: &[PathBuf],
    command: &str,
    project_dir: &Path,
    project_at: &str,
    source_date_epoch: u64,
    log: &Path,
) -> Result<(), BaseError> {
    let mut binds = vec![Bind {
        source: project_dir.to_path_buf(),
        target: project_at.to_string(),
        readonly: true,
    }];
    if Path::new("/etc/resolv.conf").exists() {
        binds.push(Bind {
            source: "/etc/resolv.conf".into(),
            target: "/etc/resolv.conf".into(),
            readonly: true,
        });
    }
    let spec = SandboxSpec {
        root: scratch.merged.clone(),
        overlay: Some(Overlay {
            lowers: lowers.to_vec(),
            upper: upper.to_path_buf(),
            work: scratch.work.clone(),
        }),
        binds,
        tmpfs: vec!["/tmp".into()],
        hostname: "envkit-build".into(),
        network: SandboxNetwork::Host,
        environment: build_environment(source_date_epoch),
        workdir: project_at.to_string(),
        argv: vec!["/bin/sh".into(), "-c".into(), command.to_string()],
        log: Some(log.to_path_buf()),
        run_as: RunAs::Builder,
        terminal: None,
        forward_signals: false,
        discard_syncs: true,
        service: false,
    };
    let exit = crate::kernel::sandbox::run(&spec)?;
    if !exit.success() {
        return Err(BaseError::Step {
            what: format!("setup step `{command}` (exit {})", exit.code()),
            log: log.to_path_buf(),
        });
    }
    // The mount points made for the binds are not part of the step's result.
    for target in [project_at, "/etc/resolv.conf"] {
        let path = upper.join(target.trim_start_matches('/'));
        if path.is_dir() {
            let _ = std::fs::remove_dir(&path);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    clean(upper)
}

/// `policy-rc.d` and the build's stubs (see `base::STUBS`) in an upper folder, with the
/// folders they need copied from the lower layers' metadata.
struct Stubs {
    files: Vec<PathBuf>,
    created_dirs: Vec<PathBuf>,
}

impl Stubs {
    fn place(upper: &Path, lowers: &[PathBuf]) -> Result<Stubs, BaseError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| BaseError::Io { path, source }
        };
        let mut created_dirs = Vec::new();
        let mut files = Vec::new();
        let stubs = std::iter::once(("usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n"))
            .chain(super::base::STUBS.iter().copied());
        for (program, script) in stubs {
            let relative = Path::new(program);
            let mut dir = upper.to_path_buf();
            for component in relative.parent().into_iter().flat_map(|p| p.components()) {
                dir.push(component);
                if dir.exists() {
                    continue;
                }
                let inside = dir.strip_prefix(upper).unwrap_or(&dir).to_path_buf();
                let lower = lowers.iter().map(|l| l.join(&inside)).find(|p| p.is_dir());
                std::fs::create_dir(&dir).map_err(io(&dir))?;
                if let Some(metadata) = lower.and_then(|l| l.metadata().ok()) {
                    let _ =
                        std::os::unix::fs::chown(&dir, Some(metadata.uid()), Some(metadata.gid()));
                    let _ = std::fs::set_permissions(
                        &dir,
                        std::fs::Permissions::from_mode(metadata.mode() & 0o7777),
                    );
                }
                created_dirs.push(dir.clone());
            }
            let file = upper.join(relative);
            std::fs::write(&file, script).map_err(io(&file))?;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755))
                .map_err(io(&file))?;
            files.push(file);
        }
        Ok(Stubs {
            files,
            created_dirs,
        })
    }

    fn remove(self) -> Result<(), BaseError> {
        for file in &self.files {
            std::fs::remove_file(file).map_err(|source| BaseError::Io {
                path: file.clone(),
                source,
            })?;
        }
        // Folders made only for the stubs go too; ones the packages filled stay.
        for dir in self.created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }
}
