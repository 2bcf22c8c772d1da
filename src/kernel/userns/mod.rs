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
//!
//! [`idmap`] works the maps out as plain values; this module reads the files they come from
//! and enters the namespace.

pub mod idmap;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub use idmap::{Invoker, Maps};

use idmap::{IdKind, NoRange};

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
                        .map(|text| idmap::free_range_start(&text))
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

fn read(file: &str) -> Result<String, UsernsError> {
    std::fs::read_to_string(file).map_err(|source| UsernsError::Read {
        file: file.to_string(),
        source,
    })
}

/// Works out the maps for `invoker` from the files they come from; fails for a user without
/// subordinate ranges.
pub fn maps_for(invoker: &Invoker) -> Result<Maps, UsernsError> {
    if invoker.is_root() {
        return Ok(idmap::root_maps(
            &read("/proc/self/uid_map")?,
            &read("/proc/self/gid_map")?,
        ));
    }
    let subordinate = |kind: IdKind| match std::fs::read_to_string(kind.subordinate_file()) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(UsernsError::Read {
            file: kind.subordinate_file().to_string(),
            source,
        }),
    };
    let subuid = subordinate(IdKind::Uid)?;
    let subgid = subordinate(IdKind::Gid)?;
    idmap::rootless_maps(invoker, &subuid, &subgid).map_err(|NoRange(kind)| UsernsError::NoRange {
        user: invoker.name.clone(),
        kind: kind.name(),
        file: kind.subordinate_file(),
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

/// Unshares the user namespace while a forked helper, still outside, writes its maps.
fn unshare_with(maps: &Maps) -> Result<(), UsernsError> {
    let pid = nix::unistd::getpid().as_raw();
    // Everything the helper does is decided here, before fork.
    let helper_plan: Vec<(PathBuf, Vec<String>)> = if maps.through_helpers {
        vec![
            (
                find_program("newuidmap").unwrap_or_else(|| "newuidmap".into()),
                idmap::helper_arguments(pid, &maps.uid),
            ),
            (
                find_program("newgidmap").unwrap_or_else(|| "newgidmap".into()),
                idmap::helper_arguments(pid, &maps.gid),
            ),
        ]
    } else {
        Vec::new()
    };
    let direct = [
        (format!("/proc/{pid}/uid_map"), idmap::render(&maps.uid)),
        (format!("/proc/{pid}/gid_map"), idmap::render(&maps.gid)),
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
