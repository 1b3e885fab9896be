//! The dashboard's webhook pages: the endpoints (add, test, disable, enable, rotate the
//! secret, recover failed deliveries) with the recent deliveries, and one delivery with every
//! attempt and its retry button. The actions are the API's, through the same services;
//! owners and developers act, viewers look.

use chrono::Utc;
use entity::event::rfc3339;
use entity::ids::EndpointId;
use entity::status::{DeliveryStatus, EndpointStatus};
use entity::{webhook_deliveries, webhook_endpoints};
use maud::{Markup, html};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{Response, handler};
use sea_orm::TransactionTrait;
use serde::Deserialize;

use crate::core::error::ServiceError;
use crate::core::text::Text;
use crate::http::api::dto::CreateEndpointRequest;
use crate::http::dashboard::frame::{
    Chrome, Confirm, LIVE_WEBHOOKS, action_form, badge, choice, confirm, confirmed, frame, nav,
    when,
};
use crate::http::dashboard::session::{
    PageError, Posted, SignedIn, back_to, html_response, page, told, with_csrf,
};
use crate::http::state::AppState;
use crate::webhooks::deliveries;
use crate::webhooks::endpoints::{self, EndpointUpdate, NewEndpoint};

const PAGE: &str = "/dashboard/webhooks";
/// Deliveries the webhooks page lists.
const RECENT: u64 = 25;
/// Most hours a dashboard recovery reaches back (a week, as long as deliveries are kept).
const MOST_RECOVER_HOURS: u32 = 24 * 7;

#[derive(Deserialize)]
pub struct WebhooksQuery {
    status: Option<String>,
}

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
    chrome: &Chrome<'_>,
    status: Option<DeliveryStatus>,
    extra: Extra<'_>,
    answer: StatusCode,
) -> Result<Response, PageError> {
    let scope = user.scope();
    let loaded = async {
        let endpoints = endpoints::all(&state.db, &scope).await?;
        let recent = deliveries::recent(&state.db, &scope, status, RECENT).await?;
        let rows = delivery_rows(state, &scope, &recent, &endpoints).await?;
        Ok::<_, sea_orm::DbErr>((endpoints, rows))
    }
    .await;
    let (endpoints, rows) = loaded.map_err(PageError::db("webhooks page"))?;
    let endpoint_rows: Vec<EndpointRow> = endpoints
        .iter()
        .map(|e| EndpointRow {
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
            status: e.status,
            disabled_reason: e.disabled_reason.clone(),
            consecutive_failures: e.consecutive_failures,
        })
        .collect();
    Ok(html_response(
        answer,
        webhooks_view(
            chrome,
            &Webhooks {
                endpoints: &endpoint_rows,
                deliveries: &rows,
                status: status.map(|s| s.as_str()).unwrap_or(""),
                can_act: user.can_act(),
                notice: extra.notice,
                secret: extra.secret,
                error: extra.error,
            },
        )
        .into_string(),
    ))
}

/// Deliveries as a list shows them: with their event's type and their endpoint's URL.
async fn delivery_rows(
    state: &AppState,
    scope: &entity::ids::Scope,
    list: &[webhook_deliveries::Model],
    endpoints: &[webhook_endpoints::Model],
) -> Result<Vec<DeliveryListRow>, sea_orm::DbErr> {
    let event_ids: Vec<_> = list.iter().map(|d| d.event_id.clone()).collect();
    let types = crate::webhooks::events::types_of(&state.db, scope, &event_ids).await?;
    Ok(list
        .iter()
        .map(|d| DeliveryListRow {
            id: d.id.to_string(),
            event_type: types.get(&d.event_id).cloned().unwrap_or_default(),
            endpoint_url: endpoints
                .iter()
                .find(|e| e.id == d.endpoint_id)
                .map(|e| e.url.clone())
                .unwrap_or_else(|| "(deleted endpoint)".into()),
            status: d.status,
            attempts: d.attempts,
            http_status: d.http_status,
            created_at: rfc3339(d.created_at),
        })
        .collect())
}

