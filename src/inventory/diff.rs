//! The difference between two inventories of the same recipe: packages upgraded,
//! downgraded, added and removed, and whether the kernel or the OS release moved. Pure.
//!
//! Packages are matched by name and architecture. Where one name and architecture is
//! installed in several versions at once (RPM kernels), the highest versions are compared.
//! Versions are ordered by Debian's rules ([`super::version::compare`]); two spellings of
//! one version (`0:1.0` and `1.0`) are no change.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;

use super::model::{Inventory, OsRelease, Package};
use super::version::compare;

/// One package whose version moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionChange {
    pub name: String,
    pub arch: String,
    pub old: String,
    pub new: String,
}

/// A value that changed between two inventories (`None`: not known on that side).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed<T> {
    pub old: Option<T>,
    pub new: Option<T>,
}

/// What changed from `old` to `new`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct InventoryDiff {
    pub kernel: Option<Changed<String>>,
    pub os: Option<Changed<OsRelease>>,
    pub upgraded: Vec<VersionChange>,
    pub downgraded: Vec<VersionChange>,
    pub added: Vec<Package>,
    pub removed: Vec<Package>,
    /// Packages present on both sides in the same version.
    pub unchanged: usize,
}

impl InventoryDiff {
    /// Nothing moved.
    pub fn is_empty(&self) -> bool {
        self.kernel.is_none()
            && self.os.is_none()
            && self.upgraded.is_empty()
            && self.downgraded.is_empty()
            && self.added.is_empty()
            && self.removed.is_empty()
    }
}

type Key<'a> = (&'a str, &'a str);

fn by_key(inv: &Inventory) -> BTreeMap<Key<'_>, Vec<&Package>> {
    let mut map: BTreeMap<Key<'_>, Vec<&Package>> = BTreeMap::new();
    for p in &inv.packages {
        map.entry((p.name.as_str(), p.arch.as_str()))
            .or_default()
            .push(p);
    }
    for list in map.values_mut() {
        list.sort_by(|a, b| compare(&a.version, &b.version));
    }
    map
}

fn changed<T: Clone + PartialEq>(old: &Option<T>, new: &Option<T>) -> Option<Changed<T>> {
    (old != new).then(|| Changed {
        old: old.clone(),
        new: new.clone(),
    })
}

