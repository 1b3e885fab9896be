//! Reading deliveries and their attempts, the merchant's manual retry, recovering an
//! endpoint's failed deliveries after an outage, and an endpoint's test event.

use chrono::{DateTime, Utc};
use entity::event::EventType;
use entity::ids::{DeliveryId, EndpointId, EventId, Scope};
use entity::status::DeliveryStatus;
use entity::{events, webhook_attempts, webhook_deliveries, webhook_endpoints};
use runtime::bus::EventBus;
use runtime::cache::Cache;
use sea_orm::DatabaseConnection;
use sea_orm::sea_query::{Expr, ExprTrait as _};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use worker::manual::{AttemptContext, AttemptOutcome, AttemptResult, due_now};

use crate::core::pagination::Page;

#[derive(Default)]
pub struct DeliveryFilter<'a> {
    pub status: Option<DeliveryStatus>,
    pub endpoint_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
}

pub async fn list<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    filter: DeliveryFilter<'_>,
    page: &Page,
) -> Result<(Vec<webhook_deliveries::Model>, bool), DbErr> {
    use webhook_deliveries::Column as C;
    let mut select =
        webhook_deliveries::Entity::find().filter(scope.of::<webhook_deliveries::Entity>());
    if let Some(s) = filter.status {
        select = select.filter(C::Status.eq(s.as_str()));
    }
    if let Some(e) = filter.endpoint_id {
        select = select.filter(C::EndpointId.eq(e));
    }
    if let Some(e) = filter.event_id {
        select = select.filter(C::EventId.eq(e));
    }
    page.fetch(db, select, C::Id).await
}

/// The deliveries of these events, oldest first.
pub async fn for_events<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    event_ids: &[EventId],
) -> Result<Vec<webhook_deliveries::Model>, DbErr> {
    if event_ids.is_empty() {
        return Ok(Vec::new());
    }
    webhook_deliveries::Entity::find()
        .filter(scope.of::<webhook_deliveries::Entity>())
        .filter(webhook_deliveries::Column::EventId.is_in(event_ids.iter().cloned()))
        .order_by_asc(webhook_deliveries::Column::Id)
        .all(db)
        .await
}

/// The latest `most` deliveries of the scope, in `status` when given, newest first.
pub async fn recent<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    status: Option<DeliveryStatus>,
    most: u64,
) -> Result<Vec<webhook_deliveries::Model>, DbErr> {
    use sea_orm::QuerySelect as _;
    let mut select = webhook_deliveries::Entity::find()
        .filter(scope.of::<webhook_deliveries::Entity>())
        .order_by_desc(webhook_deliveries::Column::Id)
        .limit(most);
    if let Some(status) = status {
        select = select.filter(webhook_deliveries::Column::Status.eq(status));
    }
    select.all(db).await
}

pub async fn get<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    id: &DeliveryId,
) -> Result<Option<webhook_deliveries::Model>, DbErr> {
    webhook_deliveries::Entity::find_by_id(id.clone())
        .filter(scope.of::<webhook_deliveries::Entity>())
        .one(db)
        .await
}

pub async fn attempts<C: ConnectionTrait>(
    db: &C,
    delivery_id: &DeliveryId,
) -> Result<Vec<webhook_attempts::Model>, DbErr> {
    webhook_attempts::Entity::find()
        .filter(webhook_attempts::Column::DeliveryId.eq(delivery_id))
        .order_by_asc(webhook_attempts::Column::CreatedAt)
        .order_by_asc(webhook_attempts::Column::Id)
        .all(db)
        .await
}

