//! Running a program inside a root folder, in namespaces of its own: the sandbox that build
//! uses to run an image's `dpkg`, and that run uses for sessions and peers.
//!
//! The sequence, in the child created by `clone` with new mount, pid, uts and ipc namespaces
//! (and net for `Network::None`), so that the program becomes pid 1 of its namespace:
//! 1. make every mount private, so nothing done here propagates to the host;
//! 2. bind the root onto itself (pivot_root needs a mount point);
//! 3. fresh `/proc`; a minimal `/dev` (a tmpfs with the host's null, zero, full, random,
//!    urandom and tty bound in, a new devpts instance, `/dev/shm`);
//! 4. the requested binds (read-only when asked) and tmpfs mounts;
//! 5. the host name; pivot_root into the root and detach the old one, so nothing of the host
//!    stays reachable;
//! 6. stay as pid 1, an init that forwards signals and reaps orphans, and fork the program:
//!    it becomes who it should be (root with every capability for builds, root with a bounded
//!    set or the invoking user for sessions) and execs with exactly the environment given.
//!
//! Everything the child needs is prepared before `clone`: the parent may have other threads,
//! and a cloned child of a threaded process must not allocate. A failing step writes its
//! message into a close-on-exec pipe; the parent reads end-of-file when exec succeeded.
//!
//! The caller is root: real root, or inner root of envkit's user namespace
//! ([`super::userns`]), which is how an unprivileged user builds and runs. Overlays are
//! mounted with `userxattr` so the store's layers mean the same in both.
//!
//! The parts, each with one job:
//! - `plan`: a [`SandboxSpec`] worked out into a [`Plan`], plain values only (the mount
//!   steps, links, namespaces, the program's candidates), so tests check it without root;
//! - `prepared`: the plan turned into what the child uses without allocating (C strings,
//!   exec's pointer arrays) and completed from the system (a bind's target kind);
//! - `setup`: in the child, carrying out the prepared mounts and links, the host name,
//!   loopback, and pivot_root;
//! - `signals`: forwarding signals from envkit to the init and from the init to the program;
//! - `init`: clone with the init: starting the child, the gate, reaping, the failure report;
//! - `program`: the program's side after the init forks it: terminal, identity, exec;
//! - `syncs`: the seccomp filter that turns syncs into no-ops for build steps.

mod init;
mod plan;
mod prepared;
mod program;
mod setup;
mod signals;
mod syncs;

use std::path::PathBuf;

pub use init::{run, run_with};
pub use plan::{Create, MountStep, Plan, plan};
#[cfg(test)]
pub(in crate::kernel) use setup::loopback_up;
pub use signals::catch_signals;

/// A host path bound into the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub source: PathBuf,
    /// Absolute path inside the root.
    pub target: String,
    pub readonly: bool,
}

/// Which network the program sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxNetwork {
    /// The host's (downloads during `setup`, dev servers).
    Host,
    /// A network namespace of its own with only loopback, up.
    None,
}

/// An overlay mounted as the root: read-only layers below, a writable upper folder above
/// that receives every change (a new layer, or a session's throw-away state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlay {
    /// Lower layers, top first.
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    /// Overlayfs's scratch folder, on the same file system as `upper`.
    pub work: PathBuf,
}

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    /// The folder that becomes `/` (an empty folder when `overlay` is set).
    pub root: PathBuf,
    /// Mount this overlay at `root` first.
    pub overlay: Option<Overlay>,
    pub binds: Vec<Bind>,
    /// Absolute paths inside the root that get an empty tmpfs.
    pub tmpfs: Vec<String>,
    pub hostname: String,
    pub network: SandboxNetwork,
    /// The complete environment of the program.
    pub environment: Vec<(String, String)>,
    /// Where the program starts, inside the root.
    pub workdir: String,
    /// The program and its arguments; a name without `/` is looked up in the environment's
    /// `PATH` inside the root.
    pub argv: Vec<String>,
    /// Send the program's stdout and stderr to this host file (appending) instead of ours.
    pub log: Option<PathBuf>,
    /// Who the program runs as.
    pub run_as: RunAs,
    /// Give the program this terminal (a pty's replica) as its controlling terminal and stdio.
    pub terminal: Option<std::os::fd::RawFd>,
    /// While waiting, pass SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 sent to envkit
    /// on to the program instead of dying of them.
    pub forward_signals: bool,
    /// Make `fsync` and its relatives no-ops for the program (build steps: the store syncs
    /// once before publishing).
    pub discard_syncs: bool,
    /// A service (a peer): forwarded signals reach every process of the sandbox, not only the
    /// program, and the sandbox lasts until the last of them has ended, so a service started
    /// by a shell line (`a && b`) is stopped as gently as one run directly.
    pub service: bool,
}

