//! The configured sync floor (`github.sync_floor`): a release tag below which sync never
//! builds. Without one, the floor is what the repository held when this installation
//! first saw it (see [`crate::github::sync`]). Tags are ordered naturally: runs of digits as
//! numbers, everything else character by character (`release-1.10.0` is above
//! `release-1.9.0`). Pure: touches nothing.

use std::cmp::Ordering;

/// A release tag; tags ordered below it are never built by sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFloor(String);

impl SyncFloor {
    /// A floor at `tag`; `None` for an empty value (no floor).
    pub fn new(tag: &str) -> Option<Self> {
        let tag = tag.trim();
        (!tag.is_empty()).then(|| SyncFloor(tag.to_string()))
    }

    pub fn tag(&self) -> &str {
        &self.0
    }

    /// Whether sync may build `tag`: it is the floor or above it.
    pub fn admits(&self, tag: &str) -> bool {
        natural_cmp(tag, &self.0) != Ordering::Less
    }
}

/// One run of a tag name: digits (as a number) or anything else.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Chunk<'a> {
    Number(u128, usize),
    Text(&'a str),
}

fn chunks(s: &str) -> Vec<Chunk<'_>> {
    let mut out = vec![];
    let mut start = 0;
    let bytes = s.as_bytes();
    while start < bytes.len() {
        let digit = bytes[start].is_ascii_digit();
        let end = bytes[start..]
            .iter()
            .position(|b| b.is_ascii_digit() != digit)
            .map_or(bytes.len(), |n| start + n);
        let part = &s[start..end];
        out.push(if digit {
            // Leading zeros: `01` and `1` are the same number; the longer one sorts after.
            let trimmed = part.trim_start_matches('0');
            match trimmed.parse::<u128>() {
                Ok(n) => Chunk::Number(n, part.len()),
                Err(_) if trimmed.is_empty() => Chunk::Number(0, part.len()),
                Err(_) => Chunk::Text(part),
            }
        } else {
            Chunk::Text(part)
        });
        start = end;
    }
    out
}

/// Natural order of two tag names.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (chunks(a), chunks(b));
    for (x, y) in a.iter().zip(b.iter()) {
        let o = match (x, y) {
            (Chunk::Number(m, lm), Chunk::Number(n, ln)) => m.cmp(n).then(lm.cmp(ln)),
            (Chunk::Text(s), Chunk::Text(t)) => s.cmp(t),
            // A number sorts before text at the same place (`1.0` before `1.0-rc`'s `-`
            // is decided by the text run before it, so this only orders odd shapes).
            (Chunk::Number(..), Chunk::Text(_)) => Ordering::Less,
            (Chunk::Text(_), Chunk::Number(..)) => Ordering::Greater,
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    a.len().cmp(&b.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_ordered_naturally() {
        assert_eq!(
            natural_cmp("release-1.10.0", "release-1.9.0"),
            Ordering::Greater
        );
        assert_eq!(
            natural_cmp("release-2.0.0", "release-2.0.0"),
            Ordering::Equal
        );
        assert_eq!(natural_cmp("release-0.9", "release-0.10"), Ordering::Less);
        assert_eq!(
            natural_cmp("release-1.0.0", "release-1.0.0-rc1"),
            Ordering::Less
        );
    }

    #[test]
    fn the_floor_admits_itself_and_what_is_above() {
        let floor = SyncFloor::new("release-1.4.0").unwrap();
        assert!(floor.admits("release-1.4.0"));
        assert!(floor.admits("release-1.10.0"));
        assert!(floor.admits("release-2.0.0"));
        assert!(!floor.admits("release-1.3.9"));
        assert!(!floor.admits("release-0.99.0"));
        assert_eq!(SyncFloor::new("  "), None);
    }
}
