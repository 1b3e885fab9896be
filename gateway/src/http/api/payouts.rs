//! `/v1/payouts`: sending money from your balance (see `crate::payouts`), and the sandbox's
//! completion of simulated payouts.

use std::collections::HashMap;

use entity::ids::PayoutId;
use entity::status::{PayoutStatus, Provider};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::{ApiTags, path_id, request_id, valid_idempotency_key};
use crate::core::error::{ServiceError, ValidationError, plain_text};
use crate::core::pagination::Page;
use crate::http::api::auth::ApiKey;
use crate::http::api::dto::Text;
use crate::http::api::error::ApiError;
use crate::http::api::requests::{metadata_map, money};
use crate::http::state::AppState;
use crate::payments::validation::bounded;
use crate::payouts::{self, Destination, NewPayout, Payout, PayoutDestination};

#[derive(Default)]
pub struct PayoutsApi;

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CreatePayoutRequest {
    /// In the currency's minor unit, at least 1; at most the available balance.
    pub amount: i64,
    /// ISO 4217 code.
    pub currency: Text,
    /// `moneroo`, or `simulated` (test mode).
    pub provider: Text,
    pub destination: PayoutDestination,
    /// Your own reference (up to 255 characters).
    pub reference: Option<Text>,
    /// Up to 50 keys of your own.
    pub metadata: Option<HashMap<String, Text>>,
}

#[derive(Object)]
pub struct PayoutList {
    pub object: crate::core::object_names::ListName,
    pub data: Vec<Payout>,
    pub has_more: bool,
}

#[derive(Object)]
#[oai(deny_unknown_fields)]
pub struct CompletePayoutRequest {
    /// `succeeded` or `failed`.
    pub outcome: Text,
}

#[derive(ApiResponse)]
pub enum CreatedPayout {
    #[oai(status = 201)]
    Created(
        Json<Payout>,
        /// `true` when this answer is a replay of the first request with this key.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
}

fn text(v: Option<&Text>) -> Option<String> {
    v.map(|t| t.0.trim().to_string()).filter(|t| !t.is_empty())
}

impl TryFrom<PayoutDestination> for Destination {
    type Error = ValidationError;

    fn try_from(d: PayoutDestination) -> Result<Destination, ValidationError> {
        let required = |param: &str, value: Option<String>| {
            value.ok_or_else(|| {
                ValidationError::new(
                    param,
                    "parameter_missing",
                    format!("{param} is required for this destination type."),
                )
            })
        };
        for (param, value) in [
            ("destination[phone]", &d.phone),
            ("destination[operator]", &d.operator),
            ("destination[account_number]", &d.account_number),
            ("destination[bank_code]", &d.bank_code),
            ("destination[holder_name]", &d.holder_name),
        ] {
            bounded(param, value.as_ref().map(|t| t.0.clone()), 100)?;
        }
        match d.kind.0.as_str() {
            "mobile_money" => {
                let phone = required("destination[phone]", text(d.phone.as_ref()))?;
                if !(8..=15).contains(&phone.len()) || !phone.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ValidationError::new(
                        "destination[phone]",
                        "phone_invalid",
                        "destination[phone] is 8 to 15 digits, country code first.",
                    ));
                }
                Ok(Destination::MobileMoney {
                    phone,
                    operator: required("destination[operator]", text(d.operator.as_ref()))?,
                })
            }
            "bank_account" => Ok(Destination::BankAccount {
                account_number: required(
                    "destination[account_number]",
                    text(d.account_number.as_ref()),
                )?,
                bank_code: required("destination[bank_code]", text(d.bank_code.as_ref()))?,
                holder_name: required("destination[holder_name]", text(d.holder_name.as_ref()))?,
            }),
            _ => Err(ValidationError::new(
                "destination[type]",
                "destination_type_invalid",
                "destination[type] is mobile_money or bank_account.",
            )),
        }
    }
}

impl TryFrom<CreatePayoutRequest> for NewPayout {
    type Error = ValidationError;

    fn try_from(r: CreatePayoutRequest) -> Result<NewPayout, ValidationError> {
        let (amount, currency, provider) = money(r.amount, &r.currency, &r.provider)?;
        for (k, v) in r.metadata.iter().flatten() {
            plain_text("metadata", k)?;
            plain_text(&format!("metadata[{k}]"), v)?;
        }
        let metadata = metadata_map(r.metadata.unwrap_or_default())?;
        let destination = Destination::try_from(r.destination)?;
        payouts::check_provider(provider, &destination)?;
        Ok(NewPayout {
            amount: amount.minor_units(),
            currency: currency.code().to_string(),
            provider,
            destination,
            reference: bounded("reference", text(r.reference.as_ref()), 255)?,
            metadata,
        })
    }
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Payouts")]
impl PayoutsApi {
    /// Send money from your balance
    ///
    /// Pays `amount` out of your available balance in `currency` (see `GET /v1/balance`) to
    /// a mobile money wallet or a bank account, through a provider whose credentials are of
    /// your key's mode (422 `livemode_mismatch` otherwise). A payout that does not fit is
    /// refused with 422 `balance_insufficient` and nothing is recorded. It
    /// starts `pending`, is `processing` once the provider has it, and ends `succeeded` or
    /// `failed` (then its amount is available again); each step sends a `payout.*` event.
    /// If the provider's answer is lost (a timeout), it is answered still `pending`, its
    /// amount held: it is never sent twice, and moves on once the provider confirms it.
    #[oai(path = "/payouts", method = "post", operation_id = "create_payout")]
    async fn create(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        req: &Request,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: Json<CreatePayoutRequest>,
    ) -> Result<CreatedPayout, ApiError> {
        let key = valid_idempotency_key(idempotency_key.0.as_deref())?;
        let new = NewPayout::try_from(body.0)?;
        let rid = request_id(req);
        let created = payouts::create(
            &state.db,
            &state.providers,
            &merchant.scope(),
            new,
            key,
            rid.as_deref(),
        )
        .await?;
        let created = state.effects.apply(created, rid.as_deref()).await;
        Ok(CreatedPayout::Created(
            Json(Payout::from(&created.payout)),
            created.replayed.then(|| "true".to_string()),
        ))
    }

