//! `env run` and `env shell`: the image (locked and built when needed), the peers started, and
//! one session; `env fix-owner`.

use std::io::IsTerminal;
use std::path::Path;

use super::{Error, LockMode, Project, Result};
use crate::build::store::Store;
use crate::kernel::sandbox::SandboxError;
use crate::run::session::{self, SessionRequest};

/// What the user asked the session for.
pub struct Entry {
    /// Be root inside.
    pub root: bool,
    /// The command; empty means the env's shell, on a pty when stdin is a terminal.
    pub command: Vec<String>,
    pub lock_mode: LockMode,
}

/// How the session ended.
pub struct Ended {
    /// The program's exit status.
    pub status: i32,
    /// Files root created in writable mounts that now belong to the subordinate root id: the
    /// mount's path inside, how many.
    pub foreign_files: Vec<(String, usize)>,
}

/// Enters the environment and returns once its program ends.
pub fn enter(project: &Project, entry: Entry) -> Result<Ended> {
    let entered = crate::kernel::userns::enter()?;
    let spec = project.spec();
    let store = Store::default_location();
    let image = super::image::ensure_image(spec, &project.lock_path(), entry.lock_mode, &store)?;
    // A private network is the session's own: the peers are linked into it as they are into
    // each other's, before the program starts.
    let (hosts, linked) = if spec.peers.is_empty() {
        (Vec::new(), Vec::new())
    } else {
        let started = super::peers::start(project, entry.lock_mode)?;
        let linked = match spec.network {
            crate::spec::Network::Private => started.ports,
            _ => Vec::new(),
        };
        (started.hosts, linked)
    };
    let name = super::image::image_repository(spec);
    let shell = entry.command.is_empty();
    let mut request = SessionRequest::new(
        &name,
        spec,
        image.layers.iter().map(|l| store.tree(&l.key)).collect(),
        &entered.invoker,
    );
    request.root = entry.root;
    request.command = entry.command;
    request.image = crate::run::session::ImageDefaults {
        // A developer's session runs as the developer (or root with `--root`), whatever
        // user the image's makers chose for its service.
        user: None,
        ..super::image::image_defaults(&image)
    };
    request.terminal = shell && std::io::stdin().is_terminal();
    request.host_cwd = std::env::current_dir()
        .ok()
        .and_then(|d| d.canonicalize().ok());
    request.hosts = hosts;
    let mut link = |pid: i32| {
        if linked.is_empty() {
            return;
        }
        match crate::run::peers::forward::namespace_of(pid) {
            Ok(inside) => {
                if let crate::run::peers::forward::Linked::OnTheirPorts { why } =
                    crate::run::peers::forward::link_peers_into(&inside, &linked)
                {
                    super::say(&format!(
                        "warning: the kernel cannot redirect connections to the peers ({why}); \
                         their ports are taken inside this session"
                    ));
                }
            }
            Err(error) => super::say(&format!(
                "warning: the peers are not reachable in this session: {error}"
            )),
        }
    };
    let outcome = match session::run_with(&request, &mut link) {
        Err(crate::run::RunError::Sandbox(SandboxError::NotRunnable(message))) => {
            return Err(Error::NotRunnable(message));
        }
        other => other?,
    };
    Ok(Ended {
        status: outcome.exit.code(),
        foreign_files: outcome.foreign_files,
    })
}

/// `env fix-owner`: gives the invoking user back what root created in the env's writable
/// mounts, telling `given_back` the user's name, each mount's host folder and how many files
/// as it goes. Returns the user's name.
pub fn fix_owner(
    project: &Project,
    given_back: &mut dyn FnMut(&str, &Path, usize),
) -> Result<String> {
    let entered = crate::kernel::userns::enter()?;
    let invoker = &entered.invoker;
    for mount in project.spec().mounts.iter().filter(|m| !m.readonly) {
        let changed = crate::run::ownership::give_back(&mount.host_path, invoker.uid, invoker.gid)
            .map_err(|e| {
                Error::io(
                    format!("cannot give back files in `{}`", mount.host_path.display()),
                    e,
                )
            })?;
        given_back(&invoker.name, &mount.host_path, changed);
    }
    Ok(invoker.name.clone())
}
