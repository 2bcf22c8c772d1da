//! envkit's user namespace: one id map per user, entered by every command that writes the
//! store or the cache, so that building and running work the same for root and for an
//! unprivileged user.
//!
//! - Root gets an identity map (its own ids, as they are): nothing changes on disk, but the
//!   kernel treats every mount envkit makes as a user-namespace mount, so overlay's bookkeeping
//!   lives in `user.overlay.*` xattrs for everybody and one store format serves both.
//! - An unprivileged user gets the "keep-id" map of `notes/rootless-ids.md`: inner ids below
//!   the user's uid go to the start of their subordinate range, the uid maps to itself, the
//!   rest continue in the range. The image's system ids then exist on disk (as subordinate ids),
//!   and what the user creates in a project mount is theirs on the host.
//!
//! Inside, envkit runs as inner root. The map is written from outside by a helper forked before
//! `unshare` (a process cannot map itself once inside), with `newuidmap`/`newgidmap` when
//! rootless. `unshare(CLONE_NEWUSER)` refuses threaded processes, so [`enter`] must run before
//! any thread starts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error(
        "user `{user}` has no subordinate {kind} range in {file}, so envkit cannot give an \
         image's system users ids of their own"
    )]
    NoRange {
        user: String,
        kind: &'static str,
        file: &'static str,
    },
    #[error("cannot read {file}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{program}` is not installed; rootless envkit needs it (Debian package `uidmap`)")]
    MissingTool { program: String },
    #[error("cannot write the id map of envkit's user namespace: {0}")]
    Map(String),
    #[error("cannot enter a user namespace: {0}")]
    Unshare(nix::errno::Errno),
    #[error("cannot become root in envkit's user namespace: {0}")]
    Become(nix::errno::Errno),
}

impl UsernsError {
    /// What the user can do about it.
    pub fn help(&self) -> Option<String> {
        match self {
            UsernsError::NoRange { user, .. } => {
                let taken = |file: &str| {
                    std::fs::read_to_string(file)
                        .map(|text| free_range_start(&text))
                        .unwrap_or(100_000)
                };
                let start = taken("/etc/subuid").max(taken("/etc/subgid"));
                let end = start + 65_535;
                Some(format!(
                    "ask an administrator to add one, for example: \
                     `sudo usermod --add-subuids {start}-{end} --add-subgids {start}-{end} {user}`"
                ))
            }
            UsernsError::MissingTool { .. } => Some("sudo apt install uidmap".into()),
            UsernsError::Unshare(nix::errno::Errno::EPERM | nix::errno::Errno::ENOSPC) => Some(
                "unprivileged user namespaces may be disabled: check \
                 `sysctl kernel.unprivileged_userns_clone user.max_user_namespaces`"
                    .into(),
            ),
            _ => None,
        }
    }
}

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

/// An identity map over the ids this process's namespace has (all of them on a plain host).
fn identity_map(current_map: &str) -> Vec<MapLine> {
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

/// The maps envkit uses for `invoker`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Maps {
    pub uid: Vec<MapLine>,
    pub gid: Vec<MapLine>,
    /// Written by `newuidmap`/`newgidmap` (rootless) rather than directly (root).
    pub through_helpers: bool,
}

fn read(file: &str) -> Result<String, UsernsError> {
    std::fs::read_to_string(file).map_err(|source| UsernsError::Read {
        file: file.to_string(),
        source,
    })
}

/// Works out the maps for `invoker`; fails for a user without subordinate ranges.
pub fn maps_for(invoker: &Invoker) -> Result<Maps, UsernsError> {
    if invoker.is_root() {
        return Ok(Maps {
            uid: identity_map(&read("/proc/self/uid_map")?),
            gid: identity_map(&read("/proc/self/gid_map")?),
            through_helpers: false,
        });
    }
    let range = |file: &'static str, kind: &'static str, id: u32| {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(UsernsError::Read {
                    file: file.to_string(),
                    source,
                });
            }
        };
        find_range(&text, &invoker.name, id).ok_or_else(|| UsernsError::NoRange {
            user: invoker.name.clone(),
            kind,
            file,
        })
    };
    let uid_range = range("/etc/subuid", "uid", invoker.uid)?;
    let gid_range = range("/etc/subgid", "gid", invoker.gid)?;
    Ok(Maps {
        uid: keep_id_map(invoker.uid, uid_range),
        gid: keep_id_map(invoker.gid, gid_range),
        through_helpers: true,
    })
}

