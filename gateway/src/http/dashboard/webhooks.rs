//! The dashboard's webhook pages: the endpoints (add, test, disable, enable, rotate the
//! secret, recover failed deliveries) with the recent deliveries, and one delivery with every
//! attempt. The actions are the API's, through the same services; owners and developers act,
//! viewers look.

use chrono::Utc;
use entity::event::rfc3339;
use entity::ids::{DeliveryId, EndpointId};
use entity::status::{DeliveryStatus, EndpointStatus};
use entity::{events, webhook_deliveries, webhook_endpoints};
use poem::http::StatusCode;
use poem::web::{Data, Form, Path, Query};
use poem::{IntoResponse, Request, Response, handler};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use serde::Deserialize;

use crate::core::error::ServiceError;
use crate::core::text::Text;
use crate::http::api::dto::CreateEndpointRequest;
use crate::http::dashboard::pages;
use crate::http::dashboard::routes::{
    May, NoticeQuery, back_to, html_response, page_session, posted, posted_forms, unavailable,
};
use crate::http::state::AppState;
use crate::webhooks::deliveries as delivery_service;
use crate::webhooks::endpoints::{self, EndpointUpdate, NewEndpoint};

const PAGE: &str = "/dashboard/webhooks";
/// Deliveries the webhooks page lists.
const RECENT: u64 = 25;

#[derive(Deserialize)]
pub struct WebhooksQuery {
    status: Option<String>,
    notice: Option<String>,
}

posted_forms!(NewEndpointForm, EndpointActionForm);

/// What the page shows besides its lists.
#[derive(Default)]
struct Extra<'a> {
    notice: Option<&'a str>,
    secret: Option<(&'a str, &'a str)>,
    error: Option<&'a str>,
}

async fn render(
    state: &AppState,
    user: &crate::merchants::users::DashboardUser,
    token: &str,
    cookies: &[String],
    status: Option<DeliveryStatus>,
    extra: Extra<'_>,
    answer: StatusCode,
) -> Response {
    let loaded = async {
        let endpoints = webhook_endpoints::Entity::find()
            .filter(user.scope().of::<webhook_endpoints::Entity>())
            .order_by_desc(webhook_endpoints::Column::Id)
            .all(&state.db)
            .await?;
        let mut recent = webhook_deliveries::Entity::find()
            .filter(user.scope().of::<webhook_deliveries::Entity>())
            .order_by_desc(webhook_deliveries::Column::Id)
            .limit(RECENT);
        if let Some(status) = status {
            recent = recent.filter(webhook_deliveries::Column::Status.eq(status));
        }
        let recent = recent.all(&state.db).await?;
        let deliveries = delivery_rows(state, &recent, &endpoints).await?;
        Ok::<_, sea_orm::DbErr>((endpoints, deliveries))
    }
    .await;
    let (endpoints, deliveries) = match loaded {
        Ok(found) => found,
        Err(e) => return unavailable("webhooks page", &e, cookies),
    };
    let rows: Vec<pages::EndpointRow> = endpoints
        .iter()
        .map(|e| pages::EndpointRow {
            id: e.id.to_string(),
            url: e.url.clone(),
            events: e
                .enabled_events
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            status: e.status.to_string(),
            disabled_reason: e.disabled_reason.clone(),
            consecutive_failures: e.consecutive_failures,
        })
        .collect();
    html_response(
        answer,
        pages::webhooks(
            &pages::Chrome {
                csrf_token: token,
                livemode: user.livemode,
            },
            &pages::Webhooks {
                endpoints: &rows,
                deliveries: &deliveries,
                status: status.map(|s| s.as_str()).unwrap_or(""),
                can_act: user.can_act(),
                notice: extra.notice,
                secret: extra.secret,
                error: extra.error,
            },
        )
        .into_string(),
        cookies,
    )
}

