//! A Compose file (`compose.yaml`): a service per workload named as the workload (Compose
//! networks resolve service names, so `db` is reached as inside envkit), named volumes, and
//! the main environment depending on its peers.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{App, Ready};

#[derive(Serialize)]
struct ComposeFile {
    name: String,
    services: BTreeMap<String, Service>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    volumes: BTreeMap<String, NamedVolume>,
}

#[derive(Serialize)]
struct Service {
    image: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    expose: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, Dependency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<Healthcheck>,
}

#[derive(Serialize)]
struct NamedVolume {}

/// Compose's long form, so the main environment starts once its peers are ready where they
/// say how to tell, as `env up` waits for them.
#[derive(Serialize, Clone)]
struct Dependency {
    condition: &'static str,
}

#[derive(Serialize)]
struct Healthcheck {
    test: Vec<String>,
    interval: String,
    retries: u64,
}

/// Seconds between health checks.
const CHECK_INTERVAL: u64 = 2;

/// The Compose file of `app`.
pub fn compose_file(app: &App) -> serde_json::Value {
    let peers: BTreeMap<String, Dependency> = app
        .peers()
        .map(|peer| {
            let condition = match peer.ready {
                Some(_) => "service_healthy",
                None => "service_started",
            };
            (peer.name.clone(), Dependency { condition })
        })
        .collect();
    let mut services = BTreeMap::new();
    let mut volumes = BTreeMap::new();
    for workload in &app.workloads {
        for volume in &workload.volumes {
            volumes.insert(volume.claim.clone(), NamedVolume {});
        }
        let healthcheck = workload.ready.as_ref().map(|ready| {
            let (command, timeout) = match ready {
                // Images need not have a TCP client; bash's /dev/tcp is enough where bash is.
                Ready::Tcp { port, timeout_secs } => (
                    format!("bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'"),
                    *timeout_secs,
                ),
                Ready::Command {
                    command,
                    timeout_secs,
                } => (command.clone(), *timeout_secs),
            };
            Healthcheck {
                test: vec!["CMD-SHELL".into(), command],
                interval: format!("{CHECK_INTERVAL}s"),
                retries: timeout.div_ceil(CHECK_INTERVAL).max(1),
            }
        });
        services.insert(
            workload.name.clone(),
            Service {
                image: workload.image.clone(),
                environment: workload.env.clone(),
                working_dir: workload.working_dir.clone(),
                user: workload.root.then(|| "0".to_string()),
                expose: workload.ports.iter().map(u16::to_string).collect(),
                volumes: workload
                    .volumes
                    .iter()
                    .map(|volume| format!("{}:{}", volume.claim, volume.at))
                    .collect(),
                depends_on: if workload.reachable {
                    BTreeMap::new()
                } else {
                    peers.clone()
                },
                healthcheck,
            },
        );
    }
    serde_json::to_value(ComposeFile {
        name: app.project.clone(),
        services,
        volumes,
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_by_name_with_their_volumes_and_the_main_one_after_its_peers() {
        let file = compose_file(&crate::deploy::kubernetes::tests::sample());
        assert_eq!(file["name"], "api");
        let api = &file["services"]["api"];
        assert_eq!(api["image"], "registry.test/team/api@sha256:aa");
        assert_eq!(
            api["depends_on"],
            serde_json::json!({"db": {"condition": "service_healthy"}})
        );
        assert_eq!(api["environment"]["DATABASE_URL"], "postgresql://db/app");
        let db = &file["services"]["db"];
        assert_eq!(
            db["volumes"],
            serde_json::json!(["db-pgdata:/var/lib/postgresql"])
        );
        assert_eq!(db["expose"], serde_json::json!(["5432"]));
        assert_eq!(db["user"], "0");
        assert_eq!(db["healthcheck"]["retries"], 30);
        assert!(file["volumes"]["db-pgdata"].is_object());
    }
}
