//! The overview (`/dashboard`): alerts, the balance, the last day's figures with the chart of
//! payments per hour (SVG drawn here), the counts by status and the latest payments.

use chrono::{Duration, Utc};
use entity::payment_status::PaymentStatus;
use entity::payments;
use maud::{Markup, html};
use poem::web::{Data, Query};
use poem::{Response, handler};

use crate::core::pagination::{CreatedRange, Page};
use crate::http::dashboard::frame::{Chrome, LIVE_OVERVIEW, frame, nav, percent, when};
use crate::http::dashboard::session::{PageError, SignedIn, page};
use crate::http::state::AppState;
use crate::payments::figures::{self, Hour, LastDay, Window};
use crate::webhooks::health::{self, WebhookHealth};

/// Above this share of failed payments in the last hour (with enough payments to tell), the
/// overview raises an alert.
pub const FAILURE_RATE_ALERT: f64 = 0.2;
/// Fewer payments than this in the hour say nothing about a failure rate.
pub const FAILURE_RATE_MIN_PAYMENTS: u64 = 5;

#[derive(serde::Deserialize)]
pub struct OverviewQuery {
    /// The window of the figures and the chart: `24h` (by hour), `7d` or `30d` (by day).
    range: Option<String>,
    /// Or a run of UTC days, by day: `from` (`2026-11-01`) to `to` (today when left out).
    from: Option<String>,
    to: Option<String>,
}

impl OverviewQuery {
    /// The window asked for: dates when given (they win over `range`), else the preset.
    fn window(&self, today: chrono::NaiveDate) -> Result<Window, PageError> {
        fn given(v: &Option<String>) -> Option<&str> {
            v.as_deref().map(str::trim).filter(|v| !v.is_empty())
        }
        let date = |name: &str, text: &str| {
            chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                PageError::Invalid(format!(
                    "{name} must be a date such as 2026-11-01, not {text:?}."
                ))
            })
        };
        match (given(&self.from), given(&self.to)) {
            (None, None) => match given(&self.range) {
                None => Ok(Window::Day),
                Some(r) => Window::parse(r).ok_or_else(|| {
                    PageError::Invalid(format!("range must be 24h, 7d or 30d, not {r:?}."))
                }),
            },
            (None, Some(_)) => Err(PageError::Invalid(
                "to needs a from: the first day of the window.".into(),
            )),
            (Some(from), to) => {
                let to = match to {
                    Some(to) => date("to", to)?,
                    None => today,
                };
                Window::dates(date("from", from)?, to).map_err(PageError::Invalid)
            }
        }
    }
}

#[handler]
pub async fn overview(
    me: SignedIn,
    state: Data<&AppState>,
    Query(query): Query<OverviewQuery>,
) -> Result<Response, PageError> {
    let window = query.window(Utc::now().date_naive())?;
    let scope = me.scope();
    let db = &state.db;
    let unavailable = PageError::db("overview");
    let loaded = async {
        let now = Utc::now();
        let counts = figures::count_by_status(db, &scope).await?;
        let latest = Page {
            limit: 20,
            starting_after: None,
            ending_before: None,
        };
        let (latest, _) = crate::payments::service::list(
            db,
            &scope,
            None,
            None,
            &CreatedRange::default(),
            &latest,
        )
        .await?;
        let alerts = alerts(db, &scope).await?;
        let day = figures::recent(db, &scope, now, window).await?;
        let (since, until) = window.bounds(now);
        let webhooks = health::health(db, &scope, now, since, until).await?;
        let email = crate::merchants::users::email_of(db, &me.user.user_id)
            .await?
            .unwrap_or_default();
        let balances = crate::ledger::balances(db, &scope).await?;
        Ok::<_, sea_orm::DbErr>((counts, latest, alerts, day, webhooks, email, balances))
    }
    .await;
    let (counts, latest, alerts, day, webhooks, email, balances) = loaded.map_err(unavailable)?;
    Ok(page(view(
        &me.chrome(),
        &Overview {
            email: &email,
            role: me.user.role.as_str(),
            counts: &counts,
            latest: &latest,
            alerts: &alerts,
            day: &day,
            webhooks: &webhooks,
            balances: &balances,
            api_base: &state.public_url,
            window,
            manages_keys: me.chrome().manages_keys,
        },
    )))
}

