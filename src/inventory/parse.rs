//! Parsers for what the collection script prints on the builder (see
//! `provision/steps/inventory.rs`): sections opened by `@@<name>` lines, one per source
//! (`os-release`, `kernel`, `dpkg`, `rpm`, `apk`), closed by `@@end`. Pure.

use super::model::{Collected, Inventory, OsRelease, Package, PackageManager};

/// The collection output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the inventory output ends early (no `@@end` line): it was cut off")]
    Truncated,
    #[error("{manager} line {line}: {reason}")]
    BadLine {
        manager: &'static str,
        line: usize,
        reason: &'static str,
    },
}

/// The `dpkg-query` format the script asks for: name, version, architecture, source
/// package, status.
pub const DPKG_FORMAT: &str =
    r"${Package}\t${Version}\t${Architecture}\t${source:Package}\t${db:Status-Abbrev}\n";

/// The `rpm -qa` format: name, `[epoch:]version-release`, architecture, source RPM.
pub const RPM_FORMAT: &str =
    r"%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\t%{SOURCERPM}\n";

fn sections(text: &str) -> Result<Vec<(&str, Vec<&str>)>, ParseError> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    let mut ended = false;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            if name == "end" {
                ended = true;
                break;
            }
            out.push((name, Vec::new()));
        } else if let Some((_, lines)) = out.last_mut() {
            lines.push(line);
        }
    }
    if !ended {
        return Err(ParseError::Truncated);
    }
    Ok(out)
}

/// Reads the whole collection output.
pub fn parse_collection(text: &str) -> Result<Collected, ParseError> {
    let mut os = None;
    let mut kernel = None;
    let mut found: Option<(PackageManager, Vec<Package>)> = None;
    for (name, lines) in sections(text)? {
        match name {
            "os-release" => os = OsRelease::parse(&lines.join("\n")),
            "kernel" => {
                kernel = lines
                    .iter()
                    .map(|l| l.trim())
                    .find(|l| !l.is_empty())
                    .map(str::to_string)
            }
            "dpkg" => found = Some((PackageManager::Dpkg, parse_dpkg(&lines)?)),
            "rpm" => found = Some((PackageManager::Rpm, parse_rpm(&lines)?)),
            "apk" => found = Some((PackageManager::Apk, parse_apk(&lines)?)),
            _ => {}
        }
    }
    Ok(match found {
        Some((manager, packages)) => {
            Collected::Inventory(Inventory::new(manager, os, kernel, packages))
        }
        None => Collected::NoPackageManager { os, kernel },
    })
}

/// Lines of [`DPKG_FORMAT`]; only installed packages (status `i`) are kept, not those
/// removed with their configuration left behind.
pub fn parse_dpkg(lines: &[&str]) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [name, version, arch, source, status] = f[..] else {
            return Err(bad("dpkg", i, "expected 5 tab-separated fields"));
        };
        if status.as_bytes().get(1) != Some(&b'i') {
            continue;
        }
        if name.is_empty() || version.is_empty() {
            return Err(bad("dpkg", i, "empty name or version"));
        }
        out.push(Package {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            source: (!source.is_empty()).then(|| source.to_string()),
        });
    }
    Ok(out)
}

/// Lines of [`RPM_FORMAT`]. The `gpg-pubkey` entries are keys, not software.
pub fn parse_rpm(lines: &[&str]) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        let [name, version, arch, srpm] = f[..] else {
            return Err(bad("rpm", i, "expected 4 tab-separated fields"));
        };
        if name == "gpg-pubkey" {
            continue;
        }
        if name.is_empty() || version.is_empty() {
            return Err(bad("rpm", i, "empty name or version"));
        }
        out.push(Package {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            source: source_rpm_name(srpm),
        });
    }
    Ok(out)
}

/// `openssl-3.0.7-27.el9.src.rpm` → `openssl`.
fn source_rpm_name(srpm: &str) -> Option<String> {
    let base = srpm
        .strip_suffix(".src.rpm")
        .or_else(|| srpm.strip_suffix(".nosrc.rpm"))?;
    let mut parts = base.rsplitn(3, '-');
    let (_release, _version, name) = (parts.next()?, parts.next()?, parts.next()?);
    (!name.is_empty()).then(|| name.to_string())
}