/// Deliveries as a list shows them: with their event's type and their endpoint's URL.
async fn delivery_rows(
    state: &AppState,
    deliveries: &[webhook_deliveries::Model],
    endpoints: &[webhook_endpoints::Model],
) -> Result<Vec<pages::DeliveryListRow>, sea_orm::DbErr> {
    let event_ids: Vec<_> = deliveries.iter().map(|d| d.event_id.clone()).collect();
    let types: std::collections::HashMap<_, _> = events::Entity::find()
        .filter(events::Column::Id.is_in(event_ids))
        .all(&state.db)
        .await?
        .into_iter()
        .map(|e| (e.id, e.event_type))
        .collect();
    Ok(deliveries
        .iter()
        .map(|d| pages::DeliveryListRow {
            id: d.id.to_string(),
            event_type: types.get(&d.event_id).cloned().unwrap_or_default(),
            endpoint_url: endpoints
                .iter()
                .find(|e| e.id == d.endpoint_id)
                .map(|e| e.url.clone())
                .unwrap_or_else(|| "(deleted endpoint)".into()),
            status: d.status.to_string(),
            attempts: d.attempts,
            http_status: d.http_status,
            created_at: rfc3339(d.created_at),
        })
        .collect())
}

#[handler]
pub async fn webhooks_page(
    req: &Request,
    state: Data<&AppState>,
    Query(query): Query<WebhooksQuery>,
) -> Response {
    let (user, token, cookies) = match page_session(req, &state).await {
        Ok(found) => found,
        Err(to_sign_in) => return to_sign_in,
    };
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match DeliveryStatus::parse(s) {
            Some(status) => Some(status),
            None => {
                let error = format!("Unknown delivery status {s:?}.");
                let extra = Extra {
                    error: Some(&error),
                    ..Extra::default()
                };
                return render(
                    &state,
                    &user,
                    &token,
                    &cookies,
                    None,
                    extra,
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
                .await;
            }
        },
    };
    let extra = Extra {
        notice: query.notice.as_deref(),
        ..Extra::default()
    };
    render(
        &state,
        &user,
        &token,
        &cookies,
        status,
        extra,
        StatusCode::OK,
    )
    .await
}

#[derive(Deserialize)]
pub struct NewEndpointForm {
    csrf_token: Option<String>,
    url: Option<String>,
    events: Option<String>,
    description: Option<String>,
}

/// Adds an endpoint, checked exactly as `POST /v1/webhook_endpoints` checks it; its secret is
/// shown on the answering page only.
#[handler]
pub async fn create_endpoint(
    req: &Request,
    state: Data<&AppState>,
    form: Option<Form<NewEndpointForm>>,
) -> Response {
    let (form, user, mut cookies) = match posted(req, &state, form, May::Act).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let token = crate::http::dashboard::routes::session_csrf(&state, &user);
    let form = form.unwrap_or(NewEndpointForm {
        csrf_token: None,
        url: None,
        events: None,
        description: None,
    });
    let events = form
        .events
        .as_deref()
        .unwrap_or("*")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(|e| Text(e.to_string()))
        .collect();
    let request = CreateEndpointRequest {
        url: Text(form.url.unwrap_or_default()),
        enabled_events: events,
        description: form.description.filter(|d| !d.trim().is_empty()).map(Text),
        max_concurrency: None,
        rate_limit: None,
    };
    // The endpoint, or why it was refused (as the API would say it).
    let created: Result<webhook_endpoints::Model, String> = match NewEndpoint::try_from(request) {
        Err(e) => Err(e.message),
        Ok(new) => {
            let made = async {
                let txn = state.db.begin().await?;
                let e = endpoints::create(&txn, &user.scope(), new, state.max_webhook_endpoints)
                    .await?;
                txn.commit().await?;
                Ok::<_, ServiceError>(e)
            }
            .await;
            match made {
                Ok(e) => Ok(e),
                Err(ServiceError::Invalid(v)) => Err(v.message),
                Err(e) => {
                    tracing::error!(error = %e, "dashboard endpoint creation failed");
                    return (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Adding the endpoint failed; try again.",
                    )
                        .into_response();
                }
            }
        }
    };
    let (answer, extra, id);
    match &created {
        Ok(e) => {
            id = e.id.to_string();
            answer = StatusCode::CREATED;
            extra = Extra {
                notice: Some("Endpoint added."),
                secret: Some((&id, &e.secret)),
                error: None,
            };
        }
        Err(message) => {
            answer = StatusCode::UNPROCESSABLE_ENTITY;
            extra = Extra {
                error: Some(message),
                ..Extra::default()
            };
        }
    }
    render(&state, &user, &token, &cookies, None, extra, answer).await
}