/// Who the program runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunAs {
    /// Root with every capability of the namespace: a build step installing packages.
    Builder,
    /// Root in a session: capabilities bounded to a container's usual set, no new privileges.
    Root,
    /// The invoking user: no capabilities, no new privileges.
    User { uid: u32, gid: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("the sandbox must be started by root or inside envkit's user namespace")]
    NotRoot,
    /// The program could not be executed (not found, not executable).
    #[error("{0}")]
    NotRunnable(String),
    #[error("`{0}` contains a NUL byte")]
    Nul(String),
    #[error("cannot start the sandbox")]
    Start(#[source] std::io::Error),
    #[error("cannot set up the sandbox: {0}")]
    Setup(String),
}

/// How the program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    /// As a shell reports it: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(code) => code,
            Exit::Signal(signal) => 128 + signal,
        }
    }
}

/// The result of a function that returns only on failure (the child's side, which execs or
/// exits).
enum Never {}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// A root that borrows the host's programs read-only, enough for `sh`.
    fn host_program_root() -> Option<(tempfile::TempDir, SandboxSpec)> {
        let must_work = std::env::var("ENVKIT_MUST_WORK").is_ok_and(|v| v == "1");
        if !nix::unistd::geteuid().is_root() {
            assert!(
                !must_work,
                "ENVKIT_MUST_WORK=1 but the sandbox tests need root"
            );
            eprintln!("skipped: the sandbox tests need root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        for link in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{link}"), dir.path().join(link)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let spec = SandboxSpec {
            binds: vec![Bind {
                source: "/usr".into(),
                target: "/usr".into(),
                readonly: true,
            }],
            tmpfs: vec!["/tmp".into()],
            hostname: "sandboxed".into(),
            network: SandboxNetwork::Host,
            environment: vec![("PATH".into(), "/usr/bin:/bin".into())],
            ..bare_spec(dir.path())
        };
        Some((dir, spec))
    }

    /// A sandbox of `root` with nothing added: no mounts, no network, no environment.
    pub(super) fn bare_spec(root: &Path) -> SandboxSpec {
        SandboxSpec {
            root: root.to_path_buf(),
            overlay: None,
            binds: vec![],
            tmpfs: vec![],
            hostname: "sandboxed".into(),
            network: SandboxNetwork::None,
            environment: vec![],
            workdir: "/".into(),
            argv: vec![],
            log: None,
            run_as: RunAs::Builder,
            terminal: None,
            forward_signals: false,
            discard_syncs: false,
            service: false,
        }
    }

    fn sh(spec: &SandboxSpec, script: &str) -> Result<Exit, SandboxError> {
        let mut spec = spec.clone();
        spec.argv = vec!["sh".into(), "-c".into(), script.into()];
        run(&spec)
    }

    #[test]
    fn the_program_is_pid_1_in_its_own_root() {
        let Some((dir, spec)) = host_program_root() else {
            return;
        };
        let out = dir.path().join("tmp-out");
        let mut spec = spec;
        spec.binds.push(Bind {
            source: dir.path().to_path_buf(),
            target: "/out".into(),
            readonly: false,
        });
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        let status = sh(&spec, "echo $PPID > /out/tmp-out; hostname >> /out/tmp-out; ls /dev >> /out/tmp-out; test ! -e /root && test ! -e /home && test ! -e /etc/passwd").unwrap();
        assert_eq!(status, Exit::Code(0));
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("1"), "the init is pid 1: {text}");
        assert_eq!(lines.next(), Some("sandboxed"));
        for device in ["null", "urandom", "pts", "shm", "ptmx", "fd"] {
            assert!(
                text.lines().any(|l| l == device),
                "{device} in /dev: {text}"
            );
        }
    }

    #[test]
    fn exit_codes_and_signal_deaths_come_back() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        assert_eq!(sh(&spec, "exit 7").unwrap(), Exit::Code(7));
        // The program is not the namespace's init, so it dies of signals as anywhere else,
        // and the init reports that as a shell would.
        assert_eq!(sh(&spec, "kill -TERM $$; exit 3").unwrap(), Exit::Code(143));
        assert_eq!(Exit::Signal(15).code(), 143);
    }

    #[test]
    fn the_init_reaps_orphans_and_the_program_is_not_pid_1() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        // An orphan left behind does not keep the session open.
        assert_eq!(
            sh(&spec, "test $$ != 1 && (sleep 30 &) && exit 4").unwrap(),
            Exit::Code(4)
        );
    }

    #[test]
    fn read_only_binds_refuse_writes_and_devices_work() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        assert_eq!(
            sh(&spec, "touch /usr/envkit-test 2>/dev/null").unwrap(),
            Exit::Code(1)
        );
        assert_eq!(
            sh(
                &spec,
                "head -c 16 /dev/urandom > /dev/null && echo ok > /tmp/x && test -s /tmp/x"
            )
            .unwrap(),
            Exit::Code(0)
        );
    }

    #[test]
    fn output_can_go_to_a_log() {
        let Some((dir, spec)) = host_program_root() else {
            return;
        };
        let mut spec = spec;
        let log = dir.path().join("../sandbox-test.log");
        spec.log = Some(log.clone());
        assert_eq!(sh(&spec, "echo out; echo err >&2").unwrap(), Exit::Code(0));
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "out\nerr\n");
        std::fs::remove_file(&log).unwrap();
    }

    #[test]
    fn an_overlay_root_collects_changes_in_its_upper_folder() {
        let Some((dir, spec)) = host_program_root() else {
            return;
        };
        let scratch = tempfile::tempdir().unwrap();
        let (upper, work, merged) = (
            scratch.path().join("upper"),
            scratch.path().join("work"),
            scratch.path().join("merged"),
        );
        for d in [&upper, &work, &merged] {
            std::fs::create_dir(d).unwrap();
        }
        std::fs::write(dir.path().join("etc/kept"), "lower").unwrap();
        let mut spec = spec;
        spec.root = merged.clone();
        spec.overlay = Some(Overlay {
            lowers: vec![dir.path().to_path_buf()],
            upper: upper.clone(),
            work,
        });
        assert_eq!(
            sh(
                &spec,
                "test \"$(cat /etc/kept)\" = lower && echo new > /etc/added"
            )
            .unwrap(),
            Exit::Code(0)
        );
        assert_eq!(
            std::fs::read_to_string(upper.join("etc/added")).unwrap(),
            "new\n"
        );
        assert!(
            !dir.path().join("etc/added").exists(),
            "the lower layer is untouched"
        );
        assert!(!upper.join("etc/kept").exists());
    }

    #[test]
    fn build_steps_can_have_syncs_discarded() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        let mut spec = spec;
        spec.discard_syncs = true;
        // The filter is in place, syncs succeed, everything else works as before.
        let script = "grep -q '^Seccomp:[[:space:]]*2' /proc/self/status \
            && echo data > /tmp/f && sync /tmp/f && sync && test \"$(cat /tmp/f)\" = data \
            && python3 -c 'import os; fd = os.open(\"/tmp/g\", os.O_CREAT | os.O_WRONLY); os.write(fd, b\"x\"); os.fsync(fd); os.fdatasync(fd)'";
        assert_eq!(sh(&spec, script).unwrap(), Exit::Code(0));
        spec.discard_syncs = false;
        assert_eq!(
            sh(&spec, "grep -q '^Seccomp:[[:space:]]*0' /proc/self/status").unwrap(),
            Exit::Code(0)
        );
    }

    #[test]
    fn a_missing_program_is_reported() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        let mut spec = spec;
        spec.argv = vec!["no-such-program".into()];
        let error = run(&spec).unwrap_err();
        assert!(matches!(error, SandboxError::NotRunnable(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "cannot run `no-such-program`: No such file or directory"
        );
    }

    #[test]
    fn no_network_leaves_only_loopback() {
        let Some((_dir, spec)) = host_program_root() else {
            return;
        };
        let mut spec = spec;
        spec.network = SandboxNetwork::None;
        assert_eq!(sh(&spec, "test \"$(ls /sys/class/net 2>/dev/null | wc -l)\" -le 1 && ! grep -qv -e lo: -e Inter -e face /proc/net/dev").unwrap(), Exit::Code(0));
        // Loopback is up: a server and a client inside can talk.
        let talk = "python3 -c 'import socket; s = socket.socket(); s.bind((\"127.0.0.1\", 0)); s.listen(); c = socket.create_connection(s.getsockname()); print(\"ok\")'";
        assert_eq!(sh(&spec, talk).unwrap(), Exit::Code(0));
    }
}
