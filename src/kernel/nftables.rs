//! Redirecting TCP connections inside a network namespace with the kernel's own NAT: an
//! nftables table whose `output` chain rewrites the destination of connections a program of
//! the namespace makes (`ip daddr A tcp dport P dnat to 127.0.0.1:Q`), written over netlink
//! (`NETLINK_NETFILTER`) in one batch that the kernel applies whole or not at all.
//!
//! A redirect takes no port in the namespace: a service there may still bind the wildcard
//! address on P. Whoever owns the network namespace's user namespace may write its rules, so
//! a rootless envkit can do it in the namespaces it made.

use std::net::SocketAddrV4;
use std::os::fd::OwnedFd;
use std::time::Duration;

/// Connections made in the namespace to `from` go to `to` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirect {
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
}

/// The table and chain envkit writes: its own, beside whatever else the namespace has.
const TABLE: &str = "envkit";
const CHAIN: &str = "links";

// Netlink and nfnetlink framing.
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLM_F_APPEND: u16 = 0x800;
const NLMSG_ERROR: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const NFNL_MSG_BATCH_BEGIN: u16 = 16;
const NFNL_MSG_BATCH_END: u16 = 17;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFPROTO_IPV4: u8 = 2;

// nftables messages and their attributes (linux/netfilter/nf_tables.h).
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_CHAIN_TABLE: u16 = 1;
const NFTA_CHAIN_NAME: u16 = 3;
const NFTA_CHAIN_HOOK: u16 = 4;
const NFTA_CHAIN_TYPE: u16 = 7;
const NFTA_HOOK_HOOKNUM: u16 = 1;
const NFTA_HOOK_PRIORITY: u16 = 2;
const NF_INET_LOCAL_OUT: u32 = 3;
/// Where destination NAT sits on the output hook.
const NF_IP_PRI_NAT_DST: i32 = -100;
const NFTA_RULE_TABLE: u16 = 1;
const NFTA_RULE_CHAIN: u16 = 2;
const NFTA_RULE_EXPRESSIONS: u16 = 4;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_EXPR_NAME: u16 = 1;
const NFTA_EXPR_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NFT_REG_1: u32 = 1;
const NFT_REG_2: u32 = 2;

/// Writes `redirects` into the calling thread's network namespace, all or none.
pub fn redirect_tcp(redirects: &[Redirect]) -> std::io::Result<()> {
    if redirects.is_empty() {
        return Ok(());
    }
    let socket = super::netlink::socket(nix::libc::NETLINK_NETFILTER)?;
    // A kernel that never answers must not hang a peer's start.
    super::netlink::set_receive_timeout(&socket, Duration::from_secs(5))?;
    let (batch, acknowledged) = batch(redirects);
    super::netlink::send(&socket, &batch)?;
    wait_for_acks(&socket, acknowledged)
}

/// The batch: begin, the table, the chain, a rule per redirect, end. Returns it with the
/// number of messages the kernel acknowledges.
fn batch(redirects: &[Redirect]) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut sequence = 0;
    let mut push = |out: &mut Vec<u8>, kind: u16, flags: u16, family: u8, body: &[u8]| {
        sequence += 1;
        // The batch's frame names the subsystem it is for in its resource id.
        let batch_frame = matches!(kind, NFNL_MSG_BATCH_BEGIN | NFNL_MSG_BATCH_END);
        let resource = if batch_frame { NFNL_SUBSYS_NFTABLES } else { 0 };
        message(out, kind, flags, sequence, (family, resource), body);
    };
    let nft = |kind: u16| (NFNL_SUBSYS_NFTABLES << 8) | kind;
    let create = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE;
    push(&mut out, NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 0, &[]);

    let mut table = Vec::new();
    attribute(&mut table, NFTA_TABLE_NAME, &text(TABLE));
    push(
        &mut out,
        nft(NFT_MSG_NEWTABLE),
        create,
        NFPROTO_IPV4,
        &table,
    );

    let mut chain = Vec::new();
    attribute(&mut chain, NFTA_CHAIN_TABLE, &text(TABLE));
    attribute(&mut chain, NFTA_CHAIN_NAME, &text(CHAIN));
    let mut hook = Vec::new();
    attribute(
        &mut hook,
        NFTA_HOOK_HOOKNUM,
        &NF_INET_LOCAL_OUT.to_be_bytes(),
    );
    attribute(
        &mut hook,
        NFTA_HOOK_PRIORITY,
        &NF_IP_PRI_NAT_DST.to_be_bytes(),
    );
    attribute(&mut chain, NFTA_CHAIN_HOOK | NLA_F_NESTED, &hook);
    attribute(&mut chain, NFTA_CHAIN_TYPE, &text("nat"));
    push(
        &mut out,
        nft(NFT_MSG_NEWCHAIN),
        create,
        NFPROTO_IPV4,
        &chain,
    );

    for redirect in redirects {
        let mut rule = Vec::new();
        attribute(&mut rule, NFTA_RULE_TABLE, &text(TABLE));
        attribute(&mut rule, NFTA_RULE_CHAIN, &text(CHAIN));
        attribute(
            &mut rule,
            NFTA_RULE_EXPRESSIONS | NLA_F_NESTED,
            &rule_expressions(redirect),
        );
        push(
            &mut out,
            nft(NFT_MSG_NEWRULE),
            create | NLM_F_APPEND,
            NFPROTO_IPV4,
            &rule,
        );
    }
    push(&mut out, NFNL_MSG_BATCH_END, NLM_F_REQUEST, 0, &[]);
    (out, 2 + redirects.len())
}