/// What entering gave: who ran envkit, and the maps now in force.
#[derive(Debug, Clone)]
pub struct Entered {
    pub invoker: Invoker,
    pub maps: Maps,
}

static ENTERED: OnceLock<Entered> = OnceLock::new();

/// Set for envkit processes that envkit starts inside its namespace (a peer's supervisor):
/// `uid:gid:name` of the invoking user. They are in the namespace already.
pub const INHERITED_VARIABLE: &str = "ENVKIT_USERNS_INVOKER";

/// The variable a child envkit inherits the namespace through, when this process is in it.
pub fn inherited_value() -> Option<String> {
    let entered = ENTERED.get()?;
    let invoker = &entered.invoker;
    Some(format!("{}:{}:{}", invoker.uid, invoker.gid, invoker.name))
}

fn inherited() -> Option<Invoker> {
    let value = std::env::var(INHERITED_VARIABLE).ok()?;
    let mut fields = value.splitn(3, ':');
    Some(Invoker {
        uid: fields.next()?.parse().ok()?,
        gid: fields.next()?.parse().ok()?,
        name: fields.next()?.to_string(),
    })
}

/// Enters envkit's user namespace (once per process) and becomes inner root there.
pub fn enter() -> Result<&'static Entered, UsernsError> {
    if let Some(entered) = ENTERED.get() {
        return Ok(entered);
    }
    if let Some(invoker) = inherited().filter(|_| nix::unistd::geteuid().is_root()) {
        let maps = Maps {
            uid: Vec::new(),
            gid: Vec::new(),
            through_helpers: false,
        };
        return Ok(ENTERED.get_or_init(|| Entered { invoker, maps }));
    }
    let invoker = Invoker::current();
    let maps = maps_for(&invoker)?;
    if maps.through_helpers {
        for program in ["newuidmap", "newgidmap"] {
            if find_program(program).is_none() {
                return Err(UsernsError::MissingTool {
                    program: program.into(),
                });
            }
        }
    }
    unshare_with(&maps)?;
    let root = nix::unistd::Uid::from_raw(0);
    let root_group = nix::unistd::Gid::from_raw(0);
    if !invoker.is_root() {
        // The user's supplementary groups mean nothing inside.
        nix::unistd::setgroups(&[]).map_err(UsernsError::Become)?;
    }
    nix::unistd::setresgid(root_group, root_group, root_group).map_err(UsernsError::Become)?;
    nix::unistd::setresuid(root, root, root).map_err(UsernsError::Become)?;
    // Changing ids made this process non-dumpable, which would keep envkit out of its own
    // sandboxes' `/proc/PID/ns` files (a private session's network, where peers are linked
    // in); only processes with the same ids can open them again.
    nix::sys::prctl::set_dumpable(true).map_err(UsernsError::Become)?;
    Ok(ENTERED.get_or_init(|| Entered { invoker, maps }))
}

/// Enters unless the user has no subordinate ids (or namespaces are unavailable): for commands
/// that work either way but must write files with the same owners as builds do.
pub fn enter_if_possible() {
    let _ = enter();
}

/// Who ran envkit: from [`enter`] when it ran, else the current ids.
pub fn invoker() -> Invoker {
    ENTERED
        .get()
        .map(|e| e.invoker.clone())
        .unwrap_or_else(Invoker::current)
}

