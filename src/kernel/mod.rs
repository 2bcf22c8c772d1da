//! The one seam to the kernel: namespaces, mounts, clone, `setns`, terminal `ioctl`s and id
//! maps. Every other module asks for these by value (a sandbox's spec, a namespace kind, a
//! window size) and never makes the system call itself; the unsafe code for them lives here.
//!
//! - [`sandbox`]: running a program in a root folder in namespaces of its own. Its `plan`
//!   turns a [`sandbox::SandboxSpec`] into a [`sandbox::Plan`] of plain values (mount steps,
//!   links, namespaces), checked by tests without root; `prepared` makes the plan ready for a
//!   child that may not allocate; `setup` carries out the mounts and pivot_root; `signals`
//!   forwards signals; `init` clones the child that stays as pid 1; `program` becomes the
//!   program and execs it; `syncs` is the seccomp filter that discards syncs.
//! - [`userns`]: envkit's user namespace, entered once per process before any thread starts;
//!   its [`userns::idmap`] works out who ran envkit and the id maps as plain values.
//! - [`ns`]: joining another process's namespaces (handles, `setns`, a command started
//!   inside, a detached command).
//! - [`pty`]: pseudo-terminals, a terminal's settings and its window size.
//! - [`process`]: a process's start time, so a recorded pid is not taken for a later one.
//! - [`sockdiag`]: who owns the other end of a loopback TCP connection.
//! - [`nftables`]: redirecting connections inside a network namespace with the kernel's NAT.
//! - [`netlink`]: the socket calls both of them talk to the kernel through.
//!
//! This folder imports nothing of the crate but itself, so it can be read, tested and
//! reviewed on its own: whatever a kernel call needs is passed in as a value.

pub mod netlink;
pub mod nftables;
pub mod ns;
pub mod process;
pub mod pty;
pub mod sandbox;
pub mod sockdiag;
pub mod userns;
