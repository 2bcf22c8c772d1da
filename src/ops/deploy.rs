//! `env export --kubernetes` and `--compose`: the project and its peers described for other
//! engines (`crate::deploy`), each image named by where `env push` sent it (or, for a
//! registry image env.kdl adds nothing to, where its makers published it), pinned by digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::registry::pushed;
use super::{Error, LockMode, Project, Result, say};
use crate::build::store::Store;
use crate::deploy::{App, Ready, Volume, Workload};
use crate::spec::{ReadyCheck, Spec, User};

/// Which description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Kubernetes manifests, applied with `kubectl apply -f` or run by `podman kube play`.
    Kubernetes,
    /// A `compose.yaml` for `docker compose` or `podman-compose`.
    Compose,
}

/// What was written.
pub struct Described {
    /// The file's name as the user would write it, or `stdout`.
    pub shown: String,
    /// The workloads, by name: the project's environment (when it runs a `command`) and its
    /// peers.
    pub workloads: Vec<String>,
}

/// Writes the description to `output` (`None`: `NAME.k8s.yaml` or `compose.yaml` in the
/// current folder; `-`: stdout).
pub fn describe(
    project: &Project,
    target: Target,
    output: Option<&Path>,
    mode: LockMode,
) -> Result<Described> {
    crate::kernel::userns::enter()?;
    let app = app(project, mode)?;
    let text = match target {
        Target::Kubernetes => {
            crate::deploy::yaml::to_yaml_documents(&crate::deploy::kubernetes::manifests(&app))
        }
        Target::Compose => {
            crate::deploy::yaml::to_yaml(&crate::deploy::compose::compose_file(&app))
        }
    };
    let workloads = app.workloads.iter().map(|w| w.name.clone()).collect();
    if output == Some(Path::new("-")) {
        print!("{text}");
        return Ok(Described {
            shown: "stdout".into(),
            workloads,
        });
    }
    let path: PathBuf = match output {
        Some(path) if path.is_dir() => path.join(default_name(&app, target)),
        Some(path) => path.to_path_buf(),
        None => super::project::current_dir()?.join(default_name(&app, target)),
    };
    crate::fetch::write_bytes_atomically(&path, text.as_bytes()).map_err(|error| {
        Error::io(
            format!("cannot write `{}`", crate::spec::display_name(&path)),
            std::io::Error::other(error),
        )
    })?;
    Ok(Described {
        shown: crate::spec::display_name(&path),
        workloads,
    })
}

fn default_name(app: &App, target: Target) -> String {
    match target {
        Target::Kubernetes => format!("{}.k8s.yaml", app.project),
        Target::Compose => "compose.yaml".into(),
    }
}

/// The project as workloads: its environment when it runs something of its own (`command`
/// or `service`), then every peer, each image pinned where `env push` last sent it.
fn app(project: &Project, mode: LockMode) -> Result<App> {
    let spec = project.spec();
    let store = Store::default_location();
    let name = crate::spec::rules::sanitize_host_name(&super::image::image_repository(spec));
    let mut workloads = Vec::new();
    let mut unpushed = Vec::new();
    let main_lock = crate::solve::stage::lock_path(&spec.origin.file);
    if spec.command.is_some() || spec.service.is_some() {
        workloads.push(workload(
            &name,
            spec,
            &main_lock,
            false,
            mode,
            &store,
            &mut unpushed,
        )?);
    } else {
        say(&format!(
            "warning: the project's environment runs no `command`, so it is left out (its image \
             would start a shell and exit); add `command \"...\"` to {} to run it",
            crate::spec::display_name(&spec.origin.file)
        ));
    }
    for peer in crate::run::peers::peers_in_order(spec) {
        let lock = crate::solve::stage::peer_lock_path(peer);
        workloads.push(workload(
            &peer.name,
            &peer.spec,
            &lock,
            true,
            mode,
            &store,
            &mut unpushed,
        )?);
    }
    if workloads.is_empty() {
        return Err(Error::user(
            "the project has nothing to run: no `command` and no `peer`",
            Some("add `command \"...\"` (what its image runs) or a `peer` to env.kdl".into()),
        ));
    }
    if !unpushed.is_empty() {
        return Err(Error::user(
            format!(
                "engines pull images from a registry, and {} not pushed yet",
                match unpushed.len() {
                    1 => "one is".to_string(),
                    n => format!("{n} are"),
                }
            ),
            Some(unpushed.join("\n")),
        ));
    }
    Ok(App {
        project: name,
        workloads,
    })
}

