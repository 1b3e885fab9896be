//! One webhook endpoint's page (`/dashboard/webhooks/{id}`): its settings and state, how its
//! latest deliveries went, and those deliveries. The actions stay on the webhooks page; the
//! signing secret is never shown.

use entity::ids::EndpointId;
use entity::status::DeliveryStatus;
use maud::{Markup, html};
use poem::web::{Data, Path};
use poem::{Response, handler};

use crate::core::pagination::Page;
use crate::http::dashboard::frame::{Chrome, LIVE_WEBHOOKS, badge, frame, nav, percent, when};
use crate::http::dashboard::session::{PageError, SignedIn, page};
use crate::http::state::AppState;
use crate::webhooks::{deliveries, endpoints};

/// Deliveries the page lists, and over which its success rate is told.
const LATEST: u64 = 50;

#[handler]
pub async fn endpoint_page(
    me: SignedIn,
    state: Data<&AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    const NO_SUCH: PageError = PageError::NotFound("No such endpoint.");
    let endpoint_id = EndpointId::parse(&id).ok_or(NO_SUCH)?;
    let scope = me.scope();
    let loaded = async {
        let Some(e) = endpoints::get(&state.db, &scope, &endpoint_id).await? else {
            return Ok(None);
        };
        let latest = Page {
            limit: LATEST,
            starting_after: None,
            ending_before: None,
        };
        let filter = deliveries::DeliveryFilter {
            endpoint_id: Some(endpoint_id.as_str()),
            ..Default::default()
        };
        let (rows, _) = deliveries::list(&state.db, &scope, filter, &latest).await?;
        Ok::<_, sea_orm::DbErr>(Some((e, rows)))
    }
    .await;
    let (endpoint, rows) = loaded.map_err(PageError::db("endpoint"))?.ok_or(NO_SUCH)?;
    Ok(page(endpoint_view(&me.chrome(), &endpoint, &rows)))
}

/// Succeeded among the finished ones (pending and retrying ones have not been told yet).
fn success_rate(rows: &[entity::webhook_deliveries::Model]) -> (Option<f64>, usize) {
    let finished: Vec<_> = rows
        .iter()
        .filter(|d| matches!(d.status, DeliveryStatus::Succeeded | DeliveryStatus::Failed))
        .collect();
    let succeeded = finished
        .iter()
        .filter(|d| d.status == DeliveryStatus::Succeeded)
        .count();
    let rate = (!finished.is_empty()).then(|| succeeded as f64 / finished.len() as f64);
    (rate, finished.len())
}

fn endpoint_view(
    chrome: &Chrome<'_>,
    e: &entity::webhook_endpoints::Model,
    rows: &[entity::webhook_deliveries::Model],
) -> Markup {
    let (rate, finished) = success_rate(rows);
    frame(
        &format!("Endpoint {}", e.url),
        LIVE_WEBHOOKS,
        html! {
            (nav(chrome, ""))
            main {
                p { a href="/dashboard/webhooks" { "← Webhooks" } }
                h1 { "Endpoint " code { (e.url) } }
                div #endpoint-summary data-live-region {
                    div.cards {
                        div.card #endpoint-success { strong { (percent(rate)) } "of its last " (finished) " finished deliveries succeeded" }
                        div.card #endpoint-failures { strong { (e.consecutive_failures) } "failures in a row" }
                    }
                    dl.facts {
                        dt { "Status" } dd { (badge(&e.status)) @if let Some(r) = &e.disabled_reason { " (" (r) ")" } }
                        @if let Some(since) = e.failing_since { dt { "Failing since" } dd { (when(&entity::event::rfc3339(since))) } }
                        @if let Some(d) = &e.description { dt { "Description" } dd { (d) } }
                        dt { "Events" } dd { code { (e.enabled_event_names().join(", ")) } }
                        dt { "Sends at once" } dd { @if let Some(c) = e.max_concurrency { (c) } @else { "the worker's default" } }
                        dt { "Rate limit" } dd { @if let Some(r) = e.rate_limit { (r) " a second" } @else { "none" } }
                        dt { "Id" } dd { code { (e.id) } }
                        dt { "Created" } dd { (when(&entity::event::rfc3339(e.created_at))) }
                    }
                }
                section #endpoint-deliveries aria-labelledby="endpoint-deliveries-title" data-live-region {
                    h2 #endpoint-deliveries-title { "Its latest deliveries" }
                    @if rows.is_empty() { p { "None yet: a payment event it subscribes to makes the first." } }
                    @else {
                        table {
                            thead { tr { th scope="col" { "Delivery" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Last answer" } th scope="col" { "Created" } } }
                            tbody {
                                @for d in rows {
                                    tr data-delivery=(d.id) {
                                        td data-label="Delivery" { a href={ "/dashboard/deliveries/" (d.id) } { code { (d.id) } } }
                                        td data-label="Status" { (badge(&d.status)) }
                                        td data-label="Attempts" { (d.attempts) }
                                        td data-label="Last answer" { @if let Some(s) = d.http_status { (s) } @else { "—" } }
                                        td data-label="Created" { (when(&entity::event::rfc3339(d.created_at))) }
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
