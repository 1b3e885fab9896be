//! Domain types parsed from request bodies. Once a request has become one of these, it is
//! valid: amounts are positive, currencies known, cards pass Luhn and are unexpired, URLs
//! parse. Every failure is a 422 naming the parameter, and nothing has been written yet.

use std::collections::BTreeMap;

use chrono::Datelike;
use entity::event::EventType;
use entity::money::{Amount, Currency};
use entity::payment_status::PaymentStatus;

use crate::api::dto::{
    CardInput, CardSummary, CreateEndpointRequest, CreatePaymentRequest, Customer, PaymentMethod,
    UpdateEndpointRequest,
};
use crate::error::ApiError;

/// Providers a payment can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Simulated,
    Stripe,
    Moneroo,
    Ebilling,
}

impl Provider {
    pub const fn as_str(self) -> &'static str {
        match self {
            Provider::Simulated => "simulated",
            Provider::Stripe => "stripe",
            Provider::Moneroo => "moneroo",
            Provider::Ebilling => "ebilling",
        }
    }

    pub fn parse(name: &str) -> Result<Provider, ApiError> {
        match name {
            "simulated" => Ok(Provider::Simulated),
            "stripe" => Ok(Provider::Stripe),
            "moneroo" => Ok(Provider::Moneroo),
            "ebilling" => Ok(Provider::Ebilling),
            _ => Err(ApiError::invalid(
                "provider",
                "provider_unknown",
                format!("Unknown provider '{name}': use simulated, stripe, moneroo or ebilling."),
            )),
        }
    }
}

/// How a test card behaves (Stripe's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutcome {
    Succeeds,
    Declined(&'static str, &'static str),
}

/// A card that passed the checks. Only its summary survives this type.
pub struct Card {
    pub summary: CardSummary,
    pub outcome: CardOutcome,
}

impl TryFrom<CardInput> for Card {
    type Error = ApiError;

    fn try_from(card: CardInput) -> Result<Card, ApiError> {
        let number: String = card
            .number
            .chars()
            .filter(|c| !matches!(c, ' ' | '-'))
            .collect();
        if !(12..=19).contains(&number.len())
            || !number.bytes().all(|b| b.is_ascii_digit())
            || !luhn(&number)
        {
            return Err(ApiError::invalid(
                "payment_method[card][number]",
                "invalid_number",
                "The card number is not a valid card number.",
            ));
        }
        let now = chrono::Utc::now();
        let (year, month) = (now.year() as u32, now.month());
        if !(1..=12).contains(&card.exp_month) {
            return Err(ApiError::invalid(
                "payment_method[card][exp_month]",
                "invalid_expiry_month",
                "The expiry month must be 1 to 12.",
            ));
        }
        if card.exp_year > year + 50 {
            return Err(ApiError::invalid(
                "payment_method[card][exp_year]",
                "invalid_expiry_year",
                "The expiry year is too far in the future.",
            ));
        }
        if card.exp_year < year || (card.exp_year == year && card.exp_month < month) {
            return Err(ApiError::invalid(
                "payment_method[card][exp_year]",
                "expired_card",
                "The card has expired.",
            ));
        }
        let brand = brand(&number);
        let cvc_len = if brand == "amex" { 4 } else { 3 };
        if card.cvc.len() != cvc_len || !card.cvc.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid(
                "payment_method[card][cvc]",
                "invalid_cvc",
                "The card's security code is invalid.",
            ));
        }
        let outcome = match number.as_str() {
            "4000000000000002" => CardOutcome::Declined("card_declined", "Your card was declined."),
            "4000000000009995" => {
                CardOutcome::Declined("insufficient_funds", "Your card has insufficient funds.")
            }
            _ => CardOutcome::Succeeds,
        };
        Ok(Card {
            summary: CardSummary {
                brand: brand.to_string(),
                last4: number[number.len() - 4..].to_string(),
                exp_month: card.exp_month,
                exp_year: card.exp_year,
            },
            outcome,
        })
    }
}

fn luhn(number: &str) -> bool {
    let sum: u32 = number
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

fn brand(number: &str) -> &'static str {
    let two: u32 = number[..2].parse().unwrap_or(0);
    let four: u32 = number[..4].parse().unwrap_or(0);
    match () {
        _ if number.starts_with('4') => "visa",
        _ if (51..=55).contains(&two) || (2221..=2720).contains(&four) => "mastercard",
        _ if two == 34 || two == 37 => "amex",
        _ => "unknown",
    }
}

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
        crate::services::sha256_hex(canonical.to_string().as_bytes())
    }

    pub fn payment_method(&self) -> Option<PaymentMethod> {
        self.card.as_ref().map(|c| PaymentMethod {
            method_type: "card".into(),
            card: c.summary.clone(),
        })
    }
}

