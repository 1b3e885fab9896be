//! The dashboard's routes under `/dashboard`: sign-in, sign-out and the pages. A page is served
//! to a session only (cookies `payrail_access` and `payrail_refresh`, both `HttpOnly`,
//! `SameSite=Strict`, `Path=/dashboard`); an `Authorization` header, API key or not, is never
//! looked at. An expired access token is renewed from the refresh token on the way, which is
//! replaced; anything else goes to the sign-in page.

use entity::event::rfc3339;
use entity::ids::{ApiKeyId, DeliveryId, PaymentId};
use entity::money::format_stored_amount;
use entity::payment_status::PaymentStatus;
use entity::status::{DeliveryStatus, LogLevel, UserRole};
use entity::{dashboard_users, events, payments, webhook_deliveries, webhook_endpoints};
use poem::http::{StatusCode, header};
use poem::web::{Data, Form, Path, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;

use crate::core::pagination::{CreatedRange, Page};
use crate::http::api::dto::Payment;
use crate::http::csrf;
use crate::http::dashboard::pages;
use crate::http::state::AppState;
use crate::merchants;
use crate::merchants::users::{self as auth, DashboardUser, SignInError, Tokens};
use crate::payments::{refunds, service as payments_service};
use crate::webhooks::deliveries::{self as delivery_service, make_due_now};

const ACCESS_COOKIE: &str = "payrail_access";
/// Which mode the dashboard shows: `live`, or test when absent.
const MODE_COOKIE: &str = "payrail_mode";
const REFRESH_COOKIE: &str = "payrail_refresh";
const CSRF_COOKIE: &str = "payrail_dashboard_csrf";
const PATH: &str = "/dashboard";

pub(super) fn secure(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

fn session_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> String {
    let secure = if secure(state) { "; Secure" } else { "" };
    format!("{name}={value}; Path={PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// The cookies of a sign-in or a refresh: the access token, and the new refresh token if
/// there is one (a refresh in its reuse grace keeps the browser's newer one).
fn token_cookies(state: &AppState, tokens: &Tokens) -> Vec<String> {
    let keys = &state.dashboard;
    let mut cookies = vec![session_cookie(
        state,
        ACCESS_COOKIE,
        &tokens.access,
        keys.access_ttl.as_secs(),
    )];
    if let Some(refresh) = &tokens.refresh {
        cookies.push(session_cookie(
            state,
            REFRESH_COOKIE,
            refresh,
            keys.refresh_ttl.as_secs(),
        ));
    }
    cookies
}

/// The page's CSRF token: the browser's, or a new one to set.
pub(super) fn page_csrf(req: &Request, state: &AppState) -> (String, Option<String>) {
    match csrf::read_cookie(req, CSRF_COOKIE).filter(|t| t.len() == 32) {
        Some(token) => (token, None),
        None => {
            let token = csrf::new_token();
            let cookie = csrf::cookie(CSRF_COOKIE, &token, PATH, secure(state));
            (token, Some(cookie))
        }
    }
}

pub(super) fn html_response(status: StatusCode, body: String, cookies: &[String]) -> Response {
    let mut r = Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
        // Our one script, our one socket, inline styles; nothing from elsewhere.
        .header(
            "content-security-policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .body(body);
    for cookie in cookies {
        if let Ok(v) = header::HeaderValue::from_str(cookie) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

fn to_sign_in() -> Response {
    Redirect::see_other("/dashboard/login").into_response()
}

/// The session's user, renewing an expired access token from the refresh token (the new
/// cookies are returned to be set). `None`: not signed in.
pub(crate) async fn session(
    req: &Request,
    state: &AppState,
) -> Option<(DashboardUser, Vec<String>)> {
    let viewing_live = csrf::read_cookie(req, MODE_COOKIE).as_deref() == Some("live");
    if let Some(user) = csrf::read_cookie(req, ACCESS_COOKIE)
        .and_then(|token| auth::verify_access(&state.dashboard, &token))
    {
        // A token outlives nothing: signed out, or its family ended, it opens nothing.
        match auth::family_lives(&state.db, &user.family).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "dashboard session check failed");
                return None;
            }
        }
        return Some((
            DashboardUser {
                livemode: viewing_live,
                ..user
            },
            Vec::new(),
        ));
    }
    let refresh = csrf::read_cookie(req, REFRESH_COOKIE)?;
    match auth::refresh(&state.db, &state.dashboard, &refresh).await {
        Ok(Some(tokens)) => {
            let cookies = token_cookies(state, &tokens);
            Some((
                DashboardUser {
                    livemode: viewing_live,
                    ..tokens.user
                },
                cookies,
            ))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard session refresh failed");
            None
        }
    }
}

/// A page's session: the user, the CSRF token for its forms, and the cookies to set (a
/// renewed session, a new token); else the redirect to the sign-in page.
pub(super) async fn page_session(
    req: &Request,
    state: &AppState,
) -> Result<(DashboardUser, String, Vec<String>), Response> {
    let Some((user, cookies)) = session(req, state).await else {
        return Err(to_sign_in());
    };
    let token = session_csrf(state, &user);
    Ok((user, token, cookies))
}

/// The CSRF token of a signed-in user's forms: bound to the session, not to a cookie.
pub(super) fn session_csrf(state: &AppState, user: &DashboardUser) -> String {
    state.dashboard.csrf_for(&user.family)
}

/// Why an action was refused, as the API would tell it: the database's own text (table names,
/// constraint names, connection details) stays in the log.
pub(super) fn told(e: crate::core::error::ServiceError) -> String {
    crate::http::api::error::ApiError::from(e)
        .message()
        .to_string()
}

/// The answer when the database fails under a page: logged, and said plainly.
pub(super) fn unavailable(what: &str, e: &sea_orm::DbErr, cookies: &[String]) -> Response {
    tracing::error!(error = %e, "dashboard {what} failed");
    html_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "The dashboard is unavailable; try again.".into(),
        cookies,
    )
}

#[handler]
pub async fn sign_in_page(req: &Request, state: Data<&AppState>) -> Response {
    let (token, cookie) = page_csrf(req, &state);
    html_response(
        StatusCode::OK,
        pages::sign_in(&token, "", None).into_string(),
        &cookie.into_iter().collect::<Vec<_>>(),
    )
}

#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    csrf_token: Option<String>,
}

#[handler]
pub async fn sign_in(
    req: &Request,
    state: Data<&AppState>,
    form: Option<Form<SignInForm>>,
) -> Response {
    let Some(Form(form)) = form else {
        return (StatusCode::BAD_REQUEST, "Send the sign-in form.").into_response();
    };
    if !csrf::verify(req, CSRF_COOKIE, form.csrf_token.as_deref()) {
        return (
            StatusCode::FORBIDDEN,
            "This form has expired; reload the page.",
        )
            .into_response();
    }
    let address = state
        .client_address(req)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let (token, _) = page_csrf(req, &state);
    let again = |status, error: &str| {
        html_response(
            status,
            pages::sign_in(&token, &form.email, Some(error)).into_string(),
            &[],
        )
    };
    // Screened like an API field: no control characters, bounded lengths (a password of a
    // megabyte would be hashed whole).
    let readable = |s: &str, most: usize| {
        s.chars().count() <= most && crate::core::error::plain_text("field", s).is_ok()
    };
    if !readable(&form.email, 254) || !readable(&form.password, 1024) {
        return again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter an email address and a password (no control characters).",
        );
    }
    let deps = auth::SignInDeps {
        cache: &state.cache,
        keys: &state.dashboard,
        checks: &state.password_checks,
    };
    match auth::sign_in(&state.db, &deps, &form.email, &form.password, &address).await {
        Ok(tokens) => {
            let mut r = Redirect::see_other(PATH).into_response();
            for cookie in token_cookies(&state, &tokens) {
                if let Ok(v) = header::HeaderValue::from_str(&cookie) {
                    r.headers_mut().append(header::SET_COOKIE, v);
                }
            }
            r
        }
        Err(SignInError::Invalid) => again(StatusCode::UNAUTHORIZED, "Wrong email or password."),
        Err(SignInError::Busy) => {
            let mut r = again(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many sign-ins at once. Try again in a moment.",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            r
        }
        Err(SignInError::Throttled { retry_after }) => {
            let mut r = again(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins. Try again in 15 minutes.",
            );
            if let Ok(v) = header::HeaderValue::from_str(&retry_after.as_secs().to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard sign-in failed");
            again(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sign-in is unavailable; try again.",
            )
        }
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf_token: Option<String>,
}

#[handler]
pub async fn sign_out(
    req: &Request,
    state: Data<&AppState>,
    form: Option<Form<CsrfForm>>,
) -> Response {
    let sent = form.as_ref().and_then(|f| f.0.csrf_token.as_deref());
    // Signed in, the form must be this session's; signed out already, there is nothing to
    // end and the cookies are cleared all the same.
    if let Some((user, _)) = session(req, &state).await
        && !state.dashboard.csrf_matches(&user.family, sent)
    {
        return (
            StatusCode::FORBIDDEN,
            "This form has expired; reload the page.",
        )
            .into_response();
    }
    if let Some(refresh) = csrf::read_cookie(req, REFRESH_COOKIE)
        && let Err(e) = auth::sign_out(&state.db, &refresh).await
    {
        tracing::error!(error = %e, "dashboard sign-out failed");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "Sign-out failed; try again.",
        )
            .into_response();
    }
    let mut r = to_sign_in();
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        if let Ok(v) = header::HeaderValue::from_str(&session_cookie(&state, name, "", 0)) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

#[derive(Deserialize)]
pub struct ModeForm {
    csrf_token: Option<String>,
    mode: Option<String>,
}

/// Switches the mode the dashboard shows (any signed-in user, viewers too: it changes what
/// they see, not the data), kept in a cookie, and goes back to the overview.
#[handler]
pub async fn switch_mode(
    req: &Request,
    state: Data<&AppState>,
    form: Option<Form<ModeForm>>,
) -> Response {
    let form = form.map(|f| f.0);
    let Some((user, _)) = session(req, &state).await else {
        return to_sign_in();
    };
    if !state.dashboard.csrf_matches(
        &user.family,
        form.as_ref().and_then(|f| f.csrf_token.as_deref()),
    ) {
        return (
            StatusCode::FORBIDDEN,
            "This form has expired; reload the page.",
        )
            .into_response();
    }
    let live = match form.as_ref().and_then(|f| f.mode.as_deref()) {
        Some("live") => true,
        Some("test") => false,
        _ => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "mode must be test or live.",
            )
                .into_response();
        }
    };
    let mut r = Redirect::see_other(PATH).into_response();
    let cookie = session_cookie(
        &state,
        MODE_COOKIE,
        if live { "live" } else { "test" },
        365 * 86_400,
    );
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// Above this share of failed payments in the last hour (with enough payments to tell), the
/// overview raises an alert.
pub const FAILURE_RATE_ALERT: f64 = 0.2;
/// Fewer payments than this in the hour say nothing about a failure rate.
pub const FAILURE_RATE_MIN_PAYMENTS: u64 = 5;

/// What the overview warns about: a high payment failure rate over the last hour, and every
/// endpoint that is disabled or failing.
async fn alerts(
    db: &sea_orm::DatabaseConnection,
    scope: &entity::ids::Scope,
) -> Result<Vec<String>, sea_orm::DbErr> {
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let recent = || {
        payments::Entity::find()
            .filter(scope.of::<payments::Entity>())
            .filter(payments::Column::CreatedAt.gte(since))
    };
    let total = recent().count(db).await?;
    let failed = recent()
        .filter(payments::Column::Status.eq(PaymentStatus::Failed))
        .count(db)
        .await?;
    let mut alerts = Vec::new();
    if total >= FAILURE_RATE_MIN_PAYMENTS && failed as f64 / total as f64 > FAILURE_RATE_ALERT {
        alerts.push(format!(
            "{failed} of {total} payments failed in the last hour ({:.0} %).",
            failed as f64 * 100.0 / total as f64
        ));
    }
    let endpoints = webhook_endpoints::Entity::find()
        .filter(scope.of::<webhook_endpoints::Entity>())
        .all(db)
        .await?;
    for e in endpoints {
        if e.status == entity::status::EndpointStatus::Disabled {
            alerts.push(format!(
                "Webhook endpoint {} is disabled ({}).",
                e.url,
                e.disabled_reason.as_deref().unwrap_or("manual")
            ));
        } else if e.consecutive_failures > 0 {
            alerts.push(format!(
                "Webhook endpoint {} failed its last {} attempts.",
                e.url, e.consecutive_failures
            ));
        }
    }
    Ok(alerts)
}

#[handler]
pub async fn overview(req: &Request, state: Data<&AppState>) -> Response {
    let (user, token, cookies) = match page_session(req, &state).await {
        Ok(found) => found,
        Err(to_sign_in) => return to_sign_in,
    };
    let loaded = async {
        // One grouped count; statuses with no payment still show, as 0.
        let grouped: std::collections::HashMap<String, i64> = payments::Entity::find()
            .select_only()
            .column(payments::Column::Status)
            .column_as(payments::Column::Id.count(), "n")
            .filter(user.scope().of::<payments::Entity>())
            .group_by(payments::Column::Status)
            .into_tuple::<(String, i64)>()
            .all(&state.db)
            .await?
            .into_iter()
            .collect();
        let counts: Vec<(String, u64)> = PaymentStatus::ALL
            .iter()
            .map(|s| {
                let n = grouped.get(s.as_str()).copied().unwrap_or(0);
                (s.to_string(), u64::try_from(n).unwrap_or(0))
            })
            .collect();
        let latest: Vec<Payment> = payments::Entity::find()
            .filter(user.scope().of::<payments::Entity>())
            .order_by_desc(payments::Column::Id)
            .limit(20)
            .all(&state.db)
            .await?
            .iter()
            .map(Payment::from)
            .collect();
        let alerts = alerts(&state.db, &user.scope()).await?;
        let figures =
            crate::http::dashboard::overview::figures(&state.db, &user.scope(), chrono::Utc::now())
                .await?;
        let email = dashboard_users::Entity::find_by_id(user.user_id.clone())
            .one(&state.db)
            .await?
            .map(|u| u.email)
            .unwrap_or_default();
        let balances = crate::ledger::balances(&state.db, &user.scope()).await?;
        Ok::<_, sea_orm::DbErr>((counts, latest, email, alerts, figures, balances))
    }
    .await;
    match loaded {
        Ok((counts, latest, email, alerts, figures, balances)) => html_response(
            StatusCode::OK,
            pages::overview(
                &pages::Chrome {
                    csrf_token: &token,
                    livemode: user.livemode,
                },
                &pages::Overview {
                    email: &email,
                    role: user.role.as_str(),
                    counts: &counts,
                    latest: &latest,
                    alerts: &alerts,
                    figures: &figures,
                    balances: &balances,
                },
            )
            .into_string(),
            &cookies,
        ),
        Err(e) => unavailable("overview", &e, &cookies),
    }
}

/// The signed-in user behind a form post that changes something: a session, the page's CSRF
/// token, and a role that may act. Else the answer to give instead.
pub(super) async fn acting_user(
    req: &Request,
    state: &AppState,
    csrf_token: Option<&str>,
) -> Result<(DashboardUser, Vec<String>), Response> {
    let Some((user, cookies)) = session(req, state).await else {
        return Err(to_sign_in());
    };
    if !state.dashboard.csrf_matches(&user.family, csrf_token) {
        return Err((
            StatusCode::FORBIDDEN,
            "This form has expired; reload the page.",
        )
            .into_response());
    }
    if !user.can_act() {
        return Err((
            StatusCode::FORBIDDEN,
            "Your role (viewer) can look but not act: ask an owner or a developer.",
        )
            .into_response());
    }
    Ok((user, cookies))
}

/// Who may post a form.
pub(super) enum May {
    /// Owners and developers.
    Act,
    /// Owners only.
    Own,
}

/// A posted form, carrying the page's CSRF token.
pub(super) trait Posted {
    fn csrf_token(&self) -> Option<&str>;
}

macro_rules! posted_forms {
    ($($form:ty),* $(,)?) => {
        $(impl $crate::http::dashboard::routes::Posted for $form {
            fn csrf_token(&self) -> Option<&str> {
                self.csrf_token.as_deref()
            }
        })*
    };
}
pub(super) use posted_forms;

posted_forms!(
    CsrfForm,
    RetryForm,
    RefundForm,
    CreateKeyForm,
    KeyActionForm
);

/// The form a signed-in user posted with the page's token, if their role `may` post it; else
/// the answer to give instead.
pub(super) async fn posted<T: Posted>(
    req: &Request,
    state: &AppState,
    form: Option<Form<T>>,
    may: May,
) -> Result<(Option<T>, DashboardUser, Vec<String>), Response> {
    let form = form.map(|f| f.0);
    let token = form.as_ref().and_then(Posted::csrf_token);
    let (user, cookies) = match may {
        May::Act => acting_user(req, state, token).await?,
        May::Own => owner(req, state, token).await?,
    };
    Ok((form, user, cookies))
}

fn back_to_payment(payment_id: &str, notice: &str, cookies: &[String]) -> Response {
    back_to(
        &format!("/dashboard/payments/{payment_id}"),
        notice,
        cookies,
    )
}

/// After a form post: back to `path` (a dashboard page), with the notice to show there.
pub(super) fn back_to(path: &str, notice: &str, cookies: &[String]) -> Response {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("notice", notice)
        .finish();
    let mut r = Redirect::see_other(format!("{path}?{query}")).into_response();
    for cookie in cookies {
        if let Ok(v) = header::HeaderValue::from_str(cookie) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

#[derive(Deserialize)]
pub struct NoticeQuery {
    pub(super) notice: Option<String>,
}

/// A payment with its events, refunds and webhook deliveries; cancel and retry buttons for
/// those who may act.
#[handler]
pub async fn payment_detail(
    req: &Request,
    state: Data<&AppState>,
    Path(id): Path<String>,
    Query(query): Query<NoticeQuery>,
) -> Response {
    let (user, token, cookies) = match page_session(req, &state).await {
        Ok(found) => found,
        Err(to_sign_in) => return to_sign_in,
    };
    let Some(payment_id) = PaymentId::parse(&id) else {
        return html_response(StatusCode::NOT_FOUND, "No such payment.".into(), &cookies);
    };
    let m = &user.scope();
    let loaded = async {
        let Some(p) = payments_service::get(&state.db, m, &payment_id).await? else {
            return Ok(None);
        };
        let events = events::Entity::find()
            .filter(m.of::<events::Entity>())
            .filter(events::Column::PaymentId.eq(&payment_id))
            .order_by_asc(events::Column::Id)
            .all(&state.db)
            .await?;
        let refunds = refunds::list(&state.db, m, &payment_id).await?;
        let event_ids: Vec<_> = events.iter().map(|e| e.id.clone()).collect();
        let deliveries = webhook_deliveries::Entity::find()
            .filter(m.of::<webhook_deliveries::Entity>())
            .filter(webhook_deliveries::Column::EventId.is_in(event_ids))
            .order_by_asc(webhook_deliveries::Column::Id)
            .all(&state.db)
            .await?;
        let endpoints: std::collections::HashMap<_, _> = webhook_endpoints::Entity::find()
            .filter(m.of::<webhook_endpoints::Entity>())
            .all(&state.db)
            .await?
            .into_iter()
            .map(|e| (e.id, e.url))
            .collect();
        Ok::<_, sea_orm::DbErr>(Some((p, events, refunds, deliveries, endpoints)))
    }
    .await;
    let (p, events, refunds, deliveries, endpoints) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => {
            return html_response(StatusCode::NOT_FOUND, "No such payment.".into(), &cookies);
        }
        Err(e) => return unavailable("payment", &e, &cookies),
    };
    let payment = Payment::from(&p);
    let event_rows: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.id.to_string(),
                e.event_type.clone(),
                rfc3339(e.created_at),
            )
        })
        .collect();
    let type_of: std::collections::HashMap<_, _> = events
        .iter()
        .map(|e| (e.id.clone(), e.event_type.clone()))
        .collect();
    let refund_rows: Vec<_> = refunds
        .iter()
        .map(|r| {
            (
                r.id.to_string(),
                format_stored_amount(r.amount, &p.currency),
                r.status.to_string(),
            )
        })
        .collect();
    let delivery_rows: Vec<_> = deliveries
        .iter()
        .map(|d| pages::DeliveryRow {
            id: d.id.to_string(),
            event_type: type_of.get(&d.event_id).cloned().unwrap_or_default(),
            endpoint_url: endpoints.get(&d.endpoint_id).cloned().unwrap_or_default(),
            status: d.status.to_string(),
            attempts: d.attempts,
            http_status: d.http_status,
            retryable: matches!(d.status, DeliveryStatus::Failed | DeliveryStatus::Pending),
        })
        .collect();
    html_response(
        StatusCode::OK,
        pages::payment_detail(
            &pages::Chrome {
                csrf_token: &token,
                livemode: user.livemode,
            },
            &pages::PaymentDetail {
                payment: &payment,
                amount: format_stored_amount(p.amount, &p.currency),
                events: &event_rows,
                refunds: &refund_rows,
                deliveries: &delivery_rows,
                can_act: user.can_act(),
                notice: query.notice.as_deref(),
            },
        )
        .into_string(),
        &cookies,
    )
}

#[derive(Deserialize)]
pub struct RetryForm {
    csrf_token: Option<String>,
    payment_id: Option<String>,
    /// `delivery` to come back to the delivery's page rather than the payment's.
    back: Option<String>,
}

/// The retry button: the delivery is due now with a fresh round of attempts (as
/// `POST /v1/webhook_deliveries/{id}/retry`).
#[handler]
pub async fn retry_delivery(
    req: &Request,
    state: Data<&AppState>,
    Path(id): Path<String>,
    form: Option<Form<RetryForm>>,
) -> Response {
    let (form, user, cookies) = match posted(req, &state, form, May::Act).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(delivery_id) = DeliveryId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "No such delivery.").into_response();
    };
    // Back to the payment's page when the form came from there, else the delivery's.
    let from_payment = form
        .as_ref()
        .filter(|f| f.back.as_deref() != Some("delivery"))
        .and_then(|f| f.payment_id.as_deref().and_then(PaymentId::parse));
    let back = match from_payment {
        Some(p) => format!("/dashboard/payments/{p}"),
        None => format!("/dashboard/deliveries/{delivery_id}"),
    };
    match delivery_service::get(&state.db, &user.scope(), &delivery_id).await {
        Ok(Some(d)) => match make_due_now(&state.db, &d.id).await {
            Ok(true) => back_to(&back, "Retry scheduled: the worker sends it now.", &cookies),
            Ok(false) => back_to(
                &back,
                &format!("A {} delivery cannot be retried.", d.status),
                &cookies,
            ),
            Err(e) => {
                tracing::error!(error = %e, "dashboard retry failed");
                (StatusCode::SERVICE_UNAVAILABLE, "Retry failed; try again.").into_response()
            }
        },
        Ok(None) => (StatusCode::NOT_FOUND, "No such delivery.").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard retry failed");
            (StatusCode::SERVICE_UNAVAILABLE, "Retry failed; try again.").into_response()
        }
    }
}