/// Compares the inventory of the previous release (`old`) with this one (`new`).
pub fn diff(old: &Inventory, new: &Inventory) -> InventoryDiff {
    let mut out = InventoryDiff {
        kernel: changed(&old.kernel, &new.kernel),
        os: changed(&old.os, &new.os),
        ..Default::default()
    };
    let (old_map, new_map) = (by_key(old), by_key(new));
    for (key, olds) in &old_map {
        let Some(news) = new_map.get(key) else {
            out.removed.extend(olds.iter().map(|p| (*p).clone()));
            continue;
        };
        let (o, n) = (olds[olds.len() - 1], news[news.len() - 1]);
        match compare(&o.version, &n.version) {
            Ordering::Equal => out.unchanged += 1,
            ord => {
                let change = VersionChange {
                    name: n.name.clone(),
                    arch: n.arch.clone(),
                    old: o.version.clone(),
                    new: n.version.clone(),
                };
                if ord == Ordering::Less {
                    out.upgraded.push(change);
                } else {
                    out.downgraded.push(change);
                }
            }
        }
    }
    for (key, news) in &new_map {
        if !old_map.contains_key(key) {
            out.added.extend(news.iter().map(|p| (*p).clone()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::model::PackageManager;

    fn pkg(name: &str, version: &str) -> Package {
        Package {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            source: None,
        }
    }

    fn inv(kernel: &str, os: &str, packages: Vec<Package>) -> Inventory {
        Inventory::new(
            PackageManager::Dpkg,
            Some(OsRelease {
                id: "debian".into(),
                version_id: os.into(),
                pretty_name: format!("Debian GNU/Linux {os}"),
            }),
            Some(kernel.into()),
            packages,
        )
    }

    #[test]
    fn upgrades_downgrades_additions_and_removals() {
        let old = inv(
            "6.1.0-18-cloud-amd64",
            "12",
            vec![
                pkg("openssl", "3.0.11-1~deb12u2"),
                pkg("curl", "7.88.1-10+deb12u12"),
                pkg("bash", "5.2.15-2+b2"),
                pkg("vim", "2:9.0.1378-2"),
                pkg("nano", "7.2-1"),
                pkg("zlib1g", "1:1.2.13.dfsg-1"),
                pkg("libc6", "2.36-9+deb12u9"),
            ],
        );
        let new = inv(
            "6.1.0-18-cloud-amd64",
            "12",
            vec![
                // 1.0~ sorts before the release: an upgrade to the final version
                pkg("openssl", "3.0.11-1"),
                // deb12u12 > deb12u5: a downgrade
                pkg("curl", "7.88.1-10+deb12u5"),
                pkg("bash", "5.2.15-2+b2"),
                // the epoch wins over the upstream number
                pkg("vim", "1:9.1.0-1"),
                pkg("htop", "3.2.2-2"),
                // epoch 1 upgrades past any epoch-0 version
                pkg("zlib1g", "1:1.2.13.dfsg-1+b1"),
                // the same version spelled with an explicit zero epoch
                pkg("libc6", "0:2.36-9+deb12u9"),
            ],
        );
        let d = diff(&old, &new);
        let change = |name: &str, old: &str, new: &str| VersionChange {
            name: name.into(),
            arch: "amd64".into(),
            old: old.into(),
            new: new.into(),
        };
        assert_eq!(
            d.upgraded,
            vec![
                change("openssl", "3.0.11-1~deb12u2", "3.0.11-1"),
                change("zlib1g", "1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+b1"),
            ]
        );
        assert_eq!(
            d.downgraded,
            vec![
                change("curl", "7.88.1-10+deb12u12", "7.88.1-10+deb12u5"),
                change("vim", "2:9.0.1378-2", "1:9.1.0-1"),
            ]
        );
        assert_eq!(d.added, vec![pkg("htop", "3.2.2-2")]);
        assert_eq!(d.removed, vec![pkg("nano", "7.2-1")]);
        assert_eq!(d.unchanged, 2);
        assert_eq!(d.kernel, None);
        assert_eq!(d.os, None);
        assert!(!d.is_empty());
    }

    #[test]
    fn kernel_and_os_changes() {
        let old = inv("6.1.0-18-cloud-amd64", "12", vec![pkg("bash", "5.2")]);
        let new = inv("6.1.0-25-cloud-amd64", "13", vec![pkg("bash", "5.2")]);
        let d = diff(&old, &new);
        assert_eq!(
            d.kernel,
            Some(Changed {
                old: Some("6.1.0-18-cloud-amd64".into()),
                new: Some("6.1.0-25-cloud-amd64".into()),
            })
        );
        assert_eq!(
            d.os.as_ref().unwrap().new.as_ref().unwrap().version_id,
            "13"
        );
        assert!(d.upgraded.is_empty() && d.added.is_empty());
        assert!(diff(&new, &new).is_empty());
    }

    #[test]
    fn side_by_side_versions_compare_by_their_highest() {
        let k = |v: &str| Package {
            name: "kernel".into(),
            version: v.into(),
            arch: "x86_64".into(),
            source: None,
        };
        let old = inv("k", "9", vec![k("5.14.0-362.el9"), k("5.14.0-427.el9")]);
        let new = inv("k", "9", vec![k("5.14.0-427.el9"), k("5.14.0-503.el9")]);
        let d = diff(&old, &new);
        assert_eq!(d.upgraded.len(), 1);
        assert_eq!(d.upgraded[0].old, "5.14.0-427.el9");
        assert_eq!(d.upgraded[0].new, "5.14.0-503.el9");
        // the same package on another architecture is another package
        let mut other = new.clone();
        other.packages.push(Package {
            arch: "i686".into(),
            ..k("5.14.0-503.el9")
        });
        assert_eq!(diff(&new, &other).added.len(), 1);
    }
}
