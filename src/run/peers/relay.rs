//! One link's event loop: every connection a listener accepts is joined to a new connection to
//! the target, and bytes are copied both ways by one thread for all of them, through a fixed
//! buffer per direction, so a thousand connections cost a thousand pairs of descriptors and
//! buffers, not two thousand threads.
//!
//! Each direction keeps the kernel's back-pressure: while its buffer holds bytes the receiver
//! has not taken, nothing more is read from the sender. A side that finishes sending is passed
//! on as a half-close (`shutdown(Write)`) once its last bytes are delivered, so protocols that
//! read to end-of-file work; an error on either side closes both.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::kernel::sockdiag::SocketDiag;

/// Bytes in flight per direction of a connection.
const BUFFER: usize = 16 * 1024;
/// How long accepting pauses when the process is out of descriptors: the connection waits in
/// the listener's queue meanwhile.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);
const LISTENER: Token = Token(0);

/// Who may connect through a link.
#[derive(Debug)]
pub enum Admit {
    /// Anyone who can reach the listener: links inside the project's own namespaces.
    Anyone,
    /// Only this uid and root, as this process's user namespace sees them (the kernel says who
    /// owns the connecting socket): a peer's port on the host's loopback, which every local
    /// user can reach. `diag` must have been opened in the listener's network namespace;
    /// without it nobody is admitted.
    Owner { uid: u32, diag: Option<SocketDiag> },
}

impl Admit {
    /// Only `uid` and root, asked about in the calling thread's network namespace.
    pub fn owner(uid: u32) -> Admit {
        Admit::Owner {
            uid,
            diag: SocketDiag::open().ok(),
        }
    }

    fn admits(&self, client: &TcpStream) -> bool {
        let Admit::Owner { uid: owner, diag } = self else {
            return true;
        };
        let (Some(diag), Ok(from), Ok(to)) = (diag, client.peer_addr(), client.local_addr()) else {
            return false;
        };
        // A connection whose owner cannot be told is refused.
        diag.tcp_owner(from, to)
            .is_ok_and(|uid| uid == *owner || uid == 0)
    }
}

/// Accepts on `listener` and forwards every connection to `target` until the listener fails
/// for good; runs on the calling thread, whose network namespace the outgoing connections are
/// made in.
pub fn relay(
    listener: std::net::TcpListener,
    target: SocketAddr,
    admit: Admit,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut listener = TcpListener::from_std(listener);
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(256);
    let mut links: HashMap<usize, Link> = HashMap::new();
    let mut next_id = 1usize;
    let mut accept_paused = false;
    loop {
        let timeout = accept_paused.then_some(ACCEPT_PAUSE);
        if let Err(error) = poll.poll(&mut events, timeout) {
            if error.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(error);
        }
        if accept_paused || events.iter().any(|event| event.token() == LISTENER) {
            accept_paused = accept_all(&listener, target, &admit, &poll, &mut links, &mut next_id);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                continue;
            }
            let id = event.token().0 / 2;
            let Some(link) = links.get_mut(&id) else {
                continue;
            };
            if !link.pump()
                && let Some(mut link) = links.remove(&id)
            {
                link.close(&poll);
            }
        }
    }
}

/// Accepts every waiting connection; says whether accepting must pause (no descriptors left).
fn accept_all(
    listener: &TcpListener,
    target: SocketAddr,
    admit: &Admit,
    poll: &Poll,
    links: &mut HashMap<usize, Link>,
    next_id: &mut usize,
) -> bool {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(error) if error.kind() == ErrorKind::WouldBlock => return false,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            // Out of descriptors or memory: leave the rest queued and try again shortly.
            Err(_) => return true,
        };
        if !admit.admits(&client) {
            // Closed at once: the other user's program sees the connection end.
            continue;
        }
        // On loopback a connection is made at once; one that fails closes the client.
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let id = *next_id;
        *next_id += 1;
        let mut link = Link::new(client, server);
        if link.register(poll, id).is_err() {
            link.close(poll);
            continue;
        }
        links.insert(id, link);
    }
}

/// Bytes on their way from one side to the other.
struct Direction {
    buffer: Box<[u8]>,
    start: usize,
    end: usize,
    /// The sending side has finished.
    finished: bool,
    /// The finish was passed on to the receiving side.
    passed_on: bool,
}

impl Direction {
    fn new() -> Self {
        Direction {
            buffer: vec![0u8; BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            finished: false,
            passed_on: false,
        }
    }

    /// Moves what it can from `from` to `to`; `Err` means the connection is broken. Returns
    /// whether anything moved.
    fn pump(&mut self, from: &mut TcpStream, to: &mut TcpStream) -> Result<bool, ()> {
        let mut moved = false;
        loop {
            if self.start == self.end && !self.finished {
                match from.read(&mut self.buffer) {
                    Ok(0) => self.finished = true,
                    Ok(read) => {
                        self.start = 0;
                        self.end = read;
                    }
                    Err(error) if would_block(&error) => {}
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return Err(()),
                }
            }
            if self.start < self.end {
                match to.write(&self.buffer[self.start..self.end]) {
                    Ok(0) => return Err(()),
                    Ok(written) => {
                        self.start += written;
                        moved = true;
                        continue;
                    }
                    Err(error) if would_block(&error) => {}
                    Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return Err(()),
                }
            }
            if self.start == self.end && self.finished && !self.passed_on {
                let _ = to.shutdown(Shutdown::Write);
                self.passed_on = true;
                moved = true;
            }
            return Ok(moved);
        }
    }
}

/// A connection being written before its connect finished reports "not connected" on some
/// kernels: that is a wait, as a full buffer is.
fn would_block(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::WouldBlock | ErrorKind::NotConnected
    )
}

