//! Payouts: money sent from a merchant's available balance to a mobile money wallet or a bank
//! account, through Moneroo (or the simulated provider in test mode).
//!
//! - **Balance.** Available = succeeded payments less what was refunded, less every payout
//!   not failed, per currency. A payout is recorded only if it fits, checked with the
//!   merchant's row locked (`FOR UPDATE`), so concurrent payouts can never overdraw together.
//! - **States.** `pending` (recorded) → `processing` (the provider has it) → `succeeded` |
//!   `failed`; final states never move. Each change commits with its `payout.*` event.
//! - **Truth.** A provider's webhook is never believed: the payout is re-queried
//!   (`GET /v1/payouts/{id}/verify` for Moneroo), from the webhook and from the poller.
//! - **Never twice.** `sent_at` is committed before the provider is called, and a payout is
//!   called about once. `failed` at once only if the provider certainly did not act on it; a
//!   lost answer leaves it pending and *unresolved*, its amount held, until the provider's
//!   webhook names it ([`adopt`]) or an operator settles it ([`resolve`]). One never sent
//!   (its gateway stopped first) is sent by the poller ([`never_sent`]).

use chrono::Utc;
use entity::event::EventType;
use entity::ids::{PayoutId, Scope};
use entity::payouts;
use entity::status::{PayoutStatus, Provider};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QuerySelect, TransactionSession, TransactionTrait,
};
use serde_json::json;

use crate::core::effects::{Committed, Fact};
use crate::core::error::{ServiceError, ValidationError};
use crate::core::idempotency::Idempotent;
use crate::providers::Providers;

pub mod objects;

pub use objects::{
    DESTINATION_TYPES, Destination, NewPayout, PAYOUT_PROVIDERS, Payout, PayoutDestination,
    SANDBOX_PAYOUT_OUTCOMES, check_provider, view,
};

/// A payout created by a request, or the one an earlier request with its key created.
#[derive(Debug)]
pub struct Created {
    pub payout: payouts::Model,
    pub replayed: bool,
}

/// `POST /v1/payouts`: records the payout (idempotently when a key is given), then hands it
/// to its provider at once. A replay reads what the first request did and sends nothing.
pub async fn create(
    db: &DatabaseConnection,
    providers: &Providers,
    scope: &Scope,
    new: NewPayout,
    idempotency_key: Option<&str>,
    request_id: Option<&str>,
) -> Result<Committed<Created>, ServiceError> {
    if new.provider == Provider::Simulated && scope.livemode {
        return Err(ValidationError::new(
            "provider",
            "provider_test_only",
            "The simulated provider pays out in test mode only (sk_test_ keys).",
        )
        .into());
    }
    // A test key never reaches live credentials, nor a live key test ones.
    providers.check_mode(new.provider, scope.livemode)?;
    let request = Idempotent {
        scope,
        key: idempotency_key,
        operation: "POST /v1/payouts",
        fingerprint: new.fingerprint(),
    };
    let mut recorded = None;
    let outcome = request
        .run(
            db,
            async |txn: &DatabaseTransaction| -> Result<String, ServiceError> {
                let p = record(txn, scope, new, request_id).await?;
                let id = p.id.to_string();
                recorded = Some(p);
                Ok(id)
            },
        )
        .await?;
    match recorded {
        // First time: hand it to the provider now.
        Some(p) => {
            let recorded = Committed::new((), vec![Fact::PayoutMoved(p.clone())]);
            let sent = send(db, providers, &p).await?;
            Ok(recorded.then(sent).map(|sent| Created {
                payout: sent.payout().clone(),
                replayed: false,
            }))
        }
        None => {
            let id = PayoutId::parse(&outcome.value).ok_or_else(|| {
                ServiceError::Db(DbErr::Custom("stored payout id is malformed".into()))
            })?;
            let payout = get(db, scope, &id)
                .await?
                .ok_or_else(|| ServiceError::not_found("payout", &outcome.value))?;
            Ok(Committed::nothing(Created {
                payout,
                replayed: outcome.replayed,
            }))
        }
    }
}

