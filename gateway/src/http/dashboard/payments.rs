//! The payment page: one payment with its facts, events, refunds and webhook deliveries, and
//! its buttons (cancel, refund), which call the API's services with the API's rules. The
//! list and its search are [`super::payments_list`].

use entity::event::rfc3339;
use entity::ids::PaymentId;
use entity::money::{format_amount, format_stored_amount, plain_major_units};
use entity::payment_status::PaymentStatus;
use entity::payments;
use entity::status::{DeliveryStatus, RefundReason};
use maud::{Markup, html};
use poem::web::{Data, Path};
use poem::{Response, handler};
use serde::Deserialize;

use crate::core::error::ServiceError;
use crate::http::dashboard::frame::{
    Chrome, Confirm, LIVE_PAYMENT, badge, confirm, confirmed, frame, nav, when,
};
use crate::http::dashboard::session::{
    PageError, Posted, SignedIn, back_to, page, told, with_csrf,
};
use crate::http::state::AppState;
use crate::payments::objects::Payment;
use crate::payments::{refunds, service as payments_service};
use crate::webhooks::{deliveries, endpoints, events};

/// A payment with its events, refunds and webhook deliveries; cancel and refund buttons for
/// those who may act.
#[handler]
pub async fn payment_detail(
    me: SignedIn,
    state: Data<&AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    const NO_SUCH: PageError = PageError::NotFound("No such payment.");
    let payment_id = PaymentId::parse(&id).ok_or(NO_SUCH)?;
    let scope = me.scope();
    let db = &state.db;
    let loaded = async {
        let Some(p) = payments_service::get(db, &scope, &payment_id).await? else {
            return Ok(None);
        };
        let events = events::for_payment(db, &scope, &payment_id).await?;
        let refunds = refunds::list(db, &scope, &payment_id).await?;
        let event_ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
        let deliveries = deliveries::for_events(db, &scope, &event_ids).await?;
        let urls = endpoints::urls(db, &scope).await?;
        Ok::<_, sea_orm::DbErr>(Some((p, events, refunds, deliveries, urls)))
    }
    .await;
    let (p, events, refunds, deliveries, urls) =
        loaded.map_err(PageError::db("payment"))?.ok_or(NO_SUCH)?;
    let type_of: std::collections::HashMap<_, _> = events
        .iter()
        .map(|e| (e.id.clone(), e.event_type.clone()))
        .collect();
    let delivery_rows: Vec<_> = deliveries
        .iter()
        .map(|d| DeliveryRow {
            id: d.id.to_string(),
            event_type: type_of.get(&d.event_id).cloned().unwrap_or_default(),
            endpoint_url: urls.get(&d.endpoint_id).cloned().unwrap_or_default(),
            status: d.status,
            attempts: d.attempts,
            http_status: d.http_status,
            retryable: matches!(d.status, DeliveryStatus::Failed | DeliveryStatus::Pending),
        })
        .collect();
    Ok(page(detail_view(
        &me.chrome(),
        &PaymentDetail {
            payment: &p,
            amount: format_stored_amount(p.amount, &p.currency),
            events: &events,
            refunds: &refunds,
            deliveries: &delivery_rows,
            can_act: me.user.can_act(),
            notice: me.flash.as_deref(),
            currency: &p.currency,
            refunded: format_stored_amount(p.amount_refunded, &p.currency),
            refundable: plain_major_units(
                p.amount - p.amount_refunded,
                entity::money::Currency::stored(&p.currency),
            ),
        },
    )))
}

fn back_to_payment(payment_id: &str, notice: &str) -> Response {
    back_to(&format!("/dashboard/payments/{payment_id}"), notice)
}

#[derive(Deserialize)]
pub struct CancelForm {
    csrf_token: Option<String>,
    confirmed: Option<String>,
}

#[derive(Deserialize)]
pub struct RefundForm {
    csrf_token: Option<String>,
    idempotency_key: Option<String>,
    amount: Option<String>,
    reason: Option<String>,
    confirmed: Option<String>,
}

with_csrf!(CancelForm, RefundForm);

