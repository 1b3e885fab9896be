//! The log store's page: filters by level, source and age, and a chart of counts per level
//! over the same window.

use entity::status::LogLevel;
use maud::{Markup, html};
use poem::web::{Data, Query};
use poem::{Response, handler};
use serde::Deserialize;

use crate::http::dashboard::frame::{Chrome, LIVE_LOGS, choice, frame, nav, when};
use crate::http::dashboard::session::{PageError, SignedIn, html_response, page};
use crate::http::state::AppState;

/// The longest window the page looks back.
const MOST_WINDOW: std::time::Duration = std::time::Duration::from_secs(90 * 86_400);

#[derive(Deserialize)]
pub struct LogQuery {
    level: Option<String>,
    source: Option<String>,
    window: Option<String>,
}

#[handler]
pub async fn logs_page(
    me: SignedIn,
    state: Data<&AppState>,
    Query(query): Query<LogQuery>,
) -> Result<Response, PageError> {
    let level_text = query.level.unwrap_or_default();
    let source = query.source.unwrap_or_default();
    let window_text = query
        .window
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "1d".into());
    let level = (!level_text.is_empty())
        .then(|| LogLevel::parse(&level_text))
        .map(|l| l.ok_or(format!("Unknown level {level_text:?}.")))
        .transpose();
    let window = runtime::settings::parse_duration(&window_text)
        .map_err(|e| format!("Since: {e}."))
        .and_then(|w| {
            (!w.is_zero() && w <= MOST_WINDOW)
                .then_some(w)
                .ok_or_else(|| "Since must be between 1s and 90d.".to_string())
        });
    let (level, window) = match (level, window) {
        (Ok(level), Ok(window)) => (level, window),
        (Err(error), _) | (_, Err(error)) => {
            let logs = Logs {
                entries: &[],
                counts: &[],
                level: &level_text,
                source: &source,
                window: &window_text,
                error: Some(&error),
            };
            return Ok(html_response(
                poem::http::StatusCode::UNPROCESSABLE_ENTITY,
                view(&me.chrome(), &logs).into_string(),
            ));
        }
    };
    let scope = me.scope();
    let source_filter = (!source.is_empty()).then_some(source.as_str());
    let loaded = async {
        let entries =
            crate::merchants::logs::search(&state.db, &scope, level, source_filter, window, 100)
                .await?;
        let stats = crate::merchants::logs::stats(&state.db, &scope, window).await?;
        Ok::<_, sea_orm::DbErr>((entries, stats))
    }
    .await;
    let (entries, stats) = loaded.map_err(PageError::db("logs"))?;
    let counts: Vec<(String, i64)> = LogLevel::ALL
        .iter()
        .map(|l| {
            let n = stats.by_level.get(l.as_str()).copied().unwrap_or(0);
            (l.as_str().to_string(), n)
        })
        .collect();
    let logs = Logs {
        entries: &entries,
        counts: &counts,
        level: &level_text,
        source: &source,
        window: &window_text,
        error: None,
    };
    Ok(page(view(&me.chrome(), &logs)))
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
    pub entries: &'a [crate::merchants::logs::LogEntry],
    pub counts: &'a [(String, i64)],
    pub level: &'a str,
    pub source: &'a str,
    pub window: &'a str,
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
                            tr data-log=(e.id) { td data-label="When" { (when(&e.created_at)) } td data-label="Level" { (e.level) } td data-label="Source" { (e.source) } td data-label="Message" { (e.message) } }
                        }
                    }
                }
            }
        },
    )
}
