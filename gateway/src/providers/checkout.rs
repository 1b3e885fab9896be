//! The simulated provider's hosted checkout page: what a customer sees at
//! `/sandbox/checkout/{id}` (served by `api::checkout`).

use entity::payments;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The page for one sandbox payment: its amount and status, and while it is open the Pay,
/// Decline and Cancel buttons, each a form post to `/sandbox/checkout/{id}/{outcome}`.
pub fn render(p: &payments::Model) -> String {
    let open = !p.status.is_final();
    let buttons = if open {
        format!(
            r#"<form method="post" action="/sandbox/checkout/{id}/succeeded"><button>Pay</button></form>
<form method="post" action="/sandbox/checkout/{id}/failed"><button>Decline</button></form>
<form method="post" action="/sandbox/checkout/{id}/cancelled"><button>Cancel</button></form>"#,
            id = escape(&p.id)
        )
    } else {
        String::new()
    };
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>Payrail sandbox checkout</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}form{{display:inline}}button{{margin:.3rem;padding:.5rem 1rem}}</style></head>
<body><h1>Sandbox checkout</h1><p>{desc}</p><p><strong>{amount} {currency}</strong> (minor units)</p>
<p>Status: <strong id="status">{status}</strong></p>{buttons}</body></html>"#,
        desc = escape(p.description.as_deref().unwrap_or("Payment")),
        amount = p.amount,
        currency = escape(&p.currency),
        status = p.status,
    )
}
