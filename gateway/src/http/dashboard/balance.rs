//! The balance page (`/dashboard/balance`): what the merchant holds per currency in the mode
//! shown, the ledger's transactions behind it (paged both ways), and its payouts. A thin
//! adapter over the ledger and payouts services the API uses.

use entity::money::format_stored_amount;
use maud::{Markup, html};
use poem::web::{Data, Query};
use poem::{Response, handler};
use serde::Deserialize;

use crate::core::pagination::{Neighbours, Page};
use crate::http::dashboard::frame::{Chrome, badge, frame, nav, pager, when};
use crate::http::dashboard::session::{PageError, SignedIn, page};
use crate::http::state::AppState;

/// Transactions a page shows; payouts shown (the latest).
const PAGE_SIZE: u64 = 25;
const PAYOUTS_SHOWN: u64 = 10;

#[derive(Deserialize)]
pub struct BalanceQuery {
    starting_after: Option<String>,
    ending_before: Option<String>,
}

#[handler]
pub async fn balance_page(
    me: SignedIn,
    state: Data<&AppState>,
    Query(query): Query<BalanceQuery>,
) -> Result<Response, PageError> {
    let non_empty = |c: Option<String>| c.filter(|c| !c.is_empty());
    let page_of = Page::new(
        Some(PAGE_SIZE as i64),
        non_empty(query.starting_after),
        non_empty(query.ending_before),
    )
    .map_err(|e| PageError::Invalid(e.message))?;
    let scope = me.scope();
    let db = &state.db;
    let loaded = async {
        let balances = crate::ledger::balances(db, &scope).await?;
        let (transactions, more) =
            crate::ledger::list(db, &scope, &crate::ledger::Filter::default(), &page_of).await?;
        let latest = Page {
            limit: PAYOUTS_SHOWN,
            starting_after: None,
            ending_before: None,
        };
        let (payouts, _) = crate::payouts::list(db, &scope, &latest).await?;
        Ok::<_, sea_orm::DbErr>((balances, transactions, more, payouts))
    }
    .await;
    let (balances, transactions, more, payouts) = loaded.map_err(PageError::db("balance"))?;
    let around = page_of.neighbours(
        more,
        transactions.first().map(|t| t.id.as_str()),
        transactions.last().map(|t| t.id.as_str()),
    );
    let view = BalanceView {
        balances: &balances,
        transactions: &transactions,
        payouts: &payouts,
        around,
    };
    Ok(page(balance_view(&me.chrome(), &view)))
}

/// The balance per currency, as the overview and this page show it.
pub fn balance_table(balances: &[entity::balances::Model]) -> Markup {
    html! {
        @if balances.is_empty() {
            p { "No money has moved in this mode yet." }
        } @else {
            table {
                thead { tr { th scope="col" { "Currency" } th scope="col" { "Available" } th scope="col" { "Pending" } } }
                tbody {
                    @for b in balances {
                        tr data-currency=(b.currency) {
                            td data-label="Currency" { (b.currency) }
                            td.available data-label="Available" { (format_stored_amount(b.available, &b.currency)) }
                            td.pending data-label="Pending" { (format_stored_amount(b.pending, &b.currency)) }
                        }
                    }
                }
            }
        }
    }
}

struct BalanceView<'a> {
    balances: &'a [entity::balances::Model],
    transactions: &'a [entity::balance_transactions::Model],
    payouts: &'a [entity::payouts::Model],
    around: Neighbours,
}

fn balance_view(chrome: &Chrome<'_>, view: &BalanceView<'_>) -> Markup {
    frame(
        "Balance",
        "",
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Balance" }
                section #balances aria-labelledby="balances-title" {
                    h2 #balances-title { "By currency" }
                    (balance_table(view.balances))
                }
                section #transactions aria-labelledby="transactions-title" {
                    h2 #transactions-title { "Transactions" }
                    @if view.transactions.is_empty() { p { "None yet: a payment that succeeds adds the first." } }
                    @else {
                        table {
                            thead { tr { th scope="col" { "Transaction" } th scope="col" { "Type" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Source" } th scope="col" { "Available on" } th scope="col" { "Created" } } }
                            tbody {
                                @for t in view.transactions {
                                    tr data-transaction=(t.id) {
                                        td data-label="Transaction" { code { (t.id) } }
                                        td data-label="Type" { (t.kind) }
                                        td data-label="Amount" { (format_stored_amount(t.amount, &t.currency)) }
                                        td data-label="Status" { (badge(&t.status)) }
                                        td data-label="Source" {
                                            @match t.source_id.as_deref() {
                                                Some(s) if s.starts_with("pay_") => { a href={ "/dashboard/payments/" (s) } { code { (s) } } }
                                                Some(s) => { code { (s) } }
                                                None => { "—" }
                                            }
                                        }
                                        td data-label="Available on" { (when(&entity::event::rfc3339(t.available_on))) }
                                        td data-label="Created" { (when(&entity::event::rfc3339(t.created_at))) }
                                    }
                                }
                            }
                        }
                    }
                    (pager("/dashboard/balance", "", &view.around))
                }
                section #payouts aria-labelledby="payouts-title" {
                    h2 #payouts-title { "Payouts" }
                    @if view.payouts.is_empty() { p { "No payout in this mode yet (" code { "POST /v1/payouts" } ")." } }
                    @else {
                        table {
                            thead { tr { th scope="col" { "Payout" } th scope="col" { "Amount" } th scope="col" { "Status" } th scope="col" { "Provider" } th scope="col" { "Created" } } }
                            tbody {
                                @for p in view.payouts {
                                    tr data-payout=(p.id) {
                                        td data-label="Payout" { code { (p.id) } }
                                        td data-label="Amount" { (format_stored_amount(p.amount, &p.currency)) }
                                        td data-label="Status" { (badge(&p.status)) @if let Some(m) = &p.failure_message { " " (m) } }
                                        td data-label="Provider" { (p.provider) }
                                        td data-label="Created" { (when(&entity::event::rfc3339(p.created_at))) }
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
