//! Clone with the init: envkit clones a child into new namespaces, the child sets them up and
//! stays as their pid 1 (the kernel delivers to a namespace's init only the signals it handles,
//! so the program must not be pid 1), waits at a gate until envkit lets the program start,
//! forks the program, forwards signals to it and reaps orphans until it ends. A failing step
//! writes its message into a close-on-exec pipe; envkit reads end-of-file when exec succeeded.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;

use super::plan::plan;
use super::prepared::Prepared;
use super::program::program_main;
use super::{Exit, Never, SandboxError, SandboxSpec, setup, signals};

/// Runs `spec` and waits for it.
pub fn run(spec: &SandboxSpec) -> Result<Exit, SandboxError> {
    run_with(spec, &mut |_| {})
}

/// Runs `spec` and waits for it. `before_start` gets the sandbox's init (its pid seen from
/// here) once the sandbox's namespaces are set up and before the program starts, which waits
/// for it to return: there the caller can prepare what the program must find, such as
/// forwarders listening in its network namespace. It is not called when the setup failed.
pub fn run_with(
    spec: &SandboxSpec,
    before_start: &mut dyn FnMut(i32),
) -> Result<Exit, SandboxError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(SandboxError::NotRoot);
    }
    let plan = plan(spec)?;
    let prepared = Prepared::new(&plan)?;
    let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| SandboxError::Start(e.into()))?;
    let pipe = || {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SandboxError::Start(e.into()))
    };
    let ((at_gate_reader, at_gate_writer), (go_reader, go_writer)) = (pipe()?, pipe()?);
    let gate = Gate {
        at_gate: at_gate_writer.as_raw_fd(),
        go: go_reader.as_raw_fd(),
        parents_ends: [at_gate_reader.as_raw_fd(), go_writer.as_raw_fd()],
    };
    let log = match &spec.log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(SandboxError::Start)?,
        ),
        None => None,
    };
    let log_ref = log.as_ref();
    let mut stack = vec![0u8; 1 << 20];
    let writer_fd = writer.as_raw_fd();
    let child = Box::new(move || -> isize {
        if let Some(file) = log_ref {
            // dup2 leaves close-on-exec off on the copies, so the program keeps them.
            let _ = nix::unistd::dup2_stdout(file);
            let _ = nix::unistd::dup2_stderr(file);
        }
        let Err((what, errno)) = child_main(&prepared, writer_fd, &gate);
        report_failure(writer_fd, "", what, errno);
        127
    });
    let previous = if spec.forward_signals {
        signals::forward_kernel_signals(spec.terminal.is_some());
        signals::install_forwarding().map_err(|e| SandboxError::Start(e.into()))?
    } else {
        Vec::new()
    };
    // SAFETY: the child only makes system calls on data prepared above and then execs or
    // exits; the stack outlives it because we wait for it before returning.
    #[allow(unsafe_code)]
    let pid =
        unsafe { nix::sched::clone(child, &mut stack, plan.namespaces, Some(nix::libc::SIGCHLD)) }
            .map_err(|e| SandboxError::Start(e.into()));
    let outcome = pid.and_then(|pid| {
        signals::forward_to(pid.as_raw());
        if spec.forward_signals {
            signals::deliver_pending(pid.as_raw());
        }
        drop(writer);
        drop(at_gate_writer);
        drop(go_reader);
        let mut byte = [0u8; 1];
        let at_gate = loop {
            match nix::unistd::read(at_gate_reader.as_fd(), &mut byte) {
                Err(Errno::EINTR) => continue,
                outcome => break outcome == Ok(1),
            }
        };
        if at_gate {
            before_start(pid.as_raw());
        }
        // A byte, not end-of-file, lets the program start: another sandbox cloned meanwhile
        // by another thread holds copies of these descriptors, and waiting for all of them
        // to close would deadlock two sandboxes waiting at their gates.
        let _ = nix::unistd::write(&go_writer, b"g");
        drop(go_writer);
        let mut message = Vec::new();
        // EINTR (a forwarded signal) just means read on.
        let mut reader = std::fs::File::from(reader);
        loop {
            match reader.read_to_end(&mut message) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                _ => break,
            }
        }
        let status = loop {
            match waitpid(pid, None) {
                Ok(WaitStatus::Exited(_, code)) => break Exit::Code(code),
                Ok(WaitStatus::Signaled(_, signal, _)) => break Exit::Signal(signal as i32),
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(e) => return Err(SandboxError::Start(e.into())),
            }
        };
        Ok((status, message))
    });
    signals::forward_to(0);
    signals::restore(previous);
    let (status, message) = outcome?;
    match message.split_first() {
        None => Ok(status),
        Some((&NOT_RUNNABLE, rest)) => Err(SandboxError::NotRunnable(
            String::from_utf8_lossy(rest).into_owned(),
        )),
        Some(_) => Err(SandboxError::Setup(
            String::from_utf8_lossy(&message).into_owned(),
        )),
    }
}

/// First byte of a failure report when the program itself could not be executed.
const NOT_RUNNABLE: u8 = 1;

