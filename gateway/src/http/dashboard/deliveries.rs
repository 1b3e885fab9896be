//! One webhook delivery's page: the request as sent (the event's envelope, the same for
//! every attempt, and each attempt's own headers), every answer, and the retry button (on
//! this page and on the payment's), as `POST /v1/webhook_deliveries/{id}/retry`.

use entity::event::rfc3339;
use entity::ids::{DeliveryId, PaymentId};
use entity::status::DeliveryStatus;
use maud::{Markup, html};
use poem::web::{Data, Path};
use poem::{Response, handler};
use serde::Deserialize;

use crate::http::dashboard::frame::{Chrome, LIVE_PAYMENT, action_form, badge, frame, nav, when};
use crate::http::dashboard::session::{PageError, Posted, SignedIn, back_to, page, with_csrf};
use crate::http::state::AppState;
use crate::webhooks::{deliveries, endpoints};

#[derive(Deserialize)]
pub struct RetryForm {
    csrf_token: Option<String>,
    payment_id: Option<String>,
    /// `delivery` to come back to the delivery's page rather than the payment's.
    back: Option<String>,
}

with_csrf!(RetryForm);

/// The retry button: the delivery is due now with a fresh round of attempts (as
/// `POST /v1/webhook_deliveries/{id}/retry`).
#[handler]
pub async fn retry_delivery(
    posted: Posted<RetryForm>,
    state: Data<&AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    const NO_SUCH: PageError = PageError::NotFound("No such delivery.");
    let delivery_id = DeliveryId::parse(&id).ok_or(NO_SUCH)?;
    // Back to the payment's page when the form came from there, else the delivery's.
    let from_payment = Some(&posted.form)
        .filter(|f| f.back.as_deref() != Some("delivery"))
        .and_then(|f| f.payment_id.as_deref().and_then(PaymentId::parse));
    let back = match from_payment {
        Some(p) => format!("/dashboard/payments/{p}"),
        None => format!("/dashboard/deliveries/{delivery_id}"),
    };
    let unavailable = PageError::db("retry");
    let d = deliveries::get(&state.db, &posted.scope(), &delivery_id)
        .await
        .map_err(PageError::db("retry"))?
        .ok_or(NO_SUCH)?;
    Ok(match state.retry_now(&d.id).await.map_err(unavailable)? {
        true => back_to(&back, "Retry sent now: its result appears here."),
        false => back_to(
            &back,
            &format!("A {} delivery cannot be retried.", d.status),
        ),
    })
}

/// One delivery and every attempt of it.
#[handler]
pub async fn delivery_page(
    me: SignedIn,
    state: Data<&AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    const NO_SUCH: PageError = PageError::NotFound("No such delivery.");
    let delivery_id = DeliveryId::parse(&id).ok_or(NO_SUCH)?;
    let scope = me.scope();
    let loaded = async {
        let Some(d) = deliveries::get(&state.db, &scope, &delivery_id).await? else {
            return Ok(None);
        };
        let event = crate::webhooks::events::get(&state.db, &scope, &d.event_id).await?;
        let endpoint = endpoints::get(&state.db, &scope, &d.endpoint_id).await?;
        let attempts = deliveries::attempts(&state.db, &d.id).await?;
        Ok::<_, sea_orm::DbErr>(Some((d, event, endpoint, attempts)))
    }
    .await;
    let (d, event, endpoint, attempts) = loaded
        .map_err(PageError::db("delivery page"))?
        .ok_or(NO_SUCH)?;
    let rows: Vec<AttemptRow> = attempts
        .iter()
        .map(|a| AttemptRow {
            number: a.attempt_number,
            at: rfc3339(a.created_at),
            http_status: a.http_status,
            duration_ms: a.duration_ms,
            error: a.error_message.clone(),
            response: a.response_body.clone(),
            headers: a.sent_headers(),
        })
        .collect();
    // What every attempt sent as its body, built as the worker builds it (from the event,
    // which never changes).
    let body = event.as_ref().map(|e| {
        let bytes =
            entity::event::WebhookBody::new(&e.id, &e.event_type, e.created_at, &e.data).to_bytes();
        String::from_utf8_lossy(&bytes).into_owned()
    });
    let id = d.id.to_string();
    let event_id = d.event_id.to_string();
    let payment_id = event
        .as_ref()
        .and_then(|e| e.payment_id.as_ref())
        .map(|p| p.to_string());
    Ok(page(delivery_view(
        &me.chrome(),
        &DeliveryDetail {
            id: &id,
            event_id: &event_id,
            event_type: event.as_ref().map(|e| e.event_type.as_str()).unwrap_or(""),
            payment_id: payment_id.as_deref(),
            endpoint_url: endpoint
                .as_ref()
                .map(|e| e.url.as_str())
                .unwrap_or("(deleted endpoint)"),
            status: d.status,
            next_retry_at: d.next_retry_at.map(rfc3339),
            body: body.as_deref(),
            attempts: &rows,
            retryable: matches!(d.status, DeliveryStatus::Failed | DeliveryStatus::Pending),
            can_act: me.user.can_act(),
            notice: me.flash.as_deref(),
        },
    )))
}

