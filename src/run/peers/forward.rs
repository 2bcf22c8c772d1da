//! Forwarding TCP connections between network namespaces in user space: a listening socket
//! made in one namespace keeps accepting there, while the thread that connects onwards has
//! joined another (`setns` changes only the calling thread's network namespace). Nothing needs
//! privileges beyond envkit's own user namespace, which owns the peers' network namespaces
//! (and so may write their nftables rules, which [`link_peers_into`] uses).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

pub use super::relay::Admit;
use crate::kernel::nftables::{self, Redirect};
use crate::kernel::ns::{self, Namespace};

/// A network namespace, by a handle on `/proc/PID/ns/net`.
pub fn namespace_of(pid: i32) -> std::io::Result<Arc<OwnedFd>> {
    ns::namespace_of(pid, Namespace::Network).map(Arc::new)
}

/// Runs `work` on a short-lived thread that has joined `namespace`, so the caller's
/// namespace is untouched.
fn in_namespace<T: Send + 'static>(
    namespace: &Arc<OwnedFd>,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let namespace = Arc::clone(namespace);
    std::thread::spawn(move || {
        ns::join(namespace.as_fd(), Namespace::Network)?;
        work()
    })
    .join()
    .unwrap_or_else(|_| Err(std::io::Error::other("a thread in the namespace failed")))
}

/// Binds a listener on `address` inside `namespace`.
pub fn listen_in(namespace: &Arc<OwnedFd>, address: SocketAddr) -> std::io::Result<TcpListener> {
    in_namespace(namespace, move || TcpListener::bind(address))
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

/// How the peers were linked into a namespace.
#[derive(Debug)]
pub enum Linked {
    /// By the kernel's redirects: every port of the namespace stays its program's own.
    Redirected,
    /// The kernel could not redirect (`why`), so envkit listens on each peer's address and
    /// port inside the namespace: a program there that binds the wildcard address on one of
    /// those ports cannot.
    OnTheirPorts { why: std::io::Error },
}

/// Makes each peer answer at its address inside the network namespace `inside` (a peer's or
/// a private session's), forwarding to the same address in this process's namespace, where
/// the peer's supervisor listens.
///
/// Inside, envkit listens only on loopback ports the kernel picks, and a redirect in the
/// namespace's own nftables table sends connections for each peer's address and port there:
/// the program inside keeps every port for itself, wildcard binds included. Where the kernel
/// cannot redirect, it falls back to listening on the peers' addresses and ports. A port that
/// cannot be bound is skipped: the program inside then sees a refused connection, as it would
/// for a peer that is down.
pub fn link_peers_into(inside: &Arc<OwnedFd>, peers: &[(String, Vec<u16>)]) -> Linked {
    let targets: Vec<SocketAddrV4> = peers
        .iter()
        .filter_map(|(address, ports)| Some((address.parse::<Ipv4Addr>().ok()?, ports)))
        .flat_map(|(ip, ports)| ports.iter().map(move |port| SocketAddrV4::new(ip, *port)))
        .collect();
    let mut links = Vec::new();
    for target in &targets {
        let Ok(listener) = listen_in(inside, SocketAddr::from((Ipv4Addr::LOCALHOST, 0))) else {
            continue;
        };
        if let Ok(SocketAddr::V4(to)) = listener.local_addr() {
            links.push((listener, Redirect { from: *target, to }));
        }
    }
    let redirects: Vec<Redirect> = links.iter().map(|(_, redirect)| *redirect).collect();
    match in_namespace(inside, move || nftables::redirect_tcp(&redirects)) {
        Ok(()) => {
            for (listener, redirect) in links {
                serve(listener, redirect.from.into(), None, Admit::Anyone);
            }
            Linked::Redirected
        }
        Err(why) => {
            drop(links);
            for target in targets {
                if let Ok(listener) = listen_in(inside, target.into()) {
                    serve(listener, target.into(), None, Admit::Anyone);
                }
            }
            Linked::OnTheirPorts { why }
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
