//! DSSE, the Dead Simple Signing Envelope (secure-systems-lab/dsse, v1.0): the envelope
//! the provenance statement is signed in. The signature covers the pre-authentication
//! encoding (PAE) of the payload type and the payload's bytes, so neither can be swapped.
//! Pure: signs with the key [`super::key`] holds, verifies with a public key.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::key::{ProvenanceKey, PublicKey};

/// The payload type of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in
/// bytes, as ASCII decimal.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope in its JSON form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    /// The payload, base64 (standard alphabet, padded).
    pub payload: String,
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default)]
    pub keyid: String,
    /// The signature, base64.
    pub sig: String,
}

/// Why an envelope does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the provenance file is not a DSSE envelope: {0}")]
    NotAnEnvelope(String),
    #[error("the envelope carries {found:?}, not an in-toto statement ({IN_TOTO_PAYLOAD_TYPE})")]
    PayloadType { found: String },
    #[error("the envelope has no signature")]
    Unsigned,
    #[error(
        "no signature in the envelope verifies with the key {key_id}: the statement was \
         altered, or it was signed with another key (signatures by: {signed_by})"
    )]
    BadSignature { key_id: String, signed_by: String },
}

impl Envelope {
    /// Signs `payload` of `payload_type` with `key`.
    pub fn sign(payload_type: &str, payload: &[u8], key: &ProvenanceKey) -> Self {
        let b64 = base64::engine::general_purpose::STANDARD;
        let sig = key.sign(&pae(payload_type, payload));
        Envelope {
            payload: b64.encode(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![EnvelopeSignature {
                keyid: key.public().key_id(),
                sig: b64.encode(sig),
            }],
        }
    }

    /// Reads an envelope from its JSON bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, OpenError> {
        serde_json::from_slice(bytes).map_err(|e| OpenError::NotAnEnvelope(e.to_string()))
    }

    /// The envelope as one line of JSON with a newline: the `.intoto.jsonl` file.
    pub fn to_jsonl(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).expect("an envelope serializes");
        out.push(b'\n');
        out
    }

    /// The payload, once a signature by `key` over its PAE verifies, and only then.
    /// The key id a signature names is a hint, never trusted: every signature is tried.
    pub fn open(&self, key: &PublicKey) -> Result<Vec<u8>, OpenError> {
        let b64 = base64::engine::general_purpose::STANDARD;
        if self.payload_type != IN_TOTO_PAYLOAD_TYPE {
            return Err(OpenError::PayloadType {
                found: self.payload_type.clone(),
            });
        }
        if self.signatures.is_empty() {
            return Err(OpenError::Unsigned);
        }
        let payload = b64
            .decode(&self.payload)
            .map_err(|e| OpenError::NotAnEnvelope(format!("payload is not base64: {e}")))?;
        let message = pae(&self.payload_type, &payload);
        let verified = self.signatures.iter().any(|s| {
            b64.decode(&s.sig)
                .map(|sig| key.verifies(&message, &sig))
                .unwrap_or(false)
        });
        if verified {
            Ok(payload)
        } else {
            Err(OpenError::BadSignature {
                key_id: key.key_id(),
                signed_by: self
                    .signatures
                    .iter()
                    .map(|s| {
                        if s.keyid.is_empty() {
                            "(no key id)".to_string()
                        } else {
                            s.keyid.clone()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_specifications_example() {
        // DSSE protocol.md, "Test vectors".
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        // Lengths are in bytes, not characters.
        assert_eq!(
            pae("t", "é".as_bytes()),
            "DSSEv1 1 t 2 é".as_bytes().to_vec()
        );
    }

    #[test]
    fn a_signed_envelope_opens_with_its_key_only() {
        let key = ProvenanceKey::from_seed(&[7; 32]);
        let payload = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
        let env = Envelope::sign(IN_TOTO_PAYLOAD_TYPE, payload, &key);
        let back = Envelope::from_json(&env.to_jsonl()).unwrap();
        assert_eq!(back.open(&key.public()).unwrap(), payload.to_vec());
        assert_eq!(back.signatures[0].keyid, key.public().key_id());

        // Another key.
        let other = ProvenanceKey::from_seed(&[8; 32]).public();
        assert!(matches!(
            back.open(&other),
            Err(OpenError::BadSignature { key_id, .. }) if key_id == other.key_id()
        ));

        // A payload changed after signing.
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut tampered = back.clone();
        tampered.payload = b64.encode(br#"{"_type":"https://in-toto.io/Statement/v2"}"#);
        assert!(matches!(
            tampered.open(&key.public()),
            Err(OpenError::BadSignature { .. })
        ));

        // The payload type is signed too: a changed one is refused before anything else,
        // and an envelope without signatures opens for nobody.
        let mut retyped = back.clone();
        retyped.payload_type = "text/plain".into();
        assert!(matches!(
            retyped.open(&key.public()),
            Err(OpenError::PayloadType { .. })
        ));
        let mut unsigned = back.clone();
        unsigned.signatures.clear();
        assert_eq!(unsigned.open(&key.public()), Err(OpenError::Unsigned));
        assert!(matches!(
            Envelope::from_json(b"{\"payload\": 1}"),
            Err(OpenError::NotAnEnvelope(_))
        ));
    }
}