/// What the overview warns about: a high payment failure rate over the last hour, and every
/// endpoint that is disabled or failing.
async fn alerts(
    db: &sea_orm::DatabaseConnection,
    scope: &entity::ids::Scope,
) -> Result<Vec<String>, sea_orm::DbErr> {
    let (total, failed) =
        figures::failures_since(db, scope, Utc::now() - Duration::hours(1)).await?;
    let mut alerts = Vec::new();
    if total >= FAILURE_RATE_MIN_PAYMENTS && failed as f64 / total as f64 > FAILURE_RATE_ALERT {
        alerts.push(format!(
            "{failed} of {total} payments failed in the last hour ({:.0} %).",
            failed as f64 * 100.0 / total as f64
        ));
    }
    for e in crate::webhooks::endpoints::all(db, scope).await? {
        if e.status == entity::status::EndpointStatus::Disabled {
            alerts.push(format!(
                "Webhook endpoint {} is disabled ({}).",
                e.url,
                e.disabled_reason.as_deref().unwrap_or("manual")
            ));
        } else if e.consecutive_failures > 0 {
            alerts.push(format!(
                "Webhook endpoint {} failed its last {} attempts.",
                e.url, e.consecutive_failures
            ));
        }
    }
    Ok(alerts)
}

/// What the overview shows: alerts, counts by status and the latest payments.
pub struct Overview<'a> {
    /// Failures worth a look now (payment failure rate, failing endpoints), worst first.
    pub alerts: &'a [String],
    pub email: &'a str,
    pub role: &'a str,
    pub counts: &'a [(PaymentStatus, u64)],
    pub latest: &'a [payments::Model],
    pub day: &'a LastDay,
    pub webhooks: &'a WebhookHealth,
    /// The balance in the mode shown, per currency.
    pub balances: &'a [entity::balances::Model],
    /// Where the API answers, for the first-steps example.
    pub api_base: &'a str,
    /// The window of the figures and the chart.
    pub window: Window,
    pub manages_keys: bool,
}