fn workload(
    name: &str,
    spec: &Spec,
    lock_file: &Path,
    is_peer: bool,
    mode: LockMode,
    store: &Store,
    unpushed: &mut Vec<String>,
) -> Result<Workload> {
    let lock = super::lock::current_lock_at(spec, lock_file, mode)?;
    let image = match as_its_makers_published(spec, &lock) {
        Some(reference) => reference,
        None => pushed_image(name, spec, &lock, is_peer, store, unpushed)?,
    };
    for mount in &spec.mounts {
        say(&format!(
            "warning: {name}'s mount of `{}` at {} is left out (an engine elsewhere has no such \
             folder); bake files into the image with `copy`",
            mount.source, mount.at
        ));
    }
    let volumes = spec
        .volumes
        .iter()
        .map(|volume| Volume {
            claim: crate::spec::rules::sanitize_host_name(&format!("{name}-{}", volume.name)),
            at: volume.at.clone(),
        })
        .collect();
    let ready = spec.ready.as_ref().map(|ready| {
        let timeout_secs = u64::from(ready.timeout_secs);
        match &ready.check {
            ReadyCheck::Tcp(port) => Ready::Tcp {
                port: *port,
                timeout_secs,
            },
            ReadyCheck::Cmd(command) => Ready::Command {
                command: command.clone(),
                timeout_secs,
            },
        }
    });
    Ok(Workload {
        name: name.to_string(),
        image,
        reachable: is_peer,
        env: spec.vars.clone().into_iter().collect::<BTreeMap<_, _>>(),
        working_dir: spec.workdir.clone(),
        ports: spec.ports.clone(),
        volumes,
        ready,
        root: spec.user == User::Root,
    })
}

/// Where `env push` last sent the image of `spec`, pinned; an image not pushed yet is added to
/// `unpushed` with the command that pushes it.
fn pushed_image(
    name: &str,
    spec: &Spec,
    lock: &crate::solve::lockfile::Lock,
    is_peer: bool,
    store: &Store,
    unpushed: &mut Vec<String>,
) -> Result<String> {
    let (image_name, _) =
        super::image::ImageContext::new(spec, lock)?.existing_image(spec, lock, store)?;
    Ok(match pushed::lookup(store, &image_name) {
        Some(record) => record.pinned(),
        None => {
            let command = if is_peer {
                format!("env push --peer {name} REGISTRY/REPOSITORY")
            } else {
                "env push REGISTRY/REPOSITORY".to_string()
            };
            unpushed.push(format!("`{image_name}` ({name}): run `{command}`"));
            String::new()
        }
    })
}

/// A registry image that env.kdl adds nothing to but settings the description carries itself
/// (vars, workdir, ports, volumes): the image as its makers published it, pinned by the
/// lock's digest, with nothing to push.
fn as_its_makers_published(spec: &Spec, lock: &crate::solve::lockfile::Lock) -> Option<String> {
    let image = lock.image.as_ref()?;
    let adds_nothing = lock.packages.is_empty()
        && spec.setup.is_empty()
        && spec.copies.is_empty()
        && spec.service.is_none()
        && spec.command.is_none();
    let name = image
        .reference
        .split_once('@')
        .map_or(image.reference.as_str(), |(name, _)| name);
    adds_nothing.then(|| format!("{name}@{}", image.digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_image_env_kdl_adds_nothing_to_is_described_as_published() {
        let spec = |text: &str| {
            crate::spec::load_text(Path::new("/project/env.kdl"), text)
                .unwrap()
                .spec
        };
        let digest = format!("sha256:{}", "a".repeat(64));
        let lock = crate::solve::lockfile::Lock {
            release: String::new(),
            architecture: "amd64".into(),
            recommends: false,
            requested: Vec::new(),
            indexes: Vec::new(),
            image: Some(crate::solve::lockfile::LockedImage {
                reference: "postgres:16".into(),
                digest: digest.clone(),
            }),
            packages: Vec::new(),
        };
        let plain = spec(
            "base image=\"postgres:16\"\nvars {\n    POSTGRES_PASSWORD \"dev\"\n}\nport 5432\n",
        );
        assert_eq!(
            as_its_makers_published(&plain, &lock),
            Some(format!("postgres:16@{digest}"))
        );
        let with_service = spec("base image=\"postgres:16\"\nservice \"postgres -c fsync=off\"\n");
        assert_eq!(as_its_makers_published(&with_service, &lock), None);
        let with_setup = spec("base image=\"postgres:16\"\nsetup \"true\"\n");
        assert_eq!(as_its_makers_published(&with_setup, &lock), None);
        let debian = spec("base \"debian:bookworm\"\n");
        let debian_lock = crate::solve::lockfile::Lock {
            image: None,
            ..lock
        };
        assert_eq!(as_its_makers_published(&debian, &debian_lock), None);
    }
}