/// The cancel button (as `POST /v1/payments/{id}/cancel`: at the provider first).
#[handler]
pub async fn cancel_payment(
    req: &Request,
    state: Data<&AppState>,
    Path(id): Path<String>,
    form: Option<Form<CsrfForm>>,
) -> Response {
    let (_, user, cookies) = match posted(req, &state, form, May::Act).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(payment_id) = PaymentId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "No such payment.").into_response();
    };
    match payments_service::cancel(
        &state.db,
        &state.providers,
        &user.scope(),
        &payment_id,
        None,
    )
    .await
    {
        Ok(p) => {
            state.effects.payment_moved(&p, None).await;
            back_to_payment(&id, "Payment cancelled.", &cookies)
        }
        Err(crate::core::error::ServiceError::NotFound { .. }) => {
            (StatusCode::NOT_FOUND, "No such payment.").into_response()
        }
        Err(e) => back_to_payment(&id, &format!("Not cancelled: {}", told(e)), &cookies),
    }
}

#[derive(Deserialize)]
pub struct LogQuery {
    level: Option<String>,
    source: Option<String>,
    window: Option<String>,
}

/// The log store: filters by level, source and age, and a chart of counts per level over the
/// same window.
#[handler]
pub async fn logs_page(
    req: &Request,
    state: Data<&AppState>,
    Query(query): Query<LogQuery>,
) -> Response {
    let (user, token, cookies) = match page_session(req, &state).await {
        Ok(found) => found,
        Err(to_sign_in) => return to_sign_in,
    };
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
            (!w.is_zero() && w <= std::time::Duration::from_secs(90 * 86_400))
                .then_some(w)
                .ok_or_else(|| "Since must be between 1s and 90d.".to_string())
        });
    let (level, window) = match (level, window) {
        (Ok(level), Ok(window)) => (level, window),
        (Err(error), _) | (_, Err(error)) => {
            let view = pages::Logs {
                entries: &[],
                counts: &[],
                level: &level_text,
                source: &source,
                window: &window_text,
                error: Some(&error),
            };
            return html_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::logs(
                    &pages::Chrome {
                        csrf_token: &token,
                        livemode: user.livemode,
                    },
                    &view,
                )
                .into_string(),
                &cookies,
            );
        }
    };
    let m = &user.scope();
    let source_filter = (!source.is_empty()).then_some(source.as_str());
    let loaded = async {
        let entries =
            crate::merchants::logs::search(&state.db, m, level, source_filter, window, 100).await?;
        let stats = crate::merchants::logs::stats(&state.db, m, window).await?;
        Ok::<_, sea_orm::DbErr>((entries, stats))
    }
    .await;
    match loaded {
        Ok((entries, stats)) => {
            let counts: Vec<(String, i64)> = LogLevel::ALL
                .iter()
                .map(|l| {
                    let n = stats.by_level.get(l.as_str()).copied().unwrap_or(0);
                    (l.as_str().to_string(), n)
                })
                .collect();
            let view = pages::Logs {
                entries: &entries,
                counts: &counts,
                level: &level_text,
                source: &source,
                window: &window_text,
                error: None,
            };
            html_response(
                StatusCode::OK,
                pages::logs(
                    &pages::Chrome {
                        csrf_token: &token,
                        livemode: user.livemode,
                    },
                    &view,
                )
                .into_string(),
                &cookies,
            )
        }
        Err(e) => unavailable("logs", &e, &cookies),
    }
}

