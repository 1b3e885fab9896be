//! Refunds (`re_…`) of succeeded payments, full or partial, never more than what is left.
//!
//! Step one locks the payment and reserves the amount as a `pending` refund (in-flight
//! refunds count against what is left, so two concurrent refunds cannot exceed the payment);
//! the provider is then called outside any transaction; step two records the result, raises
//! `amount_refunded`, and moves the payment to `refunded` with its event when nothing is left.

use chrono::Utc;
use entity::event::EventType;
use entity::ids::{PaymentId, RefundId, Scope};
use entity::payment_status::PaymentStatus;
use entity::{payments, refunds};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};

use super::service::{lock, raise_refunded};
use crate::core::effects::{Committed, Fact};
use crate::core::idempotency::{Begun, Idempotent, Outcome};
use entity::status::{Provider, RefundReason, RefundStatus};

use super::objects::Refund;
use crate::core::error::{OrNotFound, ServiceError, ValidationError};
use crate::providers::{ProviderError, Providers};
use crate::webhooks::events;

/// Providers with a refund API.
fn supports_refunds(provider: Provider) -> bool {
    matches!(provider, Provider::Simulated | Provider::Stripe)
}

/// What a merchant asks of a refund.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    /// Minor units; everything left to refund when `None`.
    pub amount: Option<i64>,
    pub reason: Option<RefundReason>,
}

impl Asked {
    /// What an idempotency key's retry must repeat. Without a reason it is what it was before
    /// reasons existed, so keys stored then still match their retries.
    fn fingerprint(&self, payment_id: &PaymentId) -> String {
        let Asked { amount, reason } = self;
        let text = match reason {
            None => format!("{payment_id}:{amount:?}"),
            Some(reason) => format!("{payment_id}:{amount:?}:{reason}"),
        };
        entity::signature::sha256_hex(text.as_bytes())
    }
}

pub async fn create(
    db: &DatabaseConnection,
    providers: &Providers,
    scope: &Scope,
    payment_id: &PaymentId,
    asked: Asked,
    idempotency_key: Option<&str>,
) -> Result<Committed<Outcome<Refund>>, ServiceError> {
    let request = Idempotent {
        scope,
        key: idempotency_key,
        operation: "POST /v1/payments/{id}/refunds",
        fingerprint: asked.fingerprint(payment_id),
    };
    if let Begun::Replay(value) = request.begin::<Refund>(db).await? {
        return Ok(Committed::nothing(Outcome {
            value,
            replayed: true,
        }));
    }
    let reserved = reserve(
        db,
        providers,
        scope,
        payment_id,
        asked,
        request.provider_key(),
    )
    .await;
    let (payment, refund) = match reserved {
        Ok(r) => r,
        Err(e) => {
            request.release(db).await;
            return Err(e);
        }
    };
    let result = send(providers, &payment, &refund).await;
    // The refund's event always; the payment's move too when this refund emptied it.
    let mut facts = vec![Fact::Events(scope.clone())];
    let value = request
        .finish(
            db,
            async |txn: &DatabaseTransaction| -> Result<Refund, DbErr> {
                let (refund, fact) = settle(txn, refund, result).await?;
                facts.extend(fact);
                Ok(refund)
            },
        )
        .await?;
    Ok(Committed::new(
        Outcome {
            value,
            replayed: false,
        },
        facts,
    ))
}

/// Asks the provider for the refund, under the key it was reserved with.
async fn send(
    providers: &Providers,
    payment: &payments::Model,
    refund: &refunds::Model,
) -> Result<String, ProviderError> {
    if payment.provider == Provider::Simulated {
        return Ok(format!("sim_{}", refund.id));
    }
    let key = refund.provider_key.as_deref().unwrap_or(refund.id.as_str());
    providers
        .refund(payment, key, refund.amount, refund.reason)
        .await
}

