//! `/v1/payments` and the sandbox completion.

use entity::ids::{PaymentId, Scope};
use entity::payment_status::PaymentStatus;
use entity::status::{Provider, RefundStatus};
use poem::Request;
use poem::web::Data;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::{ApiTags, path_id, request_id, valid_idempotency_key};
use crate::core::error::OrNotFound;
use crate::core::pagination::{CreatedRange, Page};
use crate::http::api::auth::ApiKey;
use crate::http::api::dto::{
    CompleteSandboxPayment, CreatePaymentRequest, CreateRefundRequest, Payment, PaymentList,
    Refund, RefundList, UpdatePaymentRequest,
};
use crate::http::api::error::ApiError;
use crate::http::state::AppState;
use crate::payments::validation::{NewPayment, PaymentUpdate, parse_sandbox_outcome};
use crate::payments::{creation, refunds, service as payments};

#[derive(Default)]
pub struct PaymentsApi;

/// The merchant's payment named by a path parameter, or a 404 naming it.
async fn merchant_payment(
    state: &AppState,
    scope: &Scope,
    raw_id: &str,
) -> Result<entity::payments::Model, ApiError> {
    let id = path_id::<PaymentId>(raw_id, "payment")?;
    Ok(payments::get(&state.db, scope, &id)
        .await?
        .or_not_found("payment", raw_id)?)
}

