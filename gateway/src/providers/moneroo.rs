//! Moneroo: payments are initialized in major units (converted with the currency's exponent),
//! webhooks are `X-Moneroo-Signature` = lowercase hex HMAC-SHA256 of the raw body, and a
//! webhook body is never trusted: the status always comes from `GET /v1/payments/{id}/verify`.

use crate::providers::settings::MonerooSettings;
use entity::money::{Currency, to_major_units};
use entity::payment_status::PaymentStatus;
use entity::payments;
use entity::signature::hmac_sha256;
use hmac::Mac;
use serde_json::json;

use super::breaker::Breakers;
use super::{ProviderError, Remote, StartRequest, Started, call};

pub struct Moneroo {
    settings: MonerooSettings,
    client: reqwest::Client,
    pub(super) breakers: Breakers,
}

/// Moneroo status → ours (`None` for `initiated`: the customer has not started paying).
pub fn map_status(status: &str) -> Option<PaymentStatus> {
    match status {
        "pending" => Some(PaymentStatus::Processing),
        "success" => Some(PaymentStatus::Succeeded),
        "failed" => Some(PaymentStatus::Failed),
        "cancelled" => Some(PaymentStatus::Cancelled),
        _ => None,
    }
}

impl Moneroo {
    pub fn new(settings: MonerooSettings, client: reqwest::Client, breakers: Breakers) -> Moneroo {
        Moneroo {
            settings,
            client,
            breakers,
        }
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .bearer_auth(&self.settings.secret_key.0)
            .header("accept", "application/json")
    }

    /// `POST /v1/payments/initialize`. Not retried: Moneroo has no idempotency key.
    pub fn is_live(&self) -> bool {
        self.settings.livemode
    }

    pub async fn start(&self, r: &StartRequest<'_>) -> Result<Started, ProviderError> {
        let p = r.payment;
        let currency = Currency::parse(&p.currency)
            .ok_or_else(|| ProviderError::Malformed("unknown currency".into()))?;
        let amount = to_major_units(p.amount, currency)
            .ok_or_else(|| ProviderError::Malformed("amount has a fraction".into()))?;
        let customer = r.customer.cloned().unwrap_or_default();
        let name = customer.name.unwrap_or_default();
        let (first, last) = name
            .split_once(' ')
            .unwrap_or((name.as_str(), name.as_str()));
        let mut metadata = serde_json::Map::new();
        for (k, v) in r.metadata {
            metadata.insert(k.clone(), json!(v));
        }
        metadata.insert("payrail_payment_id".into(), json!(p.id));
        let mut body = json!({
            "amount": amount,
            "currency": currency.code(),
            "description": p.description.clone().unwrap_or_else(|| format!("Payment {}", p.id)),
            "customer": {"email": customer.email, "first_name": first, "last_name": last},
            "return_url": p.return_url,
            "metadata": metadata,
        });
        if let Some(phone) = customer.phone {
            body["customer"]["phone"] = json!(phone);
        }
        let request = self
            .authed(
                self.client
                    .post(format!("{}/v1/payments/initialize", self.settings.api_base)),
            )
            .json(&body);
        let answer = call(&self.breakers.create, request).await?;
        let data = &answer["data"];
        Ok(Started {
            reference: data["id"]
                .as_str()
                .ok_or_else(|| ProviderError::Malformed("no data.id".into()))?
                .to_string(),
            checkout_url: data["checkout_url"].as_str().map(str::to_string),
            client_secret: None,
            status: None,
        })
    }

    /// `GET /v1/payments/{id}/verify`, checked as Moneroo's docs ask: a success only counts
    /// with our currency and at least our amount.
    pub async fn status(
        &self,
        payment: &payments::Model,
        reference: &str,
    ) -> Result<Remote, ProviderError> {
        let request = self.authed(self.client.get(format!(
            "{}/v1/payments/{reference}/verify",
            self.settings.api_base
        )));
        let answer = call(&self.breakers.query, request).await?;
        let data = &answer["data"];
        let status = map_status(data["status"].as_str().unwrap_or_default());
        if status == Some(PaymentStatus::Succeeded) {
            let currency_ok = data["currency"]["code"]
                .as_str()
                .or(data["currency"].as_str())
                == Some(payment.currency.as_str());
            let expected =
                Currency::parse(&payment.currency).and_then(|c| to_major_units(payment.amount, c));
            let amount_ok = data["amount"]
                .as_i64()
                .zip(expected)
                .is_some_and(|(got, want)| got >= want);
            if !(currency_ok && amount_ok) {
                return Err(ProviderError::Malformed(
                    "verify reports success with another amount or currency".into(),
                ));
            }
        }
        Ok(Remote { status })
    }