fn view(chrome: &Chrome<'_>, view: &Overview<'_>) -> Markup {
    frame(
        "Overview",
        LIVE_OVERVIEW,
        html! {
            (nav(chrome, &format!("{} ({})", view.email, view.role)))
            main {
                h1 { "Overview" }
                div #alerts data-live-region {
                    @for alert in view.alerts {
                        p.alert role="alert" { (alert) }
                    }
                }
                section #balance-section aria-labelledby="balance" data-live-region {
                    h2 #balance { "Balance" }
                    (super::balance::balance_table(view.balances))
                }
                (figures(view.day, view.webhooks, view.window))
                section #by-status-section aria-labelledby="by-status" data-live-region {
                    h2 #by-status { "Payments by status" }
                    div.cards {
                        @for (status, count) in view.counts {
                            div.card data-status=(status) { strong { (count) } (status) }
                        }
                    }
                }
                section #latest-section aria-labelledby="latest" data-live-region {
                    h2 #latest { "Latest payments" }
                    @if view.latest.is_empty() {
                        div.empty #first-steps {
                            p { strong { "No payments yet in this mode." } " Your first one is a request away:" }
                            pre { code { "curl -X POST " (view.api_base) "/v1/payments \\\n  -H \"Authorization: Bearer $PAYRAIL_KEY\" \\\n  -H \"Content-Type: application/json\" \\\n  -d '{\"amount\": 1050, \"currency\": \"eur\", \"provider\": \"simulated\"}'" } }
                            p {
                                @if view.manages_keys { "Use a test key from " a href="/dashboard/keys" { "API keys" } ". " }
                                "It appears here at once; its webhooks go to the endpoints on " a href="/dashboard/webhooks" { "Webhooks" } "."
                            }
                        }
                    }
                    table {
                        thead { tr { th scope="col" { "Payment" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Created" } } }
                        tbody #payments {
                            @for p in view.latest {
                                tr data-payment=(p.id) {
                                    td data-label="Payment" { a href={ "/dashboard/payments/" (p.id) } { code { (p.id) } } }
                                    td data-label="Amount" { (entity::money::format_stored_amount(p.amount, &p.currency)) }
                                    td data-label="Status" { (super::payments::payment_status(p)) }
                                    td data-label="Created" { (when(&entity::event::rfc3339(p.created_at))) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The window's payment and webhook health, and the chart of payments per hour or day; the
/// forms that choose the window (a preset, or any run of days).
fn figures(f: &LastDay, w: &WebhookHealth, window: Window) -> Markup {
    let (from, to) = match window {
        Window::Dates { from, to } => (from.to_string(), to.to_string()),
        _ => (String::new(), String::new()),
    };
    html! {
        div.window-choice {
            form.filters #range method="get" action="/dashboard" {
                div {
                    label for="range-choice" { "Window" }
                    select #range-choice name="range" {
                        @for option in Window::PRESETS {
                            option value=[option.as_str()] selected[option == window] { (option.title()) }
                        }
                    }
                }
                p { button.secondary type="submit" { "Show" } }
            }
            form.filters #dates method="get" action="/dashboard" {
                div {
                    label for="window-from" { "From (UTC)" }
                    input #window-from type="date" name="from" value=(from) required;
                }
                div {
                    label for="window-to" { "To" }
                    input #window-to type="date" name="to" value=(to);
                }
                p { button.secondary type="submit" { "Show days" } }
            }
        }
        section #figures aria-labelledby="last-day" data-live-region {
            h2 #last-day { (window.title()) }
            div.cards {
                div.card #success-rate { strong { (percent(f.success_rate)) } "payment success rate" }
                div.card #webhook-success { strong { (percent(w.success_rate)) } "webhook attempts answered 2xx (" (w.attempts) ")" }
                div.card #webhook-p95 { strong { @if let Some(p) = w.p95_ms { (p) " ms" } @else { "—" } } "webhook p95 latency" }
                div.card #backlog {
                    strong { (w.backlog) }
                    "deliveries waiting"
                    @if let Some(age) = w.oldest_waiting { br; "oldest " (humantime::format_duration(std::time::Duration::from_secs(age.num_seconds().max(0) as u64))) }
                }
            }
            h3 { "Volume by currency" }
            @if f.volumes.is_empty() { p { "No payment has succeeded in this window yet." } }
            ul #volumes {
                @for v in &f.volumes {
                    li data-currency=(v.currency) {
                        strong.net { (entity::money::format_stored_amount(v.net(), &v.currency)) } " net · "
                        span.gross { (entity::money::format_stored_amount(v.gross, &v.currency)) } " gross"
                        @if v.refunded > 0 { ", " (entity::money::format_stored_amount(v.refunded, &v.currency)) " refunded" }
                        " · " (v.payments) @if v.payments == 1 { " payment" } @else { " payments" }
                    }
                }
            }
            h3 { "Payments per " @if window.by_hour() { "hour" } @else { "day" } " (UTC)" }
            (payments_chart(&f.hours))
        }
    }
}

const SUCCEEDED_COLOUR: &str = "#1a7f37";
const FAILED_COLOUR: &str = "#a40000";
const OTHER_COLOUR: &str = "#8c96a3";

/// Payments per hour as stacked bars (succeeded, failed, the rest), drawn here as SVG: no
/// script, no library. Each bar segment carries its numbers, and the description says the
/// totals, for screen readers.
pub fn payments_chart(hours: &[Hour]) -> Markup {
    const WIDTH: u64 = 720;
    const HEIGHT: u64 = 180;
    const AXIS: u64 = 22;
    let plot = HEIGHT - AXIS;
    // Bars of days carry a day's key (`2026-11-23`), of hours an hour's (`2026-11-23T18`).
    let by_day = hours.first().is_some_and(|h| h.hour.len() == 10);
    let label_every = (hours.len() / 4).max(1);
    // A run of up to a year of days makes slots narrower than a pixel's worth of gap: widths
    // are fractional, the gap a fifth of a slot at most.
    let slot = WIDTH as f64 / hours.len().max(1) as f64;
    let gap = (slot / 5.0).min(4.0);
    let bar_width = format!("{:.2}", slot - gap);
    let x_of = |i: usize| format!("{:.2}", i as f64 * slot + gap / 2.0);
    let tallest = hours
        .iter()
        .map(|h| h.succeeded + h.failed + h.other)
        .max()
        .unwrap_or(0)
        .max(1);
    let total = |f: fn(&Hour) -> u64| hours.iter().map(f).sum::<u64>();
    let busiest = hours
        .iter()
        .map(|h| h.succeeded + h.failed + h.other)
        .max()
        .unwrap_or(0);
    let described = format!(
        "{} {}: {} succeeded, {} failed, {} other; busiest {busiest} payments.",
        hours.len(),
        if by_day { "days" } else { "hours" },
        total(|h| h.succeeded),
        total(|h| h.failed),
        total(|h| h.other),
    );
    // Each hour's segments, bottom up: (x, y, height, status, count, colour, hour).
    let mut segments = Vec::new();
    for (i, h) in hours.iter().enumerate() {
        let x = x_of(i);
        let mut top = plot;
        for (status, count, colour) in [
            ("succeeded", h.succeeded, SUCCEEDED_COLOUR),
            ("failed", h.failed, FAILED_COLOUR),
            ("other", h.other, OTHER_COLOUR),
        ] {
            if count > 0 {
                let height = (plot * count / tallest).max(1);
                top = top.saturating_sub(height);
                segments.push((
                    x.clone(),
                    top,
                    height,
                    status,
                    count,
                    colour,
                    h.hour.as_str(),
                ));
            }
        }
    }
    html! {
        svg #payments-chart role="img" aria-labelledby="payments-chart-title payments-chart-desc"
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } width="100%" xmlns="http://www.w3.org/2000/svg" {
            title #payments-chart-title { "Payments per hour, by outcome" }
            desc #payments-chart-desc { (described) }
            line x1="0" y1=(plot) x2=(WIDTH) y2=(plot) stroke="#ccc" {}
            // The scale: the top line is the busiest hour (said under the chart).
            line x1="0" y1="1" x2=(WIDTH) y2="1" stroke="#ddd" stroke-dasharray="4 4" {}
            @for (x, y, height, status, count, colour, hour) in &segments {
                rect x=(x) y=(y) width=(bar_width) height=(height) fill=(colour)
                    data-hour=(hour) data-status=(status) data-count=(count) {
                    title { (hour) @if !by_day { ":00" } " UTC · " (count) " " (status) }
                }
            }
            @for (i, h) in hours.iter().enumerate().step_by(label_every) {
                text x=(x_of(i)) y=(HEIGHT - 6) font-size="12" fill="#555" {
                    @if by_day { (h.hour.get(5..).unwrap_or("")) } @else { (h.hour.get(11..).unwrap_or("")) ":00" }
                }
            }
        }
        p #chart-scale {
            @if busiest == 0 { "No payment in these hours yet." }
            @else { "Scale: the dashed top line is " (busiest) @if busiest == 1 { " payment" } @else { " payments" } @if by_day { " a day" } @else { " an hour" } ", the axis 0." }
        }
        p.legend {
            span.succeeded { "■" } " succeeded "
            span.failed { "■" } " failed "
            span.other { "■" } " pending, processing, cancelled, refunded"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_stacks_each_hour_in_proportion_and_describes_the_totals() {
        let hours = vec![
            Hour {
                hour: "2026-11-23T10".into(),
                succeeded: 3,
                failed: 1,
                other: 0,
            },
            Hour {
                hour: "2026-11-23T11".into(),
                ..Hour::default()
            },
        ];
        let svg = payments_chart(&hours).into_string();
        assert!(
            svg.contains(r#"data-hour="2026-11-23T10" data-status="succeeded" data-count="3""#)
        );
        assert!(svg.contains(r#"data-status="failed" data-count="1""#));
        assert!(
            !svg.contains(r#"data-hour="2026-11-23T11""#),
            "an empty hour draws no bar"
        );
        assert!(svg.contains("3 succeeded, 1 failed, 0 other"));
        // The tallest bar fills the plot: 3/4 and 1/4 of 158 px.
        assert!(
            svg.contains(r#"height="118""#) && svg.contains(r#"height="39""#),
            "{svg}"
        );
    }

    #[test]
    fn a_year_of_days_fits_the_chart() {
        let days: Vec<Hour> = (0..crate::payments::figures::MOST_DAYS)
            .map(|i| Hour {
                hour: format!("2026-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
                succeeded: 1,
                ..Hour::default()
            })
            .collect();
        let svg = payments_chart(&days).into_string();
        let last = svg
            .rsplit(r#"<rect x=""#)
            .next()
            .and_then(|r| r.split('"').next())
            .and_then(|x| x.parse::<f64>().ok())
            .expect("a bar");
        assert!(
            last > 700.0 && last < 720.0,
            "the last bar ends the plot: {last}"
        );
        assert!(svg.contains(r#"width="1.57""#), "bars narrower than a slot");
    }
}