/// Writes "cannot WHAT: ERRNO" to the report pipe without allocating: `clone` and `fork` run
/// no atfork handlers, so a lock another thread of envkit held (malloc's, say) stays locked.
fn report_failure(fd: RawFd, marker: &str, what: &str, errno: Errno) {
    // SAFETY: the pipe's write end stays open until this process execs or exits.
    #[allow(unsafe_code)]
    let writer = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    for piece in [marker, "cannot ", what, ": ", errno.desc()] {
        let _ = nix::unistd::write(writer, piece.as_bytes());
    }
}

/// Where the sandbox's init waits before it starts the program (see [`run_with`]): it writes
/// a byte to `at_gate`, then waits for envkit's byte on `go`.
struct Gate {
    at_gate: RawFd,
    go: RawFd,
    /// envkit's ends, which the child closes so that end-of-file on `go` means envkit is gone.
    parents_ends: [RawFd; 2],
}

/// The child's side, in order; returns only on failure, with what failed.
fn child_main<'a>(
    prepared: &'a Prepared,
    report: RawFd,
    gate: &Gate,
) -> Result<Never, (&'a str, Errno)> {
    for fd in gate.parents_ends {
        let _ = nix::unistd::close(fd);
    }
    // If envkit dies (Ctrl-C, kill -9), the sandbox dies with it instead of running on as an
    // orphan; as pid 1 it takes its whole namespace along.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| ("ask to die with envkit", e))?;
    setup::enter_root(prepared)?;
    // The kernel delivers to a namespace's init only the signals it handles, so the program
    // must not be pid 1: this process stays as init and forwards.
    signals::forward_kernel_signals(false);
    signals::forward_to_every_process(prepared.service);
    signals::install_forwarding_in_child().map_err(|e| ("catch signals", e))?;
    wait_at_gate(gate).map_err(|e| ("wait for envkit", e))?;
    signals::hold_back().map_err(|e| ("hold signals back", e))?;
    match fork_without_handlers().map_err(|e| ("start the program", e))? {
        ForkResult::Child => {
            let Err((what, errno)) = program_main(prepared);
            let marker = if what == prepared.run_what.as_str() {
                "\u{1}"
            } else {
                ""
            };
            report_failure(report, marker, what, errno);
            // SAFETY: leaves without running anything of the parent's.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::_exit(127)
            }
        }
        ForkResult::Parent { child } => {
            signals::forward_to(child.as_raw());
            let _ = signals::let_through();
            signals::deliver_pending(child.as_raw());
            // envkit learns that the program started when the last write end closes at exec.
            let _ = nix::unistd::close(report);
            if let Some(terminal) = prepared.terminal {
                let _ = nix::unistd::close(terminal);
            }
            // A service's sandbox lasts until its last process ends; the status is the
            // program's.
            let mut program_status = None;
            let code = loop {
                let ended = match waitpid(None, None) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == child => code,
                    Ok(WaitStatus::Signaled(pid, signal, _)) if pid == child => 128 + signal as i32,
                    Ok(_) | Err(Errno::EINTR) => continue,
                    Err(_) => break program_status.unwrap_or(127),
                };
                if !prepared.service {
                    break ended;
                }
                program_status = Some(ended);
            };
            // Leaving ends the namespace: the kernel kills whatever the program left behind.
            // SAFETY: as above.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::_exit(code)
            }
        }
    }
}

/// Tells envkit the namespaces are ready and waits until it lets the program start.
fn wait_at_gate(gate: &Gate) -> Result<(), Errno> {
    // SAFETY: both descriptors are this process's own, open until closed here.
    #[allow(unsafe_code)]
    let (at_gate, go) = unsafe {
        (
            std::os::fd::BorrowedFd::borrow_raw(gate.at_gate),
            std::os::fd::BorrowedFd::borrow_raw(gate.go),
        )
    };
    nix::unistd::write(at_gate, b"g")?;
    let _ = nix::unistd::close(gate.at_gate);
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(go, &mut byte) {
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno),
            // End of file: envkit is gone without letting the program start.
            Ok(0) => return Err(Errno::EPIPE),
            Ok(_) => break,
        }
    }
    let _ = nix::unistd::close(gate.go);
    Ok(())
}

/// `fork` as the bare system call. The init is a clone of a threaded envkit, so a lock another
/// thread held at that moment (malloc's) stays locked in it, and libc's `fork`, which takes
/// such locks for its handlers, could wait forever. The child only makes bare system calls
/// (see `program`) and execs.
fn fork_without_handlers() -> Result<ForkResult, Errno> {
    // SAFETY: clone with only SIGCHLD is fork; nothing of libc runs on either side.
    #[allow(unsafe_code)]
    let pid = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_clone,
            nix::libc::c_long::from(nix::libc::SIGCHLD),
            0 as nix::libc::c_long,
            0 as nix::libc::c_long,
            0 as nix::libc::c_long,
            0 as nix::libc::c_long,
        )
    };
    match pid {
        -1 => Err(Errno::last()),
        0 => Ok(ForkResult::Child),
        child => Ok(ForkResult::Parent {
            child: nix::unistd::Pid::from_raw(child as i32),
        }),
    }
}
