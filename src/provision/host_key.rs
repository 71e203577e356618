//! Host key verification: pins from the instance's console output, else trust on first
//! use; once a key is accepted, any other key is refused for the rest of the build.

use std::sync::{Arc, Mutex};

use russh::keys::{HashAlg, PublicKey};

/// The `SHA256:...` fingerprint OpenSSH prints for a key.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Reads the SHA256 host key fingerprints that cloud-init prints to the console between
/// `-----BEGIN SSH HOST KEY FINGERPRINTS-----` and the matching END line.
pub fn fingerprints_from_console(console: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in console.lines() {
        if line.contains("BEGIN SSH HOST KEY FINGERPRINTS") {
            inside = true;
            continue;
        }
        if line.contains("END SSH HOST KEY FINGERPRINTS") {
            inside = false;
            continue;
        }
        if inside {
            for word in line.split_whitespace() {
                if let Some(rest) = word.strip_prefix("SHA256:") {
                    let fp = format!("SHA256:{}", rest.trim_end_matches('='));
                    if !out.contains(&fp) {
                        out.push(fp);
                    }
                }
            }
        }
    }
    out
}

/// `SHA256:abc=` and `SHA256:abc` name the same key: OpenSSH prints no padding.
fn normalize(fp: &str) -> String {
    let fp = fp.trim();
    let body = fp.strip_prefix("SHA256:").unwrap_or(fp);
    format!("SHA256:{}", body.trim_end_matches('='))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyDecision {
    Accepted {
        fingerprint: String,
        /// First use: nothing pinned or known before. The caller should record it.
        first_use: bool,
    },
    Refused {
        reason: String,
    },
}

/// The host key rules for one build. Clones share what was accepted.
#[derive(Debug, Clone)]
pub struct HostKeyPolicy {
    pins: Vec<String>,
    accepted: Arc<Mutex<Option<(String, PublicKey)>>>,
    known: Option<String>,
}

impl HostKeyPolicy {
    /// `pins`: fingerprints from the console output (empty: trust on first use).
    /// `known`: a key accepted earlier in this build (from the journal).
    pub fn new(pins: &[String], known: Option<&str>) -> Self {
        HostKeyPolicy {
            pins: pins.iter().map(|p| normalize(p)).collect(),
            accepted: Arc::new(Mutex::new(None)),
            known: known.map(normalize),
        }
    }

    /// Decides on the key a server presented, and remembers it when accepted.
    pub fn check(&self, key: &PublicKey) -> HostKeyDecision {
        let fp = normalize(&fingerprint(key));
        let mut accepted = self.accepted.lock().expect("host key policy poisoned");
        let expected = accepted
            .as_ref()
            .map(|(fp, _)| fp.clone())
            .or_else(|| self.known.clone());
        if let Some(expected) = expected {
            if fp == expected {
                if accepted.is_none() {
                    *accepted = Some((fp.clone(), key.clone()));
                }
                return HostKeyDecision::Accepted {
                    fingerprint: fp,
                    first_use: false,
                };
            }
            return HostKeyDecision::Refused {
                reason: format!(
                    "the builder presented host key {fp}, but this build already accepted {expected}; \
                     refusing a changed host key (possible man-in-the-middle, or the instance was replaced)"
                ),
            };
        }
        if !self.pins.is_empty() {
            if self.pins.contains(&fp) {
                *accepted = Some((fp.clone(), key.clone()));
                return HostKeyDecision::Accepted {
                    fingerprint: fp,
                    first_use: false,
                };
            }
            return HostKeyDecision::Refused {
                reason: format!(
                    "the builder presented host key {fp}, which is not among the fingerprints in its console output ({}); \
                     refusing it",
                    self.pins.join(", ")
                ),
            };
        }
        *accepted = Some((fp.clone(), key.clone()));
        HostKeyDecision::Accepted {
            fingerprint: fp,
            first_use: true,
        }
    }

    /// The accepted key's fingerprint and the key itself, once a connection succeeded.
    pub fn accepted(&self) -> Option<(String, PublicKey)> {
        self.accepted
            .lock()
            .expect("host key policy poisoned")
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use russh::keys::ssh_key::private::Ed25519Keypair;
    use russh::keys::PrivateKey;

    fn key(seed: u8) -> PublicKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
            .public_key()
            .clone()
    }

    #[test]
    fn trusts_on_first_use_then_refuses_any_other_key() {
        let p = HostKeyPolicy::new(&[], None);
        let a = key(1);
        assert_eq!(
            p.check(&a),
            HostKeyDecision::Accepted {
                fingerprint: fingerprint(&a),
                first_use: true
            }
        );
        assert!(matches!(
            p.check(&a),
            HostKeyDecision::Accepted {
                first_use: false,
                ..
            }
        ));
        let HostKeyDecision::Refused { reason } = p.check(&key(2)) else {
            panic!("a changed key was accepted")
        };
        assert!(reason.contains(&fingerprint(&a)), "{reason}");
    }

    #[test]
    fn pins_decide_when_present() {
        let good = key(3);
        let pins = vec![fingerprint(&key(9)), format!("{}=", fingerprint(&good))];
        let p = HostKeyPolicy::new(&pins, None);
        assert!(matches!(p.check(&key(4)), HostKeyDecision::Refused { .. }));
        assert!(matches!(
            p.check(&good),
            HostKeyDecision::Accepted {
                first_use: false,
                ..
            }
        ));
        // Once one pinned key is accepted, another pinned key is still a change.
        assert!(matches!(p.check(&key(9)), HostKeyDecision::Refused { .. }));
    }

    #[test]
    fn a_key_known_from_the_journal_is_required() {
        let a = key(5);
        let p = HostKeyPolicy::new(&[], Some(&fingerprint(&a)));
        assert!(matches!(p.check(&key(6)), HostKeyDecision::Refused { .. }));
        assert!(matches!(
            p.check(&a),
            HostKeyDecision::Accepted {
                first_use: false,
                ..
            }
        ));
    }

    #[test]
    fn reads_cloud_init_console_fingerprints() {
        let console = "\
[   10.1] cloud-init[800]: Generating public/private ed25519 key pair.
ci-info: no authorized SSH keys fingerprints found for user ubuntu.
<14>Jan  1 cloud-init: #############################################################
-----BEGIN SSH HOST KEY FINGERPRINTS-----
256 SHA256:abcDEF+/123 root@ip-10-0-0-1 (ECDSA)
256 SHA256:xyz987= root@ip-10-0-0-1 (ED25519)
-----END SSH HOST KEY FINGERPRINTS-----
SHA256:notafingerprint outside the block
";
        assert_eq!(
            fingerprints_from_console(console),
            vec!["SHA256:abcDEF+/123", "SHA256:xyz987"]
        );
    }
}
