//! Request bodies → domain types (parse, don't validate). Each conversion either yields a
//! value the services can trust or a [`ValidationError`] naming the parameter; nothing has
//! been written when it fails.

use std::collections::{BTreeMap, HashMap};

use poem_openapi::types::MaybeUndefined;

use entity::money::{Amount, Currency};
use entity::status::{EndpointStatus, Provider};

use crate::core::error::{ValidationError, plain_text};
use crate::http::api::dto::{
    CreateEndpointRequest, CreatePaymentRequest, RecoverRequest, Text, UpdateEndpointRequest,
    UpdatePaymentRequest,
};
use crate::payments::cards::Card;
use crate::payments::validation::{
    NewPayment, PaymentUpdate, bounded, http_url, require_for_provider,
};
use crate::webhooks::endpoints::{EndpointUpdate, NewEndpoint, event_list};

impl TryFrom<CreatePaymentRequest> for NewPayment {
    type Error = ValidationError;

    fn try_from(r: CreatePaymentRequest) -> Result<NewPayment, ValidationError> {
        // `reference`, `description` and `return_url` are checked by `bounded` and `http_url`.
        if let Some(c) = &r.customer {
            for (param, value) in [
                ("customer[name]", &c.name),
                ("customer[email]", &c.email),
                ("customer[phone]", &c.phone),
            ] {
                value.as_deref().map(|v| plain_text(param, v)).transpose()?;
            }
        }
        for (k, v) in r.metadata.iter().flatten() {
            plain_text("metadata", k)?;
            plain_text(&format!("metadata[{k}]"), v)?;
        }
        let (amount, currency, provider) = money(r.amount, &r.currency, &r.provider)?;
        let metadata = metadata_map(r.metadata.unwrap_or_default())?;
        let card = match r.payment_method {
            None => None,
            Some(pm) if pm.method_type == "card" => {
                let card = pm.card.ok_or_else(|| {
                    ValidationError::new(
                        "payment_method[card]",
                        "parameter_missing",
                        "A card payment method needs card details.",
                    )
                })?;
                Some(Card::parse(
                    &card.number,
                    card.exp_month,
                    card.exp_year,
                    &card.cvc,
                )?)
            }
            Some(pm) => {
                return Err(ValidationError::new(
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
            reference: bounded("reference", strings(r.reference), 255)?,
            description: bounded("description", strings(r.description), 1000)?,
            customer: r.customer,
            return_url,
            metadata,
            card,
        })
    }
}

impl TryFrom<CreateEndpointRequest> for NewEndpoint {
    type Error = ValidationError;

    fn try_from(r: CreateEndpointRequest) -> Result<NewEndpoint, ValidationError> {
        Ok(NewEndpoint {
            url: http_url("url", &r.url)?,
            enabled_events: event_list(r.enabled_events.into_iter().map(String::from).collect())?,
            description: bounded("description", strings(r.description), 1000)?,
            max_concurrency: r
                .max_concurrency
                .map(|n| in_range("max_concurrency", n, MAX_CONCURRENCY))
                .transpose()?,
            rate_limit: r
                .rate_limit
                .map(|n| in_range("rate_limit", n, MAX_RATE_LIMIT))
                .transpose()?,
        })
    }
}

impl TryFrom<UpdateEndpointRequest> for EndpointUpdate {
    type Error = ValidationError;

    fn try_from(r: UpdateEndpointRequest) -> Result<EndpointUpdate, ValidationError> {
        let status = match r.status.as_deref() {
            None => None,
            Some(s) => Some(EndpointStatus::parse(s).ok_or_else(|| {
                ValidationError::new(
                    "status",
                    "status_invalid",
                    format!("status must be {}.", EndpointStatus::names()),
                )
            })?),
        };
        Ok(EndpointUpdate {
            url: r.url.map(|u| http_url("url", &u)).transpose()?,
            enabled_events: r
                .enabled_events
                .map(|e| event_list(e.into_iter().map(String::from).collect()))
                .transpose()?,
            description: bounded("description", strings(r.description), 1000)?,
            status,
            max_concurrency: optional_limit("max_concurrency", r.max_concurrency, MAX_CONCURRENCY)?,
            rate_limit: optional_limit("rate_limit", r.rate_limit, MAX_RATE_LIMIT)?,
        })
    }
}

/// The window of an endpoint's `recover`: `since` before `until`, neither in the future.
pub struct RecoverWindow {
    pub since: chrono::DateTime<chrono::Utc>,
    pub until: chrono::DateTime<chrono::Utc>,
}

impl TryFrom<RecoverRequest> for RecoverWindow {
    type Error = ValidationError;

    fn try_from(r: RecoverRequest) -> Result<RecoverWindow, ValidationError> {
        let now = chrono::Utc::now();
        let time = |field: &'static str, text: &str| {
            chrono::DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| {
                    ValidationError::new(
                        field,
                        "parameter_invalid_timestamp",
                        format!("{field} must be an RFC 3339 time, like 2026-11-23T10:00:00Z."),
                    )
                })
        };
        let since = time("since", &r.since)?;
        let until = match r.until.as_deref() {
            Some(text) => time("until", text)?.min(now),
            None => now,
        };
        if since >= until {
            return Err(ValidationError::new(
                "since",
                "parameter_out_of_range",
                "since must be before until and in the past.",
            ));
        }
        Ok(RecoverWindow { since, until })
    }
}