/// `ip daddr FROM tcp dport FROM_PORT dnat to TO:TO_PORT`, as the kernel's expressions: load,
/// compare, load, compare, load, compare, two immediates, nat.
fn rule_expressions(redirect: &Redirect) -> Vec<u8> {
    const NETWORK_HEADER: u32 = 1;
    const TRANSPORT_HEADER: u32 = 2;
    /// The destination address in an IPv4 header; the destination port in a TCP one.
    const DADDR_OFFSET: u32 = 16;
    const DPORT_OFFSET: u32 = 2;
    const NFT_META_L4PROTO: u32 = 16;
    const NFT_NAT_DNAT: u32 = 1;
    let mut list = Vec::new();
    let payload = |list: &mut Vec<u8>, base: u32, offset: u32, length: u32| {
        expression(
            list,
            "payload",
            &[
                (1, NFT_REG_1.to_be_bytes().to_vec()),
                (2, base.to_be_bytes().to_vec()),
                (3, offset.to_be_bytes().to_vec()),
                (4, length.to_be_bytes().to_vec()),
            ],
        );
    };
    let equals = |list: &mut Vec<u8>, value: &[u8]| {
        let mut data = Vec::new();
        attribute(&mut data, NFTA_DATA_VALUE, value);
        expression(
            list,
            "cmp",
            &[
                (1, NFT_REG_1.to_be_bytes().to_vec()),
                // NFT_CMP_EQ
                (2, 0u32.to_be_bytes().to_vec()),
                (3 | NLA_F_NESTED, data),
            ],
        );
    };
    let immediate = |list: &mut Vec<u8>, register: u32, value: &[u8]| {
        let mut data = Vec::new();
        attribute(&mut data, NFTA_DATA_VALUE, value);
        expression(
            list,
            "immediate",
            &[
                (1, register.to_be_bytes().to_vec()),
                (2 | NLA_F_NESTED, data),
            ],
        );
    };
    payload(&mut list, NETWORK_HEADER, DADDR_OFFSET, 4);
    equals(&mut list, &redirect.from.ip().octets());
    expression(
        &mut list,
        "meta",
        &[
            (1, NFT_REG_1.to_be_bytes().to_vec()),
            (2, NFT_META_L4PROTO.to_be_bytes().to_vec()),
        ],
    );
    equals(&mut list, &[nix::libc::IPPROTO_TCP as u8]);
    payload(&mut list, TRANSPORT_HEADER, DPORT_OFFSET, 2);
    equals(&mut list, &redirect.from.port().to_be_bytes());
    immediate(&mut list, NFT_REG_1, &redirect.to.ip().octets());
    immediate(&mut list, NFT_REG_2, &redirect.to.port().to_be_bytes());
    expression(
        &mut list,
        "nat",
        &[
            (1, NFT_NAT_DNAT.to_be_bytes().to_vec()),
            (2, u32::from(NFPROTO_IPV4).to_be_bytes().to_vec()),
            // The address from register 1, the port from register 2.
            (3, NFT_REG_1.to_be_bytes().to_vec()),
            (5, NFT_REG_2.to_be_bytes().to_vec()),
        ],
    );
    list
}

/// One element of a rule's expression list: its name, then its own attributes.
fn expression(list: &mut Vec<u8>, name: &str, attributes: &[(u16, Vec<u8>)]) {
    let mut data = Vec::new();
    for (kind, value) in attributes {
        attribute(&mut data, *kind, value);
    }
    let mut element = Vec::new();
    attribute(&mut element, NFTA_EXPR_NAME, &text(name));
    attribute(&mut element, NFTA_EXPR_DATA | NLA_F_NESTED, &data);
    attribute(list, NFTA_LIST_ELEM | NLA_F_NESTED, &element);
}

