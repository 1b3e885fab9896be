//! Payments after their creation (which is in [`super::creation`]): status transitions (each
//! with exactly one event), refunds' totals, updates, cancelling, reads and lists.

use std::time::Duration;

use chrono::Utc;
use entity::ids::{PaymentId, Scope};
use entity::payment_status::{InvalidTransition, PaymentStatus};
use entity::payments;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr,
    EntityTrait, QueryFilter, QuerySelect, TransactionTrait,
};

use crate::core::pagination::{CreatedRange, Page};
use crate::ledger::FundsPolicy;
use crate::webhooks::events;
use entity::status::Provider;
use runtime::cache::Cache;

use super::objects::Payment;
use super::validation::PaymentUpdate;
use crate::core::effects::{Committed, Fact};
use crate::core::error::{OrNotFound, ServiceError, ValidationError};
use crate::providers::{ProviderError, Providers};

/// What the payment services need: the database, the providers, and when funds settle.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub db: &'a DatabaseConnection,
    pub providers: &'a Providers,
    pub funds: FundsPolicy,
}

pub(super) fn view_json(model: &payments::Model) -> serde_json::Value {
    serde_json::to_value(Payment::from(model)).unwrap_or_default()
}

/// Moves a payment to `to` and records the event, inside the caller's transaction. A move
/// the status machine refuses changes nothing and hands the payment back unchanged.
///
/// The update is a compare-and-set on the status this payment was read with: if another
/// writer moved it in between (a caller that did not lock the row), nothing is written and
/// the payment comes back unchanged, so a final status can never be overwritten.
///
/// A payment that succeeds brings its money in: its charge is posted to the ledger in the
/// same transaction, available as `funds` says.
pub async fn transition<C: ConnectionTrait>(
    txn: &C,
    payment: payments::Model,
    to: PaymentStatus,
    failure: Option<(&str, &str)>,
    request_id: Option<&str>,
    funds: FundsPolicy,
) -> Result<Result<payments::Model, payments::Model>, DbErr> {
    let from = payment.status;
    let event_type = match from.transition(to) {
        Ok(t) => t,
        Err(InvalidTransition { .. }) => return Ok(Err(payment)),
    };
    let mut active: payments::ActiveModel = payment.clone().into();
    active.status = Set(to);
    active.updated_at = Set(Utc::now());
    if let Some((code, message)) = failure {
        active.failure_code = Set(Some(code.to_string()));
        active.failure_message = Set(Some(message.to_string()));
    }
    let updated = match payments::Entity::update(active)
        .validate()?
        .filter(payments::Column::Status.eq(from))
        .exec(txn)
        .await
    {
        Ok(updated) => updated,
        Err(DbErr::RecordNotUpdated) => return Ok(Err(payment)),
        Err(e) => return Err(e),
    };
    events::record(
        txn,
        &updated.scope(),
        event_type,
        Some(&updated.id),
        view_json(&updated),
        request_id,
    )
    .await?;
    if to == PaymentStatus::Succeeded {
        crate::ledger::charge(txn, &updated, funds)
            .await
            .map_err(crate::ledger::LedgerError::into_db)?;
    }
    Ok(Ok(updated))
}

/// What raising a payment's `amount_refunded` came to.
#[derive(Debug)]
pub enum Refunded {
    /// The total was no higher than what was recorded: nothing changed.
    Unchanged(payments::Model),
    /// Raised, with money left: the status stays.
    Raised(payments::Model),
    /// Raised to the whole amount: the payment moved to `refunded`, with its event.
    Emptied(payments::Model),
}

impl Refunded {
    /// What the commit that raised it must be followed by.
    pub fn fact(&self) -> Option<Fact> {
        match self {
            Refunded::Unchanged(_) => None,
            Refunded::Raised(p) => Some(Fact::Events(p.scope())),
            Refunded::Emptied(p) => Some(Fact::PaymentMoved(p.clone())),
        }
    }

    pub fn payment(self) -> payments::Model {
        match self {
            Refunded::Unchanged(p) | Refunded::Raised(p) | Refunded::Emptied(p) => p,
        }
    }
}

