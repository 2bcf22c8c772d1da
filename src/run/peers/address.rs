//! Each peer's loopback address on the host: one per peer of each project, kept in
//! `<runtime>/addresses.json`, from a range of the user's own.

use std::collections::BTreeMap;
use std::path::Path;

use super::PeerError;
use super::files::hold_lock;
use crate::run::io;

/// The loopback address of `peer` in `project`, the same every time: chosen once, recorded in
/// `<runtime>/addresses.json` under a lock. A new address is one where none of `ports` is taken
/// (by another program, or by another runtime dir's peers).
pub fn address(
    runtime_dir: &Path,
    project: &Path,
    peer: &str,
    ports: &[u16],
) -> Result<String, PeerError> {
    let _held = hold_lock(&runtime_dir.join("addresses.lock"))?;
    let path = runtime_dir.join("addresses.json");
    let mut table: BTreeMap<String, String> = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let key = format!("{}#{peer}", project.display());
    if let Some(address) = table.get(&key) {
        return Ok(address.clone());
    }
    let taken: std::collections::HashSet<&String> = table.values().collect();
    let address = user_addresses(crate::kernel::userns::invoker().uid)
        .find(|a| !taken.contains(a) && ports_are_free(a, ports))
        .ok_or(PeerError::NoAddress)?;
    table.insert(key, address.clone());
    let bytes = serde_json::to_vec_pretty(&table).unwrap_or_default();
    crate::fetch::write_bytes_atomically(&path, &bytes)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .map_err(io("write", &path))?;
    Ok(address)
}

/// How many loopback addresses each user's peers may take.
const ADDRESSES_PER_USER: u32 = 512;

/// The loopback addresses a user's peers take from, in order: each user has a runtime dir
/// (and address table) of their own, so users get ranges of their own, apart on the one
/// loopback network: 127.64.0.0 to 127.191.255.255, 512 addresses for each of 16,384 uids
/// (uids that far apart share a range, and then `ports_are_free` keeps them apart).
pub fn user_addresses(uid: u32) -> impl Iterator<Item = String> {
    let first = (uid % 16_384) * ADDRESSES_PER_USER;
    (first..first + ADDRESSES_PER_USER)
        .map(|index| std::net::Ipv4Addr::from((127 << 24) | ((64 << 16) + index)))
        .filter(|ip| !matches!(ip.octets()[3], 0 | 255))
        .map(|ip| ip.to_string())
}

/// Whether nothing listens on any of `ports` at `address` (a port that may not be bound for
/// another reason, such as a privileged one, does not count as taken).
fn ports_are_free(address: &str, ports: &[u16]) -> bool {
    ports.iter().all(|port| {
        !matches!(
            std::net::TcpListener::bind((address, *port)),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_of_each_project_keeps_its_own_address() {
        let runtime = tempfile::tempdir().unwrap();
        let a = address(runtime.path(), Path::new("/p/one"), "db", &[5432]).unwrap();
        let b = address(runtime.path(), Path::new("/p/one"), "cache", &[]).unwrap();
        let c = address(runtime.path(), Path::new("/p/two"), "db", &[5432]).unwrap();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        assert_eq!(
            address(runtime.path(), Path::new("/p/one"), "db", &[5432]).unwrap(),
            a
        );
        assert!(a.starts_with("127."), "{a}");
        let parsed: std::net::Ipv4Addr = a.parse().unwrap();
        assert!(parsed.is_loopback());
    }

    #[test]
    fn users_take_addresses_from_ranges_of_their_own() {
        let root: Vec<String> = user_addresses(0).collect();
        assert_eq!(root.first().map(String::as_str), Some("127.64.0.1"));
        assert!(root.len() >= 500);
        let (one, other): (Vec<String>, Vec<String>) = (
            user_addresses(1000).collect(),
            user_addresses(1128).collect(),
        );
        assert!(
            one.iter().all(|a| !other.contains(a)),
            "uids 1000 and 1128 apart"
        );
        for uid in [0, 1000, 16_383, 65_534] {
            for address in user_addresses(uid) {
                let ip: std::net::Ipv4Addr = address.parse().unwrap();
                assert!(
                    ip.is_loopback() && (64..192).contains(&ip.octets()[1]),
                    "{ip}"
                );
            }
        }
    }

    #[test]
    fn a_new_address_skips_one_whose_port_is_taken() {
        let elsewhere = tempfile::tempdir().unwrap();
        let first = address(elsewhere.path(), Path::new("/p"), "web", &[]).unwrap();
        let busy = std::net::TcpListener::bind((first.as_str(), 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        let runtime = tempfile::tempdir().unwrap();
        let chosen = address(runtime.path(), Path::new("/p"), "web", &[port]).unwrap();
        assert_ne!(chosen, first, "{first}:{port} is taken");
        let unhindered = address(runtime.path(), Path::new("/q"), "web", &[]).unwrap();
        assert_eq!(unhindered, first);
    }
}
