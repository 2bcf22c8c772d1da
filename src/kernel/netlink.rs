//! Netlink sockets: the kernel's message interface for its network subsystems. The callers
//! (socket diagnostics, nftables) build their own messages; this holds the socket calls.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A netlink socket of `protocol` (`NETLINK_SOCK_DIAG`, `NETLINK_NETFILTER`) in the calling
/// thread's network namespace.
pub fn socket(protocol: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: a plain system call; the descriptor it returns is owned by the result.
    #[allow(unsafe_code)]
    let fd = unsafe {
        nix::libc::socket(
            nix::libc::AF_NETLINK,
            nix::libc::SOCK_RAW | nix::libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket() and nothing else owns it.
    #[allow(unsafe_code)]
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Sends `message` (one or more netlink messages) to the kernel.
pub fn send(socket: &OwnedFd, message: &[u8]) -> std::io::Result<()> {
    // The kernel is netlink's address 0.
    // SAFETY: sockaddr_nl is plain data, zero is a valid value for every field.
    #[allow(unsafe_code)]
    let mut kernel: nix::libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = nix::libc::AF_NETLINK as u16;
    // SAFETY: the buffer and the address outlive the call, their lengths are theirs.
    #[allow(unsafe_code)]
    let sent = unsafe {
        nix::libc::sendto(
            socket.as_raw_fd(),
            message.as_ptr().cast(),
            message.len(),
            0,
            std::ptr::from_ref(&kernel).cast(),
            std::mem::size_of::<nix::libc::sockaddr_nl>() as u32,
        )
    };
    if sent < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Receives one datagram from the kernel into `buffer`, returning its length.
pub fn receive(socket: &OwnedFd, buffer: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: the buffer outlives the call and its length is its own.
        #[allow(unsafe_code)]
        let read = unsafe {
            nix::libc::recv(
                socket.as_raw_fd(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                0,
            )
        };
        if read >= 0 {
            return Ok(read as usize);
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
}

/// Makes [`receive`] give up after `limit` instead of waiting forever for a reply.
pub fn set_receive_timeout(socket: &OwnedFd, limit: std::time::Duration) -> std::io::Result<()> {
    let timeout = nix::libc::timeval {
        tv_sec: limit.as_secs() as nix::libc::time_t,
        tv_usec: limit.subsec_micros() as nix::libc::suseconds_t,
    };
    // SAFETY: the option's value is a timeval that outlives the call, with its own size.
    #[allow(unsafe_code)]
    let set = unsafe {
        nix::libc::setsockopt(
            socket.as_raw_fd(),
            nix::libc::SOL_SOCKET,
            nix::libc::SO_RCVTIMEO,
            std::ptr::from_ref(&timeout).cast(),
            std::mem::size_of::<nix::libc::timeval>() as u32,
        )
    };
    if set < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