/// How long a refund may stay `pending` before the poller settles it: longer than any request
/// can take (provider calls time out well before), so a live request's refund is never asked
/// about twice.
pub const PENDING_REFUND_STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Settles refunds left `pending` for longer than `older_than` (the process that reserved
/// them died before it recorded the provider's answer): asks the provider again with the same
/// idempotency key, which answers with the refund it made (or makes it now, once), and
/// records that. Returns how many were settled.
pub async fn reconcile_pending(
    db: &DatabaseConnection,
    providers: &Providers,
    older_than: std::time::Duration,
) -> Result<Committed<usize>, DbErr> {
    let before = Utc::now() - chrono::Duration::from_std(older_than).unwrap_or_default();
    let stuck = refunds::Entity::find()
        .filter(refunds::Column::Status.eq(RefundStatus::Pending))
        .filter(refunds::Column::UpdatedAt.lt(before))
        .order_by_asc(refunds::Column::UpdatedAt)
        .limit(50)
        .all(db)
        .await?;
    let mut settled = 0;
    let mut facts = Vec::new();
    for refund in stuck {
        let Some(payment) = payments::Entity::find_by_id(refund.payment_id.clone())
            .one(db)
            .await?
        else {
            continue;
        };
        let result = send(providers, &payment, &refund).await;
        if matches!(&result, Err(e) if e.is_transient()) {
            // The provider did not answer: try again on the next pass.
            continue;
        }
        let txn = db.begin().await?;
        let (_, fact) = settle(&txn, refund, result).await?;
        txn.commit().await?;
        facts.push(Fact::Events(payment.scope()));
        facts.extend(fact);
        settled += 1;
    }
    Ok(Committed::new(settled, facts))
}

async fn reserve(
    db: &DatabaseConnection,
    providers: &Providers,
    scope: &Scope,
    payment_id: &PaymentId,
    asked: Asked,
    provider_key: Option<String>,
) -> Result<(payments::Model, refunds::Model), ServiceError> {
    let txn = db.begin().await?;
    let payment = lock(&txn, scope, payment_id)
        .await?
        .or_not_found("payment", payment_id)?;
    if let Some(key) = &provider_key
        && let Some(started) = refunds::Entity::find()
            .filter(refunds::Column::ProviderKey.eq(key.as_str()))
            .one(&txn)
            .await?
    {
        // A retry of a request whose first try died after reserving: carry on with that
        // refund rather than reserve the amount twice.
        return Ok((payment, started));
    }
    if !supports_refunds(payment.provider) {
        return Err(ValidationError::new(
            "id",
            "refund_not_supported",
            format!("The provider {} has no refund API.", payment.provider),
        )
        .into());
    }
    // A refund goes through credentials of the payment's own mode, or not at all.
    if let Err(e) = providers.check_mode(payment.provider, payment.livemode) {
        return Err(e.into());
    }
    if payment.status != PaymentStatus::Succeeded {
        return Err(ServiceError::state(
            "payment_not_refundable",
            format!(
                "A {} payment cannot be refunded; only succeeded ones can.",
                payment.status
            ),
        ));
    }
    let in_flight: i64 = refunds::Entity::find()
        .filter(refunds::Column::PaymentId.eq(payment_id))
        .filter(refunds::Column::Status.eq(RefundStatus::Pending))
        .all(&txn)
        .await?
        .iter()
        .map(|r| r.amount)
        .sum();
    let left = payment.amount - payment.amount_refunded - in_flight;
    let requested = asked.amount.unwrap_or(left);
    if left <= 0 {
        return Err(ServiceError::state(
            "payment_fully_refunded",
            "Nothing is left to refund on this payment.",
        ));
    }
    if requested < 1 || requested > left {
        return Err(ValidationError::new(
            "amount",
            "amount_too_large",
            format!("amount must be between 1 and {left}, what is left to refund."),
        )
        .into());
    }
    let now = Utc::now();
    let id = RefundId::generate();
    let refund = refunds::Entity::insert(refunds::ActiveModel {
        provider_key: Set(Some(provider_key.unwrap_or_else(|| id.to_string()))),
        id: Set(id),
        merchant_id: Set(scope.merchant_id.clone()),
        livemode: Set(scope.livemode),
        payment_id: Set(payment_id.clone()),
        amount: Set(requested),
        status: Set(RefundStatus::Pending),
        provider_reference: Set(None),
        failure_message: Set(None),
        reason: Set(asked.reason),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(&txn)
    .await?;
    // Its amount leaves the balance now, or the refund is refused (and nothing is written).
    crate::ledger::reserve_refund(&txn, &refund, &payment.currency).await?;
    refund_event(&txn, &refund, EventType::RefundCreated).await?;
    txn.commit().await?;
    Ok((payment, refund))
}

/// A refund's event, in the transaction that changed it; `data` is the refund as the API
/// shows it (partial refunds carry their own amount).
async fn refund_event<C: ConnectionTrait>(
    txn: &C,
    refund: &refunds::Model,
    event_type: EventType,
) -> Result<(), DbErr> {
    let data = serde_json::to_value(Refund::from(refund))
        .map_err(|e| DbErr::Custom(format!("refund as JSON: {e}")))?;
    events::record(
        txn,
        &refund.scope(),
        event_type,
        Some(&refund.payment_id),
        data,
        None,
    )
    .await?;
    Ok(())
}

/// Records the provider's answer. The payment row is locked first (the order every writer
/// takes), the refund is settled only if it is still pending (a retry cannot settle it
/// twice), and `amount_refunded` becomes the sum of the payment's succeeded refunds unless a
/// provider report already said more.
/// Records the provider's answer to a refund: succeeded (raising the payment's refunded
/// amount, which may empty it: then the payment's move is the returned fact) or failed (its
/// reservation released).
async fn settle(
    txn: &DatabaseTransaction,
    refund: refunds::Model,
    result: Result<String, ProviderError>,
) -> Result<(Refund, Option<Fact>), DbErr> {
    let now = Utc::now();
    let payment = payments::Entity::find_by_id(refund.payment_id.clone())
        .lock_exclusive()
        .one(txn)
        .await?;
    let (status, reference, failure) = match &result {
        Ok(reference) => (RefundStatus::Succeeded, Some(reference.clone()), None),
        Err(e) => (RefundStatus::Failed, None, Some(e.to_string())),
    };
    let mut active: refunds::ActiveModel = refund.clone().into();
    active.status = Set(status);
    active.provider_reference = Set(reference);
    active.failure_message = Set(failure);
    active.updated_at = Set(now);
    let refund = match refunds::Entity::update(active)
        .validate()?
        .filter(refunds::Column::Status.eq(RefundStatus::Pending))
        .exec(txn)
        .await
    {
        Ok(settled) => settled,
        // Settled already (by a concurrent retry): report it as it is.
        Err(DbErr::RecordNotUpdated) => {
            let current = refunds::Entity::find_by_id(refund.id.clone())
                .one(txn)
                .await?
                .unwrap_or(refund);
            return Ok((Refund::from(&current), None));
        }
        Err(e) => return Err(e),
    };
    let settled_as = if status == RefundStatus::Succeeded {
        EventType::RefundSucceeded
    } else {
        EventType::RefundFailed
    };
    refund_event(txn, &refund, settled_as).await?;
    if status == RefundStatus::Failed
        && let Some(payment) = &payment
    {
        crate::ledger::release_refund(txn, &refund, &payment.currency)
            .await
            .map_err(crate::ledger::LedgerError::into_db)?;
    }
    if status == RefundStatus::Succeeded
        && let Some(payment) = payment
    {
        let succeeded: i64 = refunds::Entity::find()
            .filter(refunds::Column::PaymentId.eq(&payment.id))
            .filter(refunds::Column::Status.eq(RefundStatus::Succeeded))
            .all(txn)
            .await?
            .iter()
            .map(|r| r.amount)
            .sum();
        // A provider report may already have counted it: then nothing changes.
        let raised = raise_refunded(txn, payment, succeeded).await?;
        return Ok((Refund::from(&refund), raised.fact()));
    }
    Ok((Refund::from(&refund), None))
}

/// What a payment's own refunds hold: those succeeded and those in flight.
pub async fn made_here<C: ConnectionTrait>(db: &C, payment_id: &PaymentId) -> Result<i64, DbErr> {
    Ok(refunds::Entity::find()
        .filter(refunds::Column::PaymentId.eq(payment_id))
        .filter(refunds::Column::Status.is_in([RefundStatus::Pending, RefundStatus::Succeeded]))
        .all(db)
        .await?
        .iter()
        .map(|r| r.amount)
        .sum())
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    payment_id: &PaymentId,
) -> Result<Vec<refunds::Model>, DbErr> {
    refunds::Entity::find()
        .filter(scope.of::<refunds::Entity>())
        .filter(refunds::Column::PaymentId.eq(payment_id))
        .order_by_desc(refunds::Column::Id)
        .all(db)
        .await
}
