//! A sandbox's plan: everything the child of `clone` does, worked out from a [`SandboxSpec`]
//! by a pure function into plain values (no C strings, no file read), so that a test can
//! check every mount step without root. Preparing the plan for a child that may not allocate,
//! and carrying it out, are the jobs of `prepared` and `setup`.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use super::{Overlay, RunAs, SandboxError, SandboxNetwork, SandboxSpec};

/// One mount the child performs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountStep {
    /// A host path to bind, or the name `mount` shows for a file system (`proc`, `tmpfs`).
    pub source: Option<PathBuf>,
    /// Where, as seen from the host (under the root, before pivot_root).
    pub target: PathBuf,
    pub fstype: Option<&'static str>,
    pub flags: MsFlags,
    /// The file system's options.
    pub data: Option<String>,
    /// What the child creates at the target first.
    pub create: Create,
    /// Remount read-only after a bind.
    pub readonly: bool,
    /// Shown if the step fails ("cannot <what>: <errno>").
    pub what: String,
    /// Shown if making it read-only fails.
    pub readonly_what: String,
}

/// What the child creates at a mount's target before mounting: a mount needs an existing
/// target, and a bind's must be of its source's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Folder,
    /// An empty file (a device node bound in).
    File,
    /// A folder or an empty file, as the bind's source is: decided when the plan is prepared,
    /// since finding out reads the disk.
    LikeSource,
}

/// Everything the sandbox's child does, in order: the namespaces it is cloned with, the mounts
/// and links it makes, then the program it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The namespaces `clone` creates.
    pub namespaces: CloneFlags,
    /// The folder that becomes `/`.
    pub root: PathBuf,
    pub mounts: Vec<MountStep>,
    /// Symbolic links made after the mounts: what each points to, and the link as seen from
    /// the host.
    pub symlinks: Vec<(String, PathBuf)>,
    pub hostname: String,
    /// Bring up `lo` in the sandbox's own network namespace.
    pub loopback_up: bool,
    /// Where the program starts, inside the root.
    pub workdir: String,
    /// Absolute candidates for the program, in `PATH` order.
    pub programs: Vec<String>,
    pub argv: Vec<String>,
    /// The program's whole environment, as `NAME=value`.
    pub environment: Vec<String>,
    pub run_as: RunAs,
    pub terminal: Option<RawFd>,
    pub discard_syncs: bool,
    pub service: bool,
}

/// The host device nodes a sandbox gets.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// The links `/dev` has on any system, to `/proc`'s views of the process and to the devpts
/// instance's own `ptmx`.
const DEV_LINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "dev/fd"),
    ("/proc/self/fd/0", "dev/stdin"),
    ("/proc/self/fd/1", "dev/stdout"),
    ("/proc/self/fd/2", "dev/stderr"),
    ("pts/ptmx", "dev/ptmx"),
];

/// Where a program name without `/` is looked up when the environment has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The kernel copies mount options from one page; longer ones fail with a bare EINVAL.
const MOUNT_OPTIONS_LIMIT: usize = 4096;

