//! A project's image: found again through the shortcut, found in the store, or built from the
//! current lock, and recorded as a root so `env gc` keeps it.

use std::path::{Path, PathBuf};

use super::{LockMode, Project, Result, say};
use crate::build::gc::StoreUse;
use crate::build::image::{
    BuildError, BuildInputs, DEFAULT_PATH, Event, Image, ImageConfig, build, build_plan,
    find_image, image_name,
};
use crate::build::plan::BuildPlan;
use crate::build::store::Store;
use crate::build::{roots, shortcut};
use crate::mirror::Mirrors;
use crate::ops::registry::{
    CachePushed, TEAM_CACHE_VAR, TeamCache, fill_from_cache, push_to_cache,
};
use crate::solve::lockfile::Lock;
use crate::spec::Spec;

/// The image of `spec` (whose lock is at `lock_file`): the one built last when nothing changed
/// since, else built (locking first when `mode` allows).
pub fn ensure_image(spec: &Spec, lock_file: &Path, mode: LockMode, store: &Store) -> Result<Image> {
    // Nothing changed since the image was built: no need to read the lock again.
    if let Some(image) = shortcut::lookup(store, spec, lock_file) {
        return Ok(image);
    }
    let image = build_from_lock(spec, lock_file, mode, store)?;
    shortcut::remember(store, spec, lock_file, &image);
    Ok(image)
}

/// The image of `spec` from its current lock, built where the store lacks layers, without the
/// shortcut: a shortcut is kept per env file, and an inline peer shares its env file with the
/// project, so a peer's image must never be found (or recorded) through it.
pub fn build_from_lock(
    spec: &Spec,
    lock_file: &Path,
    mode: LockMode,
    store: &Store,
) -> Result<Image> {
    let lock = super::lock::current_lock_at(spec, lock_file, mode)?;
    super::base_image::ensure(&lock, store)?;
    let context = ImageContext::new(spec, &lock)?;
    let cache = TeamCache::configured(spec)?;
    build_and_record(
        lock_file,
        &context.inputs(spec, &lock),
        cache.as_ref(),
        store,
    )
}