#[derive(Deserialize)]
pub struct EndpointActionForm {
    csrf_token: Option<String>,
    /// For `recover`: how far back failed deliveries are re-sent.
    hours: Option<u32>,
}

/// Most hours a dashboard recovery reaches back (a week, as long as deliveries are kept).
const MOST_RECOVER_HOURS: u32 = 24 * 7;

/// The buttons of one endpoint: `test`, `disable`, `enable`, `rotate`, `recover`.
#[handler]
pub async fn endpoint_action(
    req: &Request,
    state: Data<&AppState>,
    Path((id, action)): Path<(String, String)>,
    form: Option<Form<EndpointActionForm>>,
) -> Response {
    let (form, user, mut cookies) = match posted(req, &state, form, May::Act).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(endpoint_id) = EndpointId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "No such endpoint.").into_response();
    };
    let existing = match endpoints::get(&state.db, &user.scope(), &endpoint_id).await {
        Ok(Some(e)) => e,
        Ok(None) => return (StatusCode::NOT_FOUND, "No such endpoint.").into_response(),
        Err(e) => return unavailable("endpoint action", &e, &cookies),
    };
    let enabled = existing.status == EndpointStatus::Enabled;
    let done: Result<String, sea_orm::DbErr> = match action.as_str() {
        "disable" | "enable" => {
            let status = if action == "enable" {
                EndpointStatus::Enabled
            } else {
                EndpointStatus::Disabled
            };
            let change = EndpointUpdate {
                url: None,
                enabled_events: None,
                description: None,
                status: Some(status),
                max_concurrency: None,
                rate_limit: None,
            };
            endpoints::update(&state.db, existing, change)
                .await
                .map(|e| format!("Endpoint {} is {}.", e.url, e.status))
        }
        "rotate" => {
            let token = crate::http::dashboard::routes::session_csrf(&state, &user);
            let rotated = async {
                let txn = state.db.begin().await?;
                let e = endpoints::rotate_secret(
                    &txn,
                    &user.scope(),
                    &endpoint_id,
                    state.webhook.secret_overlap,
                )
                .await?;
                txn.commit().await?;
                Ok::<_, sea_orm::DbErr>(e)
            }
            .await;
            return match rotated {
                Ok(Some(e)) => {
                    let notice = format!(
                        "Secret rotated; the old one keeps signing beside it for {}.",
                        humantime::format_duration(state.webhook.secret_overlap)
                    );
                    let id = e.id.to_string();
                    let extra = Extra {
                        notice: Some(&notice),
                        secret: Some((&id, &e.secret)),
                        error: None,
                    };
                    render(&state, &user, &token, &cookies, None, extra, StatusCode::OK).await
                }
                Ok(None) => (StatusCode::NOT_FOUND, "No such endpoint.").into_response(),
                Err(e) => unavailable("secret rotation", &e, &cookies),
            };
        }
        "test" | "recover" if !enabled => {
            return back_to(
                PAGE,
                "Enable the endpoint first: a disabled endpoint is sent nothing.",
                &cookies,
            );
        }
        "test" => send_test(&state, &existing).await,
        "recover" => {
            let hours = form.as_ref().and_then(|f| f.hours).unwrap_or(24);
            if hours == 0 || hours > MOST_RECOVER_HOURS {
                return (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("Recover between 1 and {MOST_RECOVER_HOURS} hours."),
                )
                    .into_response();
            }
            let until = Utc::now();
            let since = until - chrono::Duration::hours(i64::from(hours));
            delivery_service::recover(&state.db, &endpoint_id, since, until)
                .await
                .map(|n| format!("{n} failed deliveries of the last {hours} h are due again."))
        }
        _ => return (StatusCode::NOT_FOUND, "No such action.").into_response(),
    };
    match done {
        Ok(notice) => back_to(PAGE, &notice, &cookies),
        Err(e) => unavailable("endpoint action", &e, &cookies),
    }
}

