//! The payments list: the search box and filters ([`crate::payments::search`]), pages both
//! ways with the total found, and the CSV export of everything the search finds, streamed.

use entity::event::rfc3339;
use entity::money::{Currency, plain_major_units};
use entity::payment_status::PaymentStatus;
use entity::payments;
use entity::status::Provider;
use maud::{Markup, html};
use poem::web::{Data, Query};
use poem::{Response, handler};
use serde::Deserialize;

use crate::core::pagination::{Neighbours, Page};
use crate::http::dashboard::export::{csv_download, csv_line};
use crate::http::dashboard::frame::{
    Chrome, LIVE_PAYMENTS, choice, frame, nav, pager, query_of, when,
};
use crate::http::dashboard::payments::payment_status;
use crate::http::dashboard::session::{PageError, SignedIn, html_response, page};
use crate::http::state::AppState;
use crate::payments::search::{Method, PaymentSearch, SearchForm};

/// Rows a page shows.
const PAGE_SIZE: u64 = 25;

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(flatten)]
    search: SearchForm,
    starting_after: Option<String>,
    ending_before: Option<String>,
}

/// The search's fields as a query string, for the paging links and the export.
fn search_query(form: &SearchForm) -> String {
    query_of(&[
        ("q", form.q.as_deref()),
        ("status", form.status.as_deref()),
        ("currency", form.currency.as_deref()),
        ("provider", form.provider.as_deref()),
        ("method", form.method.as_deref()),
        ("from", form.from.as_deref()),
        ("to", form.to.as_deref()),
    ])
}

/// `/dashboard/payments`: what the search finds, 25 a page, newest first.
#[handler]
pub async fn payments_page(
    me: SignedIn,
    state: Data<&AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let refused = |error: String| {
        let view = PaymentsList {
            form: &query.search,
            payments: &[],
            found: None,
            around: Neighbours::default(),
            error: Some(&error),
        };
        html_response(
            poem::http::StatusCode::UNPROCESSABLE_ENTITY,
            list_view(&me.chrome(), &view).into_string(),
        )
    };
    let search = match PaymentSearch::parse(&query.search) {
        Ok(s) => s,
        Err(error) => return Ok(refused(error)),
    };
    let non_empty = |c: &Option<String>| c.clone().filter(|c| !c.is_empty());
    let page_of = match Page::new(
        Some(PAGE_SIZE as i64),
        non_empty(&query.starting_after),
        non_empty(&query.ending_before),
    ) {
        Ok(p) => p,
        Err(e) => return Ok(refused(e.message)),
    };
    let scope = me.scope();
    let loaded = async {
        let (rows, more) = search.page(&state.db, &scope, &page_of).await?;
        let found = search.count(&state.db, &scope).await?;
        Ok::<_, sea_orm::DbErr>((rows, more, found))
    }
    .await;
    let (rows, more, found) = loaded.map_err(PageError::db("payments"))?;
    let around = page_of.neighbours(
        more,
        rows.first().map(|p| p.id.as_str()),
        rows.last().map(|p| p.id.as_str()),
    );
    let view = PaymentsList {
        form: &query.search,
        payments: &rows,
        found: Some(found),
        around,
        error: None,
    };
    Ok(page(list_view(&me.chrome(), &view)))
}

/// `/dashboard/payments.csv`: every payment the search finds, as CSV, streamed in batches.
#[handler]
pub async fn export_payments(
    me: SignedIn,
    state: Data<&AppState>,
    Query(form): Query<SearchForm>,
) -> Result<Response, PageError> {
    let search = PaymentSearch::parse(&form).map_err(PageError::Invalid)?;
    let (db, scope) = (state.db.clone(), me.scope());
    Ok(csv_download(
        "payments.csv",
        CSV_HEADER,
        move |page| {
            let (db, scope, search) = (db.clone(), scope.clone(), search.clone());
            async move { search.page(&db, &scope, &page).await }
        },
        csv_row,
        |p| p.id.to_string(),
    ))
}

