//! The usage page (`/dashboard/usage`): this month's usage against the merchant's plan (both
//! modes count together, as the quotas do), and the mode shown on its own. Reads what the API
//! reads (`GET /v1/usage`) and the limits the quotas enforce.

use maud::{Markup, html};
use poem::web::Data;
use poem::{Response, handler};
use runtime::usage::{self, Counts, metric};

use crate::http::dashboard::frame::{Chrome, frame, nav};
use crate::http::dashboard::session::{PageError, SignedIn, page};
use crate::http::state::AppState;
use crate::usage::quotas::{self, Limit};

#[handler]
pub async fn usage_page(me: SignedIn, state: Data<&AppState>) -> Result<Response, PageError> {
    let month = usage::month_of(chrono::Utc::now());
    let scope = me.scope();
    let loaded = async {
        let merchant = crate::merchants::get(&state.db, &scope.merchant_id).await?;
        let both = usage::of_merchant(&state.db, &state.cache, &scope.merchant_id, &month).await?;
        let this_mode = usage::of_scope(&state.db, &state.cache, &scope, &month).await?;
        Ok::<_, crate::core::error::ServiceError>((merchant, both, this_mode))
    }
    .await;
    let (merchant, both, this_mode) = loaded.map_err(|e| {
        tracing::error!(error = %e, "dashboard usage failed");
        PageError::Unavailable("usage")
    })?;
    let limits = quotas::limits(merchant.plan, merchant.usage_limits.as_ref());
    Ok(page(usage_view(
        &me.chrome(),
        &UsageView {
            month: &month,
            plan: merchant.plan.as_str(),
            limits: &limits,
            both: &both,
            this_mode: &this_mode,
            livemode: scope.livemode,
        },
    )))
}

struct UsageView<'a> {
    month: &'a str,
    plan: &'a str,
    limits: &'a [Limit],
    both: &'a Counts,
    this_mode: &'a Counts,
    livemode: bool,
}

/// What a metric is, in words.
fn said(m: &str) -> &str {
    match m {
        metric::API_REQUESTS => "API requests",
        metric::REQUEST_BYTES => "request bytes",
        metric::RESPONSE_BYTES => "response bytes",
        metric::PAYMENTS_CREATED => "payments created",
        metric::WEBHOOK_DELIVERIES => "webhook deliveries",
        metric::WEBHOOK_ATTEMPTS => "webhook attempts",
        metric::LOG_BYTES => "log bytes",
        other => other,
    }
}

fn usage_view(chrome: &Chrome<'_>, view: &UsageView<'_>) -> Markup {
    let used = |c: &Counts, m: &str| c.get(m).copied().unwrap_or(0);
    frame(
        "Usage",
        "",
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Usage in " (view.month) " (UTC)" }
                section #plan aria-labelledby="plan-title" {
                    h2 #plan-title { "Against your plan: " strong #plan-name { (view.plan) } }
                    p { "Test and live count together. A hard limit refuses requests past it (429 " code { "quota_exceeded" } "); a soft one alerts you." }
                    table {
                        thead { tr { th scope="col" { "Metric" } th scope="col" { "Used" } th scope="col" { "Limit" } th scope="col" { "Share" } } }
                        tbody {
                            @for l in view.limits {
                                @let n = used(view.both, l.metric);
                                tr data-metric=(l.metric) {
                                    td data-label="Metric" { (said(l.metric)) }
                                    td data-label="Used" { (n) }
                                    td data-label="Limit" {
                                        @if l.limit < 0 { "unlimited" } @else { (l.limit) @if l.hard { " (hard)" } @else { " (soft)" } }
                                    }
                                    td data-label="Share" {
                                        @if l.limit > 0 {
                                            meter min="0" max=(l.limit) value=(n.min(l.limit)) low=(l.limit * 8 / 10) high=(l.limit * 95 / 100) optimum="0" {}
                                            " " (format!("{:.1} %", n as f64 * 100.0 / l.limit as f64))
                                        } @else { "—" }
                                    }
                                }
                            }
                        }
                    }
                }
                section #this-mode aria-labelledby="this-mode-title" {
                    h2 #this-mode-title { "In " @if view.livemode { "live" } @else { "test" } " mode" }
                    table {
                        thead { tr { th scope="col" { "Metric" } th scope="col" { "This month" } } }
                        tbody {
                            @for m in metric::ALL {
                                tr data-mode-metric=(m) { td data-label="Metric" { (said(m)) } td data-label="This month" { (used(view.this_mode, m)) } }
                            }
                        }
                    }
                }
            }
        },
    )
}