/// A merchant's manual retry: a `failed` or `pending` delivery gets a fresh set of attempts
/// and is claimed by the caller for `lease`, to be sent at once with [`send_claimed`] rather
/// than at the worker's next sweep (if the caller dies first, the sweep takes it when the
/// lease ends). Earlier attempt rows stay as history, and numbering goes on after them.
/// Returns false when the delivery cannot be retried (being sent, or already delivered).
pub async fn claim_for_retry<C: ConnectionTrait>(
    db: &C,
    delivery_id: &DeliveryId,
    lease: std::time::Duration,
) -> Result<bool, DbErr> {
    use webhook_deliveries::Column as C;
    let now = Utc::now();
    let claim = worker::manual::Lease::new(now, lease);
    let claimed = webhook_deliveries::Entity::update_many()
        .col_expr(C::Status, Expr::value(DeliveryStatus::Processing))
        .col_expr(C::LockedUntil, Expr::value(claim.until))
        .col_expr(C::LeaseToken, Expr::value(claim.token))
        .col_expr(C::NextRetryAt, Expr::value(now))
        .col_expr(C::UpdatedAt, Expr::value(now))
        .col_expr(
            C::EarlierAttempts,
            Expr::col(C::EarlierAttempts).add(Expr::col(C::Attempts)),
        )
        .col_expr(C::Attempts, Expr::value(0))
        .filter(C::Id.eq(delivery_id))
        .filter(C::Status.is_in([DeliveryStatus::Failed, DeliveryStatus::Pending]))
        .exec(db)
        .await?;
    Ok(claimed.rows_affected == 1)
}

/// Makes the attempt of a delivery this process claimed ([`claim_for_retry`]) now, and
/// meters it; its retries, if it fails, are the worker's. `None` if the delivery is gone.
pub async fn send_claimed(
    deps: &SendNow<'_>,
    delivery_id: &DeliveryId,
) -> Result<Option<(AttemptOutcome, Option<AttemptResult>)>, DbErr> {
    let Some(ctx) = worker::manual::load(deps.db, delivery_id).await? else {
        return Ok(None);
    };
    let scope = ctx.delivery.scope();
    let sent =
        worker::manual::attempt_now(deps.db, deps.bus, deps.sender, &deps.rules, ctx).await?;
    if sent.1.is_some() {
        deps.cache
            .count_usage(&scope, &[(runtime::usage::metric::WEBHOOK_ATTEMPTS, 1)])
            .await;
    }
    Ok(Some(sent))
}

