//! `env shell`'s terminal: a pty whose replica becomes the shell's controlling terminal, and
//! envkit relaying between it and the user's terminal (put in raw mode, so Ctrl-C, Ctrl-Z and
//! line editing reach the shell's own line discipline: job control works inside).
//!
//! Window size: copied at the start and again on every SIGWINCH envkit receives; setting it on
//! the pty makes the kernel signal the shell's foreground job.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use crate::kernel::pty::{self, Termios};

/// A pty pair, and the user's terminal settings to put back.
pub struct Terminal {
    controller: OwnedFd,
    replica: Option<OwnedFd>,
    saved: Option<Termios>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up a terminal for the shell: {0}")]
pub struct TerminalError(nix::errno::Errno);

impl Terminal {
    /// A pty sized and set up like the user's terminal (stdin).
    pub fn open() -> Result<Terminal, TerminalError> {
        let stdin = std::io::stdin();
        let settings = pty::settings(&stdin);
        let size = pty::window_size(&stdin);
        let pair = pty::open(size.as_ref(), settings.as_ref()).map_err(TerminalError)?;
        Ok(Terminal {
            controller: pair.controller,
            replica: Some(pair.replica),
            saved: settings,
        })
    }

    /// The replica, for the sandbox to hand to the shell.
    pub fn replica_fd(&self) -> Option<RawFd> {
        self.replica.as_ref().map(|r| r.as_raw_fd())
    }

    /// The replica's path on the host (`/dev/pts/N`).
    pub fn replica_path(&self) -> Option<std::path::PathBuf> {
        let fd = self.replica_fd()?;
        std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()
    }

    /// Makes the replica `uid`'s, as a login does.
    pub fn give_to(&self, uid: u32, gid: u32) -> Result<(), TerminalError> {
        if let Some(replica) = &self.replica {
            std::os::unix::fs::fchown(replica, Some(uid), Some(gid)).map_err(|e| {
                TerminalError(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
            })?;
        }
        Ok(())
    }

    /// Puts the user's terminal in raw mode and starts relaying; returns the relay of the
    /// shell's output, to be finished with [`Relay::finish`] after the shell exits.
    pub fn start(&mut self) -> Result<Relay, TerminalError> {
        if let Some(saved) = &self.saved {
            pty::set_raw(std::io::stdin(), saved).map_err(TerminalError)?;
        }
        pty::follow_window_size(self.controller.as_fd());
        let input = self.controller.try_clone().map_err(|e| {
            TerminalError(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        })?;
        let output = self.controller.try_clone().map_err(|e| {
            TerminalError(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0)))
        })?;
        // Keystrokes to the shell. This thread blocks in read() and simply ends with envkit.
        std::thread::spawn(move || {
            let mut to_shell = std::fs::File::from(input);
            let mut stdin = std::io::stdin().lock();
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdin.read(&mut buffer) {
                if n == 0 || to_shell.write_all(&buffer[..n]).is_err() {
                    break;
                }
            }
        });
        let output = std::thread::spawn(move || {
            let mut from_shell = std::fs::File::from(output);
            let mut stdout = std::io::stdout();
            let mut buffer = [0u8; 8192];
            loop {
                match from_shell.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => {
                        if stdout.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                        let _ = stdout.flush();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    // EIO: every replica is closed, the session is over.
                    Err(_) => break,
                }
            }
        });
        Ok(Relay {
            output: Some(output),
        })
    }

    /// After the shell exits: close envkit's replica so the relay sees the end, wait for the
    /// last output, and give the user their terminal back as it was.
    pub fn finish(&mut self, relay: Relay) {
        self.replica = None;
        relay.finish();
        pty::stop_following_window_size();
        self.restore();
    }

    fn restore(&self) {
        if let Some(saved) = &self.saved {
            let _ = pty::set_settings(std::io::stdin(), saved);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // The controller closes with this value; a resize must not reach its number then.
        pty::stop_following_window_size();
        self.restore();
    }
}

/// The running relay of the shell's output.
pub struct Relay {
    output: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn finish(mut self) {
        if let Some(output) = self.output.take() {
            let _ = output.join();
        }
    }
}