const CSV_HEADER: &str = "id,created,amount,currency,status,amount_refunded,provider,reference,description,customer_email,card_last4\r\n";

/// One payment as a CSV line, amounts in major units.
fn csv_row(p: &payments::Model) -> String {
    let currency = Currency::stored(&p.currency);
    let email = p
        .customer
        .as_ref()
        .and_then(|c| c.get("email"))
        .and_then(|e| e.as_str())
        .unwrap_or_default();
    let last4 = p
        .payment_method
        .as_ref()
        .and_then(|m| m.get("card"))
        .and_then(|c| c.get("last4"))
        .and_then(|l| l.as_str())
        .unwrap_or_default();
    csv_line(&[
        p.id.as_str(),
        &rfc3339(p.created_at),
        &plain_major_units(p.amount, currency),
        &p.currency,
        p.status.as_str(),
        &plain_major_units(p.amount_refunded, currency),
        p.provider.as_str(),
        p.reference.as_deref().unwrap_or_default(),
        p.description.as_deref().unwrap_or_default(),
        email,
        last4,
    ])
}

/// The payments list: the search, one page, links both ways and the count.
pub struct PaymentsList<'a> {
    pub form: &'a SearchForm,
    pub payments: &'a [payments::Model],
    /// How many the search finds (none when it was refused).
    pub found: Option<u64>,
    /// Where the newer and the older page start, when there is one.
    pub around: Neighbours,
    pub error: Option<&'a str>,
}

fn text(field: &Option<String>) -> &str {
    field.as_deref().unwrap_or("")
}

fn list_view(chrome: &Chrome<'_>, view: &PaymentsList<'_>) -> Markup {
    let f = view.form;
    frame(
        "Payments",
        LIVE_PAYMENTS,
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Payments" }
                form.filters method="get" action="/dashboard/payments" role="search" {
                    div {
                        label for="q" { "Search" }
                        input #q type="search" name="q" value=(text(&f.q)) placeholder="pay_…, email, amount, last 4, reference" aria-describedby="q-help";
                    }
                    div { (choice("status", "Status", PaymentStatus::ALL.iter().map(|s| s.as_str()), text(&f.status))) }
                    div { (choice("currency", "Currency", Currency::codes(), &text(&f.currency).to_ascii_uppercase())) }
                    div { (choice("provider", "Provider", Provider::ALL.iter().map(|p| p.as_str()), text(&f.provider))) }
                    div { (choice("method", "Method", Method::ALL.iter().map(|m| m.as_str()), text(&f.method))) }
                    div { label for="from" { "From" } input #from type="date" name="from" value=(text(&f.from)); }
                    div { label for="to" { "To" } input #to type="date" name="to" value=(text(&f.to)); }
                    p { button type="submit" { "Search" } }
                }
                p #q-help { "Search by payment id, customer email, amount (10.50), card's last 4 or the start of a reference." }
                @if let Some(error) = view.error { p.error role="alert" { (error) } }
                @if let Some(found) = view.found {
                    p #found {
                        strong { (found) } @if found == 1 { " payment" } @else { " payments" } " found · "
                        a href={ "/dashboard/payments.csv?" (search_query(f)) } download { "Export CSV" }
                    }
                }
                table #payments-table data-live-region {
                    thead { tr { th scope="col" { "Payment" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Reference" } th scope="col" { "Created" } } }
                    tbody #payments {
                        @for p in view.payments {
                            tr data-payment=(p.id) {
                                td data-label="Payment" { a href={ "/dashboard/payments/" (p.id) } { code { (p.id) } } }
                                td data-label="Amount" { (entity::money::format_stored_amount(p.amount, &p.currency)) }
                                td data-label="Status" { (payment_status(p)) }
                                td data-label="Reference" { (p.reference.as_deref().unwrap_or("")) }
                                td data-label="Created" { (when(&rfc3339(p.created_at))) }
                            }
                        }
                    }
                }
                @if view.found == Some(0) { p { "No payment matches. Clear the filters to see them all." } }
                (pager("/dashboard/payments", &search_query(f), &view.around))
            }
        },
    )
}