/// Makes an endpoint's `failed` deliveries created in `[since, until)` due now with a fresh
/// set of attempts, in one statement. Returns how many.
pub async fn recover<C: ConnectionTrait>(
    db: &C,
    endpoint_id: &EndpointId,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<u64, DbErr> {
    use webhook_deliveries::Column as C;
    let result = due_now()
        .col_expr(
            C::EarlierAttempts,
            Expr::col(C::EarlierAttempts).add(Expr::col(C::Attempts)),
        )
        .col_expr(C::Attempts, Expr::value(0))
        .filter(C::EndpointId.eq(endpoint_id))
        .filter(C::Status.eq(DeliveryStatus::Failed))
        .filter(C::CreatedAt.gte(since))
        .filter(C::CreatedAt.lt(until))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// What sending a test event at once takes: the worker's sender and rules, and where its
/// attempt is recorded and metered.
pub struct SendNow<'a> {
    pub db: &'a DatabaseConnection,
    pub bus: &'a EventBus,
    pub cache: &'a Cache,
    pub sender: &'a worker::manual::WebhookSender,
    pub rules: worker::manual::Rules,
}

/// Makes a test delivery's first attempt now, from the gateway, and meters it as the worker
/// meters its own: one delivery, and one attempt if a request was made. (Its retries, if it
/// fails, are the worker's, and metered there.)
pub async fn send_test_now(
    deps: &SendNow<'_>,
    ctx: AttemptContext,
) -> Result<(AttemptOutcome, Option<AttemptResult>), DbErr> {
    use runtime::usage::metric;
    let scope = ctx.delivery.scope();
    deps.cache
        .count_usage(&scope, &[(metric::WEBHOOK_DELIVERIES, 1)])
        .await;
    let sent =
        worker::manual::attempt_now(deps.db, deps.bus, deps.sender, &deps.rules, ctx).await?;
    if sent.1.is_some() {
        deps.cache
            .count_usage(&scope, &[(metric::WEBHOOK_ATTEMPTS, 1)])
            .await;
    }
    Ok(sent)
}

/// A test event sent to an endpoint: its delivery's id, whether this was a replay of an
/// earlier request with the same key (then nothing was sent now), and the attempt made.
pub struct TestSent {
    pub delivery_id: DeliveryId,
    pub replayed: bool,
    pub attempt: Option<(AttemptOutcome, Option<AttemptResult>)>,
}

/// `POST /v1/webhook_endpoints/{id}/test` and the dashboard's button: commits the test event
/// and its delivery (idempotently with a key), then makes the first attempt at once. A
/// disabled endpoint is a 409: nothing is sent to it.
pub async fn test_endpoint(
    deps: &SendNow<'_>,
    scope: &Scope,
    endpoint_id: &EndpointId,
    idempotency_key: Option<&str>,
    lease: std::time::Duration,
) -> Result<TestSent, crate::core::error::ServiceError> {
    use crate::core::error::{OrNotFound as _, ServiceError};
    use crate::core::idempotency::Idempotent;
    let request = Idempotent {
        scope,
        key: idempotency_key,
        operation: "POST /v1/webhook_endpoints/{id}/test",
        fingerprint: endpoint_id.to_string(),
    };
    let mut created = None;
    let outcome = request
        .run(
            deps.db,
            async |txn: &sea_orm::DatabaseTransaction| -> Result<String, ServiceError> {
                let e = crate::webhooks::endpoints::get(txn, scope, endpoint_id)
                    .await?
                    .or_not_found("webhook endpoint", endpoint_id)?;
                let ctx = create_test(txn, &crate::webhooks::endpoints::enabled(e)?, lease).await?;
                let id = ctx.delivery.id.to_string();
                created = Some(ctx);
                Ok(id)
            },
        )
        .await?;
    let delivery_id = DeliveryId::parse(&outcome.value)
        .ok_or_else(|| ServiceError::Db(DbErr::Custom("stored delivery id is malformed".into())))?;
    // Sent after the commit; a replay only reads what the first request did.
    let attempt = match created {
        None => None,
        Some(ctx) => match send_test_now(deps, ctx).await {
            Ok(sent) => Some(sent),
            Err(e) => {
                // The row stays claimed until its lease ends; the sweep then sends it.
                tracing::warn!(error = %e, "could not record a test attempt");
                None
            }
        },
    };
    Ok(TestSent {
        delivery_id,
        replayed: outcome.replayed,
        attempt,
    })
}

/// Commits a `webhook_endpoint.test` event and its one delivery, to `endpoint` only and
/// already claimed for `lease`, so the caller sends it at once; if that attempt fails, the
/// sweep retries it like any other. The event is marked published: it never goes through the
/// bus, where the merchant's other endpoints would get it.
pub async fn create_test<C: ConnectionTrait>(
    db: &C,
    endpoint: &webhook_endpoints::Model,
    lease: std::time::Duration,
) -> Result<AttemptContext, DbErr> {
    let now = Utc::now();
    let scope = Scope {
        merchant_id: endpoint.merchant_id.clone(),
        livemode: endpoint.livemode,
    };
    let (_, row) = runtime::outbox::event(
        &scope,
        EventType::WebhookEndpointTest,
        None,
        serde_json::json!({
            "object": "webhook_endpoint.test",
            "endpoint_id": endpoint.id,
            "message": "A test event sent on request. Answer 2xx to acknowledge it.",
        }),
        None,
        runtime::outbox::Route::Direct,
    );
    let event = events::Entity::insert(row).exec_with_returning(db).await?;
    let delivery = webhook_deliveries::Entity::insert(worker::manual::claimed_delivery(
        &event,
        &endpoint.id,
        now,
        lease,
    ))
    .exec_with_returning(db)
    .await?;
    Ok(AttemptContext {
        delivery,
        endpoint: Some(std::sync::Arc::new(endpoint.clone())),
        event: std::sync::Arc::new(event),
    })
}