/// An owner's post on the keys page (session, CSRF token, role owner), or the answer instead.
async fn owner(
    req: &Request,
    state: &AppState,
    csrf_token: Option<&str>,
) -> Result<(DashboardUser, Vec<String>), Response> {
    let (user, cookies) = acting_user(req, state, csrf_token).await?;
    if user.role != UserRole::Owner {
        return Err(only_owners());
    }
    Ok((user, cookies))
}

fn only_owners() -> Response {
    (StatusCode::FORBIDDEN, "Only owners manage API keys.").into_response()
}

/// The keys page, with a secret just made (shown once) when there is one.
async fn keys_page_with(
    state: &AppState,
    user: &DashboardUser,
    token: &str,
    cookies: &[String],
    secret: Option<&str>,
) -> Response {
    let latest = crate::core::pagination::Page {
        limit: 100,
        starting_after: None,
        ending_before: None,
    };
    let owner = merchants::KeyManager::Owner(user.merchant_id.clone());
    let keys = match merchants::list_keys(&state.db, &owner, &latest).await {
        Ok((keys, _)) => keys,
        Err(e) => return unavailable("keys", &e, cookies),
    };
    let now = chrono::Utc::now();
    let rows: Vec<pages::KeyRow> = keys
        .iter()
        .map(|k| {
            let (state, active) = match (k.revoked_at, k.expires_at) {
                (Some(at), _) => (format!("revoked {}", rfc3339(at)), false),
                (None, Some(at)) if at <= now => (format!("expired {}", rfc3339(at)), false),
                (None, Some(at)) => (format!("expires {}", rfc3339(at)), false),
                (None, None) => ("active".to_string(), true),
            };
            pages::KeyRow {
                id: k.id.to_string(),
                prefix: k.prefix.clone(),
                mode: if k.livemode { "live" } else { "test" },
                created_at: rfc3339(k.created_at),
                state,
                active,
            }
        })
        .collect();
    html_response(
        StatusCode::OK,
        pages::api_keys(
            &pages::Chrome {
                csrf_token: token,
                livemode: user.livemode,
            },
            &rows,
            secret,
        )
        .into_string(),
        cookies,
    )
}