/// Records a payout (`pending`) if the available balance covers it, with its ledger
/// reservation and its `payout.pending` event, in the caller's transaction. The reservation is
/// decided under the balance's row lock, so concurrent payouts can never overdraw together;
/// one that does not fit is a 422 `balance_insufficient` and writes nothing.
pub async fn record<C: ConnectionTrait>(
    txn: &C,
    scope: &Scope,
    new: NewPayout,
    request_id: Option<&str>,
) -> Result<payouts::Model, ServiceError> {
    let now = Utc::now();
    let payout = payouts::Entity::insert(payouts::ActiveModel {
        id: Set(PayoutId::generate()),
        merchant_id: Set(scope.merchant_id.clone()),
        livemode: Set(scope.livemode),
        amount: Set(new.amount),
        currency: Set(new.currency),
        provider: Set(new.provider),
        destination: Set(new.destination.to_json()),
        reference: Set(new.reference),
        metadata: Set((!new.metadata.is_empty()).then(|| json!(new.metadata))),
        status: Set(PayoutStatus::Pending),
        provider_reference: Set(None),
        sent_at: Set(None),
        failure_code: Set(None),
        failure_message: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .exec_with_returning(txn)
    .await?;
    crate::ledger::reserve_payout(txn, &payout).await?;
    crate::webhooks::events::record(
        txn,
        scope,
        EventType::PayoutPending,
        None,
        view(&payout),
        request_id,
    )
    .await?;
    Ok(payout)
}

/// Why a payout failed, when it did.
pub struct Failure<'a> {
    pub code: &'a str,
    pub message: &'a str,
}

/// The provider, asked, said the payout failed.
const PROVIDER_FAILED: Failure<'static> = Failure {
    code: "payout_failed",
    message: "The provider reported the payout failed.",
};

/// Moves a payout to `to` if it may go there from where it is (never out of a final state),
/// with its event, in one transaction. `None`: it had moved on already (a late or repeated
/// answer changes nothing).
pub async fn move_to<C: TransactionTrait>(
    db: &C,
    id: &PayoutId,
    to: PayoutStatus,
    provider_reference: Option<&str>,
    failure: Option<Failure<'_>>,
) -> Result<Committed<Option<payouts::Model>>, DbErr> {
    let from: &[PayoutStatus] = match to {
        PayoutStatus::Pending => &[],
        PayoutStatus::Processing => &[PayoutStatus::Pending],
        PayoutStatus::Succeeded | PayoutStatus::Failed => {
            &[PayoutStatus::Pending, PayoutStatus::Processing]
        }
    };
    let txn = db.begin().await?;
    let mut update = payouts::Entity::update_many()
        .col_expr(payouts::Column::Status, Expr::value(to))
        .col_expr(payouts::Column::UpdatedAt, Expr::value(Utc::now()));
    if let Some(reference) = provider_reference {
        update = update.col_expr(payouts::Column::ProviderReference, Expr::value(reference));
    }
    if let Some(f) = &failure {
        update = update
            .col_expr(payouts::Column::FailureCode, Expr::value(f.code))
            .col_expr(payouts::Column::FailureMessage, Expr::value(f.message));
    }
    let moved = update
        .filter(payouts::Column::Id.eq(id))
        .filter(payouts::Column::Status.is_in(from.iter().copied()))
        .exec_with_returning(&txn)
        .await?;
    let Some(payout) = moved.into_iter().next() else {
        txn.rollback().await?;
        return Ok(Committed::nothing(None));
    };
    if to == PayoutStatus::Failed {
        // Its amount is available again.
        crate::ledger::release_payout(&txn, &payout)
            .await
            .map_err(crate::ledger::LedgerError::into_db)?;
    }
    crate::webhooks::events::record(
        &txn,
        &payout.scope(),
        EventType::for_payout(to),
        None,
        view(&payout),
        None,
    )
    .await?;
    txn.commit().await?;
    Ok(Committed::new(
        Some(payout.clone()),
        vec![Fact::PayoutMoved(payout)],
    ))
}

/// What handing a payout to its provider came to.
#[derive(Debug)]
pub enum Sent {
    /// The provider answered: `processing` with its reference, or `failed` if it refused.
    Answered(payouts::Model),
    /// The call's outcome is unknown (a timeout, a broken connection, a 5xx): the payout stays
    /// `pending` with its amount held, since the provider may be paying it out. Moneroo
    /// documents no idempotency for payouts, so it is never sent twice; its webhook or an
    /// operator settles it (see [`adopt`] and [`resolve`]).
    Unknown(payouts::Model),
    /// Another caller sent it already, or it is no longer pending.
    NotMine(payouts::Model),
}

impl Sent {
    pub fn payout(&self) -> &payouts::Model {
        match self {
            Sent::Answered(p) | Sent::Unknown(p) | Sent::NotMine(p) => p,
        }
    }
}

