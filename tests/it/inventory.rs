//! The package inventory read on a real builder (the sandboxed OpenSSH server, whose
//! rootfs is Debian) before sealing, compared with what `dpkg-query` prints there, and its
//! SBOM checked against CycloneDX's official JSON schema.

use std::io::Write;
use std::process::{Command, Stdio};

use bakery::inventory::{sbom, Collected, PackageManager};
use bakery::plan::model::ProvisionStep;

use crate::ssh::{no_seal, plan, shell, Rig};

/// `dpkg-query` run inside the sandbox by a provision step, in a format of its own, read
/// back from the sandbox's filesystem: (name, version, architecture, source).
fn dpkg_query_in_the_sandbox(rig: &Rig) -> Vec<(String, String, String, String)> {
    let text = rig.sandbox.read("/tmp/dpkg-query.txt").unwrap();
    let mut rows: Vec<_> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f[0] == "installed").then(|| {
                (
                    f[1].to_string(),
                    f[2].to_string(),
                    f[3].to_string(),
                    f[4].to_string(),
                )
            })
        })
        .collect();
    rows.sort();
    rows
}

/// Runs `tests/it/support/cyclonedx_validate.mjs` (Ajv with the schemas
/// `@cyclonedx/cyclonedx-library` ships): `Ok` when valid, else the errors.
pub(crate) fn validate_cyclonedx(doc: &serde_json::Value) -> Result<(), String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("node")
        .arg(root.join("tests/it/support/cyclonedx_validate.mjs"))
        .arg(root.join("tests/fixtures"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (scripts/github/setup.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&sbom::to_bytes(doc))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(text),
        _ => panic!("the validator did not run: {text}"),
    }
}

#[test]
fn the_sbom_validates_against_the_cyclonedx_1_5_schema_and_a_broken_one_does_not() {
    let inv = bakery::inventory::Inventory::new(
        PackageManager::Dpkg,
        bakery::inventory::OsRelease::parse("ID=debian\nVERSION_ID=12\n"),
        Some("6.1.0-18-cloud-amd64".into()),
        vec![bakery::inventory::Package {
            name: "vim".into(),
            version: "2:9.0.1378-2".into(),
            arch: "amd64".into(),
            source: Some("vim".into()),
        }],
    );
    let doc = sbom::cyclonedx(&inv, "web", "release-1.0.0", "2025-01-02T03:04:05Z");
    validate_cyclonedx(&doc).unwrap();
    let mut broken = doc.clone();
    broken["components"][1]["type"] = "rpm-package".into();
    let errors = validate_cyclonedx(&broken).unwrap_err();
    assert!(errors.contains("/components/1/type"), "{errors}");
}

#[tokio::test]
async fn the_inventory_of_the_debian_builder_matches_dpkg_query() {
    let rig = Rig::start();
    let step = shell(
        "dpkg-query",
        &[
            "dpkg-query -W -f='${db:Status-Status}|${Package}|${Version}|${Architecture}|${source:Package}\\n' > /tmp/dpkg-query.txt",
            "uname -r > /tmp/uname.txt",
        ],
    );
    let report = rig
        .provision(plan(vec![ProvisionStep::Shell(step)]))
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    let Some(Collected::Inventory(inv)) = report.inventory else {
        panic!("no inventory: {:?}\n{}", report.inventory, rig.log());
    };
    assert_eq!(inv.manager, PackageManager::Dpkg);
    let expected = dpkg_query_in_the_sandbox(&rig);
    assert!(
        expected.len() > 50,
        "dpkg-query printed {} packages",
        expected.len()
    );
    let mut ours: Vec<_> = inv
        .packages
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.version.clone(),
                p.arch.clone(),
                p.source.clone().unwrap_or_default(),
            )
        })
        .collect();
    ours.sort();
    pretty_assertions::assert_eq!(ours, expected);
    assert!(inv.packages.iter().any(|p| p.name == "openssh-server"));
    let os = inv.os.clone().expect("the OS from /etc/os-release");
    assert_eq!(os.id, "debian");
    assert_eq!(
        Some(os.pretty_name.as_str()),
        rig.sandbox
            .read("/etc/os-release")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"'))
    );
    assert_eq!(
        inv.kernel.as_deref(),
        Some(rig.sandbox.read("/tmp/uname.txt").unwrap().trim())
    );
    assert!(
        rig.log()
            .contains(&format!("{} packages (dpkg)", inv.packages.len())),
        "{}",
        rig.log()
    );
    // The builder's whole inventory as an SBOM is valid CycloneDX 1.5.
    let doc = sbom::cyclonedx(&inv, "base", "release-0.1.0", "2025-01-02T03:04:05Z");
    assert_eq!(
        doc["components"].as_array().unwrap().len(),
        inv.packages.len() + 1
    );
    validate_cyclonedx(&doc).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_builder_without_a_known_package_manager_succeeds_with_a_note() {
    let rig = Rig::start();
    let mut hide = shell(
        "hide dpkg",
        &["mv /usr/bin/dpkg-query /usr/bin/dpkg-query.hidden"],
    );
    hide.sudo = true;
    let mut p = plan(vec![ProvisionStep::Shell(hide)]);
    p.seal = no_seal();
    let report = rig
        .provision(p)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", rig.log()));
    match report.inventory {
        Some(Collected::NoPackageManager { os, kernel }) => {
            assert_eq!(os.unwrap().id, "debian");
            assert!(kernel.is_some());
        }
        other => panic!("expected no package manager, got {other:?}"),
    }
    assert!(
        rig.log().contains("this image has no package inventory"),
        "{}",
        rig.log()
    );
}
