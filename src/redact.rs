//! Redaction of known secrets from anything bakery writes out (logs, comments, job logs).

use std::sync::{Arc, RwLock};

const MASK: &str = "***";

/// A set of secret strings to mask. Cheap to clone; clones share the set.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.secrets.read().map(|s| s.len()).unwrap_or(0);
        write!(f, "Redactor({n} secrets)")
    }
}

impl Redactor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a secret. Values shorter than 4 characters are ignored: masking them would
    /// mangle ordinary text without protecting anything.
    pub fn add(&self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.len() < 4 {
            return;
        }
        let mut secrets = self.secrets.write().expect("redactor lock poisoned");
        if !secrets.contains(&secret) {
            secrets.push(secret);
            // Longest first, so a secret that contains another is masked whole.
            secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let secrets = self.secrets.read().expect("redactor lock poisoned");
        let mut out = text.to_string();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence_longest_first() {
        let r = Redactor::new();
        r.add("hunter2-secret");
        r.add("hunter2-secret-longer");
        r.add("ab"); // too short, ignored
        assert_eq!(
            r.redact("x hunter2-secret-longer y hunter2-secret ab"),
            "x *** y *** ab"
        );
    }
}
