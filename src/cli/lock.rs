//! `env lock`: resolve env.kdl's packages into env.lock, or check that it is current.

use std::path::Path;

use clap::Parser;

use super::{Failure, load_spec};
use crate::solve::locker::{Update, changes};
use crate::solve::lockfile::Layer;
use crate::solve::repository::Freshness;
use crate::solve::stage::{check, lock_path, read_lock, solve, write_lock};

#[derive(Debug, Parser)]
pub struct LockArgs {
    /// Exit 1 if env.lock does not match env.kdl, instead of writing it (for CI).
    #[arg(long, conflicts_with_all = ["update", "refresh"])]
    check: bool,
    /// Move these packages (all when none are named) to the newest versions.
    #[arg(long, num_args = 0.., value_name = "PKG")]
    update: Option<Vec<String>>,
    /// Resolve again from fresh indexes even when env.lock is current.
    #[arg(long)]
    refresh: bool,
}

pub fn run(args: &LockArgs, file: Option<&Path>) -> Result<(), Failure> {
    let loaded = load_spec(file)?;
    let spec = &loaded.spec;
    let path = lock_path(&spec.origin.file);
    let shown = crate::spec::display_name(&path);
    let previous = read_lock(&path)?;
    if args.check {
        return match &previous {
            None => Err(Failure::Stale {
                message: format!("there is no `{shown}`"),
                reasons: Vec::new(),
            }),
            Some(lock) => match check(spec, lock) {
                Ok(()) => {
                    eprintln!(
                        "ok: {shown} matches {}",
                        crate::spec::display_name(&spec.origin.file)
                    );
                    Ok(())
                }
                Err(reasons) => Err(Failure::Stale {
                    message: format!(
                        "`{shown}` does not match {}",
                        crate::spec::display_name(&spec.origin.file)
                    ),
                    reasons: reasons.iter().map(ToString::to_string).collect(),
                }),
            },
        };
    }
    let update = match &args.update {
        None => Update::Nothing,
        Some(names) if names.is_empty() => Update::Everything,
        Some(names) => {
            let locked = previous
                .as_ref()
                .map(|l| {
                    l.packages
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            if let Some(unknown) = names.iter().find(|n| !locked.contains(&n.as_str())) {
                return Err(Failure::user(format!("`{unknown}` is not in `{shown}`"), Some("`--update` moves packages already locked; add new ones to `packages` in env.kdl".into())));
            }
            Update::Only(names.clone())
        }
    };
    if let (Update::Nothing, false, Some(lock)) = (&update, args.refresh, &previous)
        && check(spec, lock).is_ok()
    {
        eprintln!(
            "{shown} is up to date ({} packages from {})",
            lock.packages.len(),
            lock.release
        );
        return Ok(());
    }
    let lock = solve(spec, previous.as_ref(), &update, Freshness::Refresh)?;
    let written = write_lock(&path, &lock)?;
    let base = lock.layer(Layer::Base).count();
    let own = lock.layer(Layer::Packages).count();
    let date = lock.indexes.first().map_or("", |i| i.date.as_str());
    if previous.is_some() {
        for line in changes(previous.as_ref(), &lock) {
            eprintln!("  {line}");
        }
    }
    let verb = if written { "locked" } else { "unchanged:" };
    eprintln!(
        "{verb} {shown}: {base} base + {own} packages from {} (index of {date})",
        lock.release
    );
    Ok(())
}

/// The env file's lock, brought up to date first (from cached indexes) when it is missing or
/// no longer matches: what `env build`, `shell` and `run` start from.
pub fn current_lock(spec: &crate::spec::Spec) -> Result<crate::solve::lockfile::Lock, Failure> {
    current_lock_at(spec, &lock_path(&spec.origin.file))
}

/// [`current_lock`] for a lock kept elsewhere (an inline peer's, beside its env file).
pub fn current_lock_at(
    spec: &crate::spec::Spec,
    path: &std::path::Path,
) -> Result<crate::solve::lockfile::Lock, Failure> {
    let path = path.to_path_buf();
    let previous = read_lock(&path)?;
    if let Some(lock) = &previous
        && check(spec, lock).is_ok()
    {
        return Ok(lock.clone());
    }
    let lock = solve(spec, previous.as_ref(), &Update::Nothing, Freshness::Cached)?;
    write_lock(&path, &lock)?;
    eprintln!(
        "locked {}: {} packages from {}",
        crate::spec::display_name(&path),
        lock.packages.len(),
        lock.release
    );
    Ok(lock)
}
