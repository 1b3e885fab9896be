//! What every dashboard page shares, rendered on the server with maud (no build step, escaped
//! by construction): the frame (a `main` landmark, the merchant's navigation, the mode switch
//! and a sign-out form carrying the CSRF token), and the small widgets pages repeat.

use maud::{DOCTYPE, Markup, html};
use poem::http::header;
use poem::{Response, handler};

/// The design system (`dashboard.css`), served as is at [`STYLESHEET`].
pub const STYLE: &str = include_str!("dashboard.css");
pub const STYLESHEET: &str = "/dashboard/style.css";
/// The dashboard's icon: a rail on the accent colour, no file to build.
pub const FAVICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><rect width='32' height='32' rx='7' fill='#0b5cad'/><path d='M7 11h18M7 21h18M11 7v18M21 7v18' stroke='#fff' stroke-width='3'/></svg>";
pub const FAVICON_PATH: &str = "/dashboard/favicon.svg";

/// The stylesheet: cached for a few minutes (a page load must not fetch it every time),
/// revalidated after, so a new release's look arrives within minutes.
#[handler]
pub fn stylesheet() -> Response {
    Response::builder()
        .content_type("text/css; charset=utf-8")
        .header(header::CACHE_CONTROL, "public, max-age=300")
        .body(STYLE)
}

#[handler]
pub fn favicon() -> Response {
    Response::builder()
        .content_type("image/svg+xml")
        .header(header::CACHE_CONTROL, "public, max-age=86400")
        .body(FAVICON)
}

/// Kinds of live change (see `live.js`) each page shows; the page reloads its
/// `data-live-region` parts when one arrives.
pub const LIVE_OVERVIEW: &str = "event delivery_attempt log_entry";
pub const LIVE_PAYMENTS: &str = "event";
pub const LIVE_PAYMENT: &str = "event delivery_attempt";
pub const LIVE_WEBHOOKS: &str = "event delivery_attempt";
pub const LIVE_LOGS: &str = "log_entry";

/// A page. `live` lists the changes it follows (see [`LIVE_OVERVIEW`]), empty for none.
pub fn frame(title: &str, live: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Payrail dashboard" }
                link rel="stylesheet" href=(STYLESHEET);
                link rel="icon" type="image/svg+xml" href=(FAVICON_PATH);
            }
            body data-live=[(!live.is_empty()).then_some(live)] {
                (body)
                script src="/dashboard/live.js" defer {}
            }
        }
    }
}

/// What every signed-in page's frame needs: its forms' CSRF token and the mode it shows.
pub struct Chrome<'a> {
    pub csrf_token: &'a str,
    pub livemode: bool,
    /// Owners manage API keys; nobody else is shown a link to a page that would refuse them.
    pub manages_keys: bool,
}

/// The bar on every signed-in page: home, the mode shown with its switch (and a banner in
/// test mode, as Stripe shows one), who is signed in, and the sign-out form.
pub fn nav(chrome: &Chrome<'_>, who: &str) -> Markup {
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
                a href="/dashboard/balance" { "Balance" } " · "
                a href="/dashboard/webhooks" { "Webhooks" } " · "
                a href="/dashboard/logs" { "Logs" } " · "
                a href="/dashboard/reconciliation" { "Reconciliation" } " · "
                a href="/dashboard/usage" { "Usage" }
                @if chrome.manages_keys {
                    " · " a href="/dashboard/keys" { "API keys" }
                }
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

/// A moment as the page shows it: `<time>` with the exact instant for the page's script
/// (`live.js`), which says it in the reader's zone and relative ("3 minutes ago", the full
/// timestamp on hover); without a script, the minute in UTC. `at` is RFC 3339, as stored.
pub fn when(at: &str) -> Markup {
    let shown = chrono::DateTime::parse_from_rfc3339(at)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| at.to_string());
    html! { time datetime=(at) title=(at) { (shown) } }
}

/// A query string of the given fields, the empty ones left out (a list's filters, carried by
/// its paging links and its export).
pub fn query_of(fields: &[(&str, Option<&str>)]) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        if let Some(v) = value.map(str::trim).filter(|v| !v.is_empty()) {
            q.append_pair(name, v);
        }
    }
    q.finish()
}

/// The links to a list's newer and older pages: `path` with its `filters` and the cursor.
pub fn pager(path: &str, filters: &str, around: &crate::core::pagination::Neighbours) -> Markup {
    let link = |cursor: &str, id: &str| {
        let sep = if filters.is_empty() { "" } else { "&" };
        format!("{path}?{filters}{sep}{cursor}={id}")
    };
    html! {
        nav.pager aria-label="Pages" {
            @if let Some(id) = &around.newer { a rel="prev" href=(link("ending_before", id)) { "← Newer" } }
            @if let Some(id) = &around.older { a rel="next" href=(link("starting_after", id)) { "Older →" } }
        }
    }
}

/// A status as a badge: its colour (from `dashboard.css`, by `data-status`) and its word.
pub fn badge(status: &impl std::fmt::Display) -> Markup {
    let status = status.to_string();
    html! { span.badge data-status=(status) { (status) } }
}

/// A labelled filter over a closed set, "Any" first, the current value selected.
pub fn choice<'v>(
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

/// A small post form with the CSRF token: one button, optional hidden fields.
pub fn action_form(
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

/// The step before an action that moves money or cuts something off.
pub struct Confirm<'a> {
    pub title: &'a str,
    /// What will happen, said plainly (and what cannot be undone).
    pub consequence: &'a str,
    /// Where the action posts, and the fields it posts (besides the CSRF token).
    pub action: &'a str,
    pub fields: &'a [(&'a str, &'a str)],
    /// The danger button's words: the act itself ("Refund €10.50").
    pub button: &'a str,
    /// The page to go back to without acting.
    pub back: &'a str,
}

/// Asks before acting: the consequence, the same form again with `confirmed=yes` behind a
/// danger button, and a way back that does nothing. No script: the strict CSP holds.
pub fn confirm(chrome: &Chrome<'_>, c: &Confirm<'_>) -> Markup {
    frame(
        c.title,
        "",
        html! {
            (nav(chrome, ""))
            main {
                h1 { (c.title) }
                form.confirm method="post" action=(c.action) {
                    p { (c.consequence) }
                    input type="hidden" name="csrf_token" value=(chrome.csrf_token);
                    input type="hidden" name="confirmed" value="yes";
                    @for (name, value) in c.fields { input type="hidden" name=(name) value=(value); }
                    p.actions {
                        button.danger type="submit" { (c.button) }
                        a href=(c.back) { "Cancel, go back" }
                    }
                }
            }
        },
    )
}

/// Whether a posted form carries the confirmation step's `confirmed=yes`.
pub fn confirmed(field: Option<&str>) -> bool {
    field == Some("yes")
}

/// A share as the page shows it: `97.5 %`, or `—` when nothing was measured.
pub fn percent(share: Option<f64>) -> String {
    match share {
        Some(s) => format!("{:.1} %", s * 100.0),
        None => "—".into(),
    }
}

/// A page that only says something: an error, a refusal.
pub fn message(text: &str) -> Markup {
    frame(
        "Payrail dashboard",
        "",
        html! {
            main {
                p role="alert" { (text) }
                p { a href="/dashboard" { "Back to the dashboard" } }
            }
        },
    )
}
