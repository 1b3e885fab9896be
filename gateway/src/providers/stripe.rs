//! Stripe: PaymentIntents out (form-encoded, `Idempotency-Key` = our payment id, so a retried
//! create never makes a second intent), webhooks in (`Stripe-Signature`, 300 s tolerance,
//! several `v1` accepted).

use crate::providers::settings::StripeSettings;
use entity::money::Currency;
use entity::payment_status::PaymentStatus;
use entity::signature::hmac_sha256;
use hmac::Mac;
use subtle::ConstantTimeEq as _;

use super::breaker::Breakers;
use super::{ProviderError, Remote, StartRequest, Started, call};

pub const TOLERANCE_SECS: i64 = 300;

/// What Stripe's balance transactions say moved for one PaymentIntent, in Stripe's units.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub charged: i64,
    pub refunded: i64,
}

pub struct Stripe {
    settings: StripeSettings,
    client: reqwest::Client,
    pub(super) breakers: Breakers,
}

fn form(pairs: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

/// PaymentIntent status → ours (`None`: still waiting on the customer).
pub fn map_intent_status(status: &str, has_error: bool) -> Option<PaymentStatus> {
    match status {
        "processing" | "requires_capture" => Some(PaymentStatus::Processing),
        "succeeded" => Some(PaymentStatus::Succeeded),
        "canceled" => Some(PaymentStatus::Cancelled),
        // A failed attempt returns the intent to requires_payment_method with an error set;
        // the customer may still pay it, so the payment stays open.
        "requires_payment_method" if has_error => None,
        _ => None,
    }
}

impl Stripe {
    pub fn new(settings: StripeSettings, client: reqwest::Client, breakers: Breakers) -> Stripe {
        Stripe {
            settings,
            client,
            breakers,
        }
    }

    fn post(&self, path: &str, idempotency_key: &str, body: String) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.settings.api_base))
            .bearer_auth(&self.settings.secret_key.0)
            .header("Idempotency-Key", idempotency_key)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    }

    /// Whether the secret key moves real money (`sk_live_`, or a restricted `rk_live_` key).
    pub fn is_live(&self) -> bool {
        let key = &self.settings.secret_key.0;
        key.starts_with("sk_live_") || key.starts_with("rk_live_")
    }

    /// Creates the PaymentIntent. Retried once on a transport error or a 5xx: the
    /// Idempotency-Key makes the retry safe.
    pub async fn start(&self, r: &StartRequest<'_>) -> Result<Started, ProviderError> {
        let p = r.payment;
        let amount = Currency::parse(&p.currency)
            .and_then(|c| to_stripe_amount(p.amount, c))
            .ok_or_else(|| ProviderError::Malformed("amount not expressible for Stripe".into()))?;
        let mut pairs = vec![
            ("amount".to_string(), amount.to_string()),
            ("currency".to_string(), p.currency.to_ascii_lowercase()),
            (
                "automatic_payment_methods[enabled]".to_string(),
                "true".to_string(),
            ),
            ("metadata[payrail_payment_id]".to_string(), p.id.to_string()),
        ];
        for (k, v) in r.metadata {
            pairs.push((format!("metadata[{k}]"), v.clone()));
        }
        if let Some(d) = &p.description {
            pairs.push(("description".into(), d.clone()));
        }
        if let Some(email) = r.customer.and_then(|c| c.email.clone()) {
            pairs.push(("receipt_email".into(), email.into_string()));
        }
        let body = form(&pairs);
        let mut result = call(
            &self.breakers.create,
            self.post("/v1/payment_intents", &p.id, body.clone()),
        )
        .await;
        if let Err(e) = &result
            && e.is_provider_fault()
            && !matches!(e, ProviderError::Timeout)
        {
            result = call(
                &self.breakers.create,
                self.post("/v1/payment_intents", &p.id, body),
            )
            .await;
        }
        let intent = result?;
        let reference = intent["id"]
            .as_str()
            .ok_or_else(|| ProviderError::Malformed("no id in PaymentIntent".into()))?;
        let status = intent["status"]
            .as_str()
            .unwrap_or("requires_payment_method");
        Ok(Started {
            reference: reference.to_string(),
            client_secret: intent["client_secret"].as_str().map(str::to_string),
            checkout_url: intent["next_action"]["redirect_to_url"]["url"]
                .as_str()
                .map(str::to_string),
            status: map_intent_status(status, !intent["last_payment_error"].is_null()),
        })
    }

    pub async fn status(&self, intent_id: &str) -> Result<Remote, ProviderError> {
        let request = self
            .client
            .get(format!(
                "{}/v1/payment_intents/{intent_id}",
                self.settings.api_base
            ))
            .bearer_auth(&self.settings.secret_key.0);
        let intent = call(&self.breakers.query, request).await?;
        let status = intent["status"].as_str().unwrap_or_default();
        Ok(Remote {
            status: map_intent_status(status, !intent["last_payment_error"].is_null()),
        })
    }

    /// Stripe's balance transactions created since `since` (`GET /v1/balance_transactions`,
    /// every page, each with its source expanded), as the money moved per PaymentIntent:
    /// what was charged and what was refunded, in Stripe's units.
    pub async fn report_since(
        &self,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<std::collections::HashMap<String, Moved>, ProviderError> {
        let mut moved: std::collections::HashMap<String, Moved> = Default::default();
        let mut starting_after: Option<String> = None;
        // A bound on pages, so a provider answering has_more forever cannot hold the job.
        for _ in 0..1000 {
            let mut query = vec![
                ("limit".to_string(), "100".to_string()),
                ("created[gte]".to_string(), since.timestamp().to_string()),
                ("expand[]".to_string(), "data.source".to_string()),
            ];
            if let Some(after) = &starting_after {
                query.push(("starting_after".to_string(), after.clone()));
            }
            let request = self
                .client
                .get(format!(
                    "{}/v1/balance_transactions?{}",
                    self.settings.api_base,
                    form(&query)
                ))
                .bearer_auth(&self.settings.secret_key.0);
            let page = call(&self.breakers.query, request).await?;
            let data = page["data"]
                .as_array()
                .ok_or_else(|| ProviderError::Malformed("no data in the list".into()))?;
            for t in data {
                let Some(intent) = t["source"]["payment_intent"].as_str() else {
                    continue;
                };
                let amount = t["amount"].as_i64().unwrap_or(0);
                let entry = moved.entry(intent.to_string()).or_default();
                match t["type"].as_str() {
                    Some("charge" | "payment") => entry.charged += amount,
                    Some("refund" | "payment_refund") => entry.refunded += -amount,
                    _ => {}
                }
            }
            match (page["has_more"].as_bool(), data.last()) {
                (Some(true), Some(last)) => {
                    starting_after = last["id"].as_str().map(str::to_string);
                }
                _ => return Ok(moved),
            }
        }
        Err(ProviderError::Malformed(
            "Stripe's balance transactions did not end after 1000 pages".into(),
        ))
    }

    /// Cancels the PaymentIntent, so no money can be captured on it afterwards.
    pub async fn cancel(&self, intent_id: &str) -> Result<(), ProviderError> {
        let path = format!("/v1/payment_intents/{intent_id}/cancel");
        call(
            &self.breakers.create,
            self.post(&path, &format!("cancel-{intent_id}"), String::new()),
        )
        .await
        .map(drop)
    }

    pub async fn refund(
        &self,
        intent_id: &str,
        idempotency_key: &str,
        amount: i64,
        reason: Option<entity::status::RefundReason>,
    ) -> Result<String, ProviderError> {
        // Stripe takes the same three reasons; `fraudulent` also teaches its Radar.
        let mut fields = vec![
            ("payment_intent".into(), intent_id.into()),
            ("amount".into(), amount.to_string()),
        ];
        if let Some(reason) = reason {
            fields.push(("reason".into(), reason.as_str().into()));
        }
        let body = form(&fields);
        let refund = call(
            &self.breakers.create,
            self.post("/v1/refunds", idempotency_key, body),
        )
        .await?;
        refund["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Malformed("no id in Refund".into()))
    }

    pub fn verify(&self, header: &str, payload: &[u8], now: i64) -> Result<(), SignatureError> {
        verify_signature(
            &self.settings.webhook_secret.0,
            header,
            payload,
            now,
            TOLERANCE_SECS,
        )
    }
}

/// Stripe's own number of decimals for a currency, where it differs from ISO 4217: its
/// zero-decimal list (MGA has two decimals in ISO, none at Stripe), and the special cases it
/// keeps for backwards compatibility (ISK and UGX have none in ISO but are sent ×100).
/// HUF and TWD are two-decimal for payments at Stripe, as in ISO.
fn stripe_exponent(currency: Currency) -> u8 {
    match currency.code() {
        "BIF" | "CLP" | "DJF" | "GNF" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG" | "RWF" | "VND"
        | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "ISK" | "UGX" => 2,
        _ => currency.exponent(),
    }
}

/// Our amount (ISO minor units) as Stripe's `amount`; `None` when Stripe cannot take it
/// (a fraction of a zero-decimal unit, or a three-decimal amount not ending in 0).
pub fn to_stripe_amount(amount: i64, currency: Currency) -> Option<i64> {
    let (ours, theirs) = (currency.exponent(), stripe_exponent(currency));
    let stripe = if theirs >= ours {
        amount.checked_mul(10i64.checked_pow(u32::from(theirs - ours))?)?
    } else {
        let factor = 10i64.checked_pow(u32::from(ours - theirs))?;
        (amount % factor == 0).then_some(amount / factor)?
    };
    (theirs != 3 || stripe % 10 == 0).then_some(stripe)
}

/// Stripe's `amount` (in a webhook or an answer) in our ISO minor units.
pub fn from_stripe_amount(stripe: i64, currency: Currency) -> Option<i64> {
    let (ours, theirs) = (currency.exponent(), stripe_exponent(currency));
    if ours >= theirs {
        stripe.checked_mul(10i64.checked_pow(u32::from(ours - theirs))?)
    } else {
        let factor = 10i64.checked_pow(u32::from(theirs - ours))?;
        Some(stripe / factor)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("the signature is older than the tolerance (replayed or delayed)")]
    Stale,
    #[error("no v1 signature matches the payload")]
    Mismatch,
}

/// Longest `Stripe-Signature` header read: Stripe sends one timestamp and a signature per
/// active secret (two while a secret is rolled), far below this.
pub const MAX_HEADER_LEN: usize = 1024;

/// `v1` entries compared at most; more is not a header Stripe sends.
const MAX_SIGNATURES: usize = 4;

/// Verifies `Stripe-Signature: t=…,v1=…[,v1=…][,v0=…]` over the exact bytes received.
///
/// The MAC is computed once, whatever the header holds, and compared in constant time with at
/// most `MAX_SIGNATURES` candidates, so an unauthenticated request cannot make the gateway
/// hash its body thousands of times; a header over [`MAX_HEADER_LEN`] is refused unread.
pub fn verify_signature(
    secret: &str,
    header: &str,
    payload: &[u8],
    now: i64,
    tolerance: i64,
) -> Result<(), SignatureError> {
    if header.len() > MAX_HEADER_LEN {
        return Err(SignatureError::Malformed);
    }
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", sig)) => {
                if signatures.len() == MAX_SIGNATURES {
                    return Err(SignatureError::Malformed);
                }
                if let Ok(bytes) = hex::decode(sig) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let (Some(t), false) = (timestamp, signatures.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    if now - t > tolerance {
        return Err(SignatureError::Stale);
    }
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    let expected = mac.finalize().into_bytes();
    let matches = signatures
        .iter()
        .any(|sig| bool::from(expected.as_slice().ct_eq(sig.as_slice())));
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// The signature header Stripe would send (for mocks and tests).
pub fn sign(secret: &str, payload: &[u8], t: i64) -> String {
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// What a verified Stripe event means for us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripeEvent {
    pub id: String,
    pub event_type: String,
    pub intent_id: Option<String>,
    pub target: Option<PaymentStatus>,
    pub failure: Option<(String, String)>,
    /// For `charge.refunded`: the total refunded so far.
    pub amount_refunded: Option<i64>,
}

pub fn parse_event(body: &[u8]) -> Result<StripeEvent, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let id = v["id"].as_str().ok_or("no event id")?.to_string();
    let event_type = v["type"].as_str().ok_or("no event type")?.to_string();
    let object = &v["data"]["object"];
    let (intent_id, target, amount_refunded) = match event_type.as_str() {
        "payment_intent.succeeded" => (object["id"].as_str(), Some(PaymentStatus::Succeeded), None),
        // Not final: the customer may retry the same intent. Asking for `pending` records the
        // event and changes nothing (the status machine refuses the move), so the payment
        // stays open until success, cancellation or expiry.
        "payment_intent.payment_failed" => {
            (object["id"].as_str(), Some(PaymentStatus::Pending), None)
        }
        "payment_intent.canceled" => (object["id"].as_str(), Some(PaymentStatus::Cancelled), None),
        "payment_intent.processing" => {
            (object["id"].as_str(), Some(PaymentStatus::Processing), None)
        }
        "charge.refunded" => (
            object["payment_intent"].as_str(),
            Some(PaymentStatus::Refunded),
            object["amount_refunded"].as_i64(),
        ),
        _ => (None, None, None),
    };
    let failure = (event_type == "payment_intent.payment_failed").then(|| {
        let e = &object["last_payment_error"];
        (
            e["code"]
                .as_str()
                .or(e["decline_code"].as_str())
                .unwrap_or("card_declined")
                .to_string(),
            e["message"]
                .as_str()
                .unwrap_or("The payment failed at Stripe.")
                .to_string(),
        )
    });
    Ok(StripeEvent {
        id,
        event_type,
        intent_id: intent_id.map(str::to_string),
        target,
        failure,
        amount_refunded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYLOAD: &[u8] = include_bytes!("testdata/stripe_event_test_signature.json");
    const HEADER: &str = "t=1533204620,v1=2220f87ef101a04665f11cdf770523143f875572008577fa0f20882ddb9cc3c7,v0=63f3a72374a733066c4be69ed7f8e5ac85c22c9f0a6a612ab9a025a9e4ee7eef";

    /// stripe-dotnet's EventUtilityTest vector: 484 bytes, trailing newline included.
    #[test]
    fn official_stripe_vector() {
        assert_eq!(PAYLOAD.len(), 484);
        assert_eq!(
            verify_signature("webhook_secret", HEADER, PAYLOAD, 1_533_204_620 + 100, 300),
            Ok(())
        );
        assert_eq!(
            verify_signature("webhook_secret", HEADER, PAYLOAD, 1_533_204_620 + 400, 300),
            Err(SignatureError::Stale)
        );
        let trimmed = &PAYLOAD[..PAYLOAD.len() - 1];
        assert_eq!(
            verify_signature("webhook_secret", HEADER, trimmed, 1_533_204_720, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature("other", HEADER, PAYLOAD, 1_533_204_720, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn derived_compact_vector_and_header_rules() {
        let body =
            br#"{"id":"evt_test_webhook","object":"event","type":"payment_intent.succeeded"}"#;
        let header =
            "t=1700000000,v1=130dc37d5a27b1b232a61e4f2ff00ed245f498112c11e8b747aff3d0fb754056";
        assert_eq!(
            verify_signature("whsec_test_secret", header, body, 1_700_000_000, 300),
            Ok(())
        );
        assert_eq!(sign("whsec_test_secret", body, 1_700_000_000), header);
        // Several v1 (secret rolling): any may match; non-hex v1 and unknown keys are ignored.
        let rolled = format!(
            "t=1700000000,v1=zz,v1=00ff,foo=bar,{}",
            header.split(',').nth(1).unwrap_or("")
        );
        assert_eq!(
            verify_signature("whsec_test_secret", &rolled, body, 1_700_000_000, 300),
            Ok(())
        );
        assert_eq!(
            verify_signature(
                "whsec_test_secret",
                "t=1700000000",
                body,
                1_700_000_000,
                300
            ),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_signature("whsec_test_secret", "v1=130d", body, 1_700_000_000, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn events_map_to_statuses() {
        let e = parse_event(br#"{"id":"evt_1","type":"payment_intent.payment_failed","data":{"object":{"id":"pi_1","last_payment_error":{"code":"card_declined","message":"Declined"}}}}"#).unwrap();
        // A failed attempt is not the end of the intent: it asks for nothing new.
        assert_eq!(
            (e.intent_id.as_deref(), e.target),
            (Some("pi_1"), Some(PaymentStatus::Pending))
        );
        assert_eq!(map_intent_status("requires_payment_method", true), None);
        assert_eq!(e.failure, Some(("card_declined".into(), "Declined".into())));
        let r = parse_event(br#"{"id":"evt_2","type":"charge.refunded","data":{"object":{"id":"ch_1","payment_intent":"pi_1","amount":2000,"amount_refunded":500,"refunded":false}}}"#).unwrap();
        assert_eq!(
            (r.intent_id.as_deref(), r.amount_refunded),
            (Some("pi_1"), Some(500))
        );
        let unknown =
            parse_event(br#"{"id":"evt_3","type":"customer.created","data":{"object":{}}}"#)
                .unwrap();
        assert_eq!(unknown.target, None);
        assert!(parse_event(b"nope").is_err());
        assert_eq!(map_intent_status("requires_action", false), None);
        assert_eq!(map_intent_status("requires_payment_method", true), None);
    }

    #[test]
    fn a_header_stuffed_with_signatures_is_refused_without_hashing_for_each() {
        let payload = br#"{"id":"evt_1"}"#;
        let t = 1_700_000_000;
        let valid = sign("whsec_x", payload, t);
        let valid_sig = valid
            .split_once(",v1=")
            .map(|(_, s)| s.to_string())
            .unwrap();
        // Thousands of candidates (the attack): refused as malformed, never compared.
        let stuffed = format!("t={t}{}", ",v1=00".repeat(5000));
        assert_eq!(
            verify_signature("whsec_x", &stuffed, payload, t, 300),
            Err(SignatureError::Malformed)
        );
        // More candidates than Stripe ever sends, even under the length cap.
        let many = format!("t={t},v1=00,v1=01,v1=02,v1=03,v1={valid_sig}");
        assert!(many.len() <= MAX_HEADER_LEN);
        assert_eq!(
            verify_signature("whsec_x", &many, payload, t, 300),
            Err(SignatureError::Malformed)
        );
        // A rolled secret: two signatures, one of them valid, is accepted.
        let rolled = format!("t={t},v1={},v1={valid_sig}", "ab".repeat(32));
        assert_eq!(
            verify_signature("whsec_x", &rolled, payload, t, 300),
            Ok(())
        );
    }

    #[test]
    fn amounts_follow_stripes_currency_list_not_iso() {
        let c = |code: &str| Currency::parse(code).unwrap();
        // Same as ISO.
        assert_eq!(to_stripe_amount(2000, c("USD")), Some(2000));
        assert_eq!(to_stripe_amount(500, c("JPY")), Some(500));
        assert_eq!(to_stripe_amount(5000, c("XAF")), Some(5000));
        assert_eq!(to_stripe_amount(12345, c("HUF")), Some(12345));
        assert_eq!(to_stripe_amount(12345, c("TWD")), Some(12345));
        // ISK and UGX: zero-decimal in ISO, sent ×100 to Stripe.
        assert_eq!(to_stripe_amount(1000, c("ISK")), Some(100_000));
        assert_eq!(to_stripe_amount(5000, c("UGX")), Some(500_000));
        // MGA: two decimals in ISO, none at Stripe.
        assert_eq!(to_stripe_amount(150_000, c("MGA")), Some(1500));
        assert_eq!(
            to_stripe_amount(150_050, c("MGA")),
            None,
            "a fraction Stripe cannot take"
        );
        // Three-decimal currencies must end in 0.
        assert_eq!(to_stripe_amount(1230, c("KWD")), Some(1230));
        assert_eq!(to_stripe_amount(1235, c("KWD")), None);
        for (code, ours) in [
            ("USD", 2000),
            ("ISK", 1000),
            ("UGX", 5000),
            ("MGA", 150_000),
        ] {
            let stripe = to_stripe_amount(ours, c(code)).unwrap();
            assert_eq!(
                from_stripe_amount(stripe, c(code)),
                Some(ours),
                "{code} round trip"
            );
        }
    }
}
