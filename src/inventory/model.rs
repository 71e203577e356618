//! What an image holds: its installed packages, the OS (from `/etc/os-release`) and the
//! kernel, as collected on the builder before sealing. Plain data, serialised as JSON with
//! the build.

use serde::{Deserialize, Serialize};

/// The package manager an inventory was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    /// Debian, Ubuntu: `dpkg-query`.
    Dpkg,
    /// RHEL, Fedora, Amazon Linux, SUSE: `rpm -qa`.
    Rpm,
    /// Alpine: `apk`.
    Apk,
}

impl PackageManager {
    pub fn as_str(self) -> &'static str {
        match self {
            PackageManager::Dpkg => "dpkg",
            PackageManager::Rpm => "rpm",
            PackageManager::Apk => "apk",
        }
    }
}

/// One installed package.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub arch: String,
    /// The source package it was built from, when the package manager records one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The OS release, from `/etc/os-release`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OsRelease {
    /// `ID` (`debian`, `ubuntu`, `amzn`, `alpine`...).
    pub id: String,
    /// `VERSION_ID`, empty on rolling distributions.
    #[serde(default)]
    pub version_id: String,
    /// `PRETTY_NAME`, else `ID VERSION_ID`.
    pub pretty_name: String,
}

impl OsRelease {
    /// Parses `/etc/os-release` (shell-style `KEY=value`, values optionally quoted).
    pub fn parse(text: &str) -> Option<OsRelease> {
        let mut id = None;
        let mut version_id = String::new();
        let mut pretty = None;
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = unquote(value.trim());
            match key.trim() {
                "ID" => id = Some(value),
                "VERSION_ID" => version_id = value,
                "PRETTY_NAME" => pretty = Some(value),
                _ => {}
            }
        }
        let id = id.filter(|s| !s.is_empty())?;
        let pretty_name = pretty
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{id} {version_id}").trim().to_string());
        Some(OsRelease {
            id,
            version_id,
            pretty_name,
        })
    }
}

fn unquote(v: &str) -> String {
    let inner = if v.len() >= 2
        && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\'')))
    {
        &v[1..v.len() - 1]
    } else {
        v
    };
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// The package inventory of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub manager: PackageManager,
    #[serde(default)]
    pub os: Option<OsRelease>,
    /// `uname -r` on the builder.
    #[serde(default)]
    pub kernel: Option<String>,
    /// Sorted by name, architecture, version.
    pub packages: Vec<Package>,
}

impl Inventory {
    /// Builds an inventory with its packages sorted and exact duplicates dropped.
    pub fn new(
        manager: PackageManager,
        os: Option<OsRelease>,
        kernel: Option<String>,
        mut packages: Vec<Package>,
    ) -> Self {
        packages.sort();
        packages.dedup();
        Inventory {
            manager,
            os,
            kernel,
            packages,
        }
    }
}

/// What collection found on a builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Collected {
    Inventory(Inventory),
    /// No known package manager on the builder: the build goes on without an inventory.
    NoPackageManager {
        #[serde(default)]
        os: Option<OsRelease>,
        #[serde(default)]
        kernel: Option<String>,
    },
}

impl Collected {
    pub fn inventory(&self) -> Option<&Inventory> {
        match self {
            Collected::Inventory(i) => Some(i),
            Collected::NoPackageManager { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_os_release() {
        let text = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n# comment\n";
        assert_eq!(
            OsRelease::parse(text),
            Some(OsRelease {
                id: "debian".into(),
                version_id: "12".into(),
                pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
            })
        );
        assert_eq!(
            OsRelease::parse("ID='alpine'\nVERSION_ID=3.20.1\n")
                .unwrap()
                .pretty_name,
            "alpine 3.20.1"
        );
        assert_eq!(OsRelease::parse("NAME=x\n"), None);
    }
}
