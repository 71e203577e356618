//! The image's SBOM: its inventory as a CycloneDX 1.5 JSON document. Pure and
//! deterministic (the same inventory, recipe, version and build time give the same bytes),
//! so its digest can be signed into the provenance and checked later.
//!
//! CycloneDX rather than SPDX: an image's inventory is a flat list of OS packages, which
//! CycloneDX states directly (one `library` component per package, with its package URL,
//! and an `operating-system` component), while SPDX 2.3 requires document namespaces,
//! creation info and a relationship per package to say the same; CycloneDX's package URL
//! (`pkg:deb/debian/openssl@3.0.11-1?arch=amd64&distro=debian-12`) is also what
//! vulnerability scanners (Trivy, Grype, Dependency-Track) match on.

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::model::{Inventory, Package, PackageManager};

/// The media type of the document, for the release asset.
pub const MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// Percent-encodes a package URL segment (RFC 3986 unreserved characters stay).
fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The package URL of one package.
pub fn purl(inv: &Inventory, p: &Package) -> String {
    let (kind, default_ns) = match inv.manager {
        PackageManager::Dpkg => ("deb", "debian"),
        PackageManager::Rpm => ("rpm", "redhat"),
        PackageManager::Apk => ("apk", "alpine"),
    };
    let ns = inv.os.as_ref().map(|o| o.id.as_str()).unwrap_or(default_ns);
    let mut q = vec![];
    if !p.arch.is_empty() {
        q.push(format!("arch={}", pct(&p.arch)));
    }
    if let Some(os) = &inv.os {
        if !os.version_id.is_empty() {
            q.push(format!(
                "distro={}",
                pct(&format!("{}-{}", os.id, os.version_id))
            ));
        }
    }
    let mut out = format!(
        "pkg:{kind}/{}/{}@{}",
        pct(&ns.to_lowercase()),
        pct(&p.name),
        pct(&p.version)
    );
    if !q.is_empty() {
        out.push('?');
        out.push_str(&q.join("&"));
    }
    out
}

/// A serial number derived from the content (CycloneDX asks for a UUID URN).
fn serial(seed: &[u8]) -> String {
    let digest = Sha256::digest(seed);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let id = uuid::Builder::from_random_bytes(bytes).into_uuid();
    format!("urn:uuid:{id}")
}

/// The CycloneDX 1.5 document for the image of `recipe` at `version`, built at
/// `build_time` (RFC 3339).
pub fn cyclonedx(inv: &Inventory, recipe: &str, version: &str, build_time: &str) -> Value {
    let mut components: Vec<Value> = Vec::new();
    if let Some(os) = &inv.os {
        components.push(json!({
            "type": "operating-system",
            "bom-ref": format!("os:{}", os.id),
            "name": os.id,
            "version": os.version_id,
            "description": os.pretty_name,
        }));
    }
    for p in &inv.packages {
        let purl = purl(inv, p);
        let mut c = json!({
            "type": "library",
            "bom-ref": purl,
            "name": p.name,
            "version": p.version,
            "purl": purl,
        });
        let mut props = vec![json!({"name": "bakery:package:arch", "value": p.arch})];
        if let Some(src) = &p.source {
            props.push(json!({"name": "bakery:package:source", "value": src}));
        }
        c["properties"] = Value::Array(props);
        components.push(c);
    }
    let mut properties =
        vec![json!({"name": "bakery:package-manager", "value": inv.manager.as_str()})];
    if let Some(k) = &inv.kernel {
        properties.push(json!({"name": "bakery:kernel", "value": k}));
    }
    let mut doc = json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": build_time,
            "tools": {
                "components": [{
                    "type": "application",
                    "name": "bakery",
                    "version": env!("CARGO_PKG_VERSION"),
                }]
            },
            "component": {
                "type": "operating-system",
                "bom-ref": format!("image:{recipe}@{version}"),
                "name": recipe,
                "version": version,
            },
            "properties": properties,
        },
        "components": components,
    });
    let seed = serde_json::to_vec(&doc).unwrap_or_default();
    doc["serialNumber"] = Value::String(serial(&seed));
    doc
}

/// The document's bytes as attached to the release (pretty JSON, newline-terminated).
pub fn to_bytes(doc: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(doc).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::OsRelease;

    pub(crate) fn sample() -> Inventory {
        Inventory::new(
            PackageManager::Dpkg,
            Some(OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            }),
            Some("6.1.0-18-cloud-amd64".into()),
            vec![
                Package {
                    name: "libssl3".into(),
                    version: "3.0.11-1~deb12u2".into(),
                    arch: "amd64".into(),
                    source: Some("openssl".into()),
                },
                Package {
                    name: "vim".into(),
                    version: "2:9.0.1378-2".into(),
                    arch: "amd64".into(),
                    source: None,
                },
            ],
        )
    }

    #[test]
    fn package_urls_encode_epochs_and_carry_the_distro() {
        let inv = sample();
        assert_eq!(
            purl(&inv, &inv.packages[1]),
            "pkg:deb/debian/vim@2%3A9.0.1378-2?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            purl(&inv, &inv.packages[0]),
            "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn the_document_is_deterministic() {
        let a = cyclonedx(&sample(), "web", "release-1.0.0", "2025-01-02T03:04:05Z");
        let b = cyclonedx(&sample(), "web", "release-1.0.0", "2025-01-02T03:04:05Z");
        assert_eq!(to_bytes(&a), to_bytes(&b));
        assert_eq!(a["components"].as_array().unwrap().len(), 3);
        assert!(a["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));
        let c = cyclonedx(&sample(), "web", "release-1.0.1", "2025-01-02T03:04:05Z");
        assert_ne!(a["serialNumber"], c["serialNumber"]);
    }
}
