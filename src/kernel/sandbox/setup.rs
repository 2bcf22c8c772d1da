//! The child's setup of its new namespaces from a prepared plan: the mounts and links, the
//! host name, loopback, then pivot_root into the root, after which nothing of the host stays
//! reachable. Runs in the clone of a threaded envkit, so it only makes system calls on what
//! `prepared` made: no allocation.

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::prepared::{Make, Prepared};

/// Sets up the namespaces and enters the root, in the working folder; returns what failed.
pub(super) fn enter_root(prepared: &Prepared) -> Result<(), (&str, Errno)> {
    mount_all(prepared)?;
    for (target, link) in &prepared.symlinks {
        let _ = nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, link.as_c_str());
    }
    nix::unistd::sethostname(&prepared.hostname).map_err(|e| ("set the host name", e))?;
    if prepared.loopback_up {
        loopback_up().map_err(|e| ("bring up the loopback interface", e))?;
    }
    nix::unistd::chdir(prepared.root.as_c_str()).map_err(|e| ("enter the root", e))?;
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no way
    // back to the host's files.
    nix::unistd::pivot_root(".", ".").map_err(|e| ("pivot into the root", e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| ("detach the host's root", e))?;
    nix::unistd::chdir(prepared.workdir.as_c_str()).map_err(|e| ("enter the working folder", e))
}

fn mount_all(prepared: &Prepared) -> Result<(), (&str, Errno)> {
    for step in &prepared.steps {
        // Failing to create is not an error of its own: the mount then says what is wrong.
        match step.make {
            Make::Folder => {
                let _ = nix::unistd::mkdir(
                    step.target.as_c_str(),
                    nix::sys::stat::Mode::from_bits_truncate(0o755),
                );
            }
            Make::File => {
                let flags = nix::fcntl::OFlag::O_CREAT
                    | nix::fcntl::OFlag::O_WRONLY
                    | nix::fcntl::OFlag::O_CLOEXEC;
                let _ = nix::fcntl::open(
                    step.target.as_c_str(),
                    flags,
                    nix::sys::stat::Mode::from_bits_truncate(0o644),
                );
            }
            Make::Nothing => {}
        }
        mount(
            step.source.as_deref(),
            step.target.as_c_str(),
            step.fstype.as_deref(),
            step.flags,
            step.data.as_deref(),
        )
        .map_err(|e| (step.what.as_str(), e))?;
        if step.readonly {
            let flags =
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
            mount(
                None::<&str>,
                step.target.as_c_str(),
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(|e| (step.readonly_what.as_str(), e))?;
        }
    }
    Ok(())
}

/// `ip link set lo up`, without allocating: a service in its own network namespace listens
/// on loopback, where envkit's forwarder reaches it.
pub(in crate::kernel) fn loopback_up() -> Result<(), Errno> {
    // SAFETY: plain socket and ioctl calls on a zeroed ifreq naming "lo".
    #[allow(unsafe_code)]
    unsafe {
        let socket = nix::libc::socket(
            nix::libc::AF_INET,
            nix::libc::SOCK_DGRAM | nix::libc::SOCK_CLOEXEC,
            0,
        );
        if socket < 0 {
            return Err(Errno::last());
        }
        let mut request: nix::libc::ifreq = std::mem::zeroed();
        for (slot, byte) in request.ifr_name.iter_mut().zip(b"lo") {
            *slot = *byte as nix::libc::c_char;
        }
        let mut outcome = nix::libc::ioctl(socket, nix::libc::SIOCGIFFLAGS, &mut request);
        if outcome == 0 {
            request.ifr_ifru.ifru_flags |= nix::libc::IFF_UP as nix::libc::c_short;
            outcome = nix::libc::ioctl(socket, nix::libc::SIOCSIFFLAGS, &request);
        }
        let errno = Errno::last();
        nix::libc::close(socket);
        if outcome != 0 {
            return Err(errno);
        }
    }
    Ok(())
}
