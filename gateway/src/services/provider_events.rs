//! Applying a verified provider event: record it (unique per provider and event id, so a
//! duplicate does nothing), then move the payment through the status machine. A late or
//! out-of-order event for a final payment is recorded as `ignored` and changes nothing.

use chrono::Utc;
use entity::ids::IdKind;
use entity::payment_status::PaymentStatus;
use entity::{payments, provider_events};
use sea_orm::{
    ActiveValue::Set, DbErr, EntityTrait, QuerySelect, SqlErr, TransactionSession, TransactionTrait,
};

use super::payments::transition;

/// A provider event whose signature was verified and whose meaning was parsed.
pub struct VerifiedEvent<'a> {
    pub provider: &'a str,
    pub provider_event_id: &'a str,
    pub event_type: &'a str,
    pub payment_id: &'a str,
    /// `None` for event types we do not act on.
    pub target: Option<PaymentStatus>,
    pub failure: Option<(&'a str, &'a str)>,
    pub raw_body: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Applied,
    Duplicate,
    Ignored,
    UnknownType,
    UnknownPayment,
}

impl Applied {
    pub const fn as_str(self) -> &'static str {
        match self {
            Applied::Applied => "applied",
            Applied::Duplicate => "duplicate",
            Applied::Ignored => "ignored",
            Applied::UnknownType => "unknown_type",
            Applied::UnknownPayment => "unknown_payment",
        }
    }
}

pub async fn apply<C: TransactionTrait>(
    db: &C,
    event: VerifiedEvent<'_>,
) -> Result<(Applied, Option<payments::Model>), DbErr> {
    let txn = db.begin().await?;
    let payment = payments::Entity::find_by_id(event.payment_id.to_string())
        .lock_exclusive()
        .one(&txn)
        .await?;
    let (outcome, payment) = match (payment, event.target) {
        (None, _) => (Applied::UnknownPayment, None),
        (Some(p), None) => (Applied::UnknownType, Some(p)),
        (Some(p), Some(to)) => {
            let failure = event.failure;
            match transition(&txn, p, to, failure, None).await? {
                Ok(updated) => (Applied::Applied, Some(updated)),
                Err(unchanged) => (Applied::Ignored, Some(unchanged)),
            }
        }
    };
    let inserted = provider_events::Entity::insert(provider_events::ActiveModel {
        id: Set(IdKind::ProviderEvent.generate()),
        provider: Set(event.provider.to_string()),
        provider_event_id: Set(event.provider_event_id.to_string()),
        event_type: Set(event.event_type.to_string()),
        payment_id: Set(payment.as_ref().map(|p| p.id.clone())),
        outcome: Set(outcome.as_str().to_string()),
        raw_body: Set(event.raw_body.to_string()),
        received_at: Set(Utc::now()),
    })
    .exec_without_returning(&txn)
    .await;
    match inserted {
        Ok(_) => {
            txn.commit().await?;
            Ok((outcome, payment))
        }
        Err(e) if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) => {
            // Seen before: roll back whatever this delivery of it would have changed.
            txn.rollback().await?;
            Ok((Applied::Duplicate, None))
        }
        Err(e) => Err(e),
    }
}
