//! `env volume ls` and `env volume rm NAME`.

use std::path::Path;

use super::{Failure, VolumeCommand, project};
use crate::build::download::human_bytes;
use crate::ops;

pub fn run(command: &VolumeCommand, file: Option<&Path>) -> Result<(), Failure> {
    match command {
        VolumeCommand::Ls { json } => {
            let list = ops::store::volumes()?;
            if *json {
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
            ops::store::remove_volume(&project(file)?, name)?;
            eprintln!("removed volume {name}");
            Ok(())
        }
    }
}
