//! The simulated provider's hosted checkout page: what a customer sees at
//! `/sandbox/checkout/{id}` (served by `api::checkout`). One screen that works on a phone
//! (viewport, full-width buttons of 44 px), is readable by screen readers (landmarks, a live
//! status, labelled QR code, visible focus), shows the amount as the customer writes it
//! (`€49.99`, `5 000 FCFA`), and posts its buttons with a CSRF token.

use entity::money::format_stored_amount;
use entity::payments;

/// Text made safe for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// What the page needs beyond the payment.
pub struct CheckoutView<'a> {
    /// The token each form posts back, matching the cookie set with the page.
    pub csrf_token: &'a str,
    /// Who the customer pays: the merchant's name.
    pub merchant: &'a str,
    /// The QR code of this page (inline SVG), for finishing on a phone.
    pub qr_svg: Option<&'a str>,
    /// Where the customer goes once the payment is final (the merchant's `return_url`).
    pub return_to: Option<&'a str>,
}

const STYLE: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:1rem/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#f4f5f7}\
main{max-width:28rem;margin:0 auto;padding:1.5rem 1rem;background:#fff;min-height:100vh}\
h1{font-size:1.25rem;margin:0 0 .25rem}h2{font-size:1rem;margin:1.5rem 0 .25rem}\
.amount{font-size:2rem;font-weight:700;margin:.5rem 0}\
.status{margin:.5rem 0 1rem}\
form{margin:.5rem 0}\
button,.return{display:block;width:100%;min-height:44px;padding:.75rem 1rem;font:inherit;font-weight:600;border-radius:.5rem;border:2px solid #1a1a1a;background:#fff;color:#1a1a1a;text-align:center;text-decoration:none;cursor:pointer}\
button.pay,.return{background:#0b5cad;border-color:#0b5cad;color:#fff}\
button:focus-visible,a:focus-visible{outline:3px solid #f5a623;outline-offset:2px}\
.qr svg{width:12rem;height:12rem;display:block}\
.note{color:#4a4a4a;font-size:.875rem}\
.declined{background:#fdecea;border-left:4px solid #a40000;padding:.75rem 1rem;font-weight:600}\
@media (min-width:40rem){main{margin:2rem auto;min-height:0;border-radius:.75rem;box-shadow:0 1px 4px rgba(0,0,0,.1)}}";

/// The page for one sandbox payment.
pub fn render(p: &payments::Model, view: &CheckoutView<'_>) -> String {
    let amount = escape(&format_stored_amount(p.amount, &p.currency));
    let open = !p.status.is_final();
    let id = escape(&p.id);
    let token = escape(view.csrf_token);
    let button = |outcome: &str, label: &str, class: &str| {
        format!(
            r#"<form method="post" action="/sandbox/checkout/{id}/{outcome}"><input type="hidden" name="csrf_token" value="{token}"><button type="submit" class="{class}">{label}</button></form>"#
        )
    };
    let merchant = escape(view.merchant);
    let declined = p.status == entity::payment_status::PaymentStatus::Failed;
    let actions = if open {
        [
            button("succeeded", &format!("Pay {amount}"), "pay"),
            button("failed", "Decline", "decline"),
            button("cancelled", "Cancel", "cancel"),
        ]
        .concat()
    } else {
        // A decline is not a dead end: the customer is told what happened and where to try
        // again (the merchant makes a new payment; this one is final).
        let told = if declined {
            format!(
                r#"<p class="declined" role="alert">Your payment was declined. Nothing was charged. To try again, {}.</p>"#,
                if view.return_to.is_some() {
                    format!("go back to {merchant} and pay again")
                } else {
                    format!("ask {merchant} for a new payment link")
                }
            )
        } else {
            String::new()
        };
        let back = match view.return_to {
            Some(url) => format!(
                r#"<a class="return" href="{}">{}</a>"#,
                escape(url),
                if declined {
                    format!("Try again at {merchant}")
                } else {
                    format!("Return to {merchant}")
                }
            ),
            None => String::new(),
        };
        format!("{told}{back}")
    };
    let qr = match (open, view.qr_svg) {
        (true, Some(svg)) => format!(
            r#"<section class="qr" aria-labelledby="qr-title"><h2 id="qr-title">Pay on your phone</h2><p>Scan this code with your phone's camera to open this page there.</p>{svg}</section>"#
        ),
        _ => String::new(),
    };
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Pay {merchant} {amount} · Payrail sandbox checkout</title><link rel="icon" href="data:,"><style>{STYLE}</style></head>
<body><main><p class="note">Sandbox checkout</p><h1 id="merchant">{merchant}</h1><p>{desc}</p><p class="amount" id="amount">{amount}</p>
<p class="status" role="status" aria-live="polite">Status: <strong id="status">{status}</strong></p>
{actions}{qr}<p class="note">Sandbox: no money moves.</p></main></body></html>"#,
        desc = escape(p.description.as_deref().unwrap_or("Payment")),
        status = p.status,
    )
}

/// The answer to a form whose token this browser does not hold (another browser's, or a
/// cookie cleared since): said plainly, with the way back.
pub fn expired(payment_id: &str) -> String {
    let id = escape(payment_id);
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Reload the checkout · Payrail sandbox checkout</title><style>{STYLE}</style></head>
<body><main><h1>This page has expired</h1><p role="alert">Nothing was charged. This form did not come from the checkout open in this browser, or it is too old.</p><a class="return" href="/sandbox/checkout/{id}">Reload the checkout</a></main></body></html>"#
    )
}