/// Works `spec` out into the steps the sandbox takes; fails for a spec the kernel would refuse
/// (too many layers for one overlay) or that has nothing to run.
pub fn plan(spec: &SandboxSpec) -> Result<Plan, SandboxError> {
    let root = &spec.root;
    let inside = |path: &str| root.join(path.trim_start_matches('/'));
    let mut mounts = vec![MountStep {
        source: None,
        target: PathBuf::from("/"),
        fstype: None,
        flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        data: None,
        create: Create::Nothing,
        readonly: false,
        what: "make mounts private".into(),
        readonly_what: String::new(),
    }];
    if let Some(overlay) = &spec.overlay {
        mounts.push(overlay_root(root, overlay)?);
    }
    mounts.push(bind(
        root,
        root.clone(),
        Create::Nothing,
        false,
        "bind the root".into(),
    ));
    mounts.push(file_system(
        "proc",
        inside("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
        "mount /proc".into(),
    ));
    mounts.push(file_system(
        "tmpfs",
        inside("dev"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
        "mount /dev".into(),
    ));
    for device in DEVICES {
        let mut step = bind(
            Path::new(&format!("/dev/{device}")),
            inside(&format!("dev/{device}")),
            Create::File,
            false,
            format!("bind /dev/{device}"),
        );
        // Device nodes have nothing below them to bind along.
        step.flags = MsFlags::MS_BIND;
        mounts.push(step);
    }
    mounts.push(file_system(
        "devpts",
        inside("dev/pts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=620"),
        "mount /dev/pts".into(),
    ));
    for path in std::iter::once("/dev/shm").chain(spec.tmpfs.iter().map(String::as_str)) {
        mounts.push(file_system(
            "tmpfs",
            inside(path),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
            format!("mount a tmpfs at {path}"),
        ));
    }
    for host in &spec.binds {
        let mut step = bind(
            &host.source,
            inside(&host.target),
            Create::LikeSource,
            host.readonly,
            format!("bind {} at {}", host.source.display(), host.target),
        );
        step.readonly_what = format!("make {} read-only", host.target);
        mounts.push(step);
    }
    let symlinks = DEV_LINKS
        .iter()
        .map(|(target, link)| (target.to_string(), inside(link)))
        .collect();
    let program = spec
        .argv
        .first()
        .ok_or_else(|| SandboxError::Setup("no program to run".into()))?;
    let mut namespaces = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network == SandboxNetwork::None {
        namespaces |= CloneFlags::CLONE_NEWNET;
    }
    Ok(Plan {
        namespaces,
        root: root.clone(),
        mounts,
        symlinks,
        hostname: spec.hostname.clone(),
        loopback_up: spec.network == SandboxNetwork::None,
        workdir: spec.workdir.clone(),
        programs: candidates(program, &spec.environment),
        argv: spec.argv.clone(),
        environment: spec
            .environment
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect(),
        run_as: spec.run_as,
        terminal: spec.terminal,
        discard_syncs: spec.discard_syncs,
        service: spec.service,
    })
}

/// The overlay mounted at the root.
fn overlay_root(root: &Path, overlay: &Overlay) -> Result<MountStep, SandboxError> {
    let lowers: Vec<String> = overlay
        .lowers
        .iter()
        .map(|l| l.to_string_lossy().into_owned())
        .collect();
    // No redirects and no metacopy: every changed file is whole in the upper folder, so
    // the upper folder is a complete layer on its own.
    // userxattr: the bookkeeping (opaque folders) lives in `user.overlay.*`, which works
    // inside a user namespace; it asks for redirect_dir=nofollow.
    let options = format!(
        "lowerdir={},upperdir={},workdir={},userxattr,redirect_dir=nofollow,metacopy=off,index=off",
        lowers.join(":"),
        overlay.upper.display(),
        overlay.work.display()
    );
    if options.len() >= MOUNT_OPTIONS_LIMIT {
        return Err(SandboxError::Setup(format!(
            "{} layers are too many for one overlay mount: their folders' names take {} bytes \
             of the 4095 the kernel allows (a shorter store path, set by ENVKIT_STORE_DIR, or \
             fewer setup steps helps; packages take at most 16 layers)",
            lowers.len(),
            options.len()
        )));
    }
    let mut step = file_system(
        "overlay",
        root.to_path_buf(),
        MsFlags::empty(),
        Some(&options),
        "mount the overlay root".into(),
    );
    // The root exists: it is the folder the sandbox was asked to use.
    step.create = Create::Nothing;
    Ok(step)
}

/// A fresh instance of the file system `fstype` at `target`, in a folder made for it.
fn file_system(
    fstype: &'static str,
    target: PathBuf,
    flags: MsFlags,
    data: Option<&str>,
    what: String,
) -> MountStep {
    MountStep {
        source: Some(PathBuf::from(fstype)),
        target,
        fstype: Some(fstype),
        flags,
        data: data.map(str::to_string),
        create: Create::Folder,
        readonly: false,
        what,
        readonly_what: String::new(),
    }
}

/// `source` bound at `target` with everything mounted below it.
fn bind(source: &Path, target: PathBuf, create: Create, readonly: bool, what: String) -> MountStep {
    MountStep {
        source: Some(source.to_path_buf()),
        target,
        fstype: None,
        flags: MsFlags::MS_BIND | MsFlags::MS_REC,
        data: None,
        create,
        readonly,
        what,
        readonly_what: String::new(),
    }
}

/// Where `program` may be: itself when it names a path, else each folder of the environment's
/// `PATH` in order, as the shell looks it up.
fn candidates(program: &str, environment: &[(String, String)]) -> Vec<String> {
    if program.contains('/') {
        return vec![program.to_string()];
    }
    let path_variable = environment
        .iter()
        .find(|(name, _)| name == "PATH")
        .map_or(DEFAULT_PATH, |(_, value)| value.as_str());
    path_variable
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| format!("{dir}/{program}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::bare_spec;
    use super::super::{Bind, Overlay};
    use super::*;

    /// `spec` with `argv` to run, planned; for specs that must plan.
    fn planned(spec: SandboxSpec) -> Plan {
        let spec = SandboxSpec {
            argv: vec!["sh".into()],
            ..spec
        };
        match plan(&spec) {
            Ok(plan) => plan,
            Err(error) => panic!("{spec:?} does not plan: {error}"),
        }
    }

    fn step<'a>(plan: &'a Plan, what: &str) -> &'a MountStep {
        plan.mounts
            .iter()
            .find(|s| s.what == what)
            .unwrap_or_else(|| panic!("no step `{what}` in {:#?}", plan.mounts))
    }

    fn order(plan: &Plan) -> Vec<&str> {
        plan.mounts.iter().map(|s| s.what.as_str()).collect()
    }

    #[test]
    fn a_bare_root_gets_proc_and_a_minimal_dev_of_its_own() {
        let plan = planned(bare_spec(Path::new("/r")));
        assert_eq!(
            order(&plan),
            [
                "make mounts private",
                "bind the root",
                "mount /proc",
                "mount /dev",
                "bind /dev/null",
                "bind /dev/zero",
                "bind /dev/full",
                "bind /dev/random",
                "bind /dev/urandom",
                "bind /dev/tty",
                "mount /dev/pts",
                "mount a tmpfs at /dev/shm",
            ]
        );
        assert_eq!(
            plan.mounts[0],
            MountStep {
                source: None,
                target: "/".into(),
                fstype: None,
                flags: MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                data: None,
                create: Create::Nothing,
                readonly: false,
                what: "make mounts private".into(),
                readonly_what: String::new(),
            }
        );
        let root = step(&plan, "bind the root");
        assert_eq!(
            (&root.source, &root.target, root.flags, root.create),
            (
                &Some("/r".into()),
                &"/r".into(),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                Create::Nothing
            )
        );
        assert_eq!(
            step(&plan, "mount /proc"),
            &MountStep {
                source: Some("proc".into()),
                target: "/r/proc".into(),
                fstype: Some("proc"),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                data: None,
                create: Create::Folder,
                readonly: false,
                what: "mount /proc".into(),
                readonly_what: String::new(),
            }
        );
        let dev = step(&plan, "mount /dev");
        assert_eq!(
            (dev.fstype, dev.target.as_path(), dev.data.as_deref()),
            (
                Some("tmpfs"),
                Path::new("/r/dev"),
                Some("mode=755,size=65536k")
            )
        );
        assert_eq!(dev.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        // Devices are bound from the host onto empty files, alone, and stay writable.
        assert_eq!(
            step(&plan, "bind /dev/urandom"),
            &MountStep {
                source: Some("/dev/urandom".into()),
                target: "/r/dev/urandom".into(),
                fstype: None,
                flags: MsFlags::MS_BIND,
                data: None,
                create: Create::File,
                readonly: false,
                what: "bind /dev/urandom".into(),
                readonly_what: String::new(),
            }
        );
        let pts = step(&plan, "mount /dev/pts");
        assert_eq!(
            (pts.fstype, pts.target.as_path(), pts.data.as_deref()),
            (
                Some("devpts"),
                Path::new("/r/dev/pts"),
                Some("newinstance,ptmxmode=0666,mode=620")
            )
        );
        assert_eq!(
            plan.symlinks,
            [
                ("/proc/self/fd".to_string(), PathBuf::from("/r/dev/fd")),
                ("/proc/self/fd/0".into(), "/r/dev/stdin".into()),
                ("/proc/self/fd/1".into(), "/r/dev/stdout".into()),
                ("/proc/self/fd/2".into(), "/r/dev/stderr".into()),
                ("pts/ptmx".into(), "/r/dev/ptmx".into()),
            ]
        );
        assert_eq!(
            (plan.root.as_path(), plan.workdir.as_str()),
            (Path::new("/r"), "/")
        );
    }

    #[test]
    fn an_overlay_root_is_mounted_before_the_root_is_bound() {
        let plan = planned(SandboxSpec {
            overlay: Some(Overlay {
                lowers: vec!["/store/top".into(), "/store/base".into()],
                upper: "/scratch/upper".into(),
                work: "/scratch/work".into(),
            }),
            ..bare_spec(Path::new("/scratch/merged"))
        });
        assert_eq!(
            order(&plan)[..3],
            [
                "make mounts private",
                "mount the overlay root",
                "bind the root"
            ]
        );
        assert_eq!(
            plan.mounts[1],
            MountStep {
                source: Some("overlay".into()),
                target: "/scratch/merged".into(),
                fstype: Some("overlay"),
                flags: MsFlags::empty(),
                data: Some(
                    "lowerdir=/store/top:/store/base,upperdir=/scratch/upper,\
                     workdir=/scratch/work,userxattr,redirect_dir=nofollow,metacopy=off,index=off"
                        .into()
                ),
                create: Create::Nothing,
                readonly: false,
                what: "mount the overlay root".into(),
                readonly_what: String::new(),
            }
        );
        assert_eq!(
            step(&plan, "mount /proc").target,
            Path::new("/scratch/merged/proc")
        );
    }

    #[test]
    fn an_overlay_too_long_for_the_kernel_is_refused_by_name() {
        let lowers: Vec<PathBuf> = (0..40)
            .map(|n| PathBuf::from(format!("/var/lib/envkit/store/layer-xx/{n:064}/tree")))
            .collect();
        let spec = SandboxSpec {
            overlay: Some(Overlay {
                lowers,
                upper: "/tmp/upper".into(),
                work: "/tmp/work".into(),
            }),
            argv: vec!["true".into()],
            ..bare_spec(Path::new("/tmp/root"))
        };
        let Err(error) = plan(&spec) else {
            panic!("40 long lower folders fit in a page");
        };
        assert!(
            error
                .to_string()
                .contains("40 layers are too many for one overlay mount"),
            "{error}"
        );
    }

    #[test]
    fn binds_and_volumes_come_last_read_only_or_writable_as_asked() {
        let plan = planned(SandboxSpec {
            binds: vec![
                Bind {
                    source: "/usr".into(),
                    target: "/usr".into(),
                    readonly: true,
                },
                // A volume: a folder of envkit's data, writable.
                Bind {
                    source: "/var/lib/envkit/volumes/p/db".into(),
                    target: "/var/lib/postgresql".into(),
                    readonly: false,
                },
            ],
            tmpfs: vec!["/tmp".into()],
            ..bare_spec(Path::new("/r"))
        });
        let whats = order(&plan);
        assert_eq!(
            whats[whats.len() - 3..],
            [
                "mount a tmpfs at /tmp",
                "bind /usr at /usr",
                "bind /var/lib/envkit/volumes/p/db at /var/lib/postgresql",
            ]
        );
        assert_eq!(
            step(&plan, "bind /usr at /usr"),
            &MountStep {
                source: Some("/usr".into()),
                target: "/r/usr".into(),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None,
                create: Create::LikeSource,
                readonly: true,
                what: "bind /usr at /usr".into(),
                readonly_what: "make /usr read-only".into(),
            }
        );
        let volume = step(
            &plan,
            "bind /var/lib/envkit/volumes/p/db at /var/lib/postgresql",
        );
        assert_eq!(
            (
                volume.source.as_deref(),
                volume.target.as_path(),
                volume.readonly,
                volume.create
            ),
            (
                Some(Path::new("/var/lib/envkit/volumes/p/db")),
                Path::new("/r/var/lib/postgresql"),
                false,
                Create::LikeSource
            )
        );
    }

    #[test]
    fn a_tmpfs_is_an_empty_world_writable_folder() {
        let plan = planned(SandboxSpec {
            tmpfs: vec!["/tmp".into(), "run".into()],
            ..bare_spec(Path::new("/r"))
        });
        let tmp = step(&plan, "mount a tmpfs at /tmp");
        assert_eq!(
            tmp,
            &MountStep {
                source: Some("tmpfs".into()),
                target: "/r/tmp".into(),
                fstype: Some("tmpfs"),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                data: Some("mode=1777".into()),
                create: Create::Folder,
                readonly: false,
                what: "mount a tmpfs at /tmp".into(),
                readonly_what: String::new(),
            }
        );
        // A path without the leading slash is inside the root all the same.
        assert_eq!(
            step(&plan, "mount a tmpfs at run").target,
            Path::new("/r/run")
        );
        assert_eq!(
            step(&plan, "mount a tmpfs at /dev/shm").data.as_deref(),
            Some("mode=1777")
        );
    }

    #[test]
    fn no_network_is_a_namespace_of_its_own_with_loopback_up() {
        let base = CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
        let private = planned(SandboxSpec {
            network: SandboxNetwork::None,
            ..bare_spec(Path::new("/r"))
        });
        assert_eq!(private.namespaces, base | CloneFlags::CLONE_NEWNET);
        assert!(private.loopback_up);
        let host = planned(SandboxSpec {
            network: SandboxNetwork::Host,
            ..bare_spec(Path::new("/r"))
        });
        assert_eq!(host.namespaces, base);
        assert!(!host.loopback_up);
        // The network changes nothing else.
        assert_eq!(host.mounts, private.mounts);
    }

    #[test]
    fn the_program_is_looked_up_in_the_environments_path() {
        let spec = SandboxSpec {
            argv: vec!["sh".into(), "-c".into(), "true".into()],
            environment: vec![
                ("HOME".into(), "/root".into()),
                ("PATH".into(), "/usr/bin::/bin".into()),
            ],
            hostname: "box".into(),
            workdir: "/src".into(),
            run_as: RunAs::User {
                uid: 1000,
                gid: 1000,
            },
            ..bare_spec(Path::new("/r"))
        };
        let Ok(plan) = plan(&spec) else {
            panic!("{spec:?} plans");
        };
        assert_eq!(plan.programs, ["/usr/bin/sh", "/bin/sh"]);
        assert_eq!(plan.argv, ["sh", "-c", "true"]);
        assert_eq!(plan.environment, ["HOME=/root", "PATH=/usr/bin::/bin"]);
        assert_eq!(
            (plan.hostname.as_str(), plan.workdir.as_str()),
            ("box", "/src")
        );
        assert_eq!(
            plan.run_as,
            RunAs::User {
                uid: 1000,
                gid: 1000
            }
        );
        // No PATH: the usual one; a path: itself only.
        assert_eq!(
            candidates("ls", &[]),
            [
                "/usr/local/sbin/ls",
                "/usr/local/bin/ls",
                "/usr/sbin/ls",
                "/usr/bin/ls",
                "/sbin/ls",
                "/bin/ls"
            ]
        );
        assert_eq!(
            candidates("./configure", &spec.environment),
            ["./configure"]
        );
    }

    #[test]
    fn nothing_to_run_is_refused() {
        let Err(error) = plan(&bare_spec(Path::new("/r"))) else {
            panic!("a spec without argv plans");
        };
        assert_eq!(
            error.to_string(),
            "cannot set up the sandbox: no program to run"
        );
    }
}