#[handler]
pub async fn webhooks_page(
    me: SignedIn,
    state: Data<&AppState>,
    Query(query): Query<WebhooksQuery>,
) -> Result<Response, PageError> {
    let chrome = me.chrome();
    match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => {
            let extra = Extra {
                notice: me.flash.as_deref(),
                ..Extra::default()
            };
            render(&state, &me.user, &chrome, None, extra, StatusCode::OK).await
        }
        Some(s) => match DeliveryStatus::parse(s) {
            Some(status) => {
                let extra = Extra {
                    notice: me.flash.as_deref(),
                    ..Extra::default()
                };
                render(
                    &state,
                    &me.user,
                    &chrome,
                    Some(status),
                    extra,
                    StatusCode::OK,
                )
                .await
            }
            None => {
                let error = format!("Unknown delivery status {s:?}.");
                let extra = Extra {
                    error: Some(&error),
                    ..Extra::default()
                };
                let answer = StatusCode::UNPROCESSABLE_ENTITY;
                render(&state, &me.user, &chrome, None, extra, answer).await
            }
        },
    }
}

#[derive(Deserialize)]
pub struct NewEndpointForm {
    csrf_token: Option<String>,
    url: Option<String>,
    events: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
pub struct EndpointActionForm {
    csrf_token: Option<String>,
    /// For `recover`: how far back failed deliveries are re-sent.
    hours: Option<u32>,
    /// `yes` once the confirmation step was passed (disable and rotate ask first).
    confirmed: Option<String>,
}

with_csrf!(NewEndpointForm, EndpointActionForm);

/// Adds an endpoint, checked exactly as `POST /v1/webhook_endpoints` checks it; its secret is
/// shown on the answering page only.
#[handler]
pub async fn create_endpoint(
    posted: Posted<NewEndpointForm>,
    state: Data<&AppState>,
) -> Result<Response, PageError> {
    let form = &posted.form;
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
        url: Text(form.url.clone().unwrap_or_default()),
        enabled_events: events,
        description: form
            .description
            .clone()
            .filter(|d| !d.trim().is_empty())
            .map(Text),
        max_concurrency: None,
        rate_limit: None,
    };
    // The endpoint, or why it was refused (as the API would say it).
    let created: Result<webhook_endpoints::Model, String> = match NewEndpoint::try_from(request) {
        Err(e) => Err(e.message),
        Ok(new) => {
            let made = async {
                let txn = state.db.begin().await?;
                let e = endpoints::create(&txn, &posted.scope(), new, state.max_webhook_endpoints)
                    .await?;
                txn.commit().await?;
                Ok::<_, ServiceError>(e)
            }
            .await;
            match made {
                Ok(e) => Ok(e),
                Err(e @ ServiceError::Db(_)) => {
                    tracing::error!(error = %e, "dashboard endpoint creation failed");
                    return Err(PageError::Unavailable("endpoint creation"));
                }
                Err(e) => Err(told(e)),
            }
        }
    };
    let chrome = posted.chrome();
    match &created {
        Ok(e) => {
            let id = e.id.to_string();
            let extra = Extra {
                notice: Some("Endpoint added."),
                secret: Some((&id, &e.secret)),
                error: None,
            };
            render(
                &state,
                &posted.user,
                &chrome,
                None,
                extra,
                StatusCode::CREATED,
            )
            .await
        }
        Err(message) => {
            let extra = Extra {
                error: Some(message),
                ..Extra::default()
            };
            let answer = StatusCode::UNPROCESSABLE_ENTITY;
            render(&state, &posted.user, &chrome, None, extra, answer).await
        }
    }
}

/// An endpoint's buttons, named in their paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EndpointAction {
    Test,
    Disable,
    Enable,
    Rotate,
    Recover,
}