/// `/dashboard/keys`: the merchant's API keys (owners only).
#[handler]
pub async fn keys_page(req: &Request, state: Data<&AppState>) -> Response {
    let (user, token, cookies) = match page_session(req, &state).await {
        Ok(found) => found,
        Err(to_sign_in) => return to_sign_in,
    };
    if user.role != UserRole::Owner {
        return only_owners();
    }
    keys_page_with(&state, &user, &token, &cookies, None).await
}

#[derive(Deserialize)]
pub struct CreateKeyForm {
    csrf_token: Option<String>,
    mode: Option<String>,
}

/// Create a key (as `POST /v1/api_keys`); its secret is on the answering page only.
#[handler]
pub async fn create_key(
    req: &Request,
    state: Data<&AppState>,
    form: Option<Form<CreateKeyForm>>,
) -> Response {
    let (form, user, cookies) = match posted(req, &state, form, May::Own).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    // The page answering carries on with the token it was posted with.
    let token = form
        .as_ref()
        .and_then(|f| f.csrf_token.clone())
        .unwrap_or_default();
    let livemode = match form.and_then(|f| f.mode).as_deref() {
        Some("live") => true,
        Some("test") | None => false,
        Some(_) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                "mode must be test or live.",
            )
                .into_response();
        }
    };
    let owner = merchants::KeyManager::Owner(user.merchant_id.clone());
    match merchants::create_key(&state.db, &owner, livemode).await {
        Ok((_, secret)) => keys_page_with(&state, &user, &token, &cookies, Some(&secret)).await,
        Err(crate::core::error::ServiceError::Invalid(refused)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, refused.message).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "dashboard key creation failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "Keys cannot be created right now; try again in a moment.",
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct KeyActionForm {
    csrf_token: Option<String>,
    expires_in: Option<u64>,
}

/// Roll (`action` = roll: a new key now, the old one for `expires_in` seconds) or revoke a
/// key, as the API does; the old key's cached entry goes at once on every gateway.
#[handler]
pub async fn key_action(
    req: &Request,
    state: Data<&AppState>,
    Path((id, action)): Path<(String, String)>,
    form: Option<Form<KeyActionForm>>,
) -> Response {
    let (form, user, cookies) = match posted(req, &state, form, May::Own).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    // The page answering carries on with the token it was posted with.
    let token = form
        .as_ref()
        .and_then(|f| f.csrf_token.clone())
        .unwrap_or_default();
    let Some(key_id) = ApiKeyId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "No such key.").into_response();
    };
    let owner = merchants::KeyManager::Owner(user.merchant_id.clone());
    let outcome = match action.as_str() {
        "revoke" => merchants::revoke_key(&state.db, &owner, &key_id)
            .await
            .map(|old| (old, None)),
        "roll" => {
            let grace = std::time::Duration::from_secs(
                form.and_then(|f| f.expires_in).unwrap_or(0).min(7 * 86_400),
            );
            merchants::roll_key(&state.db, &owner, &key_id, grace)
                .await
                .map(|(_, secret, old)| (old, Some(secret)))
        }
        _ => return (StatusCode::NOT_FOUND, "No such action.").into_response(),
    };
    match outcome {
        Ok((old, secret)) => {
            state
                .cache
                .delete(&merchants::key_cache_key(&old.key_hash))
                .await;
            keys_page_with(&state, &user, &token, &cookies, secret.as_deref()).await
        }
        Err(crate::core::error::ServiceError::NotFound { .. }) => (
            StatusCode::NOT_FOUND,
            "No such key (or it is no longer active).",
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "dashboard key action failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "That did not work; try again.",
            )
                .into_response()
        }
    }
}

