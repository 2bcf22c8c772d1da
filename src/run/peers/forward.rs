//! Forwarding TCP connections between network namespaces in user space: a listening socket
//! made in one namespace keeps accepting there, while the thread that connects onwards has
//! joined another (`setns` changes only the calling thread's network namespace). Nothing needs
//! privileges beyond envkit's own user namespace, which owns the peers' network namespaces.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

pub use super::relay::Admit;
use crate::kernel::ns::{self, Namespace};

/// A network namespace, by a handle on `/proc/PID/ns/net`.
pub fn namespace_of(pid: i32) -> std::io::Result<Arc<OwnedFd>> {
    ns::namespace_of(pid, Namespace::Network).map(Arc::new)
}

/// Binds a listener on `address` inside `namespace` (a short-lived thread joins it to make the
/// socket, so the caller's namespace is untouched).
pub fn listen_in(namespace: &Arc<OwnedFd>, address: SocketAddr) -> std::io::Result<TcpListener> {
    let namespace = Arc::clone(namespace);
    std::thread::spawn(move || {
        ns::join(namespace.as_fd(), Namespace::Network)?;
        TcpListener::bind(address)
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("the listening thread failed")))
}

/// Serves `listener` on a thread of its own: each connection is joined to a new connection to
/// `target`, made from inside `connect_from` (or from this process's namespace). One thread
/// serves every connection of the listener (see [`super::relay`]).
pub fn serve(
    listener: TcpListener,
    target: SocketAddr,
    connect_from: Option<Arc<OwnedFd>>,
    admit: Admit,
) {
    std::thread::spawn(move || {
        if let Some(namespace) = &connect_from
            && ns::join(namespace.as_fd(), Namespace::Network).is_err()
        {
            return;
        }
        let _ = super::relay::relay(listener, target, admit);
    });
}

/// Makes each peer answer at its address inside the network namespace `inside` (a peer's or
/// a private session's), forwarding to the same address in this process's namespace, where
/// the peer's supervisor listens. A port that cannot be bound is skipped: the program inside
/// then sees a refused connection, as it would for a peer that is down.
pub fn link_peers_into(inside: &Arc<OwnedFd>, peers: &[(String, Vec<u16>)]) {
    for (address, ports) in peers {
        let Ok(ip) = address.parse::<std::net::IpAddr>() else {
            continue;
        };
        for port in ports {
            let at = SocketAddr::new(ip, *port);
            if let Ok(listener) = listen_in(inside, at) {
                serve(listener, at, None, Admit::Anyone);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};

    #[test]
    fn connections_are_forwarded_both_ways() {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = backend.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in backend.incoming() {
                let mut stream = stream.unwrap();
                let mut request = String::new();
                stream.read_to_string(&mut request).unwrap();
                stream.write_all(request.to_uppercase().as_bytes()).unwrap();
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let front_address = front.local_addr().unwrap();
        serve(front, target, None, Admit::Anyone);
        for _ in 0..3 {
            let mut client = TcpStream::connect(front_address).unwrap();
            client.write_all(b"hello").unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            let mut reply = String::new();
            client.read_to_string(&mut reply).unwrap();
            assert_eq!(reply, "HELLO");
        }
    }
}