/// The payment a button acts on, in the signed-in user's scope.
async fn acted_on(
    state: &AppState,
    scope: &entity::ids::Scope,
    id: &str,
) -> Result<(PaymentId, payments::Model), PageError> {
    const NO_SUCH: PageError = PageError::NotFound("No such payment.");
    let payment_id = PaymentId::parse(id).ok_or(NO_SUCH)?;
    let payment = payments_service::get(&state.db, scope, &payment_id)
        .await
        .map_err(PageError::db("payment"))?
        .ok_or(NO_SUCH)?;
    Ok((payment_id, payment))
}

/// The cancel button (as `POST /v1/payments/{id}/cancel`: at the provider first), after a
/// confirmation step.
#[handler]
pub async fn cancel_payment(
    posted: Posted<CancelForm>,
    state: Data<&AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (payment_id, payment) = acted_on(&state, &posted.scope(), &id).await?;
    if !confirmed(posted.form.confirmed.as_deref()) {
        let amount = format_stored_amount(payment.amount, &payment.currency);
        return Ok(page(confirm(
            &posted.chrome(),
            &Confirm {
                title: &format!("Cancel payment {id}?"),
                consequence: &format!(
                    "The {amount} payment is cancelled at its provider: the customer can no longer pay it. This cannot be undone."
                ),
                action: &format!("/dashboard/payments/{id}/cancel"),
                fields: &[],
                button: "Cancel the payment",
                back: &format!("/dashboard/payments/{id}"),
            },
        )));
    }
    match payments_service::cancel(
        &state.db,
        &state.providers,
        &posted.scope(),
        &payment_id,
        None,
    )
    .await
    {
        Ok(cancelled) => {
            state.effects.apply(cancelled, None).await;
            Ok(back_to_payment(&id, "Payment cancelled."))
        }
        Err(ServiceError::NotFound { .. }) => Err(PageError::NotFound("No such payment.")),
        Err(e) => Ok(back_to_payment(&id, &format!("Not cancelled: {}", told(e)))),
    }
}

/// The refund button (as `POST /v1/payments/{id}/refunds`, with the form's own idempotency
/// key, so a double submit replays instead of refunding twice). The amount is typed in major
/// units of the payment's currency (`10.50`), prefilled with what is left to refund; a
/// confirmation step says exactly what goes back. The key obeys the API's rule (1 to 255
/// characters; refused, never dropped) and the service checks the amount against what is
/// left.
#[handler]
pub async fn refund_payment(
    posted: Posted<RefundForm>,
    state: Data<&AppState>,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (payment_id, payment) = acted_on(&state, &posted.scope(), &id).await?;
    let currency = entity::money::Currency::stored(&payment.currency);
    let left = payment.amount - payment.amount_refunded;
    let typed = posted
        .form
        .amount
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty());
    let amount = match typed {
        None => left,
        Some(text) => entity::money::parse_major_units(text, currency).map_err(|why| {
            PageError::Invalid(format!("The refund amount was not understood: {why}."))
        })?,
    };
    let reason = match posted.form.reason.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(text) => Some(RefundReason::parse(text).ok_or_else(|| {
            PageError::Invalid(format!(
                "The refund reason must be one of {}, not {text:?}.",
                RefundReason::ALL
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?),
    };
    let key = posted.form.idempotency_key.as_deref();
    if key.is_some_and(|k| !crate::core::idempotency::key_is_valid(k)) {
        return Err(PageError::Invalid(
            crate::core::idempotency::KEY_RULE.into(),
        ));
    }
    if !confirmed(posted.form.confirmed.as_deref()) {
        let plain = plain_major_units(amount, currency);
        let said = format_amount(amount, currency);
        return Ok(page(confirm(
            &posted.chrome(),
            &Confirm {
                title: &format!("Refund {said}?"),
                consequence: &format!(
                    "{said} of the {} payment goes back to the customer ({} already refunded){}. A refund cannot be undone.",
                    format_amount(payment.amount, currency),
                    format_amount(payment.amount_refunded, currency),
                    reason
                        .map(|r| format!(", {}", reason_said(r)))
                        .unwrap_or_default(),
                ),
                action: &format!("/dashboard/payments/{id}/refund"),
                fields: &[
                    ("amount", &plain),
                    (
                        "reason",
                        reason.map(RefundReason::as_str).unwrap_or_default(),
                    ),
                    ("idempotency_key", key.unwrap_or_default()),
                ],
                button: &format!("Refund {said}"),
                back: &format!("/dashboard/payments/{id}"),
            },
        )));
    }
    match refunds::create(
        &state.db,
        &state.providers,
        &posted.scope(),
        &payment_id,
        refunds::Asked {
            amount: Some(amount),
            reason,
        },
        key,
    )
    .await
    {
        Ok(committed) => {
            let outcome = state.effects.apply(committed, None).await;
            let r = &outcome.value;
            let said = format_amount(r.amount, currency);
            let notice = if r.status == entity::status::RefundStatus::Failed {
                format!("The refund of {said} failed at the provider ({}).", r.id)
            } else {
                format!("Refund of {said} recorded ({}, {}).", r.id, r.status)
            };
            Ok(back_to_payment(&id, &notice))
        }
        Err(ServiceError::NotFound { .. }) => Err(PageError::NotFound("No such payment.")),
        Err(e) => Ok(back_to_payment(&id, &format!("Not refunded: {}", told(e)))),
    }
}

/// A refund's reason in words.
pub fn reason_said(reason: RefundReason) -> &'static str {
    match reason {
        RefundReason::RequestedByCustomer => "requested by the customer",
        RefundReason::Duplicate => "a duplicate payment",
        RefundReason::Fraudulent => "fraudulent",
    }
}

/// One delivery as the payment page lists it.
pub struct DeliveryRow {
    pub id: String,
    pub event_type: String,
    pub endpoint_url: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub http_status: Option<i32>,
    pub retryable: bool,
}

/// What the payment page shows.
pub struct PaymentDetail<'a> {
    pub payment: &'a payments::Model,
    pub amount: String,
    pub events: &'a [entity::events::Model],
    pub refunds: &'a [entity::refunds::Model],
    pub deliveries: &'a [DeliveryRow],
    /// Owners and developers see the action buttons; viewers do not.
    pub can_act: bool,
    pub notice: Option<&'a str>,
    /// The payment's currency code, and what is refunded and left, for the refund form.
    pub currency: &'a str,
    pub refunded: String,
    pub refundable: String,
}