fn bounded(param: &str, value: Option<String>, max: usize) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if v.chars().count() > max => Err(ApiError::invalid(
            param,
            "parameter_too_long",
            format!("{param} is longer than {max} characters."),
        )),
        other => Ok(other),
    }
}

fn http_url(param: &str, url: &str) -> Result<String, ApiError> {
    let parsed = url::Url::parse(url).map_err(|_| {
        ApiError::invalid(param, "url_invalid", format!("{param} is not a valid URL."))
    })?;
    if !matches!(parsed.scheme(), "http" | "https")
        || parsed.host_str().is_none()
        || url.len() > 2048
    {
        return Err(ApiError::invalid(
            param,
            "url_invalid",
            format!("{param} must be an http or https URL with a host."),
        ));
    }
    Ok(parsed.to_string())
}

impl TryFrom<CreatePaymentRequest> for NewPayment {
    type Error = ApiError;

    fn try_from(r: CreatePaymentRequest) -> Result<NewPayment, ApiError> {
        let amount = Amount::new(r.amount).ok_or_else(|| {
            ApiError::invalid(
                "amount",
                "amount_invalid",
                format!(
                    "amount must be a whole number of minor units from 1 to {}.",
                    Amount::MAX
                ),
            )
        })?;
        let currency = Currency::parse(&r.currency).ok_or_else(|| {
            ApiError::invalid(
                "currency",
                "currency_invalid",
                format!("'{}' is not an ISO 4217 currency code.", r.currency),
            )
        })?;
        let provider = Provider::parse(&r.provider)?;
        let metadata: BTreeMap<String, String> =
            r.metadata.unwrap_or_default().into_iter().collect();
        if metadata.len() > 50
            || metadata
                .iter()
                .any(|(k, v)| k.is_empty() || k.len() > 40 || v.len() > 500)
        {
            return Err(ApiError::invalid(
                "metadata",
                "metadata_invalid",
                "metadata takes up to 50 keys of 1-40 characters with values up to 500.",
            ));
        }
        let card = match r.payment_method {
            None => None,
            Some(pm) if pm.method_type == "card" => {
                let card = pm.card.ok_or_else(|| {
                    ApiError::invalid(
                        "payment_method[card]",
                        "parameter_missing",
                        "A card payment method needs card details.",
                    )
                })?;
                Some(Card::try_from(card)?)
            }
            Some(pm) => {
                return Err(ApiError::invalid(
                    "payment_method[type]",
                    "payment_method_unsupported",
                    format!(
                        "Payment method type '{}' is not supported; use card.",
                        pm.method_type
                    ),
                ));
            }
        };
        let return_url = r
            .return_url
            .map(|u| http_url("return_url", &u))
            .transpose()?;
        require_for_provider(
            provider,
            currency,
            amount,
            r.customer.as_ref(),
            return_url.as_deref(),
            card.is_some(),
        )?;
        Ok(NewPayment {
            amount,
            currency,
            provider,
            reference: bounded("reference", r.reference, 255)?,
            description: bounded("description", r.description, 1000)?,
            customer: r.customer,
            return_url,
            metadata,
            card,
        })
    }
}

