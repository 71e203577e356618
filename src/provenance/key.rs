//! The provenance signing key, and the only place bakery holds it. Reads an Ed25519
//! private key (PKCS#8 PEM, as `openssl genpkey -algorithm ed25519` writes it) from the
//! configuration's secret, signs with it, and gives out only its public half and key id.
//! It touches nothing else: no file, no log, no image, no tag. Public keys (PEM, as
//! `openssl pkey -pubout` writes them) are read here too, for `bakery verify`.

use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// Why a key cannot be used. Never carries the key's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the provenance signing key is not an Ed25519 private key in PKCS#8 PEM \
         (make one with `openssl genpkey -algorithm ed25519 -out provenance.pem`)"
    )]
    NotAPrivateKey,
    #[error(
        "the public key is not an Ed25519 public key in PEM \
         (`openssl pkey -in provenance.pem -pubout -out provenance.pub.pem` writes one)"
    )]
    NotAPublicKey,
}

/// The bot's provenance signing key. `Debug` shows its key id only.
pub struct ProvenanceKey {
    key: SigningKey,
}

impl std::fmt::Debug for ProvenanceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProvenanceKey")
            .field("key_id", &self.public().key_id())
            .finish()
    }
}

impl ProvenanceKey {
    /// Reads the key from the configuration's secret (`provenance.signing_key`).
    pub fn from_secret(secret: &Secret) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(secret.expose().trim())
            .map_err(|_| KeyError::NotAPrivateKey)?;
        Ok(ProvenanceKey { key })
    }

    /// A key from a 32-byte seed (tests).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        ProvenanceKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The public half, which consumers verify with.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    /// The Ed25519 signature of `message`.
    pub(super) fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

/// An Ed25519 public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    /// Reads a public key in PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|_| KeyError::NotAPublicKey)
    }

    /// The key in PEM, as `openssl pkey -pubout` writes it.
    pub fn to_pem(&self) -> String {
        self.0
            .to_public_key_pem(Default::default())
            .expect("an Ed25519 public key encodes")
    }

    /// The key id a DSSE signature names: the SHA-256 of the key's DER
    /// (SubjectPublicKeyInfo), in hex.
    pub fn key_id(&self) -> String {
        let der = self
            .0
            .to_public_key_der()
            .expect("an Ed25519 public key encodes");
        hex::encode(Sha256::digest(der.as_bytes()))
    }

    /// True when `signature` is this key's signature of `message` (strict verification:
    /// no malleable or weak-key signatures).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        self.0.verify_strict(message, &sig).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Ed25519 key as `openssl genpkey -algorithm ed25519` printed it.
    pub(crate) const OPENSSL_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIEZjRsic4KuwCZJAjtRSoAnMQ4bubPYRhnI3QtzXMdXw
-----END PRIVATE KEY-----
";
    /// Its public half, as `openssl pkey -pubout` printed it.
    const OPENSSL_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAel1kTAwPkuG0azL2yPIFfKEdJBqUmpBm16egQFv5Z0w=
-----END PUBLIC KEY-----
";
    /// `openssl pkeyutl -sign -rawin` of "message" with it (Ed25519 is deterministic).
    const OPENSSL_SIGNATURE: &str =
        "2FgsrCQWv8AZHe6kPZYfPXKc98mremzSyP//s03cKEKBVgSOYyLlMQhawOblDdX3mWVD91i/sbLhSCQqBoWmBg==";

    #[test]
    fn agrees_with_openssl() {
        use base64::Engine;
        let key = ProvenanceKey::from_secret(&Secret::new(OPENSSL_KEY)).unwrap();
        assert_eq!(key.public().to_pem(), OPENSSL_PUBLIC);
        let sig = base64::engine::general_purpose::STANDARD
            .decode(OPENSSL_SIGNATURE)
            .unwrap();
        assert_eq!(key.sign(b"message").to_vec(), sig);
        assert!(PublicKey::from_pem(OPENSSL_PUBLIC)
            .unwrap()
            .verifies(b"message", &sig));
    }

    #[test]
    fn reads_an_openssl_key_and_never_shows_it() {
        let key = ProvenanceKey::from_secret(&Secret::new(OPENSSL_KEY)).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains("MC4CAQAw"), "{shown}");
        assert!(shown.contains(&key.public().key_id()), "{shown}");
        let pem = key.public().to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{pem}");
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), key.public());
        let sig = key.sign(b"message");
        assert!(key.public().verifies(b"message", &sig));
        assert!(!key.public().verifies(b"messagf", &sig));
    }

    #[test]
    fn refuses_what_is_not_an_ed25519_key() {
        assert_eq!(
            ProvenanceKey::from_secret(&Secret::new("not a key")).unwrap_err(),
            KeyError::NotAPrivateKey
        );
        // A public key is no signing key, and a private key is no public key.
        let public = ProvenanceKey::from_seed(&[1; 32]).public().to_pem();
        assert_eq!(
            ProvenanceKey::from_secret(&Secret::new(public)).unwrap_err(),
            KeyError::NotAPrivateKey
        );
        assert_eq!(
            PublicKey::from_pem(OPENSSL_KEY).unwrap_err(),
            KeyError::NotAPublicKey
        );
        // The error never carries the key's text.
        let msg = KeyError::NotAPrivateKey.to_string();
        assert!(!msg.contains("MC4C"));
    }
}