#[derive(Deserialize)]
pub struct PaymentsQuery {
    status: Option<String>,
    reference: Option<String>,
    starting_after: Option<String>,
}

/// `/dashboard/payments`: filtered by status and reference, 25 a page, newest first.
#[handler]
pub async fn payments_page(
    req: &Request,
    state: Data<&AppState>,
    Query(query): Query<PaymentsQuery>,
) -> Response {
    let (user, token, cookies) = match page_session(req, &state).await {
        Ok(found) => found,
        Err(to_sign_in) => return to_sign_in,
    };
    let status_text = query.status.unwrap_or_default();
    let reference = query.reference.unwrap_or_default();
    let status = (!status_text.is_empty())
        .then(|| {
            PaymentStatus::parse(&status_text).ok_or(format!("Unknown status {status_text:?}."))
        })
        .transpose();
    let page = Page::new(
        Some(25),
        query.starting_after.filter(|s| !s.is_empty()),
        None,
    )
    .map_err(|e| e.message);
    let (status, page) = match (status, page) {
        (Ok(status), Ok(page)) => (status, page),
        (Err(error), _) | (_, Err(error)) => {
            let view = pages::PaymentsList {
                payments: &[],
                status: &status_text,
                reference: &reference,
                next: None,
                error: Some(&error),
            };
            return html_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::payments_list(
                    &pages::Chrome {
                        csrf_token: &token,
                        livemode: user.livemode,
                    },
                    &view,
                )
                .into_string(),
                &cookies,
            );
        }
    };
    let reference_filter = (!reference.is_empty()).then_some(reference.as_str());
    let listed = payments_service::list(
        &state.db,
        &user.scope(),
        status,
        reference_filter,
        &CreatedRange::default(),
        &page,
    )
    .await;
    let (rows, has_more) = match listed {
        Ok(found) => found,
        Err(e) => return unavailable("payments", &e, &cookies),
    };
    let payments: Vec<Payment> = rows.iter().map(Payment::from).collect();
    let next = has_more.then(|| payments.last()).flatten().map(|last| {
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("status", &status_text)
            .append_pair("reference", &reference)
            .append_pair("starting_after", &last.id)
            .finish()
    });
    let view = pages::PaymentsList {
        payments: &payments,
        status: &status_text,
        reference: &reference,
        next,
        error: None,
    };
    html_response(
        StatusCode::OK,
        pages::payments_list(
            &pages::Chrome {
                csrf_token: &token,
                livemode: user.livemode,
            },
            &view,
        )
        .into_string(),
        &cookies,
    )
}