/// What each provider needs beyond the common fields, checked before anything is written.
fn require_for_provider(
    provider: Provider,
    currency: Currency,
    amount: Amount,
    customer: Option<&Customer>,
    return_url: Option<&str>,
    has_card: bool,
) -> Result<(), ApiError> {
    if has_card && provider != Provider::Simulated {
        return Err(ApiError::invalid(
            "payment_method",
            "payment_method_unsupported",
            "Test cards are for the simulated provider; real providers collect payment details on their checkout.",
        ));
    }
    let missing = |param: &str| {
        ApiError::invalid(
            param,
            "parameter_missing",
            format!("{param} is required for provider {}.", provider.as_str()),
        )
    };
    let email = customer
        .and_then(|c| c.email.as_deref())
        .filter(|e| !e.is_empty());
    match provider {
        Provider::Simulated | Provider::Stripe => Ok(()),
        Provider::Moneroo => {
            return_url.ok_or_else(|| missing("return_url"))?;
            email.ok_or_else(|| missing("customer[email]"))?;
            customer
                .and_then(|c| c.name.as_deref())
                .filter(|n| !n.trim().is_empty())
                .ok_or_else(|| missing("customer[name]"))?;
            if crate::providers::moneroo::to_major_units(amount.minor_units(), currency).is_none() {
                return Err(ApiError::invalid(
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
                return Err(ApiError::invalid(
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
pub fn parse_sandbox_outcome(outcome: &str) -> Result<PaymentStatus, ApiError> {
    match PaymentStatus::parse(outcome) {
        Some(
            s @ (PaymentStatus::Processing
            | PaymentStatus::Succeeded
            | PaymentStatus::Failed
            | PaymentStatus::Cancelled),
        ) => Ok(s),
        _ => Err(ApiError::invalid(
            "outcome",
            "outcome_invalid",
            "outcome must be processing, succeeded, failed or cancelled.",
        )),
    }
}

fn event_list(events: Vec<String>) -> Result<Vec<String>, ApiError> {
    if events.is_empty() {
        return Err(ApiError::invalid(
            "enabled_events",
            "parameter_missing",
            "enabled_events needs at least one event type, or \"*\".",
        ));
    }
    for e in &events {
        if e != "*" && EventType::parse(e).is_none() {
            return Err(ApiError::invalid(
                "enabled_events",
                "event_type_unknown",
                format!("Unknown event type '{e}'."),
            ));
        }
    }
    let mut events = events;
    events.sort();
    events.dedup();
    Ok(events)
}

pub struct NewEndpoint {
    pub url: String,
    pub enabled_events: Vec<String>,
    pub description: Option<String>,
}

impl NewEndpoint {
    /// What identifies the request for idempotency.
    pub fn fingerprint(&self) -> String {
        let canonical = serde_json::json!({
            "url": self.url,
            "enabled_events": self.enabled_events,
            "description": self.description,
        });
        crate::services::sha256_hex(canonical.to_string().as_bytes())
    }
}

impl TryFrom<CreateEndpointRequest> for NewEndpoint {
    type Error = ApiError;

    fn try_from(r: CreateEndpointRequest) -> Result<NewEndpoint, ApiError> {
        Ok(NewEndpoint {
            url: http_url("url", &r.url)?,
            enabled_events: event_list(r.enabled_events)?,
            description: bounded("description", r.description, 1000)?,
        })
    }
}

pub struct EndpointUpdate {
    pub url: Option<String>,
    pub enabled_events: Option<Vec<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
}

impl TryFrom<UpdateEndpointRequest> for EndpointUpdate {
    type Error = ApiError;

    fn try_from(r: UpdateEndpointRequest) -> Result<EndpointUpdate, ApiError> {
        let enabled = match r.status.as_deref() {
            None => None,
            Some("enabled") => Some(true),
            Some("disabled") => Some(false),
            Some(_) => {
                return Err(ApiError::invalid(
                    "status",
                    "status_invalid",
                    "status must be enabled or disabled.",
                ));
            }
        };
        Ok(EndpointUpdate {
            url: r.url.map(|u| http_url("url", &u)).transpose()?,
            enabled_events: r.enabled_events.map(event_list).transpose()?,
            description: bounded("description", r.description, 1000)?,
            enabled,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(number: &str, exp_year: u32, cvc: &str) -> CardInput {
        CardInput {
            number: number.into(),
            exp_month: 12,
            exp_year,
            cvc: cvc.into(),
        }
    }

    #[test]
    fn test_cards_map_to_their_outcomes() {
        let y = chrono::Utc::now().year() as u32 + 2;
        let ok = Card::try_from(card("4242 4242 4242 4242", y, "123"))
            .ok()
            .unwrap();
        assert_eq!(ok.outcome, CardOutcome::Succeeds);
        assert_eq!(
            (ok.summary.brand.as_str(), ok.summary.last4.as_str()),
            ("visa", "4242")
        );
        let declined = Card::try_from(card("4000000000000002", y, "123"))
            .ok()
            .unwrap();
        assert_eq!(
            declined.outcome,
            CardOutcome::Declined("card_declined", "Your card was declined.")
        );
        let funds = Card::try_from(card("4000000000009995", y, "123"))
            .ok()
            .unwrap();
        assert!(matches!(
            funds.outcome,
            CardOutcome::Declined("insufficient_funds", _)
        ));
    }

    #[test]
    fn bad_cards_are_refused() {
        let y = chrono::Utc::now().year() as u32 + 2;
        assert!(
            Card::try_from(card("4242424242424241", y, "123")).is_err(),
            "Luhn"
        );
        assert!(
            Card::try_from(card("4242424242424242", 2020, "123")).is_err(),
            "expired"
        );
        assert!(
            Card::try_from(card("4242424242424242", y, "12")).is_err(),
            "cvc"
        );
        assert!(
            Card::try_from(card("4242abcd42424242", y, "123")).is_err(),
            "digits"
        );
    }
}
