//! Terminals and pseudo-terminals: opening a pair, a terminal's settings (raw mode and back),
//! and the window size that terminal `ioctl`s get and set, including following the user's
//! terminal on every SIGWINCH.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
pub use nix::pty::Winsize;
pub use nix::sys::termios::Termios;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};

/// A pty pair: the controller a program like envkit relays through, the replica a shell gets
/// as its terminal.
pub struct Pty {
    pub controller: OwnedFd,
    pub replica: OwnedFd,
}

/// Opens a pty pair, sized and set up as given (the kernel's defaults otherwise).
pub fn open(size: Option<&Winsize>, settings: Option<&Termios>) -> Result<Pty, Errno> {
    let pair = nix::pty::openpty(size, settings)?;
    Ok(Pty {
        controller: pair.master,
        replica: pair.slave,
    })
}

/// The settings of the terminal `fd`, or none when it is not a terminal.
pub fn settings(fd: impl AsFd) -> Option<Termios> {
    tcgetattr(fd.as_fd()).ok()
}

/// Puts the terminal `fd` back to `settings`, once what was written has been sent.
pub fn set_settings(fd: impl AsFd, settings: &Termios) -> Result<(), Errno> {
    tcsetattr(fd.as_fd(), SetArg::TCSADRAIN, settings)
}

/// Puts the terminal `fd`, whose settings are `settings`, in raw mode: no echo, no line
/// editing, no signals from keys, so every keystroke passes through as typed.
pub fn set_raw(fd: impl AsFd, settings: &Termios) -> Result<(), Errno> {
    let mut raw = settings.clone();
    cfmakeraw(&mut raw);
    set_settings(fd, &raw)
}

/// The window size of the terminal `fd`, or none when it is not a terminal. Safe in a signal
/// handler: one system call, no allocation.
pub fn window_size(fd: impl AsFd) -> Option<Winsize> {
    let mut size = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize.
    #[allow(unsafe_code)]
    let done =
        unsafe { nix::libc::ioctl(fd.as_fd().as_raw_fd(), nix::libc::TIOCGWINSZ, &mut size) };
    (done == 0).then_some(size)
}

/// Sets the window size of the terminal `fd`; the kernel then signals its foreground job.
/// Safe in a signal handler, as [`window_size`].
pub fn set_window_size(fd: impl AsFd, size: &Winsize) -> Result<(), Errno> {
    // SAFETY: TIOCSWINSZ reads a winsize.
    #[allow(unsafe_code)]
    let done = unsafe { nix::libc::ioctl(fd.as_fd().as_raw_fd(), nix::libc::TIOCSWINSZ, size) };
    Errno::result(done).map(|_| ())
}

/// The pty controller that follows the user's terminal, for the SIGWINCH handler; -1 for none.
static FOLLOWER: AtomicI32 = AtomicI32::new(-1);

extern "C" fn resized(_: nix::libc::c_int) {
    let follower = FOLLOWER.load(Ordering::SeqCst);
    if follower < 0 {
        return;
    }
    // SAFETY: stdin is open for the whole process; the follower stays open until
    // `stop_following_window_size`, as `follow_window_size` asks of its caller.
    #[allow(unsafe_code)]
    let (stdin, follower) = unsafe {
        (
            BorrowedFd::borrow_raw(nix::libc::STDIN_FILENO),
            BorrowedFd::borrow_raw(follower),
        )
    };
    if let Some(size) = window_size(stdin) {
        let _ = set_window_size(follower, &size);
    }
}

/// From now on, gives `controller` the size of envkit's stdin whenever that changes (on each
/// SIGWINCH), so a shell on the pty redraws for the user's window. The caller keeps
/// `controller` open until [`stop_following_window_size`].
pub fn follow_window_size(controller: BorrowedFd<'_>) {
    FOLLOWER.store(controller.as_raw_fd(), Ordering::SeqCst);
    // SAFETY: the handler only reads an atomic and makes two ioctls.
    #[allow(unsafe_code)]
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGWINCH,
            nix::sys::signal::SigHandler::Handler(resized),
        );
    }
}

/// Ends [`follow_window_size`]; a SIGWINCH from now on changes nothing.
pub fn stop_following_window_size() {
    FOLLOWER.store(-1, Ordering::SeqCst);
}