impl EndpointAction {
    const ALL: [EndpointAction; 5] = [
        Self::Test,
        Self::Disable,
        Self::Enable,
        Self::Rotate,
        Self::Recover,
    ];

    fn path(self) -> &'static str {
        ["test", "disable", "enable", "rotate", "recover"][self as usize]
    }

    fn parse(text: &str) -> Option<EndpointAction> {
        Self::ALL.into_iter().find(|a| a.path() == text)
    }
}

/// The buttons of one endpoint: `test`, `disable`, `enable`, `rotate`, `recover`.
/// A test send's outcome as a person reads it (never the type's debug form).
fn outcome_said(outcome: &worker::manual::AttemptOutcome) -> String {
    use worker::manual::AttemptOutcome as O;
    match outcome {
        O::Succeeded => "delivered".into(),
        O::WillRetry {
            attempts,
            next_retry_at,
        } => format!(
            "attempt {attempts} failed; the next is at {} UTC",
            next_retry_at.format("%H:%M:%S")
        ),
        O::Failed { attempts } => format!("failed after {attempts} attempts"),
        O::Skipped => "not sent: the endpoint is disabled or gone".into(),
    }
}

#[handler]
pub async fn endpoint_action(
    posted: Posted<EndpointActionForm>,
    state: Data<&AppState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, PageError> {
    const NO_SUCH: PageError = PageError::NotFound("No such endpoint.");
    let endpoint_id = EndpointId::parse(&id).ok_or(NO_SUCH)?;
    let action = EndpointAction::parse(&action).ok_or(PageError::NotFound("No such action."))?;
    let scope = posted.scope();
    let existing = endpoints::get(&state.db, &scope, &endpoint_id)
        .await
        .map_err(PageError::db("endpoint action"))?
        .ok_or(NO_SUCH)?;
    let enabled = existing.status == EndpointStatus::Enabled;
    // Disabling stops a merchant's webhooks; rotating changes what its server must verify.
    let asked = match action {
        EndpointAction::Disable => Some((
            format!("Disable {}?", existing.url),
            "Disable the endpoint",
            "No webhook is sent to it until it is enabled again; events meanwhile are kept and can be re-sent with Recover.",
        )),
        EndpointAction::Rotate => Some((
            format!("Rotate the signing secret of {}?", existing.url),
            "Rotate the secret",
            "A new signing secret is shown once; the old one keeps signing beside it for the overlap period, then stops. Your server must verify with the new one before then.",
        )),
        _ => None,
    };
    if let Some((title, button, consequence)) = asked
        && !confirmed(posted.form.confirmed.as_deref())
    {
        let path = format!("/dashboard/webhooks/{id}/{}", action.path());
        return Ok(page(confirm(
            &posted.chrome(),
            &Confirm {
                title: &title,
                consequence,
                action: &path,
                fields: &[],
                button,
                back: PAGE,
            },
        )));
    }
    let status_change = |status| EndpointUpdate {
        url: None,
        enabled_events: None,
        description: None,
        status: Some(status),
        max_concurrency: None,
        rate_limit: None,
    };
    let notice = match action {
        EndpointAction::Disable | EndpointAction::Enable => {
            let to = if matches!(action, EndpointAction::Enable) {
                EndpointStatus::Enabled
            } else {
                EndpointStatus::Disabled
            };
            let e = endpoints::update(&state.db, existing, status_change(to))
                .await
                .map_err(PageError::db("endpoint action"))?;
            format!("Endpoint {} is {}.", e.url, e.status)
        }
        EndpointAction::Rotate => {
            let rotated = async {
                let txn = state.db.begin().await?;
                let e = endpoints::rotate_secret(
                    &txn,
                    &scope,
                    &endpoint_id,
                    state.webhook.secret_overlap,
                )
                .await?;
                txn.commit().await?;
                Ok::<_, sea_orm::DbErr>(e)
            }
            .await
            .map_err(PageError::db("secret rotation"))?
            .ok_or(NO_SUCH)?;
            let notice = format!(
                "Secret rotated; the old one keeps signing beside it for {}.",
                humantime::format_duration(state.webhook.secret_overlap)
            );
            let id = rotated.id.to_string();
            let extra = Extra {
                notice: Some(&notice),
                secret: Some((&id, &rotated.secret)),
                error: None,
            };
            let chrome = posted.chrome();
            return render(&state, &posted.user, &chrome, None, extra, StatusCode::OK).await;
        }
        EndpointAction::Test | EndpointAction::Recover if !enabled => {
            return Ok(back_to(
                PAGE,
                "Enable the endpoint first: a disabled endpoint is sent nothing.",
            ));
        }
        EndpointAction::Test => {
            let sent = deliveries::test_endpoint(
                &state.send_now(),
                &scope,
                &endpoint_id,
                None,
                state.webhook.one_shot_lease(),
            )
            .await;
            match sent {
                Ok(sent) => {
                    let answer = match sent.attempt.as_ref().and_then(|(_, r)| r.as_ref()) {
                        Some(r) => match r.http_status {
                            Some(status) => format!("it answered {status}"),
                            None => "it did not answer".to_string(),
                        },
                        None => "it was not sent yet; the worker sends it".to_string(),
                    };
                    let outcome = sent
                        .attempt
                        .map(|(o, _)| outcome_said(&o))
                        .unwrap_or_else(|| "scheduled".into());
                    format!(
                        "Test event sent to {} ({}): {answer}; {outcome}.",
                        existing.url, sent.delivery_id
                    )
                }
                Err(e @ ServiceError::Db(_)) => {
                    tracing::error!(error = %e, "dashboard test send failed");
                    return Err(PageError::Unavailable("test send"));
                }
                Err(e) => format!("Not sent: {}", told(e)),
            }
        }
        EndpointAction::Recover => {
            let hours = posted.form.hours.unwrap_or(24);
            if hours == 0 || hours > MOST_RECOVER_HOURS {
                return Err(PageError::Invalid(format!(
                    "Recover between 1 and {MOST_RECOVER_HOURS} hours."
                )));
            }
            let until = Utc::now();
            let since = until - chrono::Duration::hours(i64::from(hours));
            let n = deliveries::recover(&state.db, &endpoint_id, since, until)
                .await
                .map_err(PageError::db("endpoint action"))?;
            format!("{n} failed deliveries of the last {hours} h are due again.")
        }
    };
    Ok(back_to(PAGE, &notice))
}

/// One webhook endpoint as the webhooks page lists it.
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub events: String,
    pub status: EndpointStatus,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
}

