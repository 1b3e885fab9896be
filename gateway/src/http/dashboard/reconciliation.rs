//! The reconciliation page: what the daily comparison with the providers found for this
//! merchant in the mode shown, the latest 100, open or not.

use maud::{Markup, html};
use poem::web::Data;
use poem::{Response, handler};

use crate::http::dashboard::frame::{Chrome, badge, frame, nav, when};
use crate::http::dashboard::session::{PageError, SignedIn, page};
use crate::http::state::AppState;

#[handler]
pub async fn reconciliation_page(
    me: SignedIn,
    state: Data<&AppState>,
) -> Result<Response, PageError> {
    let latest = crate::core::pagination::Page {
        limit: 100,
        starting_after: None,
        ending_before: None,
    };
    let (items, _) = crate::reconciliation::list(
        &state.db,
        Some(&me.scope()),
        &crate::reconciliation::Filter::default(),
        &latest,
    )
    .await
    .map_err(PageError::db("reconciliation"))?;
    Ok(page(view(&me.chrome(), &items)))
}

/// The reconciliation page: what the daily comparison with the providers found, open first.
fn view(chrome: &Chrome<'_>, items: &[entity::reconciliation_items::Model]) -> Markup {
    frame(
        "Reconciliation",
        "",
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Reconciliation" }
                p { "Differences the daily reconciliation found between Payrail's records of your money and your providers' reports. Our operators settle them; one the next run finds agreeing closes by itself." }
                @if items.is_empty() {
                    p #no-items { "Nothing to reconcile: your providers agree with the ledger." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Object" } th scope="col" { "Provider" } th scope="col" { "Difference" } th scope="col" { "Payrail" } th scope="col" { "Provider says" } th scope="col" { "State" } th scope="col" { "Last seen" } } }
                        tbody {
                            @for i in items {
                                tr data-item=(i.id) data-status=(i.status) {
                                    td data-label="Object" {
                                        @if i.object_id.starts_with("pay_") {
                                            a href={ "/dashboard/payments/" (i.object_id) } { code { (i.object_id) } }
                                        } @else {
                                            code { (i.object_id) }
                                        }
                                    }
                                    td data-label="Provider" { (i.provider) }
                                    td data-label="Difference" { (i.kind.as_str().replace('_', " ")) }
                                    td data-label="Payrail" { (i.expected) }
                                    td data-label="Provider says" { (i.reported) }
                                    td data-label="State" { (badge(&i.status)) @if let Some(r) = &i.resolution { ": " (r) } }
                                    td data-label="Last seen" { (when(&entity::event::rfc3339(i.last_seen_at))) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