#[derive(ApiResponse)]
pub enum CreatedPayment {
    /// The payment. `Idempotent-Replayed: true` when this is the stored first response.
    #[oai(status = 201)]
    Created(
        Json<Payment>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum CreatedRefund {
    /// The refund. `Idempotent-Replayed: true` when this is the stored first response.
    #[oai(status = 201)]
    Created(
        Json<Refund>,
        #[oai(header = "Idempotent-Replayed")] Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum RecentPayments {
    /// The latest payments; `X-Cache: hit` when served from the cache.
    #[oai(status = 200)]
    Ok(Json<PaymentList>, #[oai(header = "X-Cache")] String),
}

#[OpenApi(prefix_path = "/v1", tag = "ApiTags::Payments")]
impl PaymentsApi {
    /// Create a payment
    ///
    /// Creates a payment with the provider you name and returns it with its `checkout_url`.
    /// Send an `Idempotency-Key`: a retry with the same key and body returns the first answer
    /// instead of a second payment. A `payment.pending` event follows.
    #[oai(path = "/payments", method = "post", operation_id = "create_payment")]
    async fn create(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        req: &Request,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: Json<CreatePaymentRequest>,
    ) -> Result<CreatedPayment, ApiError> {
        let key = valid_idempotency_key(idempotency_key.0.as_deref())?;
        let new = NewPayment::try_from(body.0)?;
        let rid = request_id(req);
        if let Err(exceeded) = state
            .quotas
            .admit(
                &state.db,
                &state.cache,
                &merchant.merchant_id,
                runtime::usage::metric::PAYMENTS_CREATED,
            )
            .await
        {
            // A retry of a payment already made still gets its answer back.
            let replay = match key {
                Some(k) => {
                    crate::core::idempotency::exists(&state.db, &merchant.scope(), k).await?
                }
                None => false,
            };
            if !replay {
                let slot = req.extensions().get::<crate::http::request::MerchantSlot>();
                return Err(crate::http::api::auth::refuse_quota(
                    &state, slot, &exceeded,
                ));
            }
        }
        let created = creation::create(
            &state.payment_deps(),
            &merchant,
            new,
            key,
            rid.as_deref(),
            &state.public_url,
        )
        .await?;
        let created = state.effects.apply(created, rid.as_deref()).await;
        let p = &created.payment;
        if p.failure_code.as_deref() == Some("provider_error") {
            return Err(ApiError::provider_failed(
                p.provider.as_str(),
                &p.id,
                p.failure_message.as_deref(),
                "The payment",
            ));
        }
        Ok(CreatedPayment::Created(
            Json(created.payment),
            created.replayed.then(|| "true".to_string()),
        ))
    }

    /// List payments, newest first
    ///
    /// Your payments, newest first. Filter by `status`, `reference` and `created[gte|lte]`;
    /// page with `limit`, `starting_after` and `ending_before`.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/payments", method = "get", operation_id = "list_payments")]
    async fn list(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        limit: Query<Option<i64>>,
        starting_after: Query<Option<String>>,
        ending_before: Query<Option<String>>,
        /// Only payments in this status.
        status: Query<Option<String>>,
        /// Only payments with this reference.
        reference: Query<Option<String>>,
        /// Only payments created at or after this time (Unix seconds or RFC 3339).
        #[oai(name = "created[gte]")]
        created_gte: Query<Option<String>>,
        /// Only payments created at or before this time (Unix seconds or RFC 3339).
        #[oai(name = "created[lte]")]
        created_lte: Query<Option<String>>,
    ) -> Result<Json<PaymentList>, ApiError> {
        let page = Page::new(limit.0, starting_after.0, ending_before.0)?;
        let created = CreatedRange::parse(created_gte.0.as_deref(), created_lte.0.as_deref())?;
        let status = match status.0.as_deref() {
            None => None,
            Some(s) => Some(PaymentStatus::parse(s).ok_or_else(|| {
                ApiError::invalid(
                    "status",
                    "status_invalid",
                    format!("Unknown payment status '{s}'."),
                )
            })?),
        };
        // A reference longer than any stored one is a mistake, not an empty result.
        let reference = crate::payments::validation::bounded("reference", reference.0, 255)?;
        let (rows, has_more) = payments::list(
            &state.db,
            &merchant.scope(),
            status,
            reference.as_deref(),
            &created,
            &page,
        )
        .await?;
        Ok(Json(PaymentList {
            object: crate::core::object_names::ListName::default(),
            data: rows.iter().map(Payment::from).collect(),
            has_more,
        }))
    }

    /// The latest payments (served from the cache)
    ///
    /// Your latest payments, served from the cache (`X-Cache: hit`) for a short while after
    /// they change; use `GET /v1/payments` for an exact list.
    #[oai(
        path = "/payments/recent",
        method = "get",
        operation_id = "recent_payments"
    )]
    async fn recent(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
    ) -> Result<RecentPayments, ApiError> {
        let (data, hit) = payments::recent(&state.db, &state.cache, &merchant.scope()).await?;
        Ok(RecentPayments::Ok(
            Json(PaymentList {
                object: crate::core::object_names::ListName::default(),
                data,
                has_more: false,
            }),
            if hit { "hit" } else { "miss" }.to_string(),
        ))
    }

    /// Retrieve a payment
    ///
    /// The payment as it is now, with its status, amounts (in minor units), provider reference
    /// and failure, if any.
    #[oai(path = "/payments/:id", method = "get", operation_id = "get_payment")]
    async fn get(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<Payment>, ApiError> {
        let p = merchant_payment(&state, &merchant.scope(), &id.0).await?;
        Ok(Json(Payment::from(&p)))
    }

    /// Update a payment's description or metadata
    ///
    /// Only the merchant's own notes change: `description` (or `null` to clear it) and
    /// `metadata` (merged; a key given `""` is removed). Amount, currency and status cannot.
    #[oai(
        path = "/payments/:id",
        method = "patch",
        operation_id = "update_payment"
    )]
    async fn update(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        body: Json<UpdatePaymentRequest>,
    ) -> Result<Json<Payment>, ApiError> {
        let change = PaymentUpdate::try_from(body.0)?;
        let payment_id = path_id::<PaymentId>(&id.0, "payment")?;
        let updated = payments::update(&state.db, &merchant.scope(), &payment_id, &change).await?;
        let p = state.effects.apply(updated, None).await;
        Ok(Json(Payment::from(&p)))
    }

    /// Cancel a pending or processing payment
    ///
    /// Cancels a `pending` or `processing` payment at its provider first; a final payment
    /// answers 409 and nothing changes. A `payment.cancelled` event follows.
    #[oai(
        path = "/payments/:id/cancel",
        method = "post",
        operation_id = "cancel_payment"
    )]
    async fn cancel(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        req: &Request,
        id: Path<String>,
    ) -> Result<Json<Payment>, ApiError> {
        let rid = request_id(req);
        let cancelled = payments::cancel(
            &state.db,
            &state.providers,
            &merchant.scope(),
            &path_id::<PaymentId>(&id.0, "payment")?,
            rid.as_deref(),
        )
        .await?;
        let p = state.effects.apply(cancelled, rid.as_deref()).await;
        Ok(Json(Payment::from(&p)))
    }

    /// Refund a succeeded payment, fully or in part
    ///
    /// Stripe and the simulated provider only (others answer 422 `refund_not_supported`).
    /// A partial refund keeps the payment `succeeded` and raises `amount_refunded`; the refund
    /// that leaves nothing moves it to `refunded` with a `payment.refunded` event.
    #[oai(
        path = "/payments/:id/refunds",
        method = "post",
        operation_id = "create_refund"
    )]
    async fn refund(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        #[oai(name = "Idempotency-Key")] idempotency_key: Header<Option<String>>,
        body: Json<CreateRefundRequest>,
    ) -> Result<CreatedRefund, ApiError> {
        let key = valid_idempotency_key(idempotency_key.0.as_deref())?;
        let outcome = refunds::create(
            &state.db,
            &state.providers,
            &merchant.scope(),
            &path_id::<PaymentId>(&id.0, "payment")?,
            refunds::Asked {
                amount: body.0.amount,
                reason: body.0.reason,
            },
            key,
        )
        .await?;
        let outcome = state.effects.apply(outcome, None).await;
        if outcome.value.status == RefundStatus::Failed {
            let p = merchant_payment(&state, &merchant.scope(), &id.0).await?;
            return Err(ApiError::provider_failed(
                p.provider.as_str(),
                &p.id,
                outcome.value.failure_message.as_deref(),
                &format!("The refund {}", outcome.value.id),
            ));
        }
        Ok(CreatedRefund::Created(
            Json(outcome.value),
            outcome.replayed.then(|| "true".to_string()),
        ))
    }

    /// List a payment's refunds, newest first
    ///
    /// The payment's refunds, newest first, each with its own amount and status.
    #[oai(
        path = "/payments/:id/refunds",
        method = "get",
        operation_id = "list_refunds"
    )]
    async fn refunds(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
    ) -> Result<Json<RefundList>, ApiError> {
        merchant_payment(&state, &merchant.scope(), &id.0).await?;
        let rows = refunds::list(
            &state.db,
            &merchant.scope(),
            &path_id::<PaymentId>(&id.0, "payment")?,
        )
        .await?;
        Ok(Json(RefundList {
            object: crate::core::object_names::ListName::default(),
            data: rows.iter().map(Refund::from).collect(),
            has_more: false,
        }))
    }

    /// Make the simulated provider finish a payment (sandbox keys only)
    ///
    /// The simulated provider sends its signed webhook, which takes the same path as a real
    /// provider's: signature check, dedupe, status machine, event. Asking again for the
    /// outcome the payment already has answers the payment (a retry after a lost answer);
    /// another final outcome is a 409.
    #[oai(
        path = "/sandbox/payments/:id/complete",
        method = "post",
        operation_id = "complete_sandbox_payment",
        tag = "ApiTags::Sandbox"
    )]
    async fn complete(
        &self,
        ApiKey(merchant): ApiKey,
        state: Data<&AppState>,
        id: Path<String>,
        body: Json<CompleteSandboxPayment>,
    ) -> Result<Json<Payment>, ApiError> {
        if merchant.livemode {
            return Err(ApiError::forbidden(
                "sandbox_only",
                "Sandbox completion needs a sandbox (sk_test_) key.",
            ));
        }
        let outcome = parse_sandbox_outcome(&body.0.outcome)?;
        let payment = merchant_payment(&state, &merchant.scope(), &id.0).await?;
        if payment.provider != Provider::Simulated {
            return Err(ApiError::invalid(
                "id",
                "not_simulated",
                "Only payments with provider simulated can be completed here.",
            ));
        }
        // A retry after a lost answer gets that answer: the payment already ended this way.
        if payment.status == outcome {
            return Ok(Json(Payment::from(&payment)));
        }
        if payment.status.transition(outcome).is_err() {
            return Err(ApiError::conflict(
                "payment_not_completable",
                format!("A {} payment cannot become {}.", payment.status, outcome),
            ));
        }
        let (raw, signature) = state.simulated.event_for(&payment.id, outcome);
        state.inbound.receive_simulated(&signature, &raw).await?;
        let p = merchant_payment(&state, &merchant.scope(), &id.0).await?;
        Ok(Json(Payment::from(&p)))
    }
}
