//! The dashboard's HTML, rendered on the server with maud (no build step, escaped by
//! construction). Every page has the same frame: a `main` landmark, the merchant's navigation
//! and a sign-out form carrying the CSRF token.

use maud::{DOCTYPE, Markup, html};

use crate::http::api::dto::Payment;

const STYLE: &str = "\
*{box-sizing:border-box}body{margin:0;font:1rem/1.5 system-ui,sans-serif;color:#1a1a1a;background:#f4f5f7}\
header{display:flex;gap:1rem;align-items:center;justify-content:space-between;padding:.75rem 1rem;background:#fff;border-bottom:1px solid #ddd}\
main{max-width:60rem;margin:0 auto;padding:1rem}\
table{width:100%;border-collapse:collapse;background:#fff}th,td{text-align:left;padding:.5rem;border-bottom:1px solid #eee}\
.cards{display:flex;flex-wrap:wrap;gap:.75rem;margin:1rem 0}.card{background:#fff;padding:.75rem 1rem;border-radius:.5rem;min-width:8rem}\
.card strong{display:block;font-size:1.5rem}\
form.signin{max-width:22rem;margin:3rem auto;background:#fff;padding:1.5rem;border-radius:.75rem}\
label{display:block;margin:.75rem 0 .25rem}input{width:100%;padding:.6rem;font:inherit}\
button{min-height:44px;padding:.6rem 1rem;font:inherit;font-weight:600;border-radius:.5rem;border:2px solid #0b5cad;background:#0b5cad;color:#fff;cursor:pointer}\
button.link{background:#fff;color:#0b5cad}\
button:focus-visible,a:focus-visible,input:focus-visible{outline:3px solid #f5a623;outline-offset:2px}\
form.inline{display:inline-block;margin:0 .25rem .25rem 0}\
.test-mode{margin:0;padding:.35rem 1rem;background:#fff4d6;border-bottom:2px solid #e8a200;color:#5c4100;font-weight:600;text-align:center}\
form#mode-switch{display:inline-flex;gap:.5rem;align-items:center}\
.error{color:#a40000;font-weight:600}.alert{background:#fdecea;border-left:4px solid #a40000;padding:.75rem 1rem;margin:.5rem 0;font-weight:600}";

/// Kinds of live change (see `live.js`) each page shows; the page reloads its
/// `data-live-region` parts when one arrives.
pub const LIVE_OVERVIEW: &str = "event delivery_attempt log_entry";
pub const LIVE_PAYMENTS: &str = "event";
pub const LIVE_PAYMENT: &str = "event delivery_attempt";
pub const LIVE_WEBHOOKS: &str = "event delivery_attempt";
pub const LIVE_LOGS: &str = "log_entry";

/// A page. `live` lists the changes it follows (see [`LIVE_OVERVIEW`]), empty for none.
fn frame(title: &str, live: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Payrail dashboard" }
                style { (maud::PreEscaped(STYLE)) }
            }
            body data-live=[(!live.is_empty()).then_some(live)] {
                (body)
                @if !live.is_empty() { script src="/dashboard/live.js" defer {} }
            }
        }
    }
}

/// What every signed-in page's frame needs: its forms' CSRF token and the mode it shows.
pub struct Chrome<'a> {
    pub csrf_token: &'a str,
    pub livemode: bool,
}