#[derive(Deserialize)]
pub struct RefundForm {
    csrf_token: Option<String>,
    idempotency_key: Option<String>,
    amount: Option<String>,
}

/// The refund button (as `POST /v1/payments/{id}/refunds`, with the form's own idempotency
/// key, so a double submit replays instead of refunding twice).
#[handler]
pub async fn refund_payment(
    req: &Request,
    state: Data<&AppState>,
    Path(id): Path<String>,
    form: Option<Form<RefundForm>>,
) -> Response {
    let (form, user, cookies) = match posted(req, &state, form, May::Act).await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(payment_id) = PaymentId::parse(&id) else {
        return (StatusCode::NOT_FOUND, "No such payment.").into_response();
    };
    let amount = match form
        .as_ref()
        .and_then(|f| f.amount.as_deref())
        .map(str::trim)
        .filter(|a| !a.is_empty())
    {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return back_to_payment(
                    &id,
                    "The refund amount must be a positive whole number of minor units.",
                    &cookies,
                );
            }
        },
    };
    let key = form
        .and_then(|f| f.idempotency_key)
        .filter(|k| (1..=255).contains(&k.len()));
    match refunds::create(
        &state.db,
        &state.providers,
        &user.scope(),
        &payment_id,
        amount,
        key.as_deref(),
    )
    .await
    {
        Ok(outcome) => {
            if !outcome.replayed {
                state.effects.events_committed(&user.scope()).await;
            }
            let notice = if outcome.value.status == "failed" {
                format!("The refund {} failed at the provider.", outcome.value.id)
            } else {
                format!(
                    "Refund {} of {} recorded ({}).",
                    outcome.value.id, outcome.value.amount, outcome.value.status
                )
            };
            back_to_payment(&id, &notice, &cookies)
        }
        Err(crate::core::error::ServiceError::NotFound { .. }) => {
            (StatusCode::NOT_FOUND, "No such payment.").into_response()
        }
        Err(e) => back_to_payment(&id, &format!("Not refunded: {}", told(e)), &cookies),
    }
}