/// The host uid an inner uid stands for, when mapped.
pub fn host_uid(inner: u32) -> Option<u32> {
    let entered = ENTERED.get()?;
    entered.maps.uid.iter().find_map(|line| {
        (inner >= line.inner && inner - line.inner < line.count)
            .then(|| line.outer + (inner - line.inner))
    })
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn render(lines: &[MapLine]) -> String {
    lines
        .iter()
        .map(|l| format!("{} {} {}\n", l.inner, l.outer, l.count))
        .collect()
}

/// Unshares the user namespace while a forked helper, still outside, writes its maps.
fn unshare_with(maps: &Maps) -> Result<(), UsernsError> {
    let pid = nix::unistd::getpid().as_raw();
    // Everything the helper does is decided here, before fork.
    let helper_plan: Vec<(PathBuf, Vec<String>)> = if maps.through_helpers {
        let args = |lines: &[MapLine]| {
            let mut args = vec![pid.to_string()];
            for line in lines {
                args.extend([
                    line.inner.to_string(),
                    line.outer.to_string(),
                    line.count.to_string(),
                ]);
            }
            args
        };
        vec![
            (
                find_program("newuidmap").unwrap_or_else(|| "newuidmap".into()),
                args(&maps.uid),
            ),
            (
                find_program("newgidmap").unwrap_or_else(|| "newgidmap".into()),
                args(&maps.gid),
            ),
        ]
    } else {
        Vec::new()
    };
    let direct = [
        (format!("/proc/{pid}/uid_map"), render(&maps.uid)),
        (format!("/proc/{pid}/gid_map"), render(&maps.gid)),
    ];
    let (go_read, go_write) = nix::unistd::pipe().map_err(|e| UsernsError::Map(e.to_string()))?;
    let (report_read, report_write) =
        nix::unistd::pipe().map_err(|e| UsernsError::Map(e.to_string()))?;
    // SAFETY: envkit has not started a thread yet (unshare would refuse otherwise), so the
    // child is a complete copy and may allocate and spawn programs.
    #[allow(unsafe_code)]
    let fork = unsafe { nix::unistd::fork() }.map_err(|e| UsernsError::Map(e.to_string()))?;
    match fork {
        nix::unistd::ForkResult::Child => {
            drop(go_write);
            drop(report_read);
            let mut byte = [0u8; 1];
            let mut go = std::fs::File::from(go_read);
            let outcome = match go.read(&mut byte) {
                Ok(1) => write_maps(&helper_plan, &direct),
                _ => Err("envkit stopped before its namespace was ready".to_string()),
            };
            let mut report = std::fs::File::from(report_write);
            let code = match outcome {
                Ok(()) => 0,
                Err(message) => {
                    let _ = report.write_all(message.as_bytes());
                    1
                }
            };
            // SAFETY: leaves the forked copy without running the parent's exit handlers.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::_exit(code)
            }
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(go_read);
            drop(report_write);
            let unshared = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER);
            // The helper waits for this byte, or for end-of-file when unshare failed.
            if unshared.is_ok() {
                let _ = nix::unistd::write(&go_write, &[1]);
            }
            drop(go_write);
            let mut message = String::new();
            let _ = std::fs::File::from(report_read).read_to_string(&mut message);
            let _ = nix::sys::wait::waitpid(child, None);
            unshared.map_err(UsernsError::Unshare)?;
            if !message.is_empty() {
                return Err(UsernsError::Map(message));
            }
            Ok(())
        }
    }
}

/// The helper's side: run newuidmap/newgidmap, or write the maps directly.
fn write_maps(
    helper_plan: &[(PathBuf, Vec<String>)],
    direct: &[(String, String); 2],
) -> Result<(), String> {
    if helper_plan.is_empty() {
        for (file, text) in direct {
            std::fs::write(file, text).map_err(|e| format!("{file}: {e}"))?;
        }
        return Ok(());
    }
    for (program, args) in helper_plan {
        let output = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if !output.status.success() {
            return Err(format!(
                "`{} {}` failed: {}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
    }
    Ok(())
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
    }
}
