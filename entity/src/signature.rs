//! The merchant webhook signature scheme.
//!
//! Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`), so
//! merchants verify with the `standardwebhooks` or `svix` libraries unchanged, plus
//! `X-Payrail-Signature: sha256=<hex>` over the body alone. Both use the same key: the
//! base64-decoded part of the endpoint secret `whsec_<base64>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub type HmacSha256 = Hmac<Sha256>;

/// Lowercase hex SHA-256, for API key hashes and request fingerprints.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(Sha256::digest(bytes))
}

/// An HMAC-SHA256 keyed with `key`. HMAC takes keys of any length, so this cannot fail.
pub fn hmac_sha256(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC accepts any key length")
}

const SECRET_PREFIX: &str = "whsec_";

/// An endpoint's signing key, decoded from its `whsec_…` secret.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("a webhook secret must look like whsec_<base64>")]
    Malformed,
}

impl SigningKey {
    /// Makes a new random secret (`whsec_` + base64 of 32 random bytes).
    pub fn generate_secret() -> String {
        let bytes: [u8; 32] = rand::random();
        format!("{SECRET_PREFIX}{}", BASE64.encode(bytes))
    }

    /// Decodes `whsec_<base64>` (a bare base64 secret is accepted too, as the libraries do).
    pub fn from_secret(secret: &str) -> Result<SigningKey, SecretError> {
        let encoded = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        let key = BASE64.decode(encoded).map_err(|_| SecretError::Malformed)?;
        if key.len() < 16 {
            return Err(SecretError::Malformed);
        }
        Ok(SigningKey(key))
    }

    fn mac(&self) -> HmacSha256 {
        hmac_sha256(&self.0)
    }

    /// The MAC over Standard Webhooks' signed content, `"{id}.{timestamp}.{body}"`.
    fn standard_mac(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.mac();
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `webhook-signature` value: `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>`.
    pub fn sign_standard(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mac = self.standard_mac(webhook_id, timestamp, body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    /// `X-Payrail-Signature` value: `sha256=<lowercase hex HMAC-SHA256(body)>`.
    pub fn sign_body(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Verifies a `webhook-signature` header (space-separated `v1,<sig>` entries, any may
    /// match) in constant time, within `tolerance_secs` of `now`. What a merchant does.
    pub fn verify_standard(
        &self,
        webhook_id: &str,
        timestamp: i64,
        body: &[u8],
        header: &str,
        now: i64,
        tolerance_secs: i64,
    ) -> bool {
        if (now - timestamp).abs() > tolerance_secs {
            return false;
        }
        header.split(' ').any(|entry| {
            let Some(sig) = entry.strip_prefix("v1,") else {
                return false;
            };
            let Ok(sig) = BASE64.decode(sig) else {
                return false;
            };
            self.standard_mac(webhook_id, timestamp, body)
                .verify_slice(&sig)
                .is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vector A: the one the Standard Webhooks specification publishes.
    #[test]
    fn standard_webhooks_vector_a() {
        let key = SigningKey::from_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = key.sign_standard("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(key.verify_standard(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            body,
            &format!("v1,bm90LWl0 {sig}"),
            1_614_265_330 + 10,
            300
        ));
    }

    /// Vector B: a Payrail-shaped delivery, computed independently with Python's `hmac`.
    #[test]
    fn payrail_vector_b() {
        let key =
            SigningKey::from_secret("whsec_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
        let body = br#"{"id":"evt_0190c2a4d5e67f00a1b2c3d4e5f60718","type":"payment.succeeded","created_at":"2026-11-22T00:00:00.000Z","data":{"id":"pay_1","amount":2000}}"#;
        assert_eq!(
            key.sign_standard("evt_0190c2a4d5e67f00a1b2c3d4e5f60718", 1_795_305_600, body),
            "v1,y95H2YTdsaQOdjdPsRojT/qiS0ljY1uwgKKA6vqfFwM="
        );
        assert_eq!(
            key.sign_body(body),
            "sha256=f7b74443e2ce38a67f9037ccb75debc754a204bd96f8a2765385093312128dc1"
        );
    }

    #[test]
    fn tampering_staleness_and_other_keys_fail_verification() {
        let secret = SigningKey::generate_secret();
        assert!(secret.starts_with("whsec_"));
        let key = SigningKey::from_secret(&secret).unwrap();
        let sig = key.sign_standard("evt_1", 1000, b"{}");
        assert!(key.verify_standard("evt_1", 1000, b"{}", &sig, 1000, 300));
        assert!(!key.verify_standard("evt_1", 1000, b"{ }", &sig, 1000, 300));
        assert!(!key.verify_standard("evt_2", 1000, b"{}", &sig, 1000, 300));
        assert!(!key.verify_standard("evt_1", 1000, b"{}", &sig, 1400, 300));
        let other = SigningKey::from_secret(&SigningKey::generate_secret()).unwrap();
        assert!(!other.verify_standard("evt_1", 1000, b"{}", &sig, 1000, 300));
    }

    #[test]
    fn malformed_secrets_are_rejected() {
        assert!(SigningKey::from_secret("whsec_not base64!").is_err());
        assert!(SigningKey::from_secret("whsec_c2hvcnQ=").is_err());
    }
}