/// The bar on every signed-in page: home, the mode shown with its switch (and a banner in
/// test mode, as Stripe shows one), who is signed in, and the sign-out form.
fn nav(chrome: &Chrome<'_>, who: &str) -> Markup {
    let csrf_token = chrome.csrf_token;
    let (viewing, other) = if chrome.livemode {
        ("live", "test")
    } else {
        ("test", "live")
    };
    html! {
        @if !chrome.livemode {
            p.test-mode #mode-banner role="note" { "Test mode: you are viewing test data. No real money moves." }
        }
        header {
            nav aria-label="Dashboard" {
                a href="/dashboard" { strong { "Payrail" } } " · "
                a href="/dashboard/payments" { "Payments" } " · "
                a href="/dashboard/webhooks" { "Webhooks" } " · "
                a href="/dashboard/logs" { "Logs" } " · "
                a href="/dashboard/reconciliation" { "Reconciliation" } " · "
                a href="/dashboard/keys" { "API keys" }
            }
            form #mode-switch method="post" action="/dashboard/mode" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                input type="hidden" name="mode" value=(other);
                span #mode data-mode=(viewing) { "Viewing " strong { (viewing) } " data" } " "
                button.link type="submit" { "Switch to " (other) }
            }
            span { (who) " " span #live-status role="status" {} }
            form method="post" action="/dashboard/logout" {
                input type="hidden" name="csrf_token" value=(csrf_token);
                button.link type="submit" { "Sign out" }
            }
        }
    }
}

/// A labelled filter over a closed set, "Any" first, the current value selected.
fn choice<'v>(
    name: &str,
    label: &str,
    values: impl Iterator<Item = &'v str>,
    current: &str,
) -> Markup {
    html! {
        label for=(name) { (label) }
        select id=(name) name=(name) {
            option value="" selected[current.is_empty()] { "Any" }
            @for value in values {
                option value=(value) selected[current == value] { (value) }
            }
        }
    }
}

/// The sign-in form; `error` says why the last attempt failed.
pub fn sign_in(csrf_token: &str, email: &str, error: Option<&str>) -> Markup {
    frame(
        "Sign in",
        "",
        html! {
            main {
                form.signin method="post" action="/dashboard/login" {
                    h1 { "Sign in to Payrail" }
                    @if let Some(error) = error {
                        p.error role="alert" { (error) }
                    }
                    input type="hidden" name="csrf_token" value=(csrf_token);
                    label for="email" { "Email" }
                    input #email type="email" name="email" autocomplete="username" required value=(email);
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    p { button type="submit" { "Sign in" } }
                }
            }
        },
    )
}

/// What the overview shows: alerts, counts by status and the latest payments.
pub struct Overview<'a> {
    /// Failures worth a look now (payment failure rate, failing endpoints), worst first.
    pub alerts: &'a [String],
    pub email: &'a str,
    pub role: &'a str,
    pub counts: &'a [(String, u64)],
    pub latest: &'a [Payment],
    pub figures: &'a crate::http::dashboard::overview::Figures,
    /// The balance in the mode shown, per currency.
    pub balances: &'a [entity::balances::Model],
}

