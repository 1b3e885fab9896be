//! A payment request that passed every check, and the checks themselves. Once a request has
//! become a [`NewPayment`] it is valid: amounts are positive, currencies known, cards pass
//! Luhn and are unexpired, URLs parse, each provider has what it needs. Every failure is a
//! [`ValidationError`] naming the parameter, and nothing has been written yet.

use std::collections::BTreeMap;

use entity::money::{Amount, Currency};
use entity::payment_status::PaymentStatus;
use entity::status::Provider;

use super::cards::Card;
use super::objects::{Customer, PaymentMethod};
use crate::core::error::{ValidationError, plain_text};

/// A payment request that passed every check.
pub struct NewPayment {
    pub amount: Amount,
    pub currency: Currency,
    pub provider: Provider,
    pub reference: Option<String>,
    pub description: Option<String>,
    pub customer: Option<Customer>,
    pub return_url: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub card: Option<Card>,
}

impl NewPayment {
    /// What identifies the request for idempotency: every field, but of the card only what is
    /// stored (a hash of a card number would be a card number).
    pub fn fingerprint(&self) -> String {
        let card = self.card.as_ref().map(|c| &c.summary);
        let canonical = serde_json::json!({
            "amount": self.amount.minor_units(),
            "currency": self.currency.code(),
            "provider": self.provider.as_str(),
            "reference": self.reference,
            "description": self.description,
            "customer": self.customer,
            "return_url": self.return_url,
            "metadata": self.metadata,
            "card": card,
        });
        entity::signature::sha256_hex(canonical.to_string().as_bytes())
    }

    pub fn payment_method(&self) -> Option<PaymentMethod> {
        self.card.as_ref().map(|c| PaymentMethod {
            method_type: crate::payments::objects::PaymentMethodType::Card,
            card: c.summary.clone(),
        })
    }
}

pub fn bounded(
    param: &str,
    value: Option<String>,
    max: usize,
) -> Result<Option<String>, ValidationError> {
    if let Some(v) = &value {
        plain_text(param, v)?;
    }
    match value {
        Some(v) if v.chars().count() > max => Err(ValidationError::new(
            param,
            "parameter_too_long",
            format!("{param} is longer than {max} characters."),
        )),
        other => Ok(other),
    }
}

pub fn http_url(param: &str, url: &str) -> Result<String, ValidationError> {
    plain_text(param, url)?;
    let parsed = url::Url::parse(url).map_err(|_| {
        ValidationError::new(param, "url_invalid", format!("{param} is not a valid URL."))
    })?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || url.len() > 2048
    {
        return Err(ValidationError::new(
            param,
            "url_invalid",
            format!("{param} must be an http or https URL with a host."),
        ));
    }
    Ok(parsed.to_string())
}

/// What each provider needs beyond the common fields, checked before anything is written.
pub fn require_for_provider(
    provider: Provider,
    currency: Currency,
    amount: Amount,
    customer: Option<&Customer>,
    return_url: Option<&str>,
    has_card: bool,
) -> Result<(), ValidationError> {
    if has_card && provider != Provider::Simulated {
        return Err(ValidationError::new(
            "payment_method",
            "payment_method_unsupported",
            "Test cards are for the simulated provider; real providers collect payment details on their checkout.",
        ));
    }
    let missing = |param: &str| {
        ValidationError::new(
            param,
            "parameter_missing",
            format!("{param} is required for provider {}.", provider.as_str()),
        )
    };
    let email = customer
        .and_then(|c| c.email.as_deref())
        .filter(|e| !e.is_empty());
    match provider {
        Provider::Simulated => Ok(()),
        Provider::Stripe => {
            if crate::providers::stripe::to_stripe_amount(amount.minor_units(), currency).is_none()
            {
                return Err(ValidationError::new(
                    "amount",
                    "amount_not_supported",
                    format!(
                        "Stripe cannot take this amount in {currency}: use whole units of the currency as Stripe counts them."
                    ),
                ));
            }
            Ok(())
        }
        Provider::Moneroo => {
            return_url.ok_or_else(|| missing("return_url"))?;
            email.ok_or_else(|| missing("customer[email]"))?;
            customer
                .and_then(|c| c.name.as_deref())
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| missing("customer[name]"))?;
            if entity::money::to_major_units(amount.minor_units(), currency).is_none() {
                return Err(ValidationError::new(
                    "amount",
                    "amount_not_supported",
                    format!(
                        "Moneroo takes whole units of {currency}: the amount must be a multiple of {}.",
                        10i64.pow(u32::from(currency.exponent()))
                    ),
                ));
            }
            Ok(())
        }
        Provider::Ebilling => {
            if currency.code() != "XAF" {
                return Err(ValidationError::new(
                    "currency",
                    "currency_not_supported",
                    "eBilling takes XAF only.",
                ));
            }
            email.ok_or_else(|| missing("customer[email]"))?;
            customer
                .and_then(|c| c.phone.as_deref())
                .filter(|p| !p.is_empty())
                .ok_or_else(|| missing("customer[phone]"))?;
            Ok(())
        }
    }
}

/// The outcome a sandbox completion asks for.
/// The statuses a sandbox payment can be completed with.
pub const SANDBOX_OUTCOMES: &[PaymentStatus] = &[
    PaymentStatus::Processing,
    PaymentStatus::Succeeded,
    PaymentStatus::Failed,
    PaymentStatus::Cancelled,
];

pub fn parse_sandbox_outcome(outcome: &str) -> Result<PaymentStatus, ValidationError> {
    match PaymentStatus::parse(outcome) {
        Some(s) if SANDBOX_OUTCOMES.contains(&s) => Ok(s),
        _ => Err(ValidationError::new(
            "outcome",
            "outcome_invalid",
            "outcome must be processing, succeeded, failed or cancelled.",
        )),
    }
}

/// A `PATCH /v1/payments/{id}`: only what a merchant may change after creation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PaymentUpdate {
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// Keys to set; a `""` value removes its key.
    pub metadata: Option<std::collections::BTreeMap<String, String>>,
}