/// One attempt of a delivery.
pub struct AttemptRow {
    pub number: i32,
    pub at: String,
    pub http_status: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// The endpoint's answer, as stored (already cut to size by the worker).
    pub response: Option<String>,
    /// The headers this attempt sent, in order (none when it sent nothing).
    pub headers: Vec<(String, String)>,
}

/// What the delivery page shows.
pub struct DeliveryDetail<'a> {
    pub id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payment_id: Option<&'a str>,
    pub endpoint_url: &'a str,
    pub status: DeliveryStatus,
    pub next_retry_at: Option<String>,
    /// The request body every attempt sent (none if the event is gone).
    pub body: Option<&'a str>,
    pub attempts: &'a [AttemptRow],
    pub retryable: bool,
    pub can_act: bool,
    pub notice: Option<&'a str>,
}

fn delivery_view(chrome: &Chrome<'_>, view: &DeliveryDetail<'_>) -> Markup {
    let csrf_token = chrome.csrf_token;
    frame(
        &format!("Delivery {}", view.id),
        LIVE_PAYMENT,
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Delivery " code { (view.id) } }
                @if let Some(notice) = view.notice { p role="status" { (notice) } }
                div #delivery-summary data-live-region {
                    p {
                        code { (view.event_type) } " (" code { (view.event_id) } ") to " (view.endpoint_url)
                        @if let Some(p) = view.payment_id { " · payment " a href={ "/dashboard/payments/" (p) } { code { (p) } } }
                    }
                    p { "Status: " strong #delivery-status { (badge(&view.status)) }
                        @if let Some(at) = &view.next_retry_at { " · next attempt " (when(at)) } }
                    @if view.can_act && view.retryable {
                        (action_form(csrf_token, &format!("/dashboard/deliveries/{}/retry", view.id), "Retry now", &format!("Retry delivery {}", view.id), &[("back", "delivery")]))
                    }
                }
                @if let Some(body) = view.body {
                    section #request-section aria-labelledby="request" {
                        h2 #request { "Request" }
                        p { "POST " code { (view.endpoint_url) } ", with this body on every attempt; each attempt's headers (its own timestamp and signatures) are under it below." }
                        pre.sent #request-body { (body) }
                    }
                }
                section #attempts-section aria-labelledby="attempts" data-live-region {
                    h2 #attempts { "Attempts" }
                    @if view.attempts.is_empty() { p { "None yet." } }
                    table {
                        thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Answer" } th scope="col" { "Latency" } th scope="col" { "Error" } th scope="col" { "Response" } th scope="col" { "Sent" } } }
                        tbody #attempt-rows {
                            @for a in view.attempts {
                                tr data-attempt=(a.number) {
                                    td data-label="#" { (a.number) }
                                    td data-label="When" { (when(&a.at)) }
                                    td data-label="Answer" { @if let Some(s) = a.http_status { (s) } @else { "—" } }
                                    td data-label="Latency" { (a.duration_ms) " ms" }
                                    td data-label="Error" { (a.error.as_deref().unwrap_or("")) }
                                    td data-label="Response" {
                                        @if let Some(body) = &a.response {
                                            @let start = excerpt(body);
                                            @if start.len() < body.len() {
                                                details { summary { code { (start) } } pre.sent { (body) } }
                                            } @else { code { (body) } }
                                        }
                                    }
                                    td data-label="Sent" {
                                        @if a.headers.is_empty() { "—" } @else {
                                            details.sent-headers {
                                                summary { (a.headers.len()) " headers" }
                                                pre.sent { @for (name, value) in &a.headers { (name) ": " (value) "\n" } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The first 200 characters of an answer, on a character boundary.
fn excerpt(body: &str) -> String {
    const MOST: usize = 200;
    match body.char_indices().nth(MOST) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_string(),
    }
}
