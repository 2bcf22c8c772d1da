//! `env volume ls` and `env volume rm NAME`.

use std::path::Path;

use super::{Failure, VolumeCommand, load_spec};
use crate::build::download::human_bytes;
use crate::run::volumes::{self, VolumeError};

pub fn run(command: &VolumeCommand, file: Option<&Path>, json: bool) -> Result<(), Failure> {
    crate::userns::enter()?;
    let dir = crate::paths::volumes_dir();
    match command {
        VolumeCommand::Ls { .. } => {
            let list = volumes::list(&dir).map_err(volume_failure)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&list).unwrap_or_default()
                );
                return Ok(());
            }
            if list.is_empty() {
                eprintln!("no volumes");
                return Ok(());
            }
            println!("{:<20} {:>10}  PROJECT", "NAME", "SIZE");
            for volume in &list {
                println!(
                    "{:<20} {:>10}  {}",
                    volume.name,
                    human_bytes(volume.size),
                    volume
                        .project
                        .as_ref()
                        .map_or_else(|| "?".into(), |p| p.display().to_string())
                );
            }
            Ok(())
        }
        VolumeCommand::Rm { name } => {
            let loaded = load_spec(file)?;
            volumes::remove(&dir, &loaded.spec.origin.dir, name).map_err(volume_failure)?;
            eprintln!("removed volume {name}");
            Ok(())
        }
    }
}

fn volume_failure(error: VolumeError) -> Failure {
    match error {
        VolumeError::Unknown { name, known } => {
            let hint = if known.is_empty() {
                "this project has no volumes yet".to_string()
            } else {
                format!("its volumes: {}", known.join(", "))
            };
            Failure::user(format!("this project has no volume `{name}`"), Some(hint))
        }
        other => Failure::Run(crate::run::RunError::Volume(other)),
    }
}