    /// List payouts
    ///
    /// Your payouts, newest first.
    #[oai(path = "/payouts", method = "get", operation_id = "list_payouts")]
    async fn list(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        /// How many payouts to return: 1 to 100 (default 10).
        limit: Query<Option<i64>>,
        /// A cursor: the id of the last payout of the previous page.
        starting_after: Query<Option<String>>,
        /// A cursor: the id of the first payout of the previous page.
        ending_before: Query<Option<String>>,
    ) -> Result<Json<PayoutList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let (rows, has_more) = payouts::list(&state.db, &merchant.scope(), &page).await?;
        Ok(Json(PayoutList {
            object: crate::core::object_names::ListName::default(),
            data: rows.iter().map(Payout::from).collect(),
            has_more,
        }))
    }

    /// Retrieve a payout
    ///
    /// One of your payouts, as it stands now.
    #[oai(path = "/payouts/:id", method = "get", operation_id = "get_payout")]
    async fn get(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<Payout>, ApiError> {
        let payout_id = path_id::<PayoutId>(&id.0, "payout")?;
        let p = payouts::get(&state.db, &merchant.scope(), &payout_id)
            .await?
            .ok_or_else(|| ApiError::not_found("payout", &id.0))?;
        Ok(Json(Payout::from(&p)))
    }

    /// Complete a simulated payout (sandbox)
    ///
    /// Ends a `processing` payout of the simulated provider as `succeeded` or `failed`, as a
    /// provider would; any other payout is a 409.
    #[oai(
        path = "/sandbox/payouts/:id/complete",
        method = "post",
        operation_id = "complete_sandbox_payout"
    )]
    async fn complete(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        body: Json<CompletePayoutRequest>,
    ) -> Result<Json<Payout>, ApiError> {
        let payout_id = path_id::<PayoutId>(&id.0, "payout")?;
        let to = PayoutStatus::parse(&body.0.outcome.0)
            .filter(|s| payouts::SANDBOX_PAYOUT_OUTCOMES.contains(s))
            .ok_or_else(|| {
                ApiError::invalid(
                    "outcome",
                    "outcome_invalid",
                    "outcome is succeeded or failed.",
                )
            })?;
        let p = payouts::get(&state.db, &merchant.scope(), &payout_id)
            .await?
            .ok_or_else(|| ApiError::not_found("payout", &id.0))?;
        // A retry after a lost answer gets that answer: the payout already ended this way.
        if p.provider == Provider::Simulated && p.status == to {
            return Ok(Json(Payout::from(&p)));
        }
        if p.provider != Provider::Simulated || p.status != PayoutStatus::Processing {
            return Err(ServiceError::state(
                "payout_not_completable",
                format!(
                    "Only a processing payout of the simulated provider can be completed; this one is a {} {} payout.",
                    p.status, p.provider
                ),
            )
            .into());
        }
        let failure = (to == PayoutStatus::Failed).then_some(payouts::Failure {
            code: "payout_failed",
            message: "The simulated provider failed the payout.",
        });
        let moved = payouts::move_to(&state.db, &payout_id, to, None, failure).await?;
        let current = state.effects.apply(moved, None).await.unwrap_or(p);
        Ok(Json(Payout::from(&current)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn destination(kind: &str) -> PayoutDestination {
        let t = |s: &str| Some(Text(s.to_string()));
        PayoutDestination {
            kind: Text(kind.to_string()),
            phone: t("22951345020"),
            operator: t("mtn_bj"),
            account_number: t("0001"),
            bank_code: t("BK1"),
            holder_name: t("Ada"),
        }
    }

    /// The spec's enums are these lists: each value listed is one the request parsing takes,
    /// and each provider listed makes payouts (to some destination); the others do not.
    #[test]
    fn the_listed_destination_types_and_payout_providers_are_the_accepted_ones() {
        for kind in payouts::DESTINATION_TYPES {
            assert!(Destination::try_from(destination(kind)).is_ok(), "{kind}");
        }
        assert!(Destination::try_from(destination("cheque")).is_err());
        let wallet = Destination::try_from(destination("mobile_money")).expect("parses");
        for provider in Provider::ALL {
            assert_eq!(
                payouts::check_provider(*provider, &wallet).is_ok(),
                payouts::PAYOUT_PROVIDERS.contains(provider),
                "{provider}"
            );
        }
    }
}
