//! Every Kubernetes manifest in deploy/kubernetes parses into the k8s-openapi types with no field
//! left over (k8s-openapi ignores unknown fields, so each document is re-serialized and compared
//! with the original), and the example Jobs mount the very hostPath the quote-helper DaemonSets
//! serve.

// Test code: panicking on unexpected results is the point (clippy.toml only covers #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, PodSpec, Secret, Service, ServiceAccount,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// A parsed document of one of the kinds our manifests use.
enum Object {
    DaemonSet(Box<DaemonSet>),
    Job(Box<Job>),
    Other,
}

/// Parses `value` as `T` and checks that serializing it back gives the same JSON: a misspelt or
/// misplaced field would be dropped by the parse and show up as a difference.
fn strict<T: DeserializeOwned + Serialize>(value: &Value, origin: &str) -> T {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{origin}: does not parse as the Kubernetes type: {e}"));
    let back = serde_json::to_value(&typed).unwrap();
    let mut differences = Vec::new();
    diff(value, &back, String::new(), &mut differences);
    assert!(
        differences.is_empty(),
        "{origin}: fields the Kubernetes type does not know (or reshapes):\n  {}",
        differences.join("\n  ")
    );
    typed
}

/// Collects paths where `original` has something `round_trip` does not (or a different value).
/// Quantities and int-or-string values are compared as the strings Kubernetes keeps them as.
fn diff(original: &Value, round_trip: &Value, path: String, out: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(w) => diff(v, w, p, out),
                    None => out.push(format!("{p} (unknown field)")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!("{path} (array length {} vs {})", a.len(), b.len()));
                return;
            }
            for (i, (v, w)) in a.iter().zip(b).enumerate() {
                diff(v, w, format!("{path}[{i}]"), out);
            }
        }
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
            if n.to_string() == *s => {}
        (a, b) if a == b => {}
        (a, b) => out.push(format!("{path} ({a} became {b})")),
    }
}

fn parse_document(value: &Value, origin: &str) -> Object {
    let api_version = value["apiVersion"].as_str().unwrap_or_default();
    let kind = value["kind"].as_str().unwrap_or_default();
    match (api_version, kind) {
        ("apps/v1", "DaemonSet") => Object::DaemonSet(Box::new(strict(value, origin))),
        ("batch/v1", "Job") => Object::Job(Box::new(strict(value, origin))),
        ("apps/v1", "Deployment") => {
            strict::<Deployment>(value, origin);
            Object::Other
        }
        ("apps/v1", "StatefulSet") => {
            strict::<StatefulSet>(value, origin);
            Object::Other
        }
        ("v1", "Namespace") => {
            strict::<Namespace>(value, origin);
            Object::Other
        }
        ("v1", "Service") => {
            strict::<Service>(value, origin);
            Object::Other
        }
        ("v1", "ServiceAccount") => {
            strict::<ServiceAccount>(value, origin);
            Object::Other
        }
        ("v1", "ConfigMap") => {
            strict::<ConfigMap>(value, origin);
            Object::Other
        }
        ("v1", "Secret") => {
            strict::<Secret>(value, origin);
            Object::Other
        }
        ("v1", "PersistentVolumeClaim") => {
            strict::<PersistentVolumeClaim>(value, origin);
            Object::Other
        }
        other => panic!("{origin}: no check for {other:?}; add the type to this test"),
    }
}

fn load_all() -> Vec<(String, Object)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (i, doc) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let origin = format!("{} document {i}", file.display());
            let value =
                Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: not YAML: {e}"));
            if value.is_null() {
                continue;
            }
            out.push((origin.clone(), parse_document(&value, &origin)));
        }
    }
    out
}

fn pod_spec_host_path_mounts(spec: &PodSpec, container: &str) -> Vec<(String, String)> {
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let c = spec
        .containers
        .iter()
        .find(|c| c.name == container)
        .unwrap_or_else(|| panic!("no container {container}"));
    c.volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| {
            let v = volumes.iter().find(|v| v.name == m.name)?;
            let hp = v.host_path.as_ref()?;
            Some((hp.path.clone(), m.mount_path.clone()))
        })
        .collect()
}

#[test]
fn every_manifest_parses_strictly() {
    let all = load_all();
    let daemonsets = all
        .iter()
        .filter(|(_, o)| matches!(o, Object::DaemonSet(_)))
        .count();
    let jobs = all
        .iter()
        .filter(|(_, o)| matches!(o, Object::Job(_)))
        .count();
    assert!(daemonsets >= 2, "sim and forward DaemonSets");
    assert!(jobs >= 2, "Intel and Azure example Jobs");
}

