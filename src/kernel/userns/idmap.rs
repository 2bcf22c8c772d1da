//! Ids and id maps as plain values: who ran envkit, subordinate ranges read from the text of
//! `/etc/subuid` and `/etc/subgid`, and the maps envkit's user namespace gets, worked out by
//! pure functions so that tests check them without a namespace.

/// Who ran envkit, as seen before entering the namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invoker {
    pub uid: u32,
    pub gid: u32,
    /// The login name (`$USER` when the password database has no entry).
    pub name: String,
}

impl Invoker {
    /// The process's real ids and name.
    pub fn current() -> Invoker {
        let uid = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| format!("user{uid}"));
        Invoker { uid, gid, name }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }
}

/// A subordinate id range from `/etc/subuid` or `/etc/subgid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub start: u32,
    pub count: u32,
}

/// One line of a uid or gid map: `inner outer count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapLine {
    pub inner: u32,
    pub outer: u32,
    pub count: u32,
}

/// The maps envkit uses for an invoker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maps {
    pub uid: Vec<MapLine>,
    pub gid: Vec<MapLine>,
    /// Written by `newuidmap`/`newgidmap` (rootless) rather than directly (root).
    pub through_helpers: bool,
}

/// User or group ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Uid,
    Gid,
}

impl IdKind {
    /// As the subordinate files name it.
    pub fn name(self) -> &'static str {
        match self {
            IdKind::Uid => "uid",
            IdKind::Gid => "gid",
        }
    }

    /// The file listing every user's subordinate ranges of this kind.
    pub fn subordinate_file(self) -> &'static str {
        match self {
            IdKind::Uid => "/etc/subuid",
            IdKind::Gid => "/etc/subgid",
        }
    }
}

/// The invoker has no subordinate range of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no subordinate {} range in {}", .0.name(), .0.subordinate_file())]
pub struct NoRange(pub IdKind);

/// The first id after every range already given out (at least 100000), for a suggestion
/// that does not overlap another user's range.
pub fn free_range_start(text: &str) -> u64 {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':').skip(1);
            let start: u64 = fields.next()?.trim().parse().ok()?;
            let count: u64 = fields.next()?.trim().parse().ok()?;
            Some(start + count)
        })
        .fold(100_000, u64::max)
}

/// Reads the first range for `user` (by name or uid) from a subuid/subgid file's text.
pub fn find_range(text: &str, name: &str, id: u32) -> Option<IdRange> {
    let id = id.to_string();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let owner = fields.next()?;
            let start = fields.next()?.trim().parse().ok()?;
            let count = fields.next()?.trim().parse().ok()?;
            (owner == name || owner == id).then_some(IdRange { start, count })
        })
        .find(|range| range.count > 0)
}

/// The keep-id map: inner ids below `id` to the start of the range, `id` to itself, the rest
/// after it. An id beyond the range's size keeps the range whole and maps itself apart.
pub fn keep_id_map(id: u32, range: IdRange) -> Vec<MapLine> {
    if id == 0 {
        return vec![
            MapLine {
                inner: 0,
                outer: 0,
                count: 1,
            },
            MapLine {
                inner: 1,
                outer: range.start,
                count: range.count,
            },
        ];
    }
    if id >= range.count {
        return vec![
            MapLine {
                inner: 0,
                outer: range.start,
                count: range.count,
            },
            MapLine {
                inner: id,
                outer: id,
                count: 1,
            },
        ];
    }
    let mut lines = vec![
        MapLine {
            inner: 0,
            outer: range.start,
            count: id,
        },
        MapLine {
            inner: id,
            outer: id,
            count: 1,
        },
    ];
    let rest = range.count - id - 1;
    if rest > 0 {
        lines.push(MapLine {
            inner: id + 1,
            outer: range.start + id + 1,
            count: rest,
        });
    }
    lines
}

/// An identity map over the ids a namespace has, from its `uid_map` or `gid_map` text (all of
/// them on a plain host).
pub fn identity_map(current_map: &str) -> Vec<MapLine> {
    current_map
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(|f| f.parse::<u32>().ok());
            let inner = fields.next()??;
            let _outer = fields.next()??;
            let count = fields.next()??;
            Some(MapLine {
                inner,
                outer: inner,
                count,
            })
        })
        .collect()
}

/// Root's maps: its own ids as they are, from the text of its current `uid_map` and `gid_map`.
pub fn root_maps(uid_map: &str, gid_map: &str) -> Maps {
    Maps {
        uid: identity_map(uid_map),
        gid: identity_map(gid_map),
        through_helpers: false,
    }
}

