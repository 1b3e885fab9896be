//! What the gateway asks of the worker on a merchant's request, and all it may use besides
//! running the worker in its process: one attempt made now (an endpoint's test event, a
//! manual retry), the
//! row of a delivery its creator claims to send at once, and the update that makes deliveries
//! due again (a manual retry, recovering an endpoint's failures).

use chrono::{DateTime, Utc};
use entity::ids::EndpointId;
use entity::{events, webhook_deliveries};
use runtime::bus::EventBus;
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};

pub use crate::deliveries::{AttemptContext, AttemptOutcome, Rules};
pub use crate::sender::{AttemptResult, WebhookSender};

/// A new delivery of `event` to `endpoint_id`, claimed by its creator for `lease` from `now`:
/// the creator sends it at once, and if it dies first the sweep takes it when the lease ends.
pub fn claimed_delivery(
    event: &events::Model,
    endpoint_id: &EndpointId,
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> webhook_deliveries::ActiveModel {
    let claim = crate::deliveries::Lease::new(now, lease);
    crate::deliveries::new_row(event, endpoint_id, Some(&claim), now)
}

/// The update that makes deliveries `pending`, due now and unclaimed; the caller says which.
pub fn due_now() -> sea_orm::UpdateMany<webhook_deliveries::Entity> {
    crate::deliveries::due_now()
}

pub use crate::deliveries::Lease;

/// A delivery with its event and endpoint, ready for an attempt; `None` if it is gone.
pub async fn load<C: ConnectionTrait>(
    db: &C,
    id: &entity::ids::DeliveryId,
) -> Result<Option<AttemptContext>, DbErr> {
    crate::deliveries::load_context(db, id).await
}

/// One attempt of a claimed delivery, made and recorded now, as the worker makes its own.
pub async fn attempt_now<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    bus: &EventBus,
    sender: &WebhookSender,
    rules: &Rules,
    ctx: AttemptContext,
) -> Result<(AttemptOutcome, Option<AttemptResult>), DbErr> {
    crate::deliveries::attempt(db, bus, sender, rules, ctx).await
}