/// A payment's status as lists and its page show it: its badge, and a second one when part
/// of it was refunded (the status stays `succeeded` until all of it is).
pub fn payment_status(p: &payments::Model) -> Markup {
    html! {
        (badge(&p.status))
        @if p.amount_refunded > 0 && p.amount_refunded < p.amount {
            " " (badge(&"partially_refunded"))
        }
    }
}

/// The facts of a payment, as Stripe's payment page lists them.
fn facts(p: &Payment) -> Markup {
    html! {
        dl.facts {
            @if let Some(d) = &p.description { dt { "Description" } dd { (d) } }
            @if let Some(r) = &p.reference { dt { "Reference" } dd { code { (r) } } }
            @if let Some(c) = &p.customer {
                dt { "Customer" }
                dd #customer {
                    @if let Some(n) = &c.name { (n) br; }
                    @if let Some(e) = &c.email { a href={ "mailto:" (e) } { (e) } br; }
                    @if let Some(t) = &c.phone { (t) }
                }
            }
            dt { "Payment method" }
            dd #payment-method {
                @match &p.payment_method {
                    Some(m) => { (m.card.brand) " •••• " (m.card.last4) " · expires " (format!("{:02}/{}", m.card.exp_month, m.card.exp_year)) }
                    None => { "Chosen on the provider's checkout" }
                }
            }
            dt { "Provider" }
            dd { (p.provider) @if let Some(r) = &p.provider_reference { " · " code { (r) } } }
            @if let Some(url) = &p.checkout_url {
                dt { "Checkout" } dd { a href=(url) { "Open the checkout" } }
            }
            dt { "Created" } dd { (when(&p.created_at)) }
            dt { "Updated" } dd { (when(&p.updated_at)) }
            @if let Some(t) = &p.balance_transaction { dt { "Balance transaction" } dd { code { (t) } } }
            @if !p.metadata.is_empty() {
                dt { "Metadata" }
                dd #metadata {
                    @for (k, v) in sorted(&p.metadata) { code { (k) } ": " (v) br; }
                }
            }
        }
    }
}

fn sorted(m: &std::collections::HashMap<String, String>) -> Vec<(&String, &String)> {
    let mut pairs: Vec<_> = m.iter().collect();
    pairs.sort();
    pairs
}

