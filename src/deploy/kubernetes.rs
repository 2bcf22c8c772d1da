//! Kubernetes manifests: a Deployment per workload, a Service per peer named as the peer (so
//! `db` resolves in the cluster as it does inside envkit), a PersistentVolumeClaim per volume.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{App, Ready, Workload};

/// The label every object carries, naming its project.
const PART_OF: &str = "app.kubernetes.io/part-of";
/// The label selecting a workload's pods.
const NAME: &str = "app.kubernetes.io/name";
/// Seconds between readiness probes.
const PROBE_PERIOD: u64 = 2;
/// Where a volume-filling init container mounts the claim it fills.
const FILL_AT: &str = "/envkit-volume";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Object<S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: S,
}

/// A pod template's: its pods are named by the Deployment.
#[derive(Serialize)]
struct PodMetadata {
    labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct Metadata {
    name: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, &'static str>,
    labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentSpec {
    replicas: u32,
    strategy: Strategy,
    selector: Selector,
    template: PodTemplate,
}

#[derive(Serialize)]
struct Strategy {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<&'static str, String>,
}

#[derive(Serialize)]
struct PodTemplate {
    metadata: PodMetadata,
    spec: PodSpec,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    init_containers: Vec<Container>,
    containers: Vec<Container>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<PodVolume>,
}

/// No `ports`: Kubernetes needs them for nothing (a Service targets a port by its number), and
/// `podman kube play` publishes each on the host, where it clashes with what the host serves.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container {
    name: String,
    image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volume_mounts: Vec<VolumeMount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_context: Option<SecurityContext>,
}

#[derive(Serialize)]
struct EnvVar {
    name: String,
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodVolume {
    name: String,
    persistent_volume_claim: ClaimRef,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimRef {
    claim_name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_socket: Option<TcpSocket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exec: Option<Exec>,
    period_seconds: u64,
    failure_threshold: u64,
}

#[derive(Serialize)]
struct TcpSocket {
    port: u16,
}

#[derive(Serialize)]
struct Exec {
    command: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SecurityContext {
    run_as_user: u32,
}

#[derive(Serialize)]
struct ServiceSpec {
    selector: BTreeMap<&'static str, String>,
    ports: Vec<ServicePort>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    name: String,
    port: u16,
    target_port: u16,
    protocol: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClaimSpec {
    access_modes: Vec<&'static str>,
    resources: Resources,
}

#[derive(Serialize)]
struct Resources {
    requests: BTreeMap<&'static str, &'static str>,
}

/// The manifests of `app`, in the order to apply them: claims, then each workload's
/// Deployment followed by its Service (for each workload that declares ports).
pub fn manifests(app: &App) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for workload in &app.workloads {
        for volume in &workload.volumes {
            out.push(to_value(&Object {
                api_version: "v1",
                kind: "PersistentVolumeClaim",
                metadata: metadata(&volume.claim, app, workload),
                spec: ClaimSpec {
                    access_modes: vec!["ReadWriteOnce"],
                    resources: Resources {
                        requests: BTreeMap::from([("storage", "1Gi")]),
                    },
                },
            }));
        }
    }
    for workload in &app.workloads {
        out.push(to_value(&deployment(app, workload)));
        // A peer is reached by its name; the main environment too, where it serves ports.
        if !workload.ports.is_empty() {
            out.push(to_value(&Object {
                api_version: "v1",
                kind: "Service",
                metadata: metadata(&workload.name, app, workload),
                spec: ServiceSpec {
                    selector: selector(workload),
                    ports: workload
                        .ports
                        .iter()
                        .map(|&port| ServicePort {
                            name: format!("tcp-{port}"),
                            port,
                            target_port: port,
                            protocol: "TCP",
                        })
                        .collect(),
                },
            }));
        }
    }
    out
}

fn to_value(object: &impl Serialize) -> serde_json::Value {
    // Plain structs of strings, numbers and maps with string keys always serialise.
    serde_json::to_value(object).unwrap_or_default()
}

fn metadata(name: &str, app: &App, workload: &Workload) -> Metadata {
    Metadata {
        name: name.to_string(),
        annotations: BTreeMap::new(),
        labels: labels(app, workload),
    }
}

/// What every object of a workload is labelled with: its project and its name.
fn labels(app: &App, workload: &Workload) -> BTreeMap<&'static str, String> {
    BTreeMap::from([
        (PART_OF, app.project.clone()),
        (NAME, workload.name.clone()),
    ])
}

fn selector(workload: &Workload) -> BTreeMap<&'static str, String> {
    BTreeMap::from([(NAME, workload.name.clone())])
}

fn deployment(app: &App, workload: &Workload) -> Object<DeploymentSpec> {
    let volumes = workload
        .volumes
        .iter()
        .map(|volume| PodVolume {
            name: volume.claim.clone(),
            persistent_volume_claim: ClaimRef {
                claim_name: volume.claim.clone(),
            },
        })
        .collect();
    let security_context = || workload.root.then_some(SecurityContext { run_as_user: 0 });
    let container = Container {
        name: workload.name.clone(),
        image: workload.image.clone(),
        command: None,
        env: workload
            .env
            .iter()
            .map(|(name, value)| EnvVar {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        working_dir: workload.working_dir.clone(),
        volume_mounts: workload
            .volumes
            .iter()
            .map(|volume| VolumeMount {
                name: volume.claim.clone(),
                mount_path: volume.at.clone(),
            })
            .collect(),
        readiness_probe: workload.ready.as_ref().map(probe),
        security_context: security_context(),
    };
    // A new claim is empty, and a volume inside envkit (as in Docker) starts with what the
    // image holds at its path: the first pod copies it in, later pods find it filled.
    let init_containers = workload
        .volumes
        .iter()
        .enumerate()
        .map(|(index, volume)| Container {
            name: format!("fill-volume-{index}"),
            image: workload.image.clone(),
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(
                    "if [ -z \"$(ls -A {FILL_AT})\" ] && [ -d {at} ]; then cp -a {at}/. {FILL_AT}/; fi",
                    at = shell_quoted(&volume.at)
                ),
            ]),
            env: Vec::new(),
            working_dir: None,
            volume_mounts: vec![VolumeMount {
                name: volume.claim.clone(),
                mount_path: FILL_AT.into(),
            }],
            readiness_probe: None,
            security_context: security_context(),
        })
        .collect();
    let mut deployment_metadata = metadata(&workload.name, app, workload);
    if !workload.volumes.is_empty() {
        // podman kube play removes a finished init container at once, which races with its
        // exit (podman 4.3); kept, it is run again at each start, as Kubernetes does, and the
        // fill copies only into an empty volume.
        deployment_metadata
            .annotations
            .insert("io.podman.annotations.init.container.type", "always");
    }
    Object {
        api_version: "apps/v1",
        kind: "Deployment",
        metadata: deployment_metadata,
        spec: DeploymentSpec {
            replicas: 1,
            // A claim is ReadWriteOnce: the old pod lets go of it before the new one starts.
            strategy: Strategy {
                kind: if workload.volumes.is_empty() {
                    "RollingUpdate"
                } else {
                    "Recreate"
                },
            },
            selector: Selector {
                match_labels: selector(workload),
            },
            template: PodTemplate {
                metadata: PodMetadata {
                    labels: labels(app, workload),
                },
                spec: PodSpec {
                    init_containers,
                    containers: vec![container],
                    volumes,
                },
            },
        },
    }
}

/// `text` as one word for `/bin/sh`.
fn shell_quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

fn probe(ready: &Ready) -> Probe {
    let (tcp_socket, exec, timeout) = match ready {
        Ready::Tcp { port, timeout_secs } => (Some(TcpSocket { port: *port }), None, *timeout_secs),
        Ready::Command {
            command,
            timeout_secs,
        } => (
            None,
            Some(Exec {
                command: vec!["/bin/sh".into(), "-c".into(), command.clone()],
            }),
            *timeout_secs,
        ),
    };
    Probe {
        tcp_socket,
        exec,
        period_seconds: PROBE_PERIOD,
        failure_threshold: timeout.div_ceil(PROBE_PERIOD).max(1),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::deploy::Volume;

    pub(crate) fn sample() -> App {
        App {
            project: "api".into(),
            workloads: vec![
                Workload {
                    name: "api".into(),
                    image: "registry.test/team/api@sha256:aa".into(),
                    reachable: false,
                    env: BTreeMap::from([("DATABASE_URL".into(), "postgresql://db/app".into())]),
                    working_dir: Some("/app".into()),
                    ports: vec![],
                    volumes: vec![],
                    ready: None,
                    root: false,
                },
                Workload {
                    name: "db".into(),
                    image: "registry.test/team/db@sha256:bb".into(),
                    reachable: true,
                    env: BTreeMap::new(),
                    working_dir: None,
                    ports: vec![5432],
                    volumes: vec![Volume {
                        claim: "db-pgdata".into(),
                        at: "/var/lib/postgresql".into(),
                    }],
                    ready: Some(Ready::Tcp {
                        port: 5432,
                        timeout_secs: 60,
                    }),
                    root: true,
                },
            ],
        }
    }

    #[test]
    fn a_peer_is_a_deployment_and_a_service_of_its_name_with_its_claim() {
        let objects = manifests(&sample());
        let kinds: Vec<(&str, &str)> = objects
            .iter()
            .map(|o| {
                (
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("PersistentVolumeClaim", "db-pgdata"),
                ("Deployment", "api"),
                ("Deployment", "db"),
                ("Service", "db"),
            ]
        );
        let db = &objects[2]["spec"]["template"]["spec"];
        assert_eq!(
            db["volumes"][0]["persistentVolumeClaim"]["claimName"],
            "db-pgdata"
        );
        let container = &db["containers"][0];
        assert_eq!(container["image"], "registry.test/team/db@sha256:bb");
        assert_eq!(
            container["volumeMounts"][0]["mountPath"],
            "/var/lib/postgresql"
        );
        assert_eq!(container["readinessProbe"]["tcpSocket"]["port"], 5432);
        assert_eq!(container["readinessProbe"]["failureThreshold"], 30);
        assert_eq!(objects[3]["spec"]["selector"][NAME], "db");
        assert_eq!(objects[3]["spec"]["ports"][0]["port"], 5432);
        let api = &objects[1]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(api["env"][0]["name"], "DATABASE_URL");
        assert_eq!(api["workingDir"], "/app");
        assert!(api.get("securityContext").is_none());
        let fill = &db["initContainers"][0];
        assert_eq!(fill["image"], "registry.test/team/db@sha256:bb");
        assert_eq!(fill["volumeMounts"][0]["name"], "db-pgdata");
        assert!(
            fill["command"][2]
                .as_str()
                .unwrap()
                .contains("cp -a '/var/lib/postgresql'/. /envkit-volume/")
        );
        assert_eq!(objects[2]["spec"]["strategy"]["type"], "Recreate");
    }
}
