//! `X-Hub-Signature-256` verification: HMAC-SHA256 of the raw body, compared in
//! constant time against every configured secret (so secrets can be rotated).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed,
    Mismatch,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SignatureError::Missing => "missing X-Hub-Signature-256 header",
            SignatureError::Malformed => {
                "malformed X-Hub-Signature-256 header: expected sha256=<64 hex digits>"
            }
            SignatureError::Mismatch => "X-Hub-Signature-256 does not match the payload",
        })
    }
}

/// The digest a `sha256=<64 hex digits>` header carries. Checked before the body is read:
/// a delivery without a well-formed signature is refused without reading it.
pub fn parse_header(header: Option<&[u8]>) -> Result<[u8; 32], SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut digest).map_err(|_| SignatureError::Malformed)?;
    Ok(digest)
}

/// Checks `header` (`sha256=<hex>`) against the HMAC of `body` under each secret.
/// Every secret is tried even after a match, so timing does not tell which one matched.
pub fn verify(
    secrets: &[Secret],
    header: Option<&[u8]>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let expected = parse_header(header)?;
    let mut matched = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret.expose().as_bytes())
            .expect("HMAC takes keys of any length");
        mac.update(body);
        // `verify_slice` compares in constant time.
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The header value GitHub would send for `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector from GitHub's "Validating webhook deliveries" documentation.
    #[test]
    fn github_documented_test_vector() {
        let secret = "It's a Secret to Everybody";
        let body = b"Hello, World!";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, body), header);
        assert_eq!(
            verify(&[Secret::new(secret)], Some(header.as_bytes()), body),
            Ok(())
        );
    }

    #[test]
    fn any_configured_secret_verifies() {
        let body = b"{}";
        let header = sign("new-secret", body);
        let secrets = [Secret::new("old-secret"), Secret::new("new-secret")];
        assert_eq!(verify(&secrets, Some(header.as_bytes()), body), Ok(()));
    }

    #[test]
    fn rejects_missing_malformed_and_wrong() {
        let s = [Secret::new("secret")];
        assert_eq!(verify(&s, None, b"x"), Err(SignatureError::Missing));
        assert_eq!(
            verify(&s, Some(b"sha1=abcd"), b"x"),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&s, Some(b"sha256=zz"), b"x"),
            Err(SignatureError::Malformed)
        );
        let wrong = sign("other", b"x");
        assert_eq!(
            verify(&s, Some(wrong.as_bytes()), b"x"),
            Err(SignatureError::Mismatch)
        );
        let right = sign("secret", b"x");
        assert_eq!(
            verify(&s, Some(right.as_bytes()), b"y"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&[], Some(right.as_bytes()), b"x"),
            Err(SignatureError::Mismatch)
        );
    }
}