fn detail_view(chrome: &Chrome<'_>, view: &PaymentDetail<'_>) -> Markup {
    let csrf_token = chrome.csrf_token;
    let p = view.payment;
    let shown = Payment::from(p);
    frame(
        &format!("Payment {}", p.id),
        LIVE_PAYMENT,
        html! {
            (nav(chrome, ""))
            main {
                h1 { "Payment " code { (p.id) } }
                @if let Some(notice) = view.notice { p role="status" { (notice) } }
                div #summary data-live-region {
                    p.amount { strong { (view.amount) } " " span #status { (payment_status(p)) } }
                    @if p.amount_refunded > 0 {
                        p #refunded { (view.refunded) " of " (view.amount) " refunded." }
                    }
                    @if p.status == PaymentStatus::Failed {
                        p.alert #decline {
                            "Declined: " (p.failure_message.as_deref().unwrap_or("the provider gave no reason."))
                            @if let Some(code) = &p.failure_code { " (" code { (code) } ")" }
                        }
                    }
                    @if p.requires_reconciliation {
                        p.alert { "The provider reported this payment differently: see Reconciliation." }
                    }
                    (facts(&shown))
                }
                @if view.can_act && !p.status.is_final() {
                    form method="post" action={ "/dashboard/payments/" (p.id) "/cancel" } {
                        input type="hidden" name="csrf_token" value=(csrf_token);
                        button.secondary type="submit" { "Cancel payment…" }
                    }
                }
                @if view.can_act && p.status == PaymentStatus::Succeeded {
                    form method="post" action={ "/dashboard/payments/" (p.id) "/refund" } {
                        input type="hidden" name="csrf_token" value=(csrf_token);
                        // One key per rendering: a double click replays, it does not refund twice.
                        input type="hidden" name="idempotency_key" value=(entity::ids::random_token(24));
                        label for="refund-amount" { "Refund amount (" (view.currency) ")" }
                        input #refund-amount name="amount" inputmode="decimal" value=(view.refundable) aria-describedby="refund-left";
                        p #refund-left { (view.refunded) " of " (view.amount) " refunded so far." }
                        label for="refund-reason" { "Reason" }
                        select #refund-reason name="reason" {
                            option value="" { "None given" }
                            @for r in RefundReason::ALL {
                                option value=(r.as_str()) { (reason_said(*r)) }
                            }
                        }
                        p { button type="submit" { "Refund…" } }
                    }
                }
                section #events-section aria-labelledby="events" data-live-region {
                    h2 #events { "Events" }
                    ol.timeline {
                        @for e in view.events {
                            li data-event=(e.id) {
                                details {
                                    summary { code { (e.event_type) } " · " (when(&rfc3339(e.created_at))) }
                                    pre { (serde_json::to_string_pretty(&e.data).unwrap_or_default()) }
                                }
                            }
                        }
                    }
                }
                section #refunds-section aria-labelledby="refunds" data-live-region {
                    h2 #refunds { "Refunds" }
                    @if view.refunds.is_empty() { p { "None." } }
                    ul { @for r in view.refunds { li data-refund=(r.id) {
                        (format_stored_amount(r.amount, &p.currency)) " · " (r.status)
                        @if let Some(reason) = r.reason { " · " span.reason { (reason_said(reason)) } }
                    } } }
                }
                section #deliveries-section aria-labelledby="deliveries" data-live-region {
                    h2 #deliveries { "Webhook deliveries" }
                    table {
                        thead { tr { th scope="col" { "Event" } th scope="col" { "Endpoint" } th scope="col" { "Status" } th scope="col" { "Attempts" } th scope="col" { "Last answer" } th scope="col" { span.visually-hidden { "Actions" } } } }
                        tbody {
                            @for d in view.deliveries {
                                tr data-delivery=(d.id) {
                                    td data-label="Event" { a href={ "/dashboard/deliveries/" (d.id) } { code { (d.event_type) } } }
                                    td data-label="Endpoint" { (d.endpoint_url) }
                                    td data-label="Status" { (badge(&d.status)) }
                                    td data-label="Attempts" { (d.attempts) }
                                    td data-label="Last answer" { @if let Some(s) = d.http_status { (s) } @else { "—" } }
                                    td data-label="Actions" {
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
