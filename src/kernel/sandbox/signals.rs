//! Signal forwarding: envkit passes the signals a user sends it on to the sandbox's init, and
//! the init passes them on to the program (or, for a service, to every process of its
//! namespace), so stopping envkit stops the program gently. The same handler serves both
//! processes; everything here is async-signal-safe and allocation-free where the init uses it.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{
    SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction, sigprocmask,
};

use super::SandboxError;

/// Signals envkit and the sandbox's init pass on to the program.
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Where a forwarding handler sends what it catches: the sandbox's init (in envkit), the
/// program (in the init). Separate processes, so one static serves both.
static FORWARD_TO: AtomicI32 = AtomicI32::new(0);
/// Forward signals the kernel generated too (a terminal's SIGHUP when envkit owns a pty).
static FORWARD_KERNEL_SIGNALS: AtomicBool = AtomicBool::new(false);
/// `si_code` of a signal the kernel sent, such as a terminal's SIGINT: the terminal sent it to
/// the program as well (the same process group), so passing it on would deliver it twice.
const SI_KERNEL: i32 = 0x80;

/// In the init of a service: pass signals to every process of the namespace.
static FORWARD_TO_ALL: AtomicBool = AtomicBool::new(false);
/// A signal caught before there was anyone to pass it to (the init not cloned yet, the program
/// not forked yet): delivered as soon as there is, so a stop request during start is not lost.
static PENDING_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: nix::libc::c_int, info: *mut nix::libc::siginfo_t, _: *mut c_void) {
    // SAFETY: the kernel hands a valid siginfo to an SA_SIGINFO handler.
    #[allow(unsafe_code)]
    let from_kernel = !info.is_null() && unsafe { (*info).si_code } == SI_KERNEL;
    let target = FORWARD_TO.load(Ordering::SeqCst);
    if target <= 0 {
        // No program yet for a terminal to have reached either: keep it for the program.
        PENDING_SIGNAL.store(signal, Ordering::SeqCst);
    } else if !from_kernel || FORWARD_KERNEL_SIGNALS.load(Ordering::SeqCst) {
        // -1: every process this one may signal but itself, which for a namespace's init is
        // every process of the namespace.
        let to = if FORWARD_TO_ALL.load(Ordering::SeqCst) {
            -1
        } else {
            target
        };
        // SAFETY: kill is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            nix::libc::kill(to, signal);
        }
    }
}

/// Starts catching the signals a session forwards, before anything of the session exists on
/// disk: one sent from now on reaches the program once it runs, and envkit is never killed
/// halfway through making a session (which would leave its scratch behind).
pub fn catch_signals() -> Result<(), SandboxError> {
    install_forwarding()
        .map(|_| ())
        .map_err(|e| SandboxError::Start(e.into()))
}

/// Sends what the handler catches from now on to `pid`; 0 keeps it pending.
pub(super) fn forward_to(pid: i32) {
    FORWARD_TO.store(pid, Ordering::SeqCst);
}

/// Whether signals the kernel generated (a terminal's) are forwarded too.
pub(super) fn forward_kernel_signals(forward: bool) {
    FORWARD_KERNEL_SIGNALS.store(forward, Ordering::SeqCst);
}

/// Whether signals go to every process of the namespace rather than the one target.
pub(super) fn forward_to_every_process(every: bool) {
    FORWARD_TO_ALL.store(every, Ordering::SeqCst);
}

/// Passes on a signal caught while there was no one to pass it to; call after
/// [`forward_to`].
pub(super) fn deliver_pending(target: i32) {
    let pending = PENDING_SIGNAL.swap(0, Ordering::SeqCst);
    if pending > 0 {
        // SAFETY: kill is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            nix::libc::kill(target, pending);
        }
    }
}

/// The signals envkit and the init forward, as a set (on the stack: no allocation).
fn forwarded_set() -> SigSet {
    let mut set = SigSet::empty();
    for signal in FORWARDED {
        set.add(*signal);
    }
    set
}

/// Holds the forwarded signals back (across the init's fork: one arriving then must reach the
/// program once it exists, never a copy of the handler in the child).
pub(super) fn hold_back() -> Result<(), Errno> {
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&forwarded_set()), None)
}

/// Lets the forwarded signals through again after [`hold_back`].
pub(super) fn let_through() -> Result<(), Errno> {
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&forwarded_set()), None)
}

/// Puts the default action back for every forwarded signal, as a fresh process has.
pub(super) fn default_actions() {
    for signal in FORWARDED {
        // SAFETY: the default action replaces the handler; nothing else changes.
        #[allow(unsafe_code)]
        let _ = unsafe { nix::sys::signal::signal(*signal, SigHandler::SigDfl) };
    }
}

/// Installs the forwarding handler for `signal`; returns the action it replaces.
fn forward_one(signal: Signal) -> Result<SigAction, Errno> {
    let action = SigAction::new(
        SigHandler::SigAction(forward),
        SaFlags::SA_SIGINFO,
        SigSet::empty(),
    );
    // SAFETY: the handler only reads atomics and calls kill.
    #[allow(unsafe_code)]
    unsafe {
        sigaction(signal, &action)
    }
}

/// Installs the forwarding handlers; returns the actions they replace, to put back with
/// [`restore`].
pub(super) fn install_forwarding() -> Result<Vec<(Signal, SigAction)>, Errno> {
    FORWARDED
        .iter()
        .map(|signal| forward_one(*signal).map(|previous| (*signal, previous)))
        .collect()
}

/// [`install_forwarding`] for the sandbox's init, a clone of a threaded process: it must not
/// allocate (another thread may have held malloc's lock at the clone), so nothing is kept.
pub(super) fn install_forwarding_in_child() -> Result<(), Errno> {
    for signal in FORWARDED {
        forward_one(*signal)?;
    }
    Ok(())
}

/// Puts back the actions [`install_forwarding`] replaced.
pub(super) fn restore(previous: Vec<(Signal, SigAction)>) {
    for (signal, action) in previous {
        // SAFETY: puts back the handler that was there before.
        #[allow(unsafe_code)]
        let _ = unsafe { sigaction(signal, &action) };
    }
}