/// The most requests one worker may keep in flight to one endpoint.
const MAX_CONCURRENCY: i32 = 100;
/// The highest per-endpoint rate limit, in requests per second.
const MAX_RATE_LIMIT: i32 = 10_000;

fn in_range(field: &'static str, n: i32, max: i32) -> Result<i32, ValidationError> {
    if (1..=max).contains(&n) {
        Ok(n)
    } else {
        Err(ValidationError::new(
            field,
            "parameter_out_of_range",
            format!("{field} must be between 1 and {max}."),
        ))
    }
}

/// A PATCH field that may be absent (unchanged), `null` (back to the default) or a number.
fn optional_limit(
    field: &'static str,
    value: poem_openapi::types::MaybeUndefined<i32>,
    max: i32,
) -> Result<Option<Option<i32>>, ValidationError> {
    use poem_openapi::types::MaybeUndefined as M;
    match value {
        M::Undefined => Ok(None),
        M::Null => Ok(Some(None)),
        M::Value(n) => in_range(field, n, max).map(|n| Some(Some(n))),
    }
}

/// An optional strict string as the plain string the validators take.
fn strings(t: Option<Text>) -> Option<String> {
    t.map(String::from)
}

/// The most metadata keys a payment holds.
const METADATA_KEYS: usize = 50;

fn metadata_invalid() -> ValidationError {
    ValidationError::new(
        "metadata",
        "metadata_invalid",
        "metadata takes up to 50 keys of 1-40 characters with values up to 500.",
    )
}

/// Metadata as sent (strings only) as stored, within its bounds; `""` values are kept (on a
/// PATCH they mean "remove this key").
/// The fields of every request that moves money: a positive amount in minor units, an ISO
/// 4217 currency and a known provider.
pub(super) fn money(
    amount: i64,
    currency: &str,
    provider: &str,
) -> Result<(Amount, Currency, Provider), ValidationError> {
    plain_text("currency", currency)?;
    plain_text("provider", provider)?;
    let amount = Amount::new(amount).ok_or_else(|| {
        ValidationError::new(
            "amount",
            "amount_invalid",
            format!(
                "amount must be a whole number of minor units from 1 to {}.",
                Amount::MAX
            ),
        )
    })?;
    let currency = Currency::parse(currency).ok_or_else(|| {
        ValidationError::new(
            "currency",
            "currency_invalid",
            format!("'{}' is not an ISO 4217 currency code.", currency),
        )
    })?;
    let provider = Provider::parse(provider).ok_or_else(|| {
        ValidationError::new(
            "provider",
            "provider_unknown",
            format!(
                "Unknown provider '{}': use {}.",
                provider,
                Provider::names()
            ),
        )
    })?;
    Ok((amount, currency, provider))
}

pub(super) fn metadata_map(
    sent: HashMap<String, Text>,
) -> Result<BTreeMap<String, String>, ValidationError> {
    let metadata: BTreeMap<String, String> = sent
        .into_iter()
        .map(|(k, v)| (k, v.into_string()))
        .collect();
    if metadata.len() > METADATA_KEYS
        || metadata
            .iter()
            .any(|(k, v)| k.is_empty() || k.len() > 40 || v.len() > 500)
    {
        return Err(metadata_invalid());
    }
    Ok(metadata)
}

impl TryFrom<UpdatePaymentRequest> for PaymentUpdate {
    type Error = ValidationError;

    fn try_from(r: UpdatePaymentRequest) -> Result<PaymentUpdate, ValidationError> {
        for (k, v) in r.metadata.iter().flatten() {
            plain_text("metadata", k)?;
            plain_text(&format!("metadata[{k}]"), v)?;
        }
        let description = match r.description {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(d) => Some(bounded("description", Some(d.into_string()), 1000)?),
        };
        Ok(PaymentUpdate {
            description,
            metadata: r.metadata.map(metadata_map).transpose()?,
        })
    }
}

impl PaymentUpdate {
    /// `current` metadata with this update's keys set, and those given `""` removed; refused
    /// if the result holds more than 50 keys.
    pub fn merged_metadata(
        &self,
        current: &serde_json::Value,
    ) -> Result<Option<serde_json::Value>, ValidationError> {
        let Some(changes) = &self.metadata else {
            return Ok(None);
        };
        let mut merged: serde_json::Map<String, serde_json::Value> =
            current.as_object().cloned().unwrap_or_default();
        for (k, v) in changes {
            if v.is_empty() {
                merged.remove(k);
            } else {
                merged.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
        if merged.len() > METADATA_KEYS {
            return Err(metadata_invalid());
        }
        Ok(Some(serde_json::Value::Object(merged)))
    }
}
