//! The API keys page (owners only): the merchant's keys in both modes, created, rolled and
//! revoked through the API's service; a new secret is shown on the answering page only.

use entity::event::rfc3339;
use entity::ids::ApiKeyId;
use maud::{Markup, html};
use poem::web::{Data, Path};
use poem::{Response, handler};
use serde::Deserialize;

use crate::core::error::ServiceError;
use crate::http::dashboard::frame::{Chrome, Confirm, confirm, confirmed, frame, nav, when};
use crate::http::dashboard::session::{Own, PageError, Posted, SignedIn, page, told, with_csrf};
use crate::http::state::AppState;
use crate::merchants::users::DashboardUser;
use crate::merchants::{self, KeyManager};

/// The longest a rolled key keeps working.
const MOST_GRACE: std::time::Duration = std::time::Duration::from_secs(7 * 86_400);

/// The keys page, with a secret just made (shown once) when there is one.
async fn keys_page_with(
    state: &AppState,
    user: &DashboardUser,
    chrome: &Chrome<'_>,
    secret: Option<&str>,
) -> Result<Response, PageError> {
    let latest = crate::core::pagination::Page {
        limit: 100,
        starting_after: None,
        ending_before: None,
    };
    let owner = KeyManager::Owner(user.merchant_id.clone());
    let (keys, _) = merchants::list_keys(&state.db, &owner, &latest)
        .await
        .map_err(PageError::db("keys"))?;
    let now = chrono::Utc::now();
    let rows: Vec<KeyRow> = keys
        .iter()
        .map(|k| {
            let (state, active) = match (k.revoked_at, k.expires_at) {
                (Some(at), _) => (format!("revoked {}", rfc3339(at)), false),
                (None, Some(at)) if at <= now => (format!("expired {}", rfc3339(at)), false),
                (None, Some(at)) => (format!("expires {}", rfc3339(at)), false),
                (None, None) => ("active".to_string(), true),
            };
            KeyRow {
                id: k.id.to_string(),
                prefix: k.prefix.clone(),
                mode: if k.livemode { "live" } else { "test" },
                created_at: rfc3339(k.created_at),
                state,
                active,
            }
        })
        .collect();
    Ok(page(view(chrome, &rows, secret)))
}

/// `/dashboard/keys`: the merchant's API keys (owners only).
#[handler]
pub async fn keys_page(me: SignedIn, state: Data<&AppState>) -> Result<Response, PageError> {
    if me.user.role != entity::status::UserRole::Owner {
        return Err(PageError::Forbidden("Only owners manage API keys."));
    }
    keys_page_with(&state, &me.user, &me.chrome(), None).await
}

#[derive(Deserialize)]
pub struct CreateKeyForm {
    csrf_token: Option<String>,
    mode: Option<String>,
}

#[derive(Deserialize)]
pub struct KeyActionForm {
    csrf_token: Option<String>,
    expires_in: Option<u64>,
    /// `yes` once the confirmation step was passed (revoking asks first).
    confirmed: Option<String>,
}

with_csrf!(CreateKeyForm, KeyActionForm);

/// Create a key (as `POST /v1/api_keys`); its secret is on the answering page only.
#[handler]
pub async fn create_key(
    posted: Posted<CreateKeyForm, Own>,
    state: Data<&AppState>,
) -> Result<Response, PageError> {
    let livemode = match posted.form.mode.as_deref() {
        Some("live") => true,
        Some("test") | None => false,
        Some(_) => return Err(PageError::Invalid("mode must be test or live.".into())),
    };
    let owner = KeyManager::Owner(posted.user.merchant_id.clone());
    match merchants::create_key(&state.db, &owner, livemode).await {
        Ok((_, secret)) => {
            keys_page_with(&state, &posted.user, &posted.chrome(), Some(&secret)).await
        }
        Err(ServiceError::Invalid(refused)) => Err(PageError::Invalid(refused.message)),
        Err(e) => {
            tracing::error!(error = %e, "dashboard key creation failed");
            Err(PageError::Unavailable("key creation"))
        }
    }
}

/// What a key's button does.
enum KeyAction {
    Revoke,
    /// A new key now, the old one for the grace period.
    Roll,
}

/// Roll (a new key now, the old one for `expires_in` seconds) or revoke a key, as the API
/// does; the old key's cached entry goes at once on every gateway.
#[handler]
pub async fn key_action(
    posted: Posted<KeyActionForm, Own>,
    state: Data<&AppState>,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let key_id = ApiKeyId::parse(&id).ok_or(PageError::NotFound("No such key."))?;
    let action = match action.as_str() {
        "revoke" => KeyAction::Revoke,
        "roll" => KeyAction::Roll,
        _ => return Err(PageError::NotFound("No such action.")),
    };
    if matches!(action, KeyAction::Revoke) && !confirmed(posted.form.confirmed.as_deref()) {
        return Ok(page(confirm(
            &posted.chrome(),
            &Confirm {
                title: &format!("Revoke key {id}?"),
                consequence: "Every request made with this key is refused from now on, on every gateway. This cannot be undone: the integrations using it stop until they have a new key.",
                action: &format!("/dashboard/keys/{id}/revoke"),
                fields: &[],
                button: "Revoke the key",
                back: "/dashboard/keys",
            },
        )));
    }
    let owner = KeyManager::Owner(posted.user.merchant_id.clone());
    let outcome = match action {
        KeyAction::Revoke => merchants::revoke_key(&state.db, &owner, &key_id)
            .await
            .map(|old| (old, None)),
        KeyAction::Roll => {
            let asked = std::time::Duration::from_secs(posted.form.expires_in.unwrap_or(0));
            merchants::roll_key(&state.db, &owner, &key_id, asked.min(MOST_GRACE))
                .await
                .map(|(_, secret, old)| (old, Some(secret)))
        }
    };
    match outcome {
        Ok((old, secret)) => {
            state
                .cache
                .delete(&merchants::key_cache_key(&old.key_hash))
                .await;
            keys_page_with(&state, &posted.user, &posted.chrome(), secret.as_deref()).await
        }
        Err(ServiceError::NotFound { .. }) => Err(PageError::NotFound(
            "No such key (or it is no longer active).",
        )),
        Err(e @ ServiceError::Db(_)) => {
            tracing::error!(error = %e, "dashboard key action failed");
            Err(PageError::Unavailable("key action"))
        }
        Err(e) => Err(PageError::Invalid(told(e))),
    }
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
fn view(chrome: &Chrome<'_>, keys: &[KeyRow], secret: Option<&str>) -> Markup {
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
                                td data-label="Key" { code { (k.prefix) "…" } }
                                td data-label="Mode" { (k.mode) }
                                td data-label="Created" { (when(&k.created_at)) }
                                td data-label="State" { (k.state) }
                                td data-label="Actions" {
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