/// An unprivileged user's keep-id maps, from the text of `/etc/subuid` and `/etc/subgid`
/// (empty when a file is missing).
pub fn rootless_maps(invoker: &Invoker, subuid: &str, subgid: &str) -> Result<Maps, NoRange> {
    let uid_range = find_range(subuid, &invoker.name, invoker.uid).ok_or(NoRange(IdKind::Uid))?;
    let gid_range = find_range(subgid, &invoker.name, invoker.gid).ok_or(NoRange(IdKind::Gid))?;
    Ok(Maps {
        uid: keep_id_map(invoker.uid, uid_range),
        gid: keep_id_map(invoker.gid, gid_range),
        through_helpers: true,
    })
}

/// A map as `/proc/PID/uid_map` takes it: one `inner outer count` line each.
pub fn render(lines: &[MapLine]) -> String {
    lines
        .iter()
        .map(|l| format!("{} {} {}\n", l.inner, l.outer, l.count))
        .collect()
}

/// The arguments `newuidmap` and `newgidmap` take to write `lines` for process `pid`.
pub fn helper_arguments(pid: i32, lines: &[MapLine]) -> Vec<String> {
    let mut arguments = vec![pid.to_string()];
    for line in lines {
        arguments.extend([
            line.inner.to_string(),
            line.outer.to_string(),
            line.count.to_string(),
        ]);
    }
    arguments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_found_by_name_or_uid() {
        let text =
            "# comment\nalice:100000:65536\n1002:200000:65536\nbob:300000:0\nbob:400000:1000\n";
        assert_eq!(
            find_range(text, "alice", 1001),
            Some(IdRange {
                start: 100000,
                count: 65536
            })
        );
        assert_eq!(
            find_range(text, "carol", 1002),
            Some(IdRange {
                start: 200000,
                count: 65536
            })
        );
        assert_eq!(
            find_range(text, "bob", 1003),
            Some(IdRange {
                start: 400000,
                count: 1000
            })
        );
        assert_eq!(find_range(text, "dave", 1004), None);
        assert_eq!(find_range("garbage\n:::\n", "dave", 1004), None);
    }

    #[test]
    fn a_suggested_range_overlaps_nobody() {
        assert_eq!(free_range_start(""), 100_000);
        assert_eq!(
            free_range_start("a:100000:65536\nb:165536:65536\n"),
            231_072
        );
    }

    #[test]
    fn keep_id_maps_the_user_to_itself_and_the_rest_to_the_range() {
        let range = IdRange {
            start: 100000,
            count: 65536,
        };
        // The map from notes/rootless-ids.md.
        assert_eq!(
            render(&keep_id_map(1001, range)),
            "0 100000 1001\n1001 1001 1\n1002 101002 64534\n"
        );
        // A directory-service uid beyond the range.
        assert_eq!(
            render(&keep_id_map(1_788_609_210, range)),
            "0 100000 65536\n1788609210 1788609210 1\n"
        );
        // The last id of the range leaves nothing after it.
        assert_eq!(
            render(&keep_id_map(65535, range)),
            "0 100000 65535\n65535 65535 1\n"
        );
    }

    #[test]
    fn root_keeps_its_own_ids() {
        assert_eq!(
            render(&identity_map("         0          0 4294967295\n")),
            "0 0 4294967295\n"
        );
        assert_eq!(render(&identity_map("0 100000 65536\n")), "0 0 65536\n");
        let maps = root_maps("0 0 4294967295\n", "0 100000 65536\n");
        assert_eq!(
            (render(&maps.uid), render(&maps.gid), maps.through_helpers),
            ("0 0 4294967295\n".into(), "0 0 65536\n".into(), false)
        );
    }

    #[test]
    fn a_user_gets_keep_id_maps_from_the_subordinate_files() {
        let alice = Invoker {
            uid: 1001,
            gid: 1002,
            name: "alice".into(),
        };
        let subuid = "bob:100000:65536\nalice:165536:65536\n";
        // Listed by gid rather than by name.
        let subgid = "1002:231072:65536\n";
        let Ok(maps) = rootless_maps(&alice, subuid, subgid) else {
            panic!("alice has both ranges");
        };
        assert_eq!(
            render(&maps.uid),
            "0 165536 1001\n1001 1001 1\n1002 166538 64534\n"
        );
        assert_eq!(
            render(&maps.gid),
            "0 231072 1002\n1002 1002 1\n1003 232075 64533\n"
        );
        assert!(maps.through_helpers);
        assert_eq!(
            helper_arguments(42, &maps.uid),
            [
                "42", "0", "165536", "1001", "1001", "1001", "1", "1002", "166538", "64534"
            ]
        );
        assert_eq!(rootless_maps(&alice, subuid, ""), Err(NoRange(IdKind::Gid)));
        assert_eq!(rootless_maps(&alice, "", subgid), Err(NoRange(IdKind::Uid)));
    }
}
