//! Applying a verified provider event: record it (unique per provider and event id, so a
//! duplicate does nothing), then move the payment through the status machine. A late or
//! out-of-order event for a final payment is recorded as `ignored` and changes nothing.

use chrono::Utc;
use entity::ids::ProviderEventId;
use entity::payment_status::PaymentStatus;
use entity::status::{Provider, ProviderEventOutcome};
use entity::{payments, provider_events};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    SqlErr, TransactionSession, TransactionTrait,
};

use crate::core::effects::{Committed, Fact};
use crate::payments::service::{Refunded, raise_refunded, transition};

/// How an inbound event names its payment.
#[derive(Debug, Clone, Copy)]
pub enum PaymentRef<'a> {
    Id(&'a str),
    /// The provider's own id for it (PaymentIntent, Moneroo payment, eBilling bill).
    ProviderReference(&'a str),
    /// Not about a payment we could act on (unknown event types).
    None,
}

/// A provider event whose authenticity was established and whose meaning was parsed.
pub struct VerifiedEvent<'a> {
    pub provider: &'a str,
    pub provider_event_id: &'a str,
    pub event_type: &'a str,
    pub payment: PaymentRef<'a>,
    /// `None` for event types we do not act on.
    pub target: Option<PaymentStatus>,
    pub failure: Option<(&'a str, &'a str)>,
    /// With `target: Refunded`: the total refunded so far at the provider.
    pub amount_refunded: Option<i64>,
    pub raw_body: &'a str,
    pub headers: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    Duplicate,
    Ignored,
    UnknownType,
    UnknownPayment,
    /// A success for a payment already failed or cancelled: flagged, not moved.
    RequiresReconciliation,
}

impl Applied {
    pub const fn as_str(self) -> &'static str {
        match self {
            Applied::Applied => "applied",
            Applied::Duplicate => "duplicate",
            Applied::Ignored => "ignored",
            Applied::UnknownType => "unknown_type",
            Applied::UnknownPayment => "unknown_payment",
            Applied::RequiresReconciliation => "requires_reconciliation",
        }
    }

    /// What the stored event row says (a duplicate is never stored).
    fn stored(self) -> ProviderEventOutcome {
        match self {
            Applied::Applied => ProviderEventOutcome::Applied,
            Applied::UnknownType => ProviderEventOutcome::UnknownType,
            Applied::UnknownPayment => ProviderEventOutcome::UnknownPayment,
            Applied::RequiresReconciliation => ProviderEventOutcome::RequiresReconciliation,
            Applied::Duplicate | Applied::Ignored => ProviderEventOutcome::Ignored,
        }
    }
}

async fn find_locked<C: ConnectionTrait>(
    txn: &C,
    provider: &str,
    payment: PaymentRef<'_>,
) -> Result<Option<payments::Model>, DbErr> {
    let select = payments::Entity::find().filter(payments::Column::Provider.eq(provider));
    let select = match payment {
        PaymentRef::Id(id) => select.filter(payments::Column::Id.eq(id)),
        PaymentRef::ProviderReference(r) => {
            select.filter(payments::Column::ProviderReference.eq(r))
        }
        PaymentRef::None => return Ok(None),
    };
    select.lock_exclusive().one(txn).await
}

async fn flag_for_reconciliation<C: ConnectionTrait>(
    txn: &C,
    payment: payments::Model,
) -> Result<payments::Model, DbErr> {
    payments::Entity::update_many()
        .col_expr(
            payments::Column::RequiresReconciliation,
            sea_orm::sea_query::Expr::value(true),
        )
        .col_expr(
            payments::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(Utc::now()),
        )
        .filter(payments::Column::Id.eq(&payment.id))
        .exec(txn)
        .await?;
    Ok(payments::Model {
        requires_reconciliation: true,
        ..payment
    })
}