/// `/dashboard/reconciliation`: the merchant's reconciliation items in the mode shown, the
/// latest 100, open or not.
#[handler]
pub async fn reconciliation_page(req: &Request, state: Data<&AppState>) -> Response {
    let (user, token, cookies) = match page_session(req, &state).await {
        Ok(found) => found,
        Err(to_sign_in) => return to_sign_in,
    };
    let latest = crate::core::pagination::Page {
        limit: 100,
        starting_after: None,
        ending_before: None,
    };
    match crate::reconciliation::list(
        &state.db,
        Some(&user.scope()),
        &crate::reconciliation::Filter::default(),
        &latest,
    )
    .await
    {
        Ok((items, _)) => html_response(
            StatusCode::OK,
            pages::reconciliation(
                &pages::Chrome {
                    csrf_token: &token,
                    livemode: user.livemode,
                },
                &items,
            )
            .into_string(),
            &cookies,
        ),
        Err(e) => unavailable("reconciliation", &e, &cookies),
    }
}

#[cfg(test)]
mod tests {
    use super::told;
    use crate::core::error::ServiceError;

    #[test]
    fn a_database_failure_is_told_without_the_databases_words() {
        let cause = sea_orm::DbErr::Custom(
            "relation \"payments\" violates check; host=10.0.0.7 user=payrail password=hunter2"
                .into(),
        );
        let said = told(ServiceError::Db(cause));
        assert!(
            !said.contains("payments") && !said.contains("hunter2") && !said.contains("10.0.0.7"),
            "{said}"
        );
        assert!(said.contains("nothing was changed"), "{said}");
    }

    #[test]
    fn a_refusal_the_merchant_can_act_on_is_told_as_the_api_tells_it() {
        let said = told(ServiceError::state(
            "payment_not_cancelable",
            "Only a pending payment can be cancelled.",
        ));
        assert_eq!(said, "Only a pending payment can be cancelled.");
    }
}