/// apk's installed database (`/lib/apk/db/installed`): blank-line separated records of
/// `P:` name, `V:` version, `A:` architecture, `o:` origin (the source package).
pub fn parse_apk(lines: &[&str]) -> Result<Vec<Package>, ParseError> {
    let mut out = Vec::new();
    let (mut name, mut version, mut arch, mut origin) = (None, None, None, None);
    let mut flush = |name: &mut Option<&str>,
                     version: &mut Option<&str>,
                     arch: &mut Option<&str>,
                     origin: &mut Option<&str>,
                     i: usize|
     -> Result<(), ParseError> {
        match (name.take(), version.take()) {
            (Some(n), Some(v)) => out.push(Package {
                name: n.into(),
                version: v.into(),
                arch: arch.take().unwrap_or_default().into(),
                source: origin.take().map(str::to_string),
            }),
            (None, None) => {}
            _ => return Err(bad("apk", i, "a record without P: or V:")),
        }
        *arch = None;
        *origin = None;
        Ok(())
    };
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            flush(&mut name, &mut version, &mut arch, &mut origin, i)?;
            continue;
        }
        match line.split_once(':') {
            Some(("P", v)) => name = Some(v),
            Some(("V", v)) => version = Some(v),
            Some(("A", v)) => arch = Some(v),
            Some(("o", v)) => origin = Some(v),
            _ => {}
        }
    }
    flush(&mut name, &mut version, &mut arch, &mut origin, lines.len())?;
    Ok(out)
}

fn bad(manager: &'static str, i: usize, reason: &'static str) -> ParseError {
    ParseError::BadLine {
        manager,
        line: i + 1,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_dpkg_collection() {
        let text = "@@os-release\nID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
                    @@kernel\n6.1.0-18-cloud-amd64\n\
                    @@dpkg\nbash\t5.2.15-2+b2\tamd64\tbash\tii \n\
                    libssl3\t3.0.11-1~deb12u2\tamd64\topenssl\tii \n\
                    nano\t7.2-1\tamd64\tnano\trc \n\
                    tzdata\t2024a-0+deb12u1\tall\t\tii \n@@end\n";
        let Collected::Inventory(inv) = parse_collection(text).unwrap() else {
            panic!("expected an inventory")
        };
        assert_eq!(inv.manager, PackageManager::Dpkg);
        assert_eq!(inv.kernel.as_deref(), Some("6.1.0-18-cloud-amd64"));
        assert_eq!(inv.os.unwrap().version_id, "12");
        let names: Vec<_> = inv.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["bash", "libssl3", "tzdata"]);
        assert_eq!(inv.packages[1].source.as_deref(), Some("openssl"));
        assert_eq!(inv.packages[2].source, None);
    }

    #[test]
    fn reads_rpm_and_apk() {
        let rpm = parse_rpm(&[
            "openssl\t1:3.0.7-27.el9\tx86_64\topenssl-3.0.7-27.el9.src.rpm",
            "gpg-pubkey\t8483c65d-5ccc5b19\t(none)\t(none)",
            "bash\t5.1.8-9.el9\tx86_64\tbash-5.1.8-9.el9.src.rpm",
        ])
        .unwrap();
        assert_eq!(rpm.len(), 2);
        assert_eq!(rpm[0].version, "1:3.0.7-27.el9");
        assert_eq!(rpm[0].source.as_deref(), Some("openssl"));
        let apk = parse_apk(&[
            "C:Q1abc=",
            "P:musl",
            "V:1.2.5-r0",
            "A:x86_64",
            "o:musl",
            "",
            "P:libcrypto3",
            "V:3.3.2-r0",
            "A:x86_64",
            "o:openssl",
        ])
        .unwrap();
        assert_eq!(apk.len(), 2);
        assert_eq!(apk[1].source.as_deref(), Some("openssl"));
        assert_eq!(apk[1].version, "3.3.2-r0");
    }

    #[test]
    fn no_package_manager_and_truncation() {
        assert_eq!(
            parse_collection("@@os-release\nID=nixos\n@@kernel\n6.6.1\n@@end\n").unwrap(),
            Collected::NoPackageManager {
                os: OsRelease::parse("ID=nixos"),
                kernel: Some("6.6.1".into())
            }
        );
        assert_eq!(
            parse_collection("@@dpkg\nbash\t5.2\tamd64\tbash\tii \n"),
            Err(ParseError::Truncated)
        );
        assert!(matches!(
            parse_collection("@@dpkg\nbash 5.2\n@@end\n"),
            Err(ParseError::BadLine { line: 1, .. })
        ));
    }
}
