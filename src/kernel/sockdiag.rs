//! Who holds the other end of a loopback TCP connection: the kernel's socket diagnostics
//! (`NETLINK_SOCK_DIAG`, what `ss -e` reads) report the owner of any TCP socket of this network
//! namespace by its addresses, so a listener can tell which user connected to it.
//!
//! The uid comes back as this process's user namespace sees it: in envkit's namespace, the
//! invoking user keeps their own uid, and ids the namespace does not map read as the overflow
//! id (65534).

use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::OwnedFd;

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const HEADER: usize = 16;
/// `inet_diag_req_v2`: family, protocol, extensions, padding, states, then the socket id.
const REQUEST: usize = 8 + SOCKET_ID;
/// `inet_diag_sockid`: ports, two 16-byte addresses, the interface and the cookie.
const SOCKET_ID: usize = 48;
/// Where `idiag_uid` sits in a reply: after the header, `inet_diag_msg`'s four bytes, its
/// socket id, and the expiry and two queue lengths.
const UID_AT: usize = HEADER + 4 + SOCKET_ID + 12;

/// A socket diagnostics handle, bound to the network namespace it was opened in: open it
/// where the connections to ask about live (before a thread joins another namespace).
#[derive(Debug)]
pub struct SocketDiag(OwnedFd);

impl SocketDiag {
    pub fn open() -> std::io::Result<SocketDiag> {
        super::netlink::socket(nix::libc::NETLINK_SOCK_DIAG).map(SocketDiag)
    }

    /// The uid owning the TCP socket whose own address is `from` and whose peer is `to` (for
    /// a connection accepted on `to`, the connecting program's socket). IPv4 only, as the
    /// peers' addresses are.
    pub fn tcp_owner(&self, from: SocketAddr, to: SocketAddr) -> std::io::Result<u32> {
        let (SocketAddr::V4(from), SocketAddr::V4(to)) = (from, to) else {
            return Err(std::io::Error::from(std::io::ErrorKind::Unsupported));
        };
        super::netlink::send(&self.0, &request(from, to))?;
        let mut reply = [0u8; 512];
        let length = super::netlink::receive(&self.0, &mut reply)?;
        parse_reply(&reply[..length])
    }
}

/// The request for the one socket with these addresses.
fn request(from: SocketAddrV4, to: SocketAddrV4) -> [u8; HEADER + REQUEST] {
    let mut message = [0u8; HEADER + REQUEST];
    message[0..4].copy_from_slice(&((HEADER + REQUEST) as u32).to_ne_bytes());
    message[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    message[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    message[8..12].copy_from_slice(&1u32.to_ne_bytes());
    let body = &mut message[HEADER..];
    body[0] = nix::libc::AF_INET as u8;
    body[1] = nix::libc::IPPROTO_TCP as u8;
    // Every state: the connection may be closing while it is asked about.
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
    let id = &mut body[8..];
    id[0..2].copy_from_slice(&from.port().to_be_bytes());
    id[2..4].copy_from_slice(&to.port().to_be_bytes());
    id[4..8].copy_from_slice(&from.ip().octets());
    id[20..24].copy_from_slice(&to.ip().octets());
    // No cookie: look the socket up by its addresses.
    id[40..48].copy_from_slice(&[0xff; 8]);
    message
}

fn parse_reply(reply: &[u8]) -> std::io::Result<u32> {
    let field = |at: usize, size: usize| {
        reply
            .get(at..at + size)
            .ok_or_else(|| std::io::Error::other("a short socket diagnostics reply"))
    };
    let kind = u16::from_ne_bytes(field(4, 2)?.try_into().unwrap_or_default());
    if kind == NLMSG_ERROR {
        let code = i32::from_ne_bytes(field(HEADER, 4)?.try_into().unwrap_or_default());
        return Err(std::io::Error::from_raw_os_error(-code));
    }
    if kind != SOCK_DIAG_BY_FAMILY {
        return Err(std::io::Error::other(format!(
            "an unexpected socket diagnostics reply (type {kind})"
        )));
    }
    Ok(u32::from_ne_bytes(
        field(UID_AT, 4)?.try_into().unwrap_or_default(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_owner(from: SocketAddr, to: SocketAddr) -> std::io::Result<u32> {
        SocketDiag::open()?.tcp_owner(from, to)
    }

    #[test]
    fn the_owner_of_a_loopback_connection_is_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        let owner = tcp_owner(
            accepted.peer_addr().unwrap(),
            accepted.local_addr().unwrap(),
        );
        assert_eq!(owner.unwrap(), nix::unistd::geteuid().as_raw());
        drop(client);
    }

    /// Needs root, to connect as another user.
    #[test]
    fn the_owner_of_a_connection_from_another_user_is_that_user() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: connecting as another user needs root");
            return;
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut other = std::process::Command::new("setpriv")
            .args(["--reuid=65533", "--regid=65533", "--clear-groups", "/usr/bin/python3", "-c"])
            .arg(format!(
                "import socket, time; s = socket.create_connection(('127.0.0.1', {port})); time.sleep(5)"
            ))
            .spawn()
            .unwrap();
        // Never wait forever for a client that could not start.
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let accepted = loop {
            match listener.accept() {
                Ok((accepted, _)) => break accepted,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(error) => panic!("the other user's client never connected: {error}"),
            }
        };
        let owner = tcp_owner(
            accepted.peer_addr().unwrap(),
            accepted.local_addr().unwrap(),
        );
        let _ = other.kill();
        let _ = other.wait();
        assert_eq!(owner.unwrap(), 65533);
    }

    #[test]
    fn a_connection_that_does_not_exist_is_an_error() {
        let nowhere = "127.0.0.1:9".parse().unwrap();
        let there = "127.0.0.1:1".parse().unwrap();
        assert!(tcp_owner(nowhere, there).is_err());
    }
}