/// One accepted connection and the one made for it.
struct Link {
    client: TcpStream,
    server: TcpStream,
    upstream: Direction,
    downstream: Direction,
}

impl Link {
    fn new(client: TcpStream, server: TcpStream) -> Self {
        Link {
            client,
            server,
            upstream: Direction::new(),
            downstream: Direction::new(),
        }
    }

    fn register(&mut self, poll: &Poll, id: usize) -> std::io::Result<()> {
        let both = Interest::READABLE | Interest::WRITABLE;
        poll.registry()
            .register(&mut self.client, Token(id * 2), both)?;
        poll.registry()
            .register(&mut self.server, Token(id * 2 + 1), both)
    }

    /// Moves what can move; `false` when the link is over (both directions done, or broken).
    /// A connection to the target that failed shows as an error on its first read or write.
    fn pump(&mut self) -> bool {
        loop {
            let up = self.upstream.pump(&mut self.client, &mut self.server);
            let down = self.downstream.pump(&mut self.server, &mut self.client);
            match (up, down) {
                (Err(()), _) | (_, Err(())) => return false,
                (Ok(false), Ok(false)) => break,
                _ => {}
            }
        }
        !(self.upstream.passed_on && self.downstream.passed_on)
    }

    fn close(&mut self, poll: &Poll) {
        let _ = poll.registry().deregister(&mut self.client);
        let _ = poll.registry().deregister(&mut self.server);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};

    /// Threads of this process (the test harness runs other tests beside this one).
    fn threads() -> usize {
        std::fs::read_dir("/proc/self/task").map_or(0, |tasks| tasks.count())
    }

    #[test]
    fn a_thousand_connections_at_once_go_through_one_thread() {
        const CONNECTIONS: usize = 1000;
        // Four descriptors a connection in this one process: clients, both ends of the link,
        // the backend.
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
        assert!(
            hard >= 5 * CONNECTIONS as u64,
            "the descriptor limit is {hard}"
        );

        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = backend.local_addr().unwrap();
        // The backend answers nobody until every connection has arrived: all of them are open
        // through the link at once.
        let answering = std::thread::spawn(move || {
            let held: Vec<TcpStream> = (0..CONNECTIONS)
                .map(|_| backend.accept().unwrap().0)
                .collect();
            for mut stream in held {
                let mut request = String::new();
                stream.read_to_string(&mut request).unwrap();
                stream
                    .write_all(format!("{}!", request.to_uppercase()).as_bytes())
                    .unwrap();
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let front_address = front.local_addr().unwrap();
        std::thread::spawn(move || super::relay(front, target, super::Admit::Anyone));

        let before = threads();
        let mut clients = Vec::new();
        for index in 0..CONNECTIONS {
            let mut client = TcpStream::connect(front_address).unwrap();
            client
                .write_all(format!("peer-{index}").as_bytes())
                .unwrap();
            client.shutdown(Shutdown::Write).unwrap();
            clients.push(client);
        }
        let during = threads();
        for (index, mut client) in clients.into_iter().enumerate() {
            let mut reply = String::new();
            client.read_to_string(&mut reply).unwrap();
            assert_eq!(reply, format!("PEER-{index}!"));
        }
        answering.join().unwrap();
        // Thread-per-connection forwarding would add two thousand here.
        assert!(
            during < before + 20,
            "{before} threads before, {during} with {CONNECTIONS} connections open"
        );
    }

    #[test]
    fn a_large_transfer_keeps_every_byte_in_order() {
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = backend.local_addr().unwrap();
        let payload: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        std::thread::spawn(move || {
            let (mut stream, _) = backend.accept().unwrap();
            stream.write_all(&payload).unwrap();
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let front_address = front.local_addr().unwrap();
        std::thread::spawn(move || super::relay(front, target, super::Admit::Anyone));
        let mut client = TcpStream::connect(front_address).unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut received = Vec::new();
        client.read_to_end(&mut received).unwrap();
        assert!(
            received == expected,
            "{} bytes of {}",
            received.len(),
            expected.len()
        );
    }

    #[test]
    fn a_refused_target_closes_the_client() {
        let unused = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = unused.local_addr().unwrap();
        drop(unused);
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let front_address = front.local_addr().unwrap();
        std::thread::spawn(move || super::relay(front, target, super::Admit::Anyone));
        let mut client = TcpStream::connect(front_address).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut received = Vec::new();
        let outcome = client.read_to_end(&mut received);
        assert!(
            outcome.is_ok()
                || outcome.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "the client was left hanging"
        );
        assert!(received.is_empty());
    }

    /// Needs root, to connect as another user.
    #[test]
    fn only_the_owner_and_root_get_through() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: connecting as another user needs root");
            return;
        }
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let target = backend.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in backend.incoming() {
                let _ = stream.unwrap().write_all(b"welcome\n");
            }
        });
        let front = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = front.local_addr().unwrap().port();
        std::thread::spawn(move || super::relay(front, target, super::Admit::owner(65532)));
        let read_as = |uid: u32| {
            let output = std::process::Command::new("setpriv")
                .args([
                    format!("--reuid={uid}"),
                    format!("--regid={uid}"),
                    "--clear-groups".into(),
                    "/usr/bin/python3".into(),
                    "-c".into(),
                    format!(
                        "import socket; s = socket.create_connection(('127.0.0.1', {port}), timeout=10)\n\
                         try: print(s.recv(100).decode().strip() or 'closed')\n\
                         except OSError as e: print('closed')"
                    ),
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).trim().to_string()
        };
        assert_eq!(read_as(65532), "welcome", "the owner");
        assert_eq!(read_as(0), "welcome", "root");
        assert_eq!(read_as(65533), "closed", "another user");
    }
}
