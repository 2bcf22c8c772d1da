//! `env up`, `env down`, `env ps`, `env logs`, and the hidden `env __supervise` (see
//! `run::peers` for the design).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use super::{Failure, Locking, project};
use crate::ops;

/// `env up`.
pub fn up(file: Option<&Path>, locking: &Locking) -> Result<(), Failure> {
    if ops::peers::up(&project(file)?, locking.mode())? == 0 {
        eprintln!("env.kdl names no peers: nothing to start");
    }
    Ok(())
}

/// `env down [--volumes] [--yes]`: deleting volumes is confirmed on a terminal first.
pub fn down(file: Option<&Path>, volumes: bool, yes: bool) -> Result<(), Failure> {
    let project = project(file)?;
    if volumes && !yes {
        let names = ops::peers::volumes_to_delete(&project);
        if !names.is_empty() {
            if !std::io::stdin().is_terminal() {
                return Err(Failure::user(
                    "`env down --volumes` deletes data and needs a confirmation",
                    Some("add `--yes` to confirm from a script".into()),
                ));
            }
            let confirmed = dialoguer::Confirm::new()
                .with_prompt(format!("Delete the volumes {}?", names.join(", ")))
                .default(false)
                .interact()
                .map_err(|e| {
                    Failure::io("cannot ask for confirmation", std::io::Error::other(e))
                })?;
            if !confirmed {
                eprintln!("nothing deleted; the peers keep running");
                return Ok(());
            }
        }
    }
    ops::peers::down(&project, volumes)?;
    Ok(())
}

/// `env ps [--json]`.
pub fn ps(file: Option<&Path>, json: bool) -> Result<(), Failure> {
    let entries = ops::peers::ps(&project(file)?);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
        return Ok(());
    }
    if entries.is_empty() {
        eprintln!("no peers or sessions running for this project");
        return Ok(());
    }
    println!(
        "{:<8} {:<14} {:<16} {:<16} {:<12} {:>8}  {:>8}  COMMAND",
        "KIND", "NAME", "STATE", "ADDRESS", "PORTS", "UPTIME", "RESTARTS"
    );
    for entry in &entries {
        let ports: Vec<String> = entry.ports.iter().map(u16::to_string).collect();
        println!(
            "{:<8} {:<14} {:<16} {:<16} {:<12} {:>8}  {:>8}  {}",
            entry.kind,
            if entry.in_env_file {
                entry.name.clone()
            } else {
                format!("{} (removed)", entry.name)
            },
            entry
                .status
                .as_ref()
                .map_or_else(|| "running".into(), ToString::to_string),
            entry.address.as_deref().unwrap_or("-"),
            if ports.is_empty() {
                "-".into()
            } else {
                ports.join(",")
            },
            entry
                .uptime_secs
                .map_or_else(|| "-".into(), |s| format!("{s}s")),
            entry.restarts,
            if entry.command.is_empty() {
                "(shell)".into()
            } else {
                entry.command.join(" ")
            }
        );
    }
    Ok(())
}

/// `env logs [PEER] [--follow]`.
pub fn logs(file: Option<&Path>, peer: Option<&str>, follow: bool) -> Result<(), Failure> {
    let mut logs = ops::peers::logs(&project(file)?, peer)?;
    let prefix = logs.several();
    let mut stdout = std::io::stdout();
    loop {
        for (name, new) in logs.read_new(follow) {
            for line in String::from_utf8_lossy(&new).split_inclusive('\n') {
                let _ = if prefix {
                    write!(stdout, "{name} | {line}")
                } else {
                    write!(stdout, "{line}")
                };
            }
        }
        let _ = stdout.flush();
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `env __supervise PEER IMAGE RESTARTS`.
pub fn supervise(
    file: Option<&Path>,
    peer: &str,
    image: &str,
    restarts: u32,
) -> Result<(), Failure> {
    ops::peers::supervise(&project(file)?, peer, image, restarts)?;
    Ok(())
}