/// Hands a recorded payout to its provider, once: `sent_at` is claimed and committed before
/// the call, so a payout is never sent twice, and one without it was certainly never sent.
/// `processing` once the provider has it; `failed` only if the provider certainly did not act
/// on it (then its amount is available again).
pub async fn send<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    providers: &Providers,
    payout: &payouts::Model,
) -> Result<Committed<Sent>, DbErr> {
    let claimed = payouts::Entity::update_many()
        .col_expr(payouts::Column::SentAt, Expr::value(Utc::now()))
        .filter(payouts::Column::Id.eq(&payout.id))
        .filter(payouts::Column::Status.eq(PayoutStatus::Pending))
        .filter(payouts::Column::SentAt.is_null())
        .exec_with_returning(db)
        .await?;
    let Some(payout) = claimed.into_iter().next() else {
        let current = payouts::Entity::find_by_id(payout.id.clone())
            .one(db)
            .await?
            .unwrap_or_else(|| payout.clone());
        return Ok(Committed::nothing(Sent::NotMine(current)));
    };
    let sent = match providers.check_mode(payout.provider, payout.livemode) {
        Err(e) => Err(e),
        Ok(()) => match payout.provider {
            Provider::Simulated => Ok(None),
            Provider::Moneroo => match (&providers.moneroo, destination_phone(&payout)) {
                (Some(moneroo), Some((phone, operator))) => moneroo
                    .start_payout(&payout, &phone, &operator)
                    .await
                    .map(Some),
                (None, _) => Err(crate::providers::ProviderError::NotConfigured),
                (_, None) => Err(crate::providers::ProviderError::Unsupported(
                    "Moneroo payouts to a destination other than mobile money",
                )),
            },
            _ => Err(crate::providers::ProviderError::NotConfigured),
        },
    };
    let moved = match sent {
        Ok(reference) => {
            move_to(
                db,
                &payout.id,
                PayoutStatus::Processing,
                reference.as_deref(),
                None,
            )
            .await?
        }
        Err(e) if e.certainly_not_acted_on() => {
            let message = e.to_string();
            move_to(
                db,
                &payout.id,
                PayoutStatus::Failed,
                None,
                Some(Failure {
                    code: "provider_error",
                    message: &message,
                }),
            )
            .await?
        }
        Err(e) => {
            tracing::error!(
                payout_id = %payout.id,
                provider = %payout.provider,
                error = %e,
                "payout outcome unknown: held pending until the provider's webhook or an operator settles it"
            );
            let lost = Fact::PayoutAnswerLost(payout.clone());
            return Ok(Committed::new(Sent::Unknown(payout), vec![lost]));
        }
    };
    Ok(moved.map(|m| match m {
        Some(m) => Sent::Answered(m),
        None => Sent::NotMine(payout.clone()),
    }))
}

/// Pending payouts recorded at least `age` ago and never sent (their gateway stopped between
/// recording and sending): the poller sends them.
pub async fn never_sent<C: ConnectionTrait>(
    db: &C,
    age: std::time::Duration,
) -> Result<Vec<payouts::Model>, DbErr> {
    let before = Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
    payouts::Entity::find()
        .filter(payouts::Column::Status.eq(PayoutStatus::Pending))
        .filter(payouts::Column::SentAt.is_null())
        .filter(payouts::Column::CreatedAt.lte(before))
        .limit(50)
        .all(db)
        .await
}

/// What an operator found at the provider about an unresolved payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The provider has no such payout: it failed, and its amount is available again.
    NotSent,
    /// The provider has it under this id: Payrail takes it once the provider confirms it is
    /// this payout (amount, currency, the payout id in its metadata), as the webhook would.
    SentAs(String),
}

/// Settles an unresolved payout (sent, outcome unknown) as an operator found it at the
/// provider. Any other payout is a 409: only the provider's answer settles those.
pub async fn resolve<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    providers: &Providers,
    id: &PayoutId,
    resolution: Resolution,
) -> Result<Committed<payouts::Model>, ServiceError> {
    let payout = payouts::Entity::find_by_id(id.clone())
        .one(db)
        .await?
        .ok_or_else(|| ServiceError::NotFound {
            object: "payout",
            id: id.to_string(),
        })?;
    let unresolved = payout.status == PayoutStatus::Pending
        && payout.sent_at.is_some()
        && payout.provider_reference.is_none();
    if !unresolved {
        return Err(ServiceError::state(
            "payout_not_unresolved",
            format!(
                "Only a payout whose provider's answer was lost can be resolved; this one is {}{}.",
                payout.status,
                if payout.sent_at.is_none() {
                    " and not sent yet"
                } else {
                    ""
                }
            ),
        ));
    }
    let moved = match resolution {
        Resolution::NotSent => {
            move_to(
                db,
                &payout.id,
                PayoutStatus::Failed,
                None,
                Some(Failure {
                    code: "not_received_by_provider",
                    message: "The provider never received the payout (found by an operator).",
                }),
            )
            .await?
        }
        Resolution::SentAs(reference) => adopt(db, providers, &payout.id, &reference).await?,
    };
    if moved.peek().is_none() {
        return Err(ServiceError::state(
            "payout_not_unresolved",
            "The payout moved on meanwhile, or the provider does not say where it stands.",
        ));
    }
    Ok(moved.map(|m| m.unwrap_or(payout)))
}