/// A netlink message: its header, nfnetlink's header (the family, a resource id), `body`.
fn message(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    sequence: u32,
    (family, resource): (u8, u16),
    body: &[u8],
) {
    let length = 16 + 4 + body.len();
    out.extend_from_slice(&(length as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&sequence.to_ne_bytes());
    // The port id: the kernel fills in the sender's.
    out.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version 0, resource id (big-endian).
    out.extend_from_slice(&[family, 0]);
    out.extend_from_slice(&resource.to_be_bytes());
    out.extend_from_slice(body);
    pad(out);
}

/// A netlink attribute: length, type, value, padded to four bytes.
fn attribute(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(value);
    pad(out);
}

fn pad(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// A string attribute's value: the kernel wants its terminating zero.
fn text(value: &str) -> Vec<u8> {
    let mut bytes = value.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

/// Reads the kernel's answers until `expected` messages are acknowledged; the first error
/// (the whole batch is then undone) is returned.
fn wait_for_acks(socket: &OwnedFd, expected: usize) -> std::io::Result<()> {
    let mut acknowledged = 0;
    let mut buffer = vec![0u8; 8192];
    while acknowledged < expected {
        let length = super::netlink::receive(socket, &mut buffer)?;
        let mut rest = buffer.get(..length).unwrap_or_default();
        while rest.len() >= 16 {
            let field = |at: usize| -> [u8; 4] {
                rest.get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .unwrap_or_default()
            };
            let size = u32::from_ne_bytes(field(0)) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if kind == NLMSG_ERROR {
                let code = i32::from_ne_bytes(field(16));
                if code != 0 {
                    return Err(std::io::Error::from_raw_os_error(-code));
                }
                acknowledged += 1;
            }
            let step = size.max(16).next_multiple_of(4);
            rest = rest.get(step..).unwrap_or_default();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    #[test]
    fn every_message_of_the_batch_is_framed_and_aligned() {
        let redirect = Redirect {
            from: SocketAddrV4::new(Ipv4Addr::new(127, 64, 0, 2), 5432),
            to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000),
        };
        let (batch, acknowledged) = batch(&[redirect, redirect]);
        assert_eq!(acknowledged, 4);
        let mut kinds = Vec::new();
        let mut rest = &batch[..];
        while !rest.is_empty() {
            let size = u32::from_ne_bytes(rest[..4].try_into().unwrap()) as usize;
            assert_eq!(size % 4, 0, "padded");
            kinds.push(u16::from_ne_bytes([rest[4], rest[5]]));
            rest = &rest[size..];
        }
        let nft = |kind: u16| (NFNL_SUBSYS_NFTABLES << 8) | kind;
        assert_eq!(
            kinds,
            [
                NFNL_MSG_BATCH_BEGIN,
                nft(NFT_MSG_NEWTABLE),
                nft(NFT_MSG_NEWCHAIN),
                nft(NFT_MSG_NEWRULE),
                nft(NFT_MSG_NEWRULE),
                NFNL_MSG_BATCH_END
            ]
        );
        let rule = batch
            .windows(4)
            .position(|w| w == [127, 64, 0, 2])
            .expect("the rule holds the address it matches");
        assert!(rule > 0);
    }

    /// Needs root, for a network namespace of its own (a test thread may not make a user
    /// namespace: the test binary has threads).
    #[test]
    fn a_redirect_leaves_the_port_free_for_a_wildcard_listener() {
        if !nix::unistd::geteuid().is_root() {
            assert!(
                std::env::var_os("ENVKIT_MUST_WORK").is_none(),
                "a network namespace needs root"
            );
            eprintln!("skipped: a network namespace needs root");
            return;
        }
        let outcome = std::thread::spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            crate::kernel::sandbox::loopback_up().unwrap();
            let sibling = TcpListener::bind("127.0.0.1:0").unwrap();
            let to = match sibling.local_addr().unwrap() {
                std::net::SocketAddr::V4(to) => to,
                other => panic!("{other}"),
            };
            let from = SocketAddrV4::new(Ipv4Addr::new(127, 64, 0, 2), 5432);
            redirect_tcp(&[Redirect { from, to }]).unwrap();
            // The service's own wildcard bind on the same port still succeeds.
            let service = TcpListener::bind("0.0.0.0:5432").unwrap();
            let answer = |listener: TcpListener, reply: &'static [u8]| {
                std::thread::spawn(move || {
                    let (mut stream, _) = listener.accept().unwrap();
                    stream.write_all(reply).unwrap();
                })
            };
            let served = [answer(sibling, b"sibling"), answer(service, b"service")];
            let read = |address: &str| {
                let mut reply = String::new();
                TcpStream::connect(address)
                    .unwrap()
                    .read_to_string(&mut reply)
                    .unwrap();
                reply
            };
            let replies = (read("127.64.0.2:5432"), read("127.0.0.1:5432"));
            for thread in served {
                thread.join().unwrap();
            }
            replies
        })
        .join()
        .unwrap();
        assert_eq!(outcome, ("sibling".into(), "service".into()));
    }
}