/// A refund report: partial raises `amount_refunded` (never lowers it) with no status change;
/// full moves the payment to `refunded` with its event.
///
/// Money the provider reports refunded beyond this payment's own refunds (one made in the
/// provider's dashboard) has left the merchant's balance too: the ledger records it.
async fn apply_refund<C: ConnectionTrait>(
    txn: &C,
    payment: payments::Model,
    refunded_total: i64,
) -> Result<(Applied, Refunded), DbErr> {
    Ok(match raise_refunded(txn, payment, refunded_total).await? {
        Refunded::Unchanged(p) => (Applied::Ignored, Refunded::Unchanged(p)),
        raised => {
            let p = match &raised {
                Refunded::Raised(p) | Refunded::Emptied(p) | Refunded::Unchanged(p) => p,
            };
            let own = crate::payments::refunds::made_here(txn, &p.id).await?;
            let recorded = crate::ledger::provider_side_refunds(txn, p).await?;
            let beyond = p.amount_refunded - own - recorded;
            if beyond > 0 {
                crate::ledger::refunded_at_provider(txn, p, beyond)
                    .await
                    .map_err(crate::ledger::LedgerError::into_db)?;
            }
            (Applied::Applied, raised)
        }
    })
}

/// Applies one verified provider event in one transaction with its `provider_events` row
/// (unique per provider and event id, so a duplicate changes nothing): the outcome, the
/// payment it touched, and what the commit must be followed by.
pub async fn apply<C: TransactionTrait>(
    db: &C,
    event: VerifiedEvent<'_>,
    funds: crate::ledger::FundsPolicy,
) -> Result<Committed<(Applied, Option<payments::Model>)>, DbErr> {
    let provider_event_id = event.provider_event_id.to_string();
    let txn = db.begin().await?;
    let (outcome, payment, fact) = match event.target {
        None => (Applied::UnknownType, None, None),
        Some(to) => match find_locked(&txn, event.provider, event.payment).await? {
            None => (Applied::UnknownPayment, None, None),
            Some(p) if to == PaymentStatus::Refunded && event.amount_refunded.is_some() => {
                // Stripe reports refunds in its own units for the payment's currency.
                let reported = event.amount_refunded.unwrap_or(0);
                let total = match p.provider {
                    Provider::Stripe => entity::money::Currency::parse(&p.currency)
                        .and_then(|c| crate::providers::stripe::from_stripe_amount(reported, c))
                        .unwrap_or(reported),
                    _ => reported,
                };
                let (outcome, refunded) = apply_refund(&txn, p, total).await?;
                let fact = refunded.fact();
                (outcome, Some(refunded.payment()), fact)
            }
            Some(p) => match transition(&txn, p, to, event.failure, None, funds).await? {
                Ok(updated) => (
                    Applied::Applied,
                    Some(updated.clone()),
                    Some(Fact::PaymentMoved(updated)),
                ),
                // A success after we called the payment over is never just ignored: the
                // customer may have paid. Flag it; the status stays final.
                Err(unchanged)
                    if to == PaymentStatus::Succeeded
                        && matches!(
                            unchanged.status,
                            PaymentStatus::Failed | PaymentStatus::Cancelled
                        ) =>
                {
                    let flagged = flag_for_reconciliation(&txn, unchanged).await?;
                    let fact = Fact::LateSuccess {
                        payment: flagged.clone(),
                        provider_event_id: provider_event_id.clone(),
                    };
                    (Applied::RequiresReconciliation, Some(flagged), Some(fact))
                }
                Err(unchanged) => (Applied::Ignored, Some(unchanged), None),
            },
        },
    };
    let inserted = provider_events::Entity::insert(provider_events::ActiveModel {
        id: Set(ProviderEventId::generate()),
        provider: Set(event.provider.to_string()),
        provider_event_id: Set(event.provider_event_id.to_string()),
        event_type: Set(event.event_type.to_string()),
        payment_id: Set(payment.as_ref().map(|p| p.id.clone())),
        outcome: Set(outcome.stored()),
        raw_body: Set(event.raw_body.to_string()),
        headers: Set(event.headers),
        received_at: Set(Utc::now()),
    })
    .exec_without_returning(&txn)
    .await;
    match inserted {
        Ok(_) => {
            txn.commit().await?;
            Ok(Committed::new(
                (outcome, payment),
                fact.into_iter().collect(),
            ))
        }
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            // Seen before: roll back whatever this delivery of it would have changed.
            txn.rollback().await?;
            Ok(Committed::nothing((Applied::Duplicate, None)))
        }
        Err(e) => Err(e),
    }
}