#[test]
fn strictness_catches_a_misspelt_field() {
    let text = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: x\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n        - name: a\n          image: b\n          volumeMount: []\n";
    let value: Value = serde_norway::from_str(text).unwrap();
    let result = std::panic::catch_unwind(|| strict::<Job>(&value, "test"));
    let message = *result.unwrap_err().downcast::<String>().unwrap();
    assert!(message.contains("volumeMount (unknown field)"), "{message}");
}

#[test]
fn jobs_share_the_quote_helper_host_path() {
    let all = load_all();
    let mut helper_paths = Vec::new();
    for (origin, o) in &all {
        if let Object::DaemonSet(ds) = o {
            let spec = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let mounts = pod_spec_host_path_mounts(spec, "aesmd");
            assert!(
                mounts.contains(&("/var/run/aesmd".into(), "/var/run/aesmd".into())),
                "{origin}: the helper must serve the node's /var/run/aesmd: {mounts:?}"
            );
            let volumes = spec.volumes.as_deref().unwrap();
            let socket_volume = volumes
                .iter()
                .find(|v| {
                    v.host_path
                        .as_ref()
                        .is_some_and(|h| h.path == "/var/run/aesmd")
                })
                .unwrap();
            assert_eq!(
                socket_volume.host_path.as_ref().unwrap().type_.as_deref(),
                Some("DirectoryOrCreate"),
                "{origin}"
            );
            let container = spec.containers.iter().find(|c| c.name == "aesmd").unwrap();
            let args = container.args.as_deref().unwrap();
            let socket = args
                .iter()
                .position(|a| a == "--socket")
                .map(|i| args[i + 1].as_str());
            assert_eq!(socket, Some("/var/run/aesmd/aesm.socket"), "{origin}");
            assert!(
                container.resources.as_ref().unwrap().limits.is_some(),
                "{origin}: resource limits"
            );
            let sc = container.security_context.as_ref().unwrap();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{origin}");
            assert_eq!(sc.read_only_root_filesystem, Some(true), "{origin}");
            assert_eq!(
                sc.capabilities.as_ref().unwrap().drop.as_deref(),
                Some(&["ALL".to_string()][..]),
                "{origin}"
            );
            helper_paths.push("/var/run/aesmd".to_string());
        }
    }
    assert!(!helper_paths.is_empty());
    let mut epc_kinds = Vec::new();
    for (origin, o) in &all {
        if let Object::Job(job) = o {
            let spec = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let container = &spec.containers[0];
            let mounts = pod_spec_host_path_mounts(spec, &container.name);
            assert!(
                mounts.contains(&("/var/run/aesmd".into(), "/var/run/aesmd".into())),
                "{origin}: the workload must mount the helper's hostPath at /var/run/aesmd: {mounts:?}"
            );
            let env = container.env.as_deref().unwrap();
            let aesm_addr = env.iter().find(|e| e.name == "SGX_AESM_ADDR").unwrap();
            assert_eq!(aesm_addr.value.as_deref(), Some("1"), "{origin}");
            // The launcher checks the returned certificate's chain against the zone CA, read
            // from a mounted ConfigMap.
            let zone_ca = env
                .iter()
                .find(|e| e.name == "CCM_LAUNCH_ZONE_CA")
                .and_then(|e| e.value.clone())
                .unwrap_or_else(|| panic!("{origin}: CCM_LAUNCH_ZONE_CA is not set"));
            let volumes = spec.volumes.as_deref().unwrap_or_default();
            let mounted = container
                .volume_mounts
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|m| {
                    zone_ca.starts_with(&format!("{}/", m.mount_path))
                        && volumes
                            .iter()
                            .any(|v| v.name == m.name && v.config_map.is_some())
                });
            assert!(mounted, "{origin}: {zone_ca} is not on a ConfigMap volume");
            let limits = container
                .resources
                .as_ref()
                .unwrap()
                .limits
                .as_ref()
                .unwrap();
            let epc: Vec<&String> = limits
                .keys()
                .filter(|k| {
                    *k == "sgx.intel.com/epc" || *k == "kubernetes.azure.com/sgx_epc_mem_in_MiB"
                })
                .collect();
            assert_eq!(epc.len(), 1, "{origin}: one EPC resource: {limits:?}");
            epc_kinds.push(epc[0].clone());
        }
    }
    epc_kinds.sort();
    assert_eq!(
        epc_kinds,
        [
            "kubernetes.azure.com/sgx_epc_mem_in_MiB",
            "sgx.intel.com/epc"
        ],
        "both EPC resource variants have an example"
    );
}
