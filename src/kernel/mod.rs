//! The one seam to the kernel: namespaces, mounts, clone, `setns`, terminal `ioctl`s and id
//! maps. Every other module asks for these by value (a sandbox's plan, a namespace kind) and
//! never makes the system call itself.

pub mod ns;
pub mod pty;
pub mod sandbox;
pub mod userns;
