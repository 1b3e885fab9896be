//! The log store's page: text search and filters by level, source and age, 50 entries a page
//! both ways with the count, a CSV export of what the filters find, and a chart of counts per
//! level over the same window.

use entity::status::LogLevel;
use maud::{Markup, html};
use poem::web::{Data, Query};
use poem::{Response, handler};
use serde::Deserialize;

use crate::core::pagination::{Neighbours, Page};
use crate::http::dashboard::export::{csv_download, csv_line};
use crate::http::dashboard::frame::{Chrome, LIVE_LOGS, choice, frame, nav, pager, query_of, when};
use crate::http::dashboard::session::{PageError, SignedIn, html_response, page};
use crate::http::state::AppState;
use crate::merchants::logs::{LogEntry, LogSearch};

/// The longest window the page looks back.
const MOST_WINDOW: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

#[derive(Deserialize, Default)]
pub struct LogQuery {
    level: Option<String>,
    source: Option<String>,
    window: Option<String>,
    /// Text the message contains.
    q: Option<String>,
    starting_after: Option<String>,
    ending_before: Option<String>,
}

/// Entries a page shows.
const PAGE_SIZE: u64 = 50;

fn given(field: &Option<String>) -> Option<String> {
    field
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// The search the query asks for, or why not (the field, in words).
fn parse_search(query: &LogQuery) -> Result<LogSearch, String> {
    let level = given(&query.level)
        .map(|l| LogLevel::parse(&l).ok_or(format!("Unknown level {l:?}.")))
        .transpose()?;
    let window_text = given(&query.window).unwrap_or_else(|| "1d".into());
    let window = runtime::settings::parse_duration(&window_text)
        .map_err(|e| format!("Since: {e}."))
        .and_then(|w| {
            (!w.is_zero() && w <= MOST_WINDOW)
                .then_some(w)
                .ok_or_else(|| "Since must be between 1s and 90d.".to_string())
        })?;
    Ok(LogSearch {
        level,
        source: given(&query.source),
        text: given(&query.q),
        window,
    })
}

/// The filters as a query string, for the paging links and the export.
fn filters_query(query: &LogQuery) -> String {
    query_of(&[
        ("level", query.level.as_deref()),
        ("source", query.source.as_deref()),
        ("window", query.window.as_deref()),
        ("q", query.q.as_deref()),
    ])
}

#[handler]
pub async fn logs_page(
    me: SignedIn,
    state: Data<&AppState>,
    Query(query): Query<LogQuery>,
) -> Result<Response, PageError> {
    let text = |f: &Option<String>| f.clone().unwrap_or_default();
    let (level_text, source, window_text, searched) = (
        text(&query.level),
        text(&query.source),
        given(&query.window).unwrap_or_else(|| "1d".into()),
        text(&query.q),
    );
    let refused = |error: &str| {
        let logs = Logs {
            entries: &[],
            counts: &[],
            level: &level_text,
            source: &source,
            window: &window_text,
            q: &searched,
            found: None,
            filters: None,
            around: Neighbours::default(),
            error: Some(error),
        };
        html_response(
            poem::http::StatusCode::UNPROCESSABLE_ENTITY,
            view(&me.chrome(), &logs).into_string(),
        )
    };
    let search = match parse_search(&query) {
        Ok(s) => s,
        Err(error) => return Ok(refused(&error)),
    };
    let page_of = match Page::new(
        Some(PAGE_SIZE as i64),
        given(&query.starting_after),
        given(&query.ending_before),
    ) {
        Ok(p) => p,
        Err(e) => return Ok(refused(&e.message)),
    };
    let scope = me.scope();
    let loaded = async {
        let (rows, more) = search.page(&state.db, &scope, &page_of).await?;
        let found = search.count(&state.db, &scope).await?;
        let stats = crate::merchants::logs::stats(&state.db, &scope, search.window).await?;
        Ok::<_, sea_orm::DbErr>((rows, more, found, stats))
    }
    .await;
    let (rows, more, found, stats) = loaded.map_err(PageError::db("logs"))?;
    let entries: Vec<LogEntry> = rows.iter().map(LogEntry::from).collect();
    let counts: Vec<(String, i64)> = LogLevel::ALL
        .iter()
        .map(|l| {
            let n = stats.by_level.get(l.as_str()).copied().unwrap_or(0);
            (l.as_str().to_string(), n)
        })
        .collect();
    let around = page_of.neighbours(
        more,
        rows.first().map(|r| r.id.as_str()),
        rows.last().map(|r| r.id.as_str()),
    );
    let logs = Logs {
        entries: &entries,
        counts: &counts,
        level: &level_text,
        source: &source,
        window: &window_text,
        q: &searched,
        found: Some(found),
        filters: Some(filters_query(&query)),
        around,
        error: None,
    };
    Ok(page(view(&me.chrome(), &logs)))
}

const CSV_HEADER: &str = "id,created,level,source,message,request_id\r\n";

/// `/dashboard/logs.csv`: every entry the filters find, streamed in batches.
#[handler]
pub async fn export_logs(
    me: SignedIn,
    state: Data<&AppState>,
    Query(query): Query<LogQuery>,
) -> Result<Response, PageError> {
    let search = parse_search(&query).map_err(PageError::Invalid)?;
    let (db, scope) = (state.db.clone(), me.scope());
    Ok(csv_download(
        "logs.csv",
        CSV_HEADER,
        move |page| {
            let (db, scope, search) = (db.clone(), scope.clone(), search.clone());
            async move { search.page(&db, &scope, &page).await }
        },
        csv_row,
        |l| l.id.to_string(),
    ))
}

/// One entry as a CSV line.
fn csv_row(l: &entity::logs::Model) -> String {
    csv_line(&[
        l.id.as_str(),
        &entity::event::rfc3339(l.created_at),
        l.level.as_str(),
        &l.source,
        &l.message,
        l.request_id.as_deref().unwrap_or_default(),
    ])
}

/// Counts per level as a bar chart, drawn here as SVG (no script, no library): one bar per
/// level, labelled, with the numbers in its accessible description too.
fn level_chart(counts: &[(String, i64)]) -> Markup {
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
    pub entries: &'a [LogEntry],
    pub counts: &'a [(String, i64)],
    pub level: &'a str,
    pub source: &'a str,
    pub window: &'a str,
    pub q: &'a str,
    /// How many the filters find, and their query for the export and the pages (none when
    /// refused).
    pub found: Option<u64>,
    pub filters: Option<String>,
    pub around: Neighbours,
    pub error: Option<&'a str>,
}

fn view(chrome: &Chrome<'_>, view: &Logs<'_>) -> Markup {
    frame(
        "Logs",
        LIVE_LOGS,
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Logs" }
                form.filters method="get" action="/dashboard/logs" role="search" {
                    div { label for="q" { "Message contains" } input #q type="search" name="q" value=(view.q); }
                    div { (choice("level", "Level", entity::status::LogLevel::ALL.iter().map(|l| l.as_str()), view.level)) }
                    div { label for="source" { "Source" } input #source name="source" value=(view.source) placeholder="payments, api, merchant:…"; }
                    div { label for="window" { "Since" } input #window name="window" value=(view.window) placeholder="1h, 1d, 7d"; }
                    p { button type="submit" { "Filter" } }
                }
                @if let Some(error) = view.error { p.error role="alert" { (error) } }
                @if let (Some(found), Some(filters)) = (view.found, &view.filters) {
                    p #found {
                        strong { (found) } @if found == 1 { " entry" } @else { " entries" } " found · "
                        a href={ "/dashboard/logs.csv?" (filters) } download { "Export CSV" }
                    }
                }
                section #per-level-section aria-labelledby="per-level" data-live-region {
                    h2 #per-level { "Entries per level" }
                    (level_chart(view.counts))
                }
                table #log-table data-live-region {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Level" } th scope="col" { "Source" } th scope="col" { "Message" } } }
                    tbody {
                        @for e in view.entries {
                            tr data-log=(e.id) { td data-label="When" { (when(&e.created_at)) } td data-label="Level" { (e.level) } td data-label="Source" { (e.source) } td data-label="Message" { (e.message) } }
                        }
                    }
                }
                (pager("/dashboard/logs", view.filters.as_deref().unwrap_or(""), &view.around))
            }
        },
    )
}
