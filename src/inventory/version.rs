//! Debian's version ordering (`deb-version(7)`): epoch, upstream version, revision, with `~`
//! sorting before everything, even the end of the string. Pure; used to tell upgrades from
//! downgrades in an inventory diff (RPM and Alpine versions are ordered by the same rules,
//! which agree with theirs on the common shapes `1.2.3-4` and `1:2.0-1`).

use std::cmp::Ordering;

/// A version split into its three parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebVersion<'a> {
    pub epoch: u64,
    pub upstream: &'a str,
    pub revision: &'a str,
}

impl<'a> DebVersion<'a> {
    /// Splits `[epoch:]upstream[-revision]`. An epoch that is not a number counts as part
    /// of the upstream version (dpkg refuses such versions; an inventory never holds one).
    pub fn parse(v: &'a str) -> Self {
        let v = v.trim();
        let (epoch, rest) = match v.split_once(':') {
            Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
                (e.parse().unwrap_or(u64::MAX), rest)
            }
            _ => (0, v),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((u, r)) => (u, r),
            None => (rest, ""),
        };
        DebVersion {
            epoch,
            upstream,
            revision,
        }
    }
}

/// The weight of one character in the non-digit parts: `~` first, then the end of the
/// part, then letters, then everything else.
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => c as i32,
        Some(b'~') => -1,
        Some(c) => c as i32 + 256,
    }
}

/// dpkg's `verrevcmp`: alternating non-digit and digit runs.
fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(|c| c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

/// Compares two version strings as `dpkg --compare-versions` does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a, b) = (DebVersion::parse(a), DebVersion::parse(b));
    a.epoch
        .cmp(&b.epoch)
        .then_with(|| verrevcmp(a.upstream, b.upstream))
        .then_with(|| verrevcmp(a.revision, b.revision))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs whose order is checked against `dpkg --compare-versions`.
    pub(crate) const CASES: &[(&str, &str)] = &[
        ("1.0", "1.0"),
        ("1.0", "1.1"),
        ("1.0", "1.0-1"),
        ("1.0-1", "1.0-2"),
        ("1.0-9", "1.0-10"),
        ("1:1.0", "2.0"),
        ("0:1.0", "1.0"),
        ("1:0.1", "0:9.9"),
        ("1.0~rc1", "1.0"),
        ("1.0~rc1", "1.0~rc2"),
        ("1.0~~", "1.0~"),
        ("1.0~", "1.0"),
        ("1.0", "1.0+b1"),
        ("1.0a", "1.0+"),
        ("1.0a", "1.0"),
        ("1.0.0", "1.0"),
        ("1.00", "1.0"),
        ("1.01", "1.1"),
        ("2.36-9+deb12u4", "2.36-9+deb12u10"),
        ("3.0.11-1~deb12u2", "3.0.11-1"),
        ("3.0.11-1~deb12u2", "3.0.15-1~deb12u1"),
        ("1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u5"),
        ("252.22-1~deb12u1", "252.30-1~deb12u2"),
        ("1.2.3-1ubuntu1", "1.2.3-1"),
        ("1.2.3-1ubuntu1", "1.2.3-1build1"),
        ("2.0-1-1", "2.0-1"),
        ("1-2-3", "1-2-10"),
        ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12"),
        ("10", "9"),
        ("1.0-0", "1.0"),
        ("6.1.0-18", "6.1.0-9"),
        ("0.9.8.zg", "0.9.8.z"),
        ("1.2.3.4", "1.2.3.4.0"),
        ("1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1+b1"),
    ];

    #[test]
    fn splits_epoch_upstream_and_revision() {
        assert_eq!(
            DebVersion::parse("1:2.0-1-3"),
            DebVersion {
                epoch: 1,
                upstream: "2.0-1",
                revision: "3"
            }
        );
        assert_eq!(
            DebVersion::parse("2.0"),
            DebVersion {
                epoch: 0,
                upstream: "2.0",
                revision: ""
            }
        );
    }

    #[test]
    fn tilde_epoch_and_revision_order() {
        assert_eq!(compare("1.0~rc1", "1.0"), Ordering::Less);
        assert_eq!(compare("1:1.0", "9.0"), Ordering::Greater);
        assert_eq!(compare("1.0-10", "1.0-9"), Ordering::Greater);
        assert_eq!(compare("0:1.0", "1.0"), Ordering::Equal);
    }

    /// What `dpkg --compare-versions` says of `a` and `b`: the relation that holds.
    fn dpkg_order(a: &str, b: &str) -> Ordering {
        let holds = |op: &str| {
            std::process::Command::new("dpkg")
                .args(["--compare-versions", a, op, b])
                .status()
                .expect("dpkg is installed (scripts/setup.sh)")
                .success()
        };
        if holds("lt") {
            Ordering::Less
        } else if holds("eq") {
            Ordering::Equal
        } else {
            assert!(holds("gt"), "dpkg orders neither way: {a} {b}");
            Ordering::Greater
        }
    }

    #[test]
    fn agrees_with_dpkg_compare_versions() {
        let mut disagreements = Vec::new();
        for (a, b) in CASES {
            for (x, y) in [(a, b), (b, a)] {
                let ours = compare(x, y);
                let dpkg = dpkg_order(x, y);
                if ours != dpkg {
                    disagreements.push(format!("{x} vs {y}: ours {ours:?}, dpkg {dpkg:?}"));
                }
            }
        }
        assert!(disagreements.is_empty(), "{disagreements:#?}");
    }
}
