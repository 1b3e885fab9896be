//! The payment and refund objects as merchants see them: in API responses, in event payloads
//! (and so in webhooks), in idempotent replays and in the recent-payments cache. One shape
//! everywhere; the OpenAPI schema is derived from these types.

use entity::money::Currency;
use std::collections::HashMap;

use entity::event::rfc3339;
use entity::payment_status::PaymentStatus;
use entity::payments;
use entity::status::{Provider, RefundStatus};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};

pub use crate::providers::Customer;

/// How a payment is paid: a card (the only method taken directly; mobile money is paid on
/// the provider's checkout).
#[derive(poem_openapi::Enum, Clone, Copy, Serialize, Deserialize, Debug, PartialEq, Eq)]
pub enum PaymentMethodType {
    #[oai(rename = "card")]
    #[serde(rename = "card")]
    Card,
}

#[derive(Object, Clone, Serialize, Deserialize, Debug, PartialEq)]
pub struct PaymentMethod {
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub method_type: PaymentMethodType,
    pub card: CardSummary,
}

#[derive(Object, Clone, Serialize, Deserialize, Debug, PartialEq)]
pub struct CardSummary {
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

#[derive(Object, Clone, Serialize, Deserialize, Debug, PartialEq)]
pub struct Payment {
    pub id: String,
    pub object: crate::core::object_names::PaymentName,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: Currency,
    pub provider: Provider,
    pub provider_reference: Option<String>,
    pub checkout_url: Option<String>,
    /// A QR code of `checkout_url` (SVG; `?format=png` for PNG), for a customer on a desktop
    /// to finish on their phone (mobile money). Public, like `checkout_url`.
    pub qr_code_url: Option<String>,
    /// Stripe only: the PaymentIntent's client secret, for Stripe.js.
    pub client_secret: Option<String>,
    pub return_url: Option<String>,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub customer: Option<Customer>,
    pub metadata: HashMap<String, String>,
    pub payment_method: Option<PaymentMethod>,
    pub amount_refunded: i64,
    pub failure_code: Option<String>,
    pub failure_message: Option<String>,
    pub livemode: bool,
    /// The balance transaction (`txn_…`) that brought its money in, once it succeeded.
    pub balance_transaction: Option<String>,
    /// The provider reported success after this payment was failed or cancelled: money may
    /// have moved. Check it with the provider; Payrail does not change a final status.
    pub requires_reconciliation: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

impl From<&payments::Model> for Payment {
    fn from(p: &payments::Model) -> Payment {
        Payment {
            id: p.id.to_string(),
            object: crate::core::object_names::PaymentName::default(),
            status: p.status,
            amount: p.amount,
            currency: Currency::stored(&p.currency),
            provider: p.provider,
            provider_reference: p.provider_reference.clone(),
            checkout_url: p.checkout_url.clone(),
            qr_code_url: p.qr_code_url.clone(),
            client_secret: p.client_secret.clone(),
            return_url: p.return_url.clone(),
            reference: p.reference.clone(),
            description: p.description.clone(),
            customer: p
                .customer
                .clone()
                .and_then(|c| serde_json::from_value(c).ok()),
            metadata: serde_json::from_value(p.metadata.clone()).unwrap_or_default(),
            payment_method: p
                .payment_method
                .clone()
                .and_then(|m| serde_json::from_value(m).ok()),
            amount_refunded: p.amount_refunded,
            failure_code: p.failure_code.clone(),
            failure_message: p.failure_message.clone(),
            livemode: p.livemode,
            balance_transaction: matches!(
                p.status,
                PaymentStatus::Succeeded | PaymentStatus::Refunded
            )
            .then(|| crate::ledger::transaction_id_of(&p.id).to_string()),
            requires_reconciliation: p.requires_reconciliation,
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

#[derive(Object, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub object: crate::core::object_names::RefundName,
    pub payment_id: String,
    pub amount: i64,
    pub status: RefundStatus,
    pub failure_message: Option<String>,
    /// Why the merchant refunded, when they said.
    #[serde(default)]
    pub reason: Option<entity::status::RefundReason>,
    pub created_at: String,
    /// `true` for live mode, `false` for test mode.
    #[serde(default)]
    pub livemode: bool,
    /// The balance transaction (`txn_…`) that took its amount from your balance when it was
    /// made; a failed refund gives it back with a `refund_failure` transaction.
    #[serde(default)]
    pub balance_transaction: Option<String>,
}

impl From<&entity::refunds::Model> for Refund {
    fn from(r: &entity::refunds::Model) -> Refund {
        Refund {
            id: r.id.to_string(),
            object: crate::core::object_names::RefundName::default(),
            payment_id: r.payment_id.to_string(),
            amount: r.amount,
            status: r.status,
            failure_message: r.failure_message.clone(),
            reason: r.reason,
            created_at: rfc3339(r.created_at),
            livemode: r.livemode,
            balance_transaction: Some(crate::ledger::transaction_id_of(&r.id).to_string()),
        }
    }
}