/// Raises `amount_refunded` to `total` (never lowers it; capped at the amount) on a payment
/// the caller has locked, and moves it to `refunded` with its event when nothing is left.
/// Refund reports take the larger of what they know, so the provider's webhook and our own
/// settled refunds count the same money once whichever comes first.
pub async fn raise_refunded<C: ConnectionTrait>(
    txn: &C,
    payment: payments::Model,
    total: i64,
) -> Result<Refunded, DbErr> {
    let total = total.min(payment.amount);
    if total <= payment.amount_refunded {
        return Ok(Refunded::Unchanged(payment));
    }
    payments::Entity::update_many()
        .col_expr(payments::Column::AmountRefunded, Expr::value(total))
        .col_expr(payments::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(payments::Column::Id.eq(&payment.id))
        .exec(txn)
        .await?;
    let payment = payments::Model {
        amount_refunded: total,
        ..payment
    };
    if total < payment.amount {
        return Ok(Refunded::Raised(payment));
    }
    Ok(
        match transition(
            txn,
            payment,
            PaymentStatus::Refunded,
            None,
            None,
            FundsPolicy::default(),
        )
        .await?
        {
            Ok(moved) => Refunded::Emptied(moved),
            Err(unchanged) => Refunded::Raised(unchanged),
        },
    )
}

/// Reads a payment for update (the row stays locked until the transaction ends on PostgreSQL).
pub async fn lock<C: ConnectionTrait>(
    txn: &C,
    scope: &Scope,
    id: &PaymentId,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find_by_id(id.clone())
        .filter(scope.of::<payments::Entity>())
        .lock_exclusive()
        .one(txn)
        .await
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &PaymentId,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find_by_id(id.clone())
        .filter(scope.of::<payments::Entity>())
        .one(db)
        .await
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    status: Option<PaymentStatus>,
    reference: Option<&str>,
    created: &CreatedRange,
    page: &Page,
) -> Result<(Vec<payments::Model>, bool), DbErr> {
    let mut select = payments::Entity::find().filter(scope.of::<payments::Entity>());
    if let Some(s) = status {
        select = select.filter(payments::Column::Status.eq(s));
    }
    if let Some(r) = reference {
        select = select.filter(payments::Column::Reference.eq(r));
    }
    let select = created.apply(select, payments::Column::CreatedAt);
    page.fetch(db, select, payments::Column::Id).await
}

/// Applies a merchant's `PATCH`: description and metadata only, in any status (they are the
/// merchant's own notes, not the payment). The row is locked while metadata is merged, so two
/// concurrent updates both land. No event: nothing about the money changed.
pub async fn update(
    db: &DatabaseConnection,
    scope: &Scope,
    id: &PaymentId,
    change: &PaymentUpdate,
) -> Result<Committed<payments::Model>, ServiceError> {
    let txn = db.begin().await?;
    let current = payments::Entity::find_by_id(id.clone())
        .filter(scope.of::<payments::Entity>())
        .lock_exclusive()
        .one(&txn)
        .await?
        .or_not_found("payment", id)?;
    let metadata = change.merged_metadata(&current.metadata)?;
    let mut row: payments::ActiveModel = current.into();
    if let Some(description) = &change.description {
        row.description = Set(description.clone());
    }
    if let Some(metadata) = metadata {
        row.metadata = Set(metadata);
    }
    row.updated_at = Set(Utc::now());
    let updated = row.update(&txn).await?;
    txn.commit().await?;
    // The recent list shows descriptions: it is dropped as after any write.
    Ok(Committed::new(updated, vec![Fact::Events(scope.clone())]))
}

/// Cancels a pending or processing payment (409 for any other): first at the provider, so
/// no money can be captured on a payment we call cancelled, then here. Providers without a
/// cancel API are refused (422 `cancel_not_supported`).
pub async fn cancel(
    db: &DatabaseConnection,
    providers: &Providers,
    scope: &Scope,
    id: &PaymentId,
    request_id: Option<&str>,
) -> Result<Committed<payments::Model>, ServiceError> {
    let payment = get(db, scope, id).await?.or_not_found("payment", id)?;
    let not_cancellable = |status: PaymentStatus| {
        ServiceError::state(
            "payment_not_cancellable",
            format!("A {status} payment cannot be cancelled; only pending or processing ones can."),
        )
    };
    if payment.status.is_final() {
        return Err(not_cancellable(payment.status));
    }
    match providers.cancel(&payment).await {
        Ok(()) => {}
        Err(ProviderError::CancelNotSupported) => {
            return Err(ValidationError::new(
                "id",
                "cancel_not_supported",
                format!(
                    "{} has no cancel API: the payment ends when the customer abandons it or it expires.",
                    payment.provider
                ),
            )
            .into());
        }
        Err(ProviderError::Rejected { status, message }) if (400..500).contains(&status) => {
            return Err(ServiceError::state(
                "payment_not_cancellable",
                format!("The provider refused to cancel it: {message}"),
            ));
        }
        Err(e) => {
            return Err(e.into());
        }
    }
    let txn = db.begin().await?;
    let payment = lock(&txn, scope, id).await?.or_not_found("payment", id)?;
    match transition(
        &txn,
        payment,
        PaymentStatus::Cancelled,
        None,
        request_id,
        FundsPolicy::default(),
    )
    .await?
    {
        Ok(updated) => {
            txn.commit().await?;
            Ok(Committed::new(
                updated.clone(),
                vec![Fact::PaymentMoved(updated)],
            ))
        }
        Err(unchanged) => Err(not_cancellable(unchanged.status)),
    }
}

// Short, because a read racing a write can put back a list the write just invalidated.
const RECENT_TTL: Duration = Duration::from_secs(10);
const RECENT_COUNT: u64 = 10;

/// The merchant's latest payments, from the cache when it has them. Every payment write
/// drops the merchant's entry, so the cache is never staler than one write.
pub async fn recent<C: ConnectionTrait>(
    db: &C,
    cache: &Cache,
    scope: &Scope,
) -> Result<(Vec<Payment>, bool), DbErr> {
    let key = crate::core::cache_keys::recent_payments(scope);
    if let Some(hit) = cache.get(&key).await
        && let Ok(data) = serde_json::from_str::<Vec<Payment>>(&hit)
    {
        return Ok((data, true));
    }
    let page = Page {
        limit: RECENT_COUNT,
        starting_after: None,
        ending_before: None,
    };
    let (rows, _) = page
        .fetch(
            db,
            payments::Entity::find().filter(scope.of::<payments::Entity>()),
            payments::Column::Id,
        )
        .await?;
    let data: Vec<Payment> = rows.iter().map(Payment::from).collect();
    if let Ok(json) = serde_json::to_string(&data) {
        cache.set(&key, &json, RECENT_TTL).await;
    }
    Ok((data, false))
}

/// A sandbox payment of the simulated provider, whoever its merchant (for the hosted page).
pub async fn find_simulated<C: ConnectionTrait>(
    db: &C,
    id: &PaymentId,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find_by_id(id.clone())
        .filter(payments::Column::Provider.eq(Provider::Simulated))
        .filter(payments::Column::Livemode.eq(false))
        .one(db)
        .await
}

/// A payment with a checkout URL, by id alone: what its public QR code shows.
pub async fn find_with_checkout<C: ConnectionTrait>(
    db: &C,
    id: &PaymentId,
) -> Result<Option<payments::Model>, DbErr> {
    Ok(payments::Entity::find_by_id(id.clone())
        .one(db)
        .await?
        .filter(|p| p.checkout_url.is_some()))
}

/// The payment a provider knows by `reference`.
pub async fn find_by_provider_reference<C: ConnectionTrait>(
    db: &C,
    provider: Provider,
    reference: &str,
) -> Result<Option<payments::Model>, DbErr> {
    payments::Entity::find()
        .filter(payments::Column::Provider.eq(provider))
        .filter(payments::Column::ProviderReference.eq(reference))
        .one(db)
        .await
}
