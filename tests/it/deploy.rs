//! `deploy/kubernetes/`: every manifest validates against the Kubernetes API's schemas
//! (kubernetes-validate, strict; the ServiceMonitor against the Prometheus Operator's
//! models), the validator refuses a broken manifest, and the pieces fit together: two
//! replicas on PostgreSQL, secrets only as files, probes on /readyz and /healthz,
//! requests and limits, a PodDisruptionBudget, a Service, an Ingress that exposes only the
//! webhook path, a ServiceMonitor on /metrics; the ConfigMap's bakery.toml loads.

use std::path::{Path, PathBuf};
use std::process::Command;

use bakery::config::ServerConfig;
use serde_json::Value;

const KUBERNETES: &str = "1.37.0";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the validator on `files`: (documents, errors).
fn validate(files: &[PathBuf]) -> (Vec<Value>, Vec<String>) {
    let python = Command::new(root().join("scripts/kubernetes/python"))
        .output()
        .expect("scripts/kubernetes/python runs");
    assert!(
        python.status.success(),
        "run scripts/kubernetes/setup.sh: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    let python = String::from_utf8(python.stdout).unwrap().trim().to_string();
    let out = Command::new(python)
        .arg(root().join("tests/it/support/k8s_validate.py"))
        .arg(KUBERNETES)
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        v["documents"].as_array().unwrap().clone(),
        v["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect(),
    )
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

fn kind<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("a {kind} in deploy/kubernetes/"))
}

#[test]
fn the_kubernetes_manifests_validate_and_fit_together() {
    let (docs, errors) = validate(&manifests());
    assert_eq!(errors, Vec::<String>::new());

    // The kustomization lists every manifest but the example Secret.
    let kustomization = kind(&docs, "Kustomization");
    let mut listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    listed.sort();
    let mut files: Vec<String> = manifests()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
        .filter(|f| f != "kustomization.yaml" && f != "secret.example.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files);

    let deployment = kind(&docs, "Deployment");
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let labels = &spec["selector"]["matchLabels"];
    assert_eq!(&spec["template"]["metadata"]["labels"], labels);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    for what in ["requests", "limits"] {
        assert!(
            c["resources"][what]["memory"].is_string(),
            "memory {what}: {c}"
        );
    }
    assert!(c["resources"]["requests"]["cpu"].is_string());
    // Secrets only as files: no variable takes a value from a Secret.
    let env = c["env"].as_array().cloned().unwrap_or_default();
    assert!(
        env.iter().all(|e| e["valueFrom"]["secretKeyRef"].is_null()),
        "{env:?}"
    );
    assert!(c["envFrom"].is_null());
    let secret_volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| !v["secret"].is_null())
        .expect("a secret volume");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == secret_volume["name"])
        .expect("the secrets mounted");
    assert_eq!(mount["readOnly"], true);
    let secrets_dir = mount["mountPath"].as_str().unwrap().to_string();

    let pdb = kind(&docs, "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert_eq!(pdb["spec"]["minAvailable"], 1);

    let service = kind(&docs, "Service");
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&labels[k], v);
    }
    let port_name = service["spec"]["ports"][0]["name"].as_str().unwrap();

    // The Ingress: the webhook path, exactly, and nothing else.
    let ingress = kind(&docs, "Ingress");
    let paths: Vec<(String, String)> = ingress["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["http"]["paths"].as_array().unwrap().clone())
        .map(|p| {
            assert_eq!(p["backend"]["service"]["name"], service["metadata"]["name"]);
            (
                p["path"].as_str().unwrap().to_string(),
                p["pathType"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(paths, vec![("/webhooks/github".into(), "Exact".into())]);
    assert!(ingress["spec"]["defaultBackend"].is_null());

    let monitor = kind(&docs, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], port_name);

    // The ConfigMap's configuration loads, with the secret files it names.
    let toml = kind(&docs, "ConfigMap")["data"]["bakery.toml"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let secret = kind(&docs, "Secret");
    for (name, value) in secret["stringData"].as_object().unwrap() {
        std::fs::write(dir.path().join(name), value.as_str().unwrap()).unwrap();
    }
    let text = toml.replace(&secrets_dir, dir.path().to_str().unwrap());
    let (toml_file, pem) = (
        dir.path().join("bakery.toml"),
        dir.path().join("github-app.pem"),
    );
    std::fs::write(&toml_file, text).unwrap();
    assert!(
        pem.exists(),
        "the example Secret holds every file the configuration names"
    );
    let config = ServerConfig::load(Some(Path::new(&toml_file)), Vec::new())
        .expect("the ConfigMap's bakery.toml with the example Secret's files");
    assert!(config.database_url.expose().starts_with("postgres://"));
    assert_eq!(config.listen.port(), 8080);
    assert!(config.dashboard.github_sign_in());
    assert!(!toml.contains("change-me"), "no secret in the ConfigMap");
}

#[test]
fn the_validator_refuses_a_broken_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n\
         spec: {replicas: two, selector: {}, template: {}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: y}\n\
         spec: {rules: [{http: {paths: [{path: /, pathType: Everything}]}}]}\n---\n\
         apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: z}\n\
         spec: {selector: {}, endpoints: [{port: http, pathx: /metrics}]}\n",
    )
    .unwrap();
    let (docs, errors) = validate(&[broken]);
    assert_eq!(docs.len(), 3);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(errors[0].contains("replicas"), "{}", errors[0]);
    assert!(errors[2].contains("pathx"), "{}", errors[2]);
}