    /// `POST /v1/payouts/initialize` to a mobile money wallet (`method` is Moneroo's payout
    /// method, e.g. `mtn_bj`; `recipient.msisdn` the phone). Returns Moneroo's payout id.
    /// Not retried: Moneroo documents no idempotency key for payouts either.
    pub async fn start_payout(
        &self,
        payout: &entity::payouts::Model,
        phone: &str,
        method: &str,
    ) -> Result<String, ProviderError> {
        // Refused here, before any call: certainly not acted on.
        let currency = Currency::parse(&payout.currency).ok_or(ProviderError::Unsupported(
            "a payout in an unknown currency",
        ))?;
        let amount = to_major_units(payout.amount, currency).ok_or(ProviderError::Unsupported(
            "a payout amount with a fraction of a major unit",
        ))?;
        let body = json!({
            "amount": amount,
            "currency": currency.code(),
            "description": payout.reference.clone().unwrap_or_else(|| format!("Payout {}", payout.id)),
            "method": method,
            // Moneroo requires a customer; the payout's recipient is known by phone only.
            "customer": {"email": format!("{}@payouts.payrail.invalid", payout.id), "first_name": "Payout", "last_name": payout.id.to_string()},
            "recipient": {"msisdn": phone},
            "metadata": {"payrail_payout_id": payout.id},
        });
        let request = self
            .authed(
                self.client
                    .post(format!("{}/v1/payouts/initialize", self.settings.api_base)),
            )
            .json(&body);
        let answer = call(&self.breakers.create, request).await?;
        answer["data"]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ProviderError::Malformed("no data.id".into()))
    }

    /// `GET /v1/payouts/{id}/verify`: `success` counts only with our currency and amount.
    pub async fn payout_status(
        &self,
        payout: &entity::payouts::Model,
        reference: &str,
    ) -> Result<Option<entity::status::PayoutStatus>, ProviderError> {
        self.verify_payout(payout, reference, false).await
    }

    /// `GET /v1/payouts/{id}/verify` for an id Payrail never got back from `initialize` (its
    /// answer was lost): whatever the status, the payout must be the one made for `payout`,
    /// by the metadata Payrail sent, with its amount and currency.
    pub async fn payout_status_for(
        &self,
        payout: &entity::payouts::Model,
        reference: &str,
    ) -> Result<Option<entity::status::PayoutStatus>, ProviderError> {
        self.verify_payout(payout, reference, true).await
    }

    async fn verify_payout(
        &self,
        payout: &entity::payouts::Model,
        reference: &str,
        adopting: bool,
    ) -> Result<Option<entity::status::PayoutStatus>, ProviderError> {
        use entity::status::PayoutStatus;
        let request = self.authed(self.client.get(format!(
            "{}/v1/payouts/{reference}/verify",
            self.settings.api_base
        )));
        let answer = call(&self.breakers.query, request).await?;
        let data = &answer["data"];
        let status = match data["status"].as_str().unwrap_or_default() {
            "success" => Some(PayoutStatus::Succeeded),
            "failed" => Some(PayoutStatus::Failed),
            "pending" | "initiated" => Some(PayoutStatus::Processing),
            _ => None,
        };
        if adopting && data["metadata"]["payrail_payout_id"].as_str() != Some(payout.id.as_str()) {
            return Err(ProviderError::Malformed(
                "verify reports a payout made for another payout id".into(),
            ));
        }
        if adopting || status == Some(PayoutStatus::Succeeded) {
            let currency_ok = data["currency"]["code"]
                .as_str()
                .or(data["currency"].as_str())
                == Some(payout.currency.as_str());
            let expected =
                Currency::parse(&payout.currency).and_then(|c| to_major_units(payout.amount, c));
            if !(currency_ok && data["amount"].as_i64() == expected) {
                return Err(ProviderError::Malformed(
                    "verify reports a payout with another amount or currency".into(),
                ));
            }
        }
        Ok(status)
    }

    pub fn verify(&self, header: &str, body: &[u8]) -> bool {
        verify_signature(&self.settings.webhook_secret.0, header, body)
    }
}

pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Constant-time check of `X-Moneroo-Signature` over the raw body.
pub fn verify_signature(secret: &str, header: &str, body: &[u8]) -> bool {
    let Ok(sig) = hex::decode(header.trim()) else {
        return false;
    };
    let mut mac = hmac_sha256(secret.as_bytes());
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// providers.md's derived vector (computed with Python's hmac, not official).
    #[test]
    fn derived_moneroo_vector() {
        let body = br#"{"event":"payment.success","data":{"id":"123456","amount":100,"currency":"USD","status":"success"}}"#;
        let sig = "ff26eaee3aa9e3eb9f83b17bbec95fb1d8112ea442acbed1b13e763452756b08";
        assert_eq!(sign("your_webhook_signing_secret", body), sig);
        assert!(verify_signature("your_webhook_signing_secret", sig, body));
        assert!(!verify_signature("other", sig, body));
        assert!(!verify_signature(
            "your_webhook_signing_secret",
            "not-hex",
            body
        ));
    }

    #[test]
    fn amounts_convert_with_the_currency_exponent() {
        let usd = Currency::parse("USD").unwrap();
        let xof = Currency::parse("XOF").unwrap();
        assert_eq!(to_major_units(2000, usd), Some(20));
        assert_eq!(to_major_units(2050, usd), None, "Moneroo takes whole units");
        assert_eq!(to_major_units(200, xof), Some(200), "XOF has no minor unit");
        assert_eq!(map_status("initiated"), None);
        assert_eq!(map_status("success"), Some(PaymentStatus::Succeeded));
    }
}