/// As `POST /v1/webhook_endpoints/{id}/test`: commit the test event and its delivery, then
/// make the first attempt at once.
async fn send_test(
    state: &AppState,
    endpoint: &webhook_endpoints::Model,
) -> Result<String, sea_orm::DbErr> {
    let txn = state.db.begin().await?;
    let ctx = delivery_service::create_test(&txn, endpoint, state.webhook.lease()).await?;
    txn.commit().await?;
    let delivery_id = ctx.delivery.id.clone();
    let (outcome, result) = delivery_service::send_test_now(&state.send_now(), ctx).await?;
    let answer = match result.and_then(|r| r.http_status) {
        Some(status) => format!("it answered {status}"),
        None => "it did not answer".to_string(),
    };
    Ok(format!(
        "Test event sent to {} ({delivery_id}): {answer}; {outcome:?}.",
        endpoint.url
    ))
}

/// One delivery and every attempt of it.
#[handler]
pub async fn delivery_page(
    req: &Request,
    state: Data<&AppState>,
    Path(id): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let (user, token, cookies) = match page_session(req, &state).await {
        Ok(found) => found,
        Err(to_sign_in) => return to_sign_in,
    };
    let not_found = || html_response(StatusCode::NOT_FOUND, "No such delivery.".into(), &cookies);
    let Some(delivery_id) = DeliveryId::parse(&id) else {
        return not_found();
    };
    let loaded = async {
        let Some(d) = delivery_service::get(&state.db, &user.scope(), &delivery_id).await? else {
            return Ok(None);
        };
        let event = events::Entity::find_by_id(d.event_id.clone())
            .one(&state.db)
            .await?;
        let endpoint = webhook_endpoints::Entity::find_by_id(d.endpoint_id.clone())
            .one(&state.db)
            .await?;
        let attempts = delivery_service::attempts(&state.db, &d.id).await?;
        Ok::<_, sea_orm::DbErr>(Some((d, event, endpoint, attempts)))
    }
    .await;
    let (d, event, endpoint, attempts) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => return not_found(),
        Err(e) => return unavailable("delivery page", &e, &cookies),
    };
    let rows: Vec<pages::AttemptRow> = attempts
        .iter()
        .map(|a| pages::AttemptRow {
            number: a.attempt_number,
            at: rfc3339(a.created_at),
            http_status: a.http_status,
            duration_ms: a.duration_ms,
            error: a.error_message.clone(),
            response_excerpt: a.response_body.clone(),
        })
        .collect();
    let id = d.id.to_string();
    let event_id = d.event_id.to_string();
    let payment_id = event
        .as_ref()
        .and_then(|e| e.payment_id.as_ref())
        .map(|p| p.to_string());
    let status = d.status.to_string();
    html_response(
        StatusCode::OK,
        pages::delivery_detail(
            &pages::Chrome {
                csrf_token: &token,
                livemode: user.livemode,
            },
            &pages::DeliveryDetail {
                id: &id,
                event_id: &event_id,
                event_type: event.as_ref().map(|e| e.event_type.as_str()).unwrap_or(""),
                payment_id: payment_id.as_deref(),
                endpoint_url: endpoint
                    .as_ref()
                    .map(|e| e.url.as_str())
                    .unwrap_or("(deleted endpoint)"),
                status: &status,
                next_retry_at: d.next_retry_at.map(rfc3339),
                attempts: &rows,
                retryable: matches!(d.status, DeliveryStatus::Failed | DeliveryStatus::Pending),
                can_act: user.can_act(),
                notice: query.notice.as_deref(),
            },
        )
        .into_string(),
        &cookies,
    )
}
