//! The program's side, in the process the init forks: its signals and terminal, who it runs
//! as (capabilities, ids, no new privileges), the seccomp filter, then exec. It is a copy of
//! a clone of a threaded envkit, so it only makes bare system calls on prepared data.

use nix::errno::Errno;

use super::prepared::Prepared;
use super::{Never, RunAs, signals, syncs};

/// Capabilities root keeps in a session: the set container engines grant by default.
const SESSION_CAPABILITIES: &[u32] = &[
    0,  // CHOWN
    1,  // DAC_OVERRIDE
    3,  // FOWNER
    4,  // FSETID
    5,  // KILL
    6,  // SETGID
    7,  // SETUID
    8,  // SETPCAP
    10, // NET_BIND_SERVICE
    13, // NET_RAW
    18, // SYS_CHROOT
    27, // MKNOD
    29, // AUDIT_WRITE
    31, // SETFCAP
];

/// Becomes the program; returns only on failure, with what failed.
pub(super) fn program_main(prepared: &Prepared) -> Result<Never, (&str, Errno)> {
    signals::default_actions();
    // The init held them back across the fork; one sent meanwhile now takes its default
    // action, as it would for the program.
    signals::let_through().map_err(|e| ("let signals through", e))?;
    if let Some(terminal) = prepared.terminal {
        take_terminal(terminal)?;
    }
    if let Some(filter) = &prepared.sync_filter {
        syncs::install(filter).map_err(|e| ("discard syncs", e))?;
    }
    match prepared.run_as {
        RunAs::Builder => {}
        RunAs::Root => {
            for capability in 0..=prepared.last_capability {
                if !SESSION_CAPABILITIES.contains(&capability) {
                    // SAFETY: prctl with integer arguments.
                    #[allow(unsafe_code)]
                    unsafe {
                        nix::libc::prctl(nix::libc::PR_CAPBSET_DROP, capability as u64, 0, 0, 0);
                    }
                }
            }
            no_new_privileges()?;
        }
        RunAs::User { uid, gid } => {
            become_user(uid, gid)?;
            no_new_privileges()?;
        }
    }
    close_inherited_descriptors();
    let mut last = Errno::ENOENT;
    for program in &prepared.programs {
        // SAFETY: both arrays are null-terminated and point into strings `prepared` owns.
        #[allow(unsafe_code)]
        let failed = unsafe {
            nix::libc::execve(
                program.as_ptr(),
                prepared.argv_pointers.as_ptr(),
                prepared.environment_pointers.as_ptr(),
            )
        };
        match Errno::result(failed) {
            Ok(_) => {}
            // A later PATH entry may still have it; "permission denied" is the better report
            // than a later "not found".
            Err(Errno::ENOENT | Errno::ENOTDIR) => {}
            Err(errno) => last = errno,
        }
    }
    Err((prepared.run_what.as_str(), last))
}

/// Makes `terminal` (a pty's replica) the controlling terminal of a new session and the
/// standard streams.
fn take_terminal(terminal: std::os::fd::RawFd) -> Result<(), (&'static str, Errno)> {
    nix::unistd::setsid().map_err(|e| ("start a session", e))?;
    // SAFETY: TIOCSCTTY takes an int argument; 0 means "do not steal".
    #[allow(unsafe_code)]
    let made = unsafe { nix::libc::ioctl(terminal, nix::libc::TIOCSCTTY, 0) };
    if made != 0 {
        return Err(("take the terminal", Errno::last()));
    }
    for target in 0..3 {
        // SAFETY: plain dup2 of an open descriptor onto stdio.
        #[allow(unsafe_code)]
        if unsafe { nix::libc::dup2(terminal, target) } < 0 {
            return Err(("attach the terminal", Errno::last()));
        }
    }
    if terminal > 2 {
        let _ = nix::unistd::close(terminal);
    }
    Ok(())
}

/// Marks every descriptor above stderr close-on-exec, so the program gets only its standard
/// streams: not envkit's own files and sockets, and not a descriptor envkit inherited without
/// close-on-exec (an open folder of the host would be a way out of the root). The report pipe
/// stays usable until exec succeeds.
fn close_inherited_descriptors() {
    const CLOSE_RANGE_CLOEXEC: nix::libc::c_uint = 1 << 2;
    // SAFETY: close_range and fcntl only change descriptor flags; neither allocates.
    #[allow(unsafe_code)]
    unsafe {
        let all_marked = nix::libc::syscall(
            nix::libc::SYS_close_range,
            3 as nix::libc::c_uint,
            nix::libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        ) == 0;
        if !all_marked {
            // Kernels before 5.11: one at a time, up to a generous limit.
            for fd in 3..4096 {
                nix::libc::fcntl(fd, nix::libc::F_SETFD, nix::libc::FD_CLOEXEC);
            }
        }
    }
}

/// Becomes `uid`:`gid` (with `gid` as the only group) by bare system calls: libc's wrappers
/// would pass the change on to the other threads it believes this process has (it is a copy
/// of a threaded envkit), taking locks that may never be free here.
fn become_user(uid: u32, gid: u32) -> Result<(), (&'static str, Errno)> {
    let groups = [gid];
    // SAFETY: setgroups reads one gid from the array; the set*id calls take plain integers.
    #[allow(unsafe_code)]
    let outcome = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_setgroups,
            1 as nix::libc::c_long,
            groups.as_ptr(),
        )
    };
    Errno::result(outcome).map_err(|e| ("set the groups", e))?;
    for (call, id) in [
        (nix::libc::SYS_setresgid, gid),
        (nix::libc::SYS_setresuid, uid),
    ] {
        // SAFETY: as above.
        #[allow(unsafe_code)]
        let outcome = unsafe { nix::libc::syscall(call, id, id, id) };
        Errno::result(outcome).map_err(|e| ("become the user", e))?;
    }
    Ok(())
}

fn no_new_privileges() -> Result<(), (&'static str, Errno)> {
    // SAFETY: prctl with integer arguments.
    #[allow(unsafe_code)]
    let done = unsafe { nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if done != 0 {
        return Err(("forbid new privileges", Errno::last()));
    }
    Ok(())
}
