//! Joining another process's namespaces: handles on `/proc/PID/ns/*`, `setns` for the calling
//! thread, and commands started inside a running environment's namespaces.
//!
//! `setns` changes only the calling thread (for the network namespace) or needs a
//! single-threaded caller (for the mount namespace), so the callers here either dedicate a
//! thread to a namespace or join in a child between fork and exec.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::CloneFlags;

/// A kind of namespace a process can be joined in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    Mount,
    Network,
    Uts,
    Ipc,
}

impl Namespace {
    fn proc_name(self) -> &'static str {
        match self {
            Namespace::Mount => "mnt",
            Namespace::Network => "net",
            Namespace::Uts => "uts",
            Namespace::Ipc => "ipc",
        }
    }

    fn flag(self) -> CloneFlags {
        match self {
            Namespace::Mount => CloneFlags::CLONE_NEWNS,
            Namespace::Network => CloneFlags::CLONE_NEWNET,
            Namespace::Uts => CloneFlags::CLONE_NEWUTS,
            Namespace::Ipc => CloneFlags::CLONE_NEWIPC,
        }
    }
}

/// A handle on one namespace of a process, valid after the process ends.
pub fn namespace_of(pid: i32, kind: Namespace) -> std::io::Result<OwnedFd> {
    let file = std::fs::File::open(format!("/proc/{pid}/ns/{}", kind.proc_name()))?;
    Ok(OwnedFd::from(file))
}

/// Moves the calling thread into `namespace`.
pub fn join(namespace: BorrowedFd<'_>, kind: Namespace) -> std::io::Result<()> {
    nix::sched::setns(namespace, kind.flag()).map_err(std::io::Error::from)
}

/// Makes `command` start inside the namespaces of `pid` (in the order given, the mount
/// namespace last so `/proc/PID` is still the host's while the others are opened), in `/`,
/// and die with its parent: a probe must never outlive whoever waits for it.
pub fn run_inside(command: &mut Command, pid: i32, kinds: &[Namespace]) -> std::io::Result<()> {
    let handles: Vec<(OwnedFd, Namespace)> = kinds
        .iter()
        .map(|kind| namespace_of(pid, *kind).map(|fd| (fd, *kind)))
        .collect::<Result<_, _>>()?;
    // SAFETY: between fork and exec the closure calls only prctl, setns and chdir, which are
    // async-signal-safe, and allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)?;
            for (handle, kind) in &handles {
                join(handle.as_fd(), *kind)?;
            }
            nix::unistd::chdir("/").map_err(std::io::Error::from)
        });
    }
    Ok(())
}

/// Makes `command` start a session of its own, so it outlives its starter and does not get
/// the starter's terminal signals (a background supervisor).
pub fn detach(command: &mut Command) {
    // SAFETY: setsid is async-signal-safe.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
}