/// One delivery in a list.
pub struct DeliveryListRow {
    pub id: String,
    pub event_type: String,
    pub endpoint_url: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub http_status: Option<i32>,
    pub created_at: String,
}

/// What the webhooks page shows.
pub struct Webhooks<'a> {
    pub endpoints: &'a [EndpointRow],
    pub deliveries: &'a [DeliveryListRow],
    pub status: &'a str,
    pub can_act: bool,
    pub notice: Option<&'a str>,
    /// A signing secret just made (new endpoint or rotation), shown this once.
    pub secret: Option<(&'a str, &'a str)>,
    pub error: Option<&'a str>,
}

fn webhooks_view(chrome: &Chrome<'_>, view: &Webhooks<'_>) -> Markup {
    let csrf_token = chrome.csrf_token;
    frame(
        "Webhooks",
        LIVE_WEBHOOKS,
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Webhooks" }
                @if let Some(notice) = view.notice { p role="status" { (notice) } }
                @if let Some(error) = view.error { p.error role="alert" { (error) } }
                @if let Some((endpoint, secret)) = view.secret {
                    div.alert role="alert" {
                        p { "The signing secret of " code { (endpoint) } ", shown only this once: store it now." }
                        p { code #new-secret { (secret) } }
                    }
                }
                section #endpoints-section aria-labelledby="endpoints" data-live-region {
                    h2 #endpoints { "Endpoints" }
                    table {
                        thead { tr { th scope="col" { "URL" } th scope="col" { "Events" } th scope="col" { "Status" } th scope="col" { "Failures in a row" } th scope="col" { "Actions" } } }
                        tbody {
                            @for e in view.endpoints {
                                @let base = format!("/dashboard/webhooks/{}", e.id);
                                tr data-endpoint=(e.id) {
                                    td data-label="URL" { a href={ "/dashboard/webhooks/" (e.id) } { (e.url) } }
                                    td data-label="Events" { code { (e.events) } }
                                    td data-label="Status" { (badge(&e.status)) @if let Some(r) = &e.disabled_reason { " (" (r) ")" } }
                                    td data-label="Failures in a row" { (e.consecutive_failures) }
                                    td data-label="Actions" {
                                        @if view.can_act {
                                            @if e.status == EndpointStatus::Enabled {
                                                (action_form(csrf_token, &format!("{base}/test"), "Send test", &format!("Send a test event to {}", e.url), &[]))
                                                (action_form(csrf_token, &format!("{base}/disable"), "Disable", &format!("Disable {}", e.url), &[]))
                                                (action_form(csrf_token, &format!("{base}/recover"), "Recover 24 h", &format!("Re-send the last day's failed deliveries to {}", e.url), &[("hours", "24")]))
                                            } @else {
                                                (action_form(csrf_token, &format!("{base}/enable"), "Enable", &format!("Enable {}", e.url), &[]))
                                            }
                                            (action_form(csrf_token, &format!("{base}/rotate"), "Rotate secret", &format!("Rotate the secret of {}", e.url), &[]))
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if view.endpoints.is_empty() { p { "No endpoint yet." } }
                }
                @if view.can_act {
                    form method="post" action="/dashboard/webhooks" {
                        h2 { "Add an endpoint" }
                        input type="hidden" name="csrf_token" value=(csrf_token);
                        label for="endpoint-url" { "URL" }
                        input #endpoint-url name="url" type="url" required placeholder="https://example.com/webhooks";
                        label for="endpoint-events" { "Events (comma-separated, * for all)" }
                        input #endpoint-events name="events" value="*";
                        label for="endpoint-description" { "Description" }
                        input #endpoint-description name="description";
                        p { button type="submit" { "Add endpoint" } }
                    }
                }
                section aria-labelledby="recent-deliveries" {
                    h2 #recent-deliveries { "Recent deliveries" }
                    form method="get" action="/dashboard/webhooks" {
                        (choice("status", "Status", DeliveryStatus::ALL.iter().map(|s| s.as_str()), view.status))
                        p { button type="submit" { "Filter" } }
                    }
                    (delivery_table(view.deliveries))
                }
            }
        },
    )
}

fn delivery_table(deliveries: &[DeliveryListRow]) -> Markup {
    html! {
        table #deliveries-table data-live-region {
            thead { tr { th scope="col" { "Delivery" } th scope="col" { "Event" } th scope="col" { "Endpoint" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Last answer" } th scope="col" { "Created" } } }
            tbody {
                @for d in deliveries {
                    tr data-delivery=(d.id) {
                        td data-label="Delivery" { a href={ "/dashboard/deliveries/" (d.id) } { code { (d.id) } } }
                        td data-label="Event" { code { (d.event_type) } }
                        td data-label="Endpoint" { (d.endpoint_url) }
                        td data-label="Status" { (badge(&d.status)) }
                        td data-label="Attempts" { (d.attempts) }
                        td data-label="Last answer" { @if let Some(s) = d.http_status { (s) } @else { "—" } }
                        td data-label="Created" { (when(&d.created_at)) }
                    }
                }
            }
        }
    }
}
