//! eBilling (Digitech Africa): bills created with HTTP Basic auth, customers sent to the
//! portal's `checkoutnow` page. Its callback carries no signature, so a callback only moves a
//! payment after re-querying the bill: `processed`, our amount, our reference.

use crate::providers::settings::EbillingSettings;
use entity::payment_status::PaymentStatus;
use entity::payments;
use serde_json::json;

use super::breaker::Breakers;
use super::{ProviderError, Remote, StartRequest, Started, call};

pub struct Ebilling {
    settings: EbillingSettings,
    client: reqwest::Client,
    pub(super) breakers: Breakers,
}

/// Bill state → ours. Only `ready` and `processed` are confirmed; the rest appear in
/// integrators' code (unconfirmed). Anything unknown is still pending.
pub fn map_state(state: &str) -> Option<PaymentStatus> {
    match state {
        "processed" | "paid" => Some(PaymentStatus::Succeeded),
        "expired" | "cancelled" => Some(PaymentStatus::Cancelled),
        "failed" => Some(PaymentStatus::Failed),
        _ => None,
    }
}

impl Ebilling {
    pub fn new(
        settings: EbillingSettings,
        client: reqwest::Client,
        breakers: Breakers,
    ) -> Ebilling {
        Ebilling {
            settings,
            client,
            breakers,
        }
    }

    fn authed(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .basic_auth(&self.settings.username, Some(&self.settings.shared_key.0))
            .header("accept", "application/json")
    }

    fn bills_url(&self) -> String {
        format!("{}/api/v1/merchant/e_bills", self.settings.api_base)
    }

    /// Creates the bill (`external_reference` = our payment id). Not retried: no idempotency.
    pub fn is_live(&self) -> bool {
        self.settings.livemode
    }

    pub async fn start(&self, r: &StartRequest<'_>) -> Result<Started, ProviderError> {
        let p = r.payment;
        let customer = r.customer.cloned().unwrap_or_default();
        let body = json!({
            "payer_msisdn": customer.phone,
            "payer_email": customer.email,
            "payer_name": customer.name,
            "amount": p.amount,
            "short_description": p.description.clone().unwrap_or_else(|| format!("Payment {}", p.id)),
            "external_reference": p.id,
            "expiry_period": 60,
        });
        let answer = call(
            &self.breakers.create,
            self.authed(self.client.post(self.bills_url())).json(&body),
        )
        .await?;
        let bill_id = answer["e_bill"]["bill_id"]
            .as_str()
            .map(str::to_string)
            .or_else(|| answer["e_bill"]["bill_id"].as_i64().map(|n| n.to_string()))
            .ok_or_else(|| ProviderError::Malformed("no e_bill.bill_id".into()))?;
        let mut checkout = url::Url::parse(&format!("{}/checkoutnow", self.settings.portal_base))
            .map_err(|e| ProviderError::Malformed(format!("portal URL: {e}")))?;
        checkout
            .query_pairs_mut()
            .append_pair("invoice_number", &bill_id);
        if let Some(back) = &p.return_url {
            checkout
                .query_pairs_mut()
                .append_pair("merchant_redirect_url", back);
        }
        Ok(Started {
            reference: bill_id,
            checkout_url: Some(checkout.to_string()),
            client_secret: None,
            status: None,
        })
    }

    /// Re-queries the bill. A `processed` bill counts only with our amount and reference.
    pub async fn status(
        &self,
        payment: &payments::Model,
        bill_id: &str,
    ) -> Result<Remote, ProviderError> {
        let bill = call(
            &self.breakers.query,
            self.authed(self.client.get(format!("{}/{bill_id}", self.bills_url()))),
        )
        .await?;
        let status = map_state(bill["state"].as_str().unwrap_or_default());
        if status == Some(PaymentStatus::Succeeded) {
            let amount_ok = bill["amount"].as_i64() == Some(payment.amount);
            let reference_ok = bill["external_reference"].as_str() == Some(payment.id.as_str());
            if !(amount_ok && reference_ok) {
                return Err(ProviderError::Malformed(
                    "bill is processed but not for our amount or reference".into(),
                ));
            }
        }
        Ok(Remote { status })
    }
}

/// The fields of an eBilling callback that we read (form-encoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    pub reference: String,
    pub billing_id: String,
    pub transaction_id: Option<String>,
}

pub fn parse_callback(body: &[u8]) -> Option<Callback> {
    let mut reference = None;
    let mut billing_id = None;
    let mut transaction_id = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "reference" => reference = Some(v.into_owned()),
            "billingid" => billing_id = Some(v.into_owned()),
            "transactionid" => transaction_id = Some(v.into_owned()),
            _ => {}
        }
    }
    // Control characters are never in eBilling's identifiers, and PostgreSQL cannot look up
    // a NUL: such a body is malformed, not a reason to fail.
    let clean = |v: &Option<String>| {
        v.as_deref()
            .is_none_or(|v| !v.chars().any(char::is_control))
    };
    if !(clean(&reference) && clean(&billing_id) && clean(&transaction_id)) {
        return None;
    }
    Some(Callback {
        reference: reference?,
        billing_id: billing_id?,
        transaction_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_parse_from_the_documented_form() {
        let body = b"reference=ORDER-123&amount=605000&transactionid=MP210817.2353.A90673&paymentsystem=airtelmoney&billingid=5550000001";
        let c = parse_callback(body).unwrap();
        assert_eq!(
            (c.reference.as_str(), c.billing_id.as_str()),
            ("ORDER-123", "5550000001")
        );
        assert_eq!(c.transaction_id.as_deref(), Some("MP210817.2353.A90673"));
        assert!(parse_callback(b"amount=1").is_none());
        assert_eq!(map_state("ready"), None);
        assert_eq!(
            map_state("something-new"),
            None,
            "unknown states stay pending"
        );
        assert_eq!(map_state("processed"), Some(PaymentStatus::Succeeded));
    }
}
