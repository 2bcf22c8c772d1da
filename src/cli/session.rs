//! `env run -- CMD...` and `env shell`: lock and build when needed, then enter a session.

use std::io::IsTerminal;
use std::path::Path;

use super::build::{ImageContext, build_and_record};
use super::{Failure, load_spec};
use crate::build::shortcut;
use crate::build::store::Store;
use crate::run::session::{self, SessionRequest};
use crate::sandbox::SandboxError;

/// Enters the environment: `command` empty means the env's shell, on a pty when stdin is a
/// terminal.
pub fn enter(file: Option<&Path>, root: bool, command: Vec<String>) -> Result<(), Failure> {
    let entered = crate::userns::enter()?;
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let store = Store::default_location();
    let lock_path = crate::solve::stage::lock_path(&spec.origin.file);
    let image = match shortcut::lookup(&store, spec, &lock_path) {
        Some(image) => image,
        None => {
            let lock = super::lock::current_lock(spec)?;
            let context = ImageContext::new(spec)?;
            let inputs = context.inputs(spec, &lock);
            let image = build_and_record(&lock_path, &inputs, &store)?;
            shortcut::remember(&store, spec, &lock_path, &image);
            image
        }
    };
    let hosts = if spec.peers.is_empty() {
        Vec::new()
    } else {
        super::peers::up(spec)?
    };
    let name = super::build::image_repository(spec);
    let shell = command.is_empty();
    let request = SessionRequest {
        name: &name,
        spec,
        layers: image.layers.iter().map(|l| store.tree(&l.key)).collect(),
        invoker: &entered.invoker,
        root,
        command,
        terminal: shell && std::io::stdin().is_terminal(),
        host_environment: std::env::vars().collect(),
        host_cwd: std::env::current_dir()
            .ok()
            .and_then(|d| d.canonicalize().ok()),
        volumes_dir: crate::paths::volumes_dir(),
        runtime_dir: crate::paths::runtime_dir(),
        volume_project: spec.origin.dir.clone(),
        volume_prefix: String::new(),
        hosts,
        background: None,
    };
    // A private network is the session's own: the peers are linked into it as they are into
    // each other's, before the program starts.
    let linked = if spec.network == crate::spec::Network::Private {
        super::peers::peer_ports(spec, &request.hosts)
    } else {
        Vec::new()
    };
    let mut link = |pid: i32| {
        if linked.is_empty() {
            return;
        }
        match crate::run::peers::forward::namespace_of(pid) {
            Ok(inside) => crate::run::peers::forward::link_peers_into(&inside, &linked),
            Err(error) => {
                eprintln!("warning: the peers are not reachable in this session: {error}");
            }
        }
    };
    let outcome = match session::run_with(&request, &mut link) {
        Err(crate::run::RunError::Sandbox(SandboxError::NotRunnable(message))) => {
            return Err(Failure::NotRunnable(message));
        }
        other => other?,
    };
    for (mount, count) in &outcome.foreign_files {
        eprintln!(
            "warning: root created {count} file(s) in {mount}; on the host they belong to your \
             subordinate root id, not to you\n  hint: `env fix-owner` gives them back"
        );
    }
    match outcome.exit.code() {
        0 => Ok(()),
        code => Err(Failure::Exited(u8::try_from(code).unwrap_or(1))),
    }
}

/// `env fix-owner`: gives the invoking user back what root created in the env's mounts.
pub fn fix_owner(file: Option<&Path>) -> Result<(), Failure> {
    let entered = crate::userns::enter()?;
    let loaded = load_spec(file)?;
    let invoker = &entered.invoker;
    let mut total = 0;
    for mount in loaded.spec.mounts.iter().filter(|m| !m.readonly) {
        let changed = crate::run::ownership::give_back(&mount.host_path, invoker.uid, invoker.gid)
            .map_err(|e| {
                Failure::io(
                    format!("cannot give back files in `{}`", mount.host_path.display()),
                    e,
                )
            })?;
        if changed > 0 {
            eprintln!(
                "gave {changed} file(s) in {} back to {}",
                mount.host_path.display(),
                invoker.name
            );
        }
        total += changed;
    }
    if total == 0 {
        eprintln!(
            "every file in the env's mounts already belongs to {}",
            invoker.name
        );
    }
    Ok(())
}