/// Payouts whose provider call's outcome is unknown: sent, still pending, no reference.
fn unresolved() -> sea_orm::Select<payouts::Entity> {
    payouts::Entity::find()
        .filter(payouts::Column::Status.eq(PayoutStatus::Pending))
        .filter(payouts::Column::SentAt.is_not_null())
        .filter(payouts::Column::ProviderReference.is_null())
}

/// How many payouts are unresolved (the `payouts_unresolved` gauge); each holds its amount
/// until its provider's webhook or an operator settles it.
pub async fn unresolved_count<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    unresolved().count(db).await
}

/// A provider's webhook about a payout Payrail has no reference for, naming it in its
/// metadata: if that payout is unresolved and the provider, asked with the webhook's id,
/// reports a payout of the same amount and currency made for it, it takes that reference
/// and moves on as the provider says. Anything else changes nothing.
pub async fn adopt<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    providers: &Providers,
    id: &PayoutId,
    reference: &str,
) -> Result<Committed<Option<payouts::Model>>, ServiceError> {
    let Some(payout) = unresolved()
        .filter(payouts::Column::Id.eq(id))
        .filter(payouts::Column::Provider.eq(Provider::Moneroo))
        .one(db)
        .await?
    else {
        return Ok(Committed::nothing(None));
    };
    let Some(moneroo) = providers.moneroo.as_ref() else {
        return Ok(Committed::nothing(None));
    };
    if providers
        .check_mode(payout.provider, payout.livemode)
        .is_err()
    {
        return Ok(Committed::nothing(None));
    }
    let status = moneroo
        .payout_status_for(&payout, reference)
        .await
        .map_err(|e| ServiceError::Provider(e.to_string()))?;
    let Some(status) = status else {
        return Ok(Committed::nothing(None));
    };
    let failure = (status == PayoutStatus::Failed).then_some(PROVIDER_FAILED);
    Ok(move_to(db, &payout.id, status, Some(reference), failure).await?)
}

fn destination_phone(p: &payouts::Model) -> Option<(String, String)> {
    (p.destination["type"] == "mobile_money").then(|| {
        (
            p.destination["phone"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            p.destination["operator"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    })
}

/// Asks the provider where a processing payout stands and applies a final answer.
pub async fn refresh<C: TransactionTrait>(
    db: &C,
    providers: &Providers,
    payout: &payouts::Model,
) -> Result<Committed<Option<payouts::Model>>, ServiceError> {
    if payout.status.is_final() {
        return Ok(Committed::nothing(None));
    }
    let (Provider::Moneroo, Some(moneroo), Some(reference)) = (
        payout.provider,
        providers.moneroo.as_ref(),
        payout.provider_reference.as_deref(),
    ) else {
        return Ok(Committed::nothing(None));
    };
    if providers
        .check_mode(payout.provider, payout.livemode)
        .is_err()
    {
        return Ok(Committed::nothing(None));
    }
    let status = moneroo
        .payout_status(payout, reference)
        .await
        .map_err(|e| ServiceError::Provider(e.to_string()))?;
    Ok(match status {
        Some(to @ PayoutStatus::Succeeded) => move_to(db, &payout.id, to, None, None).await?,
        Some(to @ PayoutStatus::Failed) => {
            move_to(db, &payout.id, to, None, Some(PROVIDER_FAILED)).await?
        }
        _ => Committed::nothing(None),
    })
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &PayoutId,
) -> Result<Option<payouts::Model>, DbErr> {
    payouts::Entity::find_by_id(id.clone())
        .filter(scope.of::<payouts::Entity>())
        .one(db)
        .await
}

pub async fn by_provider_reference<C: ConnectionTrait>(
    db: &C,
    provider: Provider,
    reference: &str,
) -> Result<Option<payouts::Model>, DbErr> {
    payouts::Entity::find()
        .filter(payouts::Column::Provider.eq(provider))
        .filter(payouts::Column::ProviderReference.eq(reference))
        .one(db)
        .await
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    page: &crate::core::pagination::Page,
) -> Result<(Vec<payouts::Model>, bool), DbErr> {
    let select = payouts::Entity::find().filter(scope.of::<payouts::Entity>());
    page.fetch(db, select, payouts::Column::Id).await
}

/// Open Moneroo payouts the provider has had for at least `age`: the poller re-queries them.
pub async fn due_for_requery<C: ConnectionTrait>(
    db: &C,
    age: std::time::Duration,
) -> Result<Vec<payouts::Model>, DbErr> {
    let before = Utc::now() - chrono::Duration::from_std(age).unwrap_or_default();
    payouts::Entity::find()
        .filter(payouts::Column::Provider.eq(Provider::Moneroo))
        .filter(payouts::Column::Status.eq(PayoutStatus::Processing))
        .filter(payouts::Column::UpdatedAt.lte(before))
        .limit(50)
        .all(db)
        .await
}