/// `env build`: the project's image, built as needed; with `push_cache`, every layer of it
/// the team cache lacks is sent there.
pub fn build_image(
    project: &Project,
    mode: LockMode,
    push_cache: bool,
) -> Result<(Image, Option<CachePushed>)> {
    crate::kernel::userns::enter()?;
    let spec = project.spec();
    let cache = if push_cache {
        Some(TeamCache::configured(spec)?.ok_or_else(|| {
            super::Error::user(
                "`--push-cache` needs a team cache, and none is configured",
                Some(format!(
                    "add `cache \"REGISTRY/REPOSITORY\"` to env.kdl, or set {TEAM_CACHE_VAR}"
                )),
            )
        })?)
    } else {
        None
    };
    let store = Store::default_location();
    let image = ensure_image(spec, &project.lock_path(), mode, &store)?;
    let Some(cache) = cache else {
        return Ok((image, None));
    };
    let _in_use = StoreUse::acquire(&store, &|| say("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    let lock = super::lock::current_lock(spec, LockMode::Locked)?;
    let clamp = crate::build::base::source_date_epoch(&lock);
    let pushed = push_to_cache(&cache, &image, clamp, &store)?;
    Ok((image, Some(pushed)))
}

/// `env build --dry-run`: which layers the store has and which a build would make.
pub fn plan_image(project: &Project, mode: LockMode) -> Result<BuildPlan> {
    crate::kernel::userns::enter()?;
    let spec = project.spec();
    let lock = super::lock::current_lock(spec, mode)?;
    let context = ImageContext::new(spec, &lock)?;
    Ok(build_plan(
        &context.inputs(spec, &lock),
        &Store::default_location(),
    )?)
}

/// Builds what the store lacks (telling what it builds) and records the lock as a root of
/// the image, so `env gc` keeps it.
fn build_and_record(
    lock_file: &Path,
    inputs: &BuildInputs<'_>,
    cache: Option<&TeamCache>,
    store: &Store,
) -> Result<Image> {
    // `env gc` waits until the image and its root are recorded: until then the layers this
    // build reuses may belong to no live root.
    let _in_use = StoreUse::acquire(store, &|| say("waiting for `env gc` to finish"))
        .map_err(BuildError::from)?;
    if let Some(cache) = cache {
        let plan = build_plan(inputs, store)?;
        if !plan.is_complete() {
            fill_from_cache(
                cache,
                &plan,
                &inputs.lock.architecture,
                crate::build::base::source_date_epoch(inputs.lock),
                store,
            );
        }
    }
    let image = build(inputs, store, &|event| match event {
        Event::Building { layer } => say(&format!("building {layer} layer")),
        Event::Built { layer, seconds } => say(&format!("built {layer} layer in {seconds:.1} s")),
    })?;
    roots::record(store, lock_file, &image.name).map_err(BuildError::from)?;
    Ok(image)
}

/// What an exported or pushed image of `spec` runs with, as a Docker user expects from its
/// Dockerfile: `vars` as Env, `workdir`, root for `user "root"` (an image has no invoking user
/// to run as, so root either way), `command` (else a peer's `service`, else the shell) as Cmd
/// through `/bin/sh -c`, `port`s exposed, `volume`s declared; labels name the project and the
/// lock the image was built from; created at the lock's SOURCE_DATE_EPOCH, so the bytes stay
/// the same. On a registry image (`base`), its config is the starting point, as `FROM` makes
/// it: its Env under `vars`, its WorkingDir and User unless env.kdl says otherwise, its
/// Entrypoint and Cmd unless `command` or `service` replaces both, its ports and volumes
/// besides env.kdl's.
pub fn image_config(spec: &Spec, lock: &Lock, base: Option<&ImageConfig>) -> ImageConfig {
    let mut env: Vec<String> = base
        .map(|base| {
            base.env
                .iter()
                .filter(|pair| {
                    let name = pair.split_once('=').map_or(pair.as_str(), |(name, _)| name);
                    !spec.vars.contains_key(name)
                })
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let has_path = env.iter().any(|pair| pair.starts_with("PATH="));
    if !spec.vars.contains_key("PATH") && !has_path {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    env.extend(
        spec.vars
            .iter()
            .map(|(name, value)| format!("{name}={value}")),
    );
    let (entrypoint, cmd) = match (&spec.command, &spec.service, base) {
        (Some(command), _, _) | (None, Some(command), _) => (
            None,
            vec!["/bin/sh".to_string(), "-c".to_string(), command.clone()],
        ),
        (None, None, Some(base)) if base.entrypoint.is_some() || base.cmd.is_some() => (
            base.entrypoint.clone(),
            base.cmd.clone().unwrap_or_default(),
        ),
        (None, None, _) => (
            None,
            vec![spec.shell.clone().unwrap_or_else(|| "/bin/bash".into())],
        ),
    };
    let mut exposed_ports = base
        .map(|base| base.exposed_ports.clone())
        .unwrap_or_default();
    for port in &spec.ports {
        if !exposed_ports.contains(port) {
            exposed_ports.push(*port);
        }
    }
    let mut volumes = base.map(|base| base.volumes.clone()).unwrap_or_default();
    for volume in &spec.volumes {
        if !volumes.contains(&volume.at) {
            volumes.push(volume.at.clone());
        }
    }
    let repository = image_repository(spec);
    let labels = [
        ("dev.envkit.project", repository.clone()),
        (
            "dev.envkit.lock",
            format!(
                "sha256:{}",
                crate::fetch::sha256_hex(lock.render().as_bytes())
            ),
        ),
        ("org.opencontainers.image.title", repository),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_string(), value))
    .collect();
    let user = match (spec.user, base.and_then(|base| base.user.clone())) {
        (crate::spec::User::Host, Some(user)) => user,
        // Said outright, so an engine's policy (runAsNonRoot, say) sees who it runs as.
        _ => "0:0".into(),
    };
    ImageConfig {
        env,
        working_dir: spec
            .workdir
            .clone()
            .or_else(|| base.and_then(|base| base.working_dir.clone())),
        user: Some(user),
        entrypoint,
        cmd: Some(cmd),
        exposed_ports,
        volumes,
        labels,
        created: Some(crate::civil_time::rfc3339(
            crate::build::base::source_date_epoch(lock),
        )),
    }
}

/// What the registry image an environment starts from runs with, as sessions take it.
pub(crate) fn image_defaults(
    image: &crate::build::image::Image,
) -> crate::run::session::ImageDefaults {
    let Some(config) = &image.base_config else {
        return crate::run::session::ImageDefaults::default();
    };
    crate::run::session::ImageDefaults {
        env: config
            .env
            .iter()
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
        workdir: config.working_dir.clone(),
        entrypoint: config.entrypoint.clone().unwrap_or_default(),
        cmd: config.cmd.clone().unwrap_or_default(),
        user: config.user.clone(),
    }
}

/// The error of a command that needs the image `name` built, with what to run first.
pub fn not_built(name: &str, first: impl Into<String>) -> super::Error {
    super::Error::user(format!("`{name}` is not built"), Some(first.into()))
}

/// Where setup steps see the project: where the env mounts `.`, else `/work`.
fn project_mount_point(spec: &Spec) -> &str {
    spec.mounts
        .iter()
        .find(|m| m.source == ".")
        .map_or("/work", |m| m.at.as_str())
}

/// The image name before the colon: the env's name, else its folder's.
pub fn image_repository(spec: &Spec) -> String {
    spec.name.clone().unwrap_or_else(|| {
        let folder = spec
            .origin
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some(crate::spec::rules::sanitize_host_name(&folder))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "env".into())
    })
}

/// What building (or finding) the image of a spec needs besides the spec and its lock.
pub struct ImageContext {
    repository: String,
    mirrors: Mirrors,
    cache_dir: PathBuf,
    /// The image the lock pins, as last read from its registry (none until it is pulled).
    base_image: Option<crate::build::image::BaseImage>,
}

impl ImageContext {
    /// The context of `spec` with `lock`; reads nothing from the network (a base image is
    /// known once [`super::base_image::ensure`] pulled it).
    pub fn new(spec: &Spec, lock: &Lock) -> Result<Self> {
        let mirrors =
            crate::mirror::for_spec(spec).map_err(crate::solve::stage::SolveError::from)?;
        let cache_dir = crate::paths::cache_dir();
        let base_image = lock
            .image
            .as_ref()
            .and_then(|image| super::base_image::recorded(&cache_dir, &image.digest));
        Ok(ImageContext {
            repository: image_repository(spec),
            mirrors,
            cache_dir,
            base_image,
        })
    }

    pub fn inputs<'a>(&'a self, spec: &'a Spec, lock: &'a Lock) -> BuildInputs<'a> {
        BuildInputs {
            name: &self.repository,
            lock,
            base_image: self.base_image.as_ref(),
            setup: &spec.setup,
            copies: &spec.copies,
            project_dir: &spec.origin.dir,
            project_at: project_mount_point(spec),
            mirrors: &self.mirrors,
            cache_dir: &self.cache_dir,
        }
    }

    /// The name `env build` gives this spec's image, and the image if the store has it.
    pub fn existing_image(
        &self,
        spec: &Spec,
        lock: &Lock,
        store: &Store,
    ) -> Result<(String, Option<Image>), BuildError> {
        let inputs = self.inputs(spec, lock);
        let plan = build_plan(&inputs, store)?;
        let name = image_name(&inputs, &plan);
        let image = find_image(store, &name)?;
        Ok((name, image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(text: &str) -> Spec {
        crate::spec::load_text(Path::new("/project/env.kdl"), text)
            .unwrap()
            .spec
    }

    fn lock() -> Lock {
        Lock {
            release: String::new(),
            architecture: "amd64".into(),
            recommends: false,
            requested: Vec::new(),
            indexes: Vec::new(),
            image: None,
            packages: Vec::new(),
        }
    }

    fn postgres() -> ImageConfig {
        ImageConfig {
            env: vec![
                "PATH=/usr/lib/postgresql/16/bin:/usr/bin:/bin".into(),
                "PGDATA=/var/lib/postgresql/data".into(),
                "LANG=en_US.utf8".into(),
            ],
            working_dir: Some("/var/lib/postgresql".into()),
            user: Some("postgres".into()),
            entrypoint: Some(vec!["docker-entrypoint.sh".into()]),
            cmd: Some(vec!["postgres".into()]),
            exposed_ports: vec![5432],
            volumes: vec!["/var/lib/postgresql/data".into()],
            ..ImageConfig::default()
        }
    }

    #[test]
    fn an_image_on_a_registry_base_starts_from_its_config() {
        let base = postgres();
        let plain = image_config(
            &spec("base image=\"postgres:16\"\nvars {\n    LANG \"C.UTF-8\"\n}\n"),
            &lock(),
            Some(&base),
        );
        assert_eq!(
            plain.env,
            [
                "PATH=/usr/lib/postgresql/16/bin:/usr/bin:/bin",
                "PGDATA=/var/lib/postgresql/data",
                "LANG=C.UTF-8"
            ],
            "the image's PATH kept, `vars` over its Env"
        );
        assert_eq!(plain.entrypoint, base.entrypoint);
        assert_eq!(plain.cmd, base.cmd);
        assert_eq!(plain.user.as_deref(), Some("postgres"));
        assert_eq!(plain.working_dir.as_deref(), Some("/var/lib/postgresql"));
        assert_eq!(plain.exposed_ports, [5432]);

        let own = image_config(
            &spec(
                "base image=\"postgres:16\"\ncommand \"postgres -c fsync=off\"\nworkdir \"/srv\"\nuser \"root\"\nport 8080\nvolume \"logs\" at=\"/var/log/app\"\n",
            ),
            &lock(),
            Some(&base),
        );
        assert_eq!(
            own.entrypoint, None,
            "`command` replaces Entrypoint and Cmd"
        );
        assert_eq!(own.cmd.unwrap(), ["/bin/sh", "-c", "postgres -c fsync=off"]);
        assert_eq!(own.working_dir.as_deref(), Some("/srv"));
        assert_eq!(own.user.as_deref(), Some("0:0"));
        assert_eq!(own.exposed_ports, [5432, 8080]);
        assert_eq!(own.volumes, ["/var/lib/postgresql/data", "/var/log/app"]);
    }
}