pub fn overview(chrome: &Chrome<'_>, view: &Overview<'_>) -> Markup {
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
                    @if view.balances.is_empty() {
                        p { "No money has moved in this mode yet." }
                    } @else {
                        table {
                            thead { tr { th scope="col" { "Currency" } th scope="col" { "Available" } th scope="col" { "Pending" } } }
                            tbody {
                                @for b in view.balances {
                                    tr data-currency=(b.currency) {
                                        td { (b.currency) }
                                        td.available { (entity::money::format_stored_amount(b.available, &b.currency)) }
                                        td.pending { (entity::money::format_stored_amount(b.pending, &b.currency)) }
                                    }
                                }
                            }
                        }
                    }
                }
                (figures(view.figures))
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
                    table {
                        thead { tr { th scope="col" { "Payment" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Created" } } }
                        tbody #payments {
                            @for p in view.latest {
                                tr data-payment=(p.id) {
                                    td { a href={ "/dashboard/payments/" (p.id) } { code { (p.id) } } }
                                    td { (entity::money::format_stored_amount(p.amount, &p.currency)) }
                                    td { (p.status) }
                                    td { (p.created_at) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The last 24 hours: payment and webhook health, and the chart of payments per hour.
fn figures(f: &crate::http::dashboard::overview::Figures) -> Markup {
    use crate::http::dashboard::overview::percent;
    let w = &f.webhooks;
    html! {
        section #figures aria-labelledby="last-day" data-live-region {
            h2 #last-day { "Last " (crate::http::dashboard::overview::HOURS) " hours" }
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
            h3 { "Succeeded volume by currency" }
            @if f.volumes.is_empty() { p { "No succeeded payment yet." } }
            ul #volumes {
                @for v in &f.volumes {
                    li data-currency=(v.currency) { strong { (entity::money::format_stored_amount(v.amount, &v.currency)) } " in " (v.payments) @if v.payments == 1 { " payment" } @else { " payments" } }
                }
            }
            h3 { "Payments per hour (UTC)" }
            (crate::http::dashboard::overview::payments_chart(&f.hours))
        }
    }
}

/// One delivery as the payment page lists it.
pub struct DeliveryRow {
    pub id: String,
    pub event_type: String,
    pub endpoint_url: String,
    pub status: String,
    pub attempts: i32,
    pub http_status: Option<i32>,
    pub retryable: bool,
}

/// What the payment page shows.
pub struct PaymentDetail<'a> {
    pub payment: &'a Payment,
    pub amount: String,
    pub events: &'a [(String, String, String)],
    pub refunds: &'a [(String, String, String)],
    pub deliveries: &'a [DeliveryRow],
    /// Owners and developers see the action buttons; viewers do not.
    pub can_act: bool,
    pub notice: Option<&'a str>,
}

pub fn payment_detail(chrome: &Chrome<'_>, view: &PaymentDetail<'_>) -> Markup {
    let csrf_token = chrome.csrf_token;
    let p = view.payment;
    frame(
        &format!("Payment {}", p.id),
        LIVE_PAYMENT,
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Payment " code { (p.id) } }
                @if let Some(notice) = view.notice { p role="status" { (notice) } }
                p.amount #summary data-live-region { strong { (view.amount) } " · " span #status { (p.status) } }
                @if view.can_act && matches!(p.status.as_str(), "pending" | "processing") {
                    form method="post" action={ "/dashboard/payments/" (p.id) "/cancel" } {
                        input type="hidden" name="csrf_token" value=(csrf_token);
                        button type="submit" { "Cancel payment" }
                    }
                }
                @if view.can_act && p.status == "succeeded" {
                    form method="post" action={ "/dashboard/payments/" (p.id) "/refund" } {
                        input type="hidden" name="csrf_token" value=(csrf_token);
                        // One key per rendering: a double click replays, it does not refund twice.
                        input type="hidden" name="idempotency_key" value=(entity::ids::random_token(24));
                        label for="refund-amount" { "Refund (minor units; empty for the rest)" }
                        input #refund-amount name="amount" inputmode="numeric" pattern="[0-9]*";
                        p { button type="submit" { "Refund" } }
                    }
                }
                section #events-section aria-labelledby="events" data-live-region {
                    h2 #events { "Events" }
                    ul { @for (id, kind, at) in view.events { li data-event=(id) { code { (kind) } " · " (at) } } }
                }
                section #refunds-section aria-labelledby="refunds" data-live-region {
                    h2 #refunds { "Refunds" }
                    @if view.refunds.is_empty() { p { "None." } }
                    ul { @for (id, amount, status) in view.refunds { li data-refund=(id) { (amount) " · " (status) } } }
                }
                section #deliveries-section aria-labelledby="deliveries" data-live-region {
                    h2 #deliveries { "Webhook deliveries" }
                    table {
                        thead { tr { th scope="col" { "Event" } th scope="col" { "Endpoint" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Last answer" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for d in view.deliveries {
                                tr data-delivery=(d.id) {
                                    td { a href={ "/dashboard/deliveries/" (d.id) } { code { (d.event_type) } } }
                                    td { (d.endpoint_url) }
                                    td { (d.status) }
                                    td { (d.attempts) }
                                    td { @if let Some(s) = d.http_status { (s) } @else { "—" } }
                                    td {
                                        @if view.can_act && d.retryable {
                                            form method="post" action={ "/dashboard/deliveries/" (d.id) "/retry" } {
                                                input type="hidden" name="csrf_token" value=(csrf_token);
                                                input type="hidden" name="payment_id" value=(p.id);
                                                button type="submit" aria-label={ "Retry delivery " (d.id) } { "Retry" }
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

/// Counts per level as a bar chart, drawn here as SVG (no script, no library): one bar per
/// level, labelled, with the numbers in its accessible description too.
pub fn level_chart(counts: &[(String, i64)]) -> Markup {
    const WIDTH: i64 = 480;
    const BAR: i64 = 28;
    const LABEL: i64 = 80;
    let max = counts.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let height = BAR * i64::try_from(counts.len()).unwrap_or(0) + 8;
    let described = counts
        .iter()
        .map(|(level, n)| format!("{level}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    html! {
        svg #level-chart role="img" aria-labelledby="chart-title chart-desc" width=(WIDTH) height=(height)
            viewBox={ "0 0 " (WIDTH) " " (height) } xmlns="http://www.w3.org/2000/svg" {
            title #chart-title { "Log entries per level" }
            desc #chart-desc { (described) }
            @for (i, (level, n)) in counts.iter().enumerate() {
                @let y = i64::try_from(i).unwrap_or(0) * BAR + 4;
                @let w = (WIDTH - LABEL - 60) * n / max;
                text x="0" y=(y + 18) font-size="14" { (level) }
                rect x=(LABEL) y=(y) width=(w) height=(BAR - 8) fill="#0b5cad" data-level=(level) data-count=(n) {}
                text x=(LABEL + w + 6) y=(y + 18) font-size="14" { (n) }
            }
        }
    }
}

/// What the log page shows.
pub struct Logs<'a> {
    pub entries: &'a [crate::merchants::logs::LogEntry],
    pub counts: &'a [(String, i64)],
    pub level: &'a str,
    pub source: &'a str,
    pub window: &'a str,
    pub error: Option<&'a str>,
}

pub fn logs(chrome: &Chrome<'_>, view: &Logs<'_>) -> Markup {
    frame(
        "Logs",
        LIVE_LOGS,
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Logs" }
                form method="get" action="/dashboard/logs" {
                    (choice("level", "Level", entity::status::LogLevel::ALL.iter().map(|l| l.as_str()), view.level))
                    label for="source" { "Source" }
                    input #source name="source" value=(view.source) placeholder="payments, api, merchant:…";
                    label for="window" { "Since" }
                    input #window name="window" value=(view.window) placeholder="1h, 1d, 7d";
                    p { button type="submit" { "Filter" } }
                }
                @if let Some(error) = view.error { p.error role="alert" { (error) } }
                section #per-level-section aria-labelledby="per-level" data-live-region {
                    h2 #per-level { "Entries per level" }
                    (level_chart(view.counts))
                }
                table #log-table data-live-region {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Level" } th scope="col" { "Source" } th scope="col" { "Message" } } }
                    tbody {
                        @for e in view.entries {
                            tr data-log=(e.id) { td { (e.created_at) } td { (e.level) } td { (e.source) } td { (e.message) } }
                        }
                    }
                }
            }
        },
    )
}

/// One API key as the keys page lists it.
pub struct KeyRow {
    pub id: String,
    pub prefix: String,
    pub mode: &'static str,
    pub created_at: String,
    /// "active", "expires …" (rolled) or "revoked …".
    pub state: String,
    pub active: bool,
}

/// The API keys page (owners only). `secret` is a key just made, shown this once.
pub fn api_keys(chrome: &Chrome<'_>, keys: &[KeyRow], secret: Option<&str>) -> Markup {
    let csrf_token = chrome.csrf_token;
    frame(
        "API keys",
        "",
        html! {
            (nav(chrome, ""))
            main {
                h1 { "API keys" }
                @if let Some(secret) = secret {
                    div.alert role="alert" {
                        p { "Your new key, shown only this once: store it now." }
                        p { code #new-secret { (secret) } }
                    }
                }
                form method="post" action="/dashboard/keys" {
                    input type="hidden" name="csrf_token" value=(csrf_token);
                    label for="mode" { "Mode" }
                    select #mode name="mode" {
                        option value="test" { "test (sk_test_…): never moves money" }
                        option value="live" { "live (sk_live_…)" }
                    }
                    p { button type="submit" { "Create a key" } }
                }
                table {
                    thead { tr { th scope="col" { "Key" } th scope="col" { "Mode" } th scope="col" { "Created" } th scope="col" { "State" } th scope="col" { "Actions" } } }
                    tbody {
                        @for k in keys {
                            tr data-key=(k.id) {
                                td { code { (k.prefix) "…" } }
                                td { (k.mode) }
                                td { (k.created_at) }
                                td { (k.state) }
                                td {
                                    @if k.active {
                                        form method="post" action={ "/dashboard/keys/" (k.id) "/roll" } {
                                            input type="hidden" name="csrf_token" value=(csrf_token);
                                            label { "Old key works for "
                                                select name="expires_in" {
                                                    option value="0" { "no time" }
                                                    option value="3600" selected { "1 hour" }
                                                    option value="86400" { "1 day" }
                                                }
                                            }
                                            button type="submit" aria-label={ "Roll key " (k.prefix) } { "Roll" }
                                        }
                                        form method="post" action={ "/dashboard/keys/" (k.id) "/revoke" } {
                                            input type="hidden" name="csrf_token" value=(csrf_token);
                                            button.link type="submit" aria-label={ "Revoke key " (k.prefix) } { "Revoke" }
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

/// The payments list: filters, one page, and the link to the next.
pub struct PaymentsList<'a> {
    pub payments: &'a [Payment],
    pub status: &'a str,
    pub reference: &'a str,
    /// The query of the next page, when there is one.
    pub next: Option<String>,
    pub error: Option<&'a str>,
}

pub fn payments_list(chrome: &Chrome<'_>, view: &PaymentsList<'_>) -> Markup {
    frame(
        "Payments",
        LIVE_PAYMENTS,
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Payments" }
                form method="get" action="/dashboard/payments" {
                    (choice("status", "Status", entity::payment_status::PaymentStatus::ALL.iter().map(|s| s.as_str()), view.status))
                    label for="reference" { "Reference" }
                    input #reference name="reference" value=(view.reference);
                    p { button type="submit" { "Filter" } }
                }
                @if let Some(error) = view.error { p.error role="alert" { (error) } }
                table #payments-table data-live-region {
                    thead { tr { th scope="col" { "Payment" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Reference" } th scope="col" { "Created" } } }
                    tbody #payments {
                        @for p in view.payments {
                            tr data-payment=(p.id) {
                                td { a href={ "/dashboard/payments/" (p.id) } { code { (p.id) } } }
                                td { (entity::money::format_stored_amount(p.amount, &p.currency)) }
                                td { (p.status) }
                                td { (p.reference.as_deref().unwrap_or("")) }
                                td { (p.created_at) }
                            }
                        }
                    }
                }
                @if let Some(next) = &view.next {
                    p { a rel="next" href={ "/dashboard/payments?" (next) } { "Older payments →" } }
                }
            }
        },
    )
}

/// One webhook endpoint as the webhooks page lists it.
pub struct EndpointRow {
    pub id: String,
    pub url: String,
    pub events: String,
    pub status: String,
    pub disabled_reason: Option<String>,
    pub consecutive_failures: i32,
}

/// One delivery in a list.
pub struct DeliveryListRow {
    pub id: String,
    pub event_type: String,
    pub endpoint_url: String,
    pub status: String,
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

/// A small post form with the CSRF token: one button, optional hidden fields.
fn action_form(
    csrf_token: &str,
    action: &str,
    label: &str,
    aria: &str,
    fields: &[(&str, &str)],
) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            input type="hidden" name="csrf_token" value=(csrf_token);
            @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
            button.link type="submit" aria-label=(aria) { (label) }
        }
    }
}

pub fn webhooks(chrome: &Chrome<'_>, view: &Webhooks<'_>) -> Markup {
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
                                    td { (e.url) }
                                    td { code { (e.events) } }
                                    td { (e.status) @if let Some(r) = &e.disabled_reason { " (" (r) ")" } }
                                    td { (e.consecutive_failures) }
                                    td {
                                        @if view.can_act {
                                            @if e.status == "enabled" {
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
                        (choice("status", "Status", entity::status::DeliveryStatus::ALL.iter().map(|s| s.as_str()), view.status))
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
                        td { a href={ "/dashboard/deliveries/" (d.id) } { code { (d.id) } } }
                        td { code { (d.event_type) } }
                        td { (d.endpoint_url) }
                        td { (d.status) }
                        td { (d.attempts) }
                        td { @if let Some(s) = d.http_status { (s) } @else { "—" } }
                        td { (d.created_at) }
                    }
                }
            }
        }
    }
}

/// One attempt of a delivery.
pub struct AttemptRow {
    pub number: i32,
    pub at: String,
    pub http_status: Option<i32>,
    pub duration_ms: i64,
    pub error: Option<String>,
    /// The start of the endpoint's answer, as stored (already cut to size by the worker).
    pub response_excerpt: Option<String>,
}

/// What the delivery page shows.
pub struct DeliveryDetail<'a> {
    pub id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payment_id: Option<&'a str>,
    pub endpoint_url: &'a str,
    pub status: &'a str,
    pub next_retry_at: Option<String>,
    pub attempts: &'a [AttemptRow],
    pub retryable: bool,
    pub can_act: bool,
    pub notice: Option<&'a str>,
}

pub fn delivery_detail(chrome: &Chrome<'_>, view: &DeliveryDetail<'_>) -> Markup {
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
                    p { "Status: " strong #delivery-status { (view.status) }
                        @if let Some(at) = &view.next_retry_at { " · next attempt " (at) } }
                    @if view.can_act && view.retryable {
                        (action_form(csrf_token, &format!("/dashboard/deliveries/{}/retry", view.id), "Retry now", &format!("Retry delivery {}", view.id), &[("back", "delivery")]))
                    }
                }
                section #attempts-section aria-labelledby="attempts" data-live-region {
                    h2 #attempts { "Attempts" }
                    @if view.attempts.is_empty() { p { "None yet." } }
                    table {
                        thead { tr { th scope="col" { "#" } th scope="col" { "When" } th scope="col" { "Answer" } th scope="col" { "Latency" } th scope="col" { "Error" } th scope="col" { "Response (start)" } } }
                        tbody #attempt-rows {
                            @for a in view.attempts {
                                tr data-attempt=(a.number) {
                                    td { (a.number) }
                                    td { (a.at) }
                                    td { @if let Some(s) = a.http_status { (s) } @else { "—" } }
                                    td { (a.duration_ms) " ms" }
                                    td { (a.error.as_deref().unwrap_or("")) }
                                    td { @if let Some(body) = &a.response_excerpt { code { (excerpt(body)) } } }
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

/// The reconciliation page: what the daily comparison with the providers found, open first.
pub fn reconciliation(
    chrome: &Chrome<'_>,
    items: &[entity::reconciliation_items::Model],
) -> Markup {
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
                                    td {
                                        @if i.object_id.starts_with("pay_") {
                                            a href={ "/dashboard/payments/" (i.object_id) } { code { (i.object_id) } }
                                        } @else {
                                            code { (i.object_id) }
                                        }
                                    }
                                    td { (i.provider) }
                                    td { (i.kind.as_str().replace('_', " ")) }
                                    td { (i.expected) }
                                    td { (i.reported) }
                                    td { (i.status) @if let Some(r) = &i.resolution { ": " (r) } }
                                    td { (entity::event::rfc3339(i.last_seen_at)) }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}
