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
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
};
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

/// A merchant's manual retry: a `failed` or `pending` delivery becomes due now with a fresh
/// set of attempts. Earlier attempt rows stay as history, and numbering goes on after them. Returns false when the delivery is
/// in a state that cannot be retried (being sent, or already delivered).
pub async fn make_due_now<C: ConnectionTrait>(
    db: &C,
    delivery_id: &DeliveryId,
) -> Result<bool, DbErr> {
    use webhook_deliveries::Column as C;
    let result = due_now()
        .col_expr(
            C::EarlierAttempts,
            Expr::col(C::EarlierAttempts).add(Expr::col(C::Attempts)),
        )
        .col_expr(C::Attempts, Expr::value(0))
        .filter(C::Id.eq(delivery_id))
        .filter(C::Status.is_in([DeliveryStatus::Failed, DeliveryStatus::Pending]))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
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
    let event = events::Entity::insert(events::ActiveModel {
        id: Set(EventId::generate()),
        merchant_id: Set(endpoint.merchant_id.clone()),
        livemode: Set(endpoint.livemode),
        event_type: Set(EventType::WebhookEndpointTest.as_str().to_string()),
        payment_id: Set(None),
        data: Set(serde_json::json!({
            "object": "webhook_endpoint.test",
            "endpoint_id": endpoint.id,
            "message": "A test event sent on request. Answer 2xx to acknowledge it.",
        })),
        request_id: Set(None),
        created_at: Set(now),
        published_at: Set(Some(now)),
        traceparent: Set(runtime::trace_context::current()),
    })
    .exec_with_returning(db)
    .await?;
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
        endpoint: Some(endpoint.clone()),
        event,
    })
}
