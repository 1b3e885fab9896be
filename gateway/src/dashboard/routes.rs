//! The dashboard's routes under `/dashboard`: sign-in, sign-out and the pages. A page is served
//! to a session only (cookies `payrail_access` and `payrail_refresh`, both `HttpOnly`,
//! `SameSite=Strict`, `Path=/dashboard`); an `Authorization` header, API key or not, is never
//! looked at. An expired access token is renewed from the refresh token on the way, which is
//! replaced; anything else goes to the sign-in page.

use entity::payment_status::PaymentStatus;
use entity::{dashboard_users, payments};
use poem::http::{StatusCode, header};
use poem::web::{Data, Form, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Deserialize;

use super::auth::{self, DashboardUser, SignInError, Tokens};
use super::pages;
use crate::api::csrf;
use crate::api::dto::Payment;
use crate::state::AppState;

const ACCESS_COOKIE: &str = "payrail_access";
const REFRESH_COOKIE: &str = "payrail_refresh";
const CSRF_COOKIE: &str = "payrail_dashboard_csrf";
const PATH: &str = "/dashboard";

fn secure(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

fn session_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> String {
    let secure = if secure(state) { "; Secure" } else { "" };
    format!("{name}={value}; Path={PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

fn token_cookies(state: &AppState, tokens: &Tokens) -> [String; 2] {
    let keys = &state.dashboard;
    [
        session_cookie(
            state,
            ACCESS_COOKIE,
            &tokens.access,
            keys.access_ttl.as_secs(),
        ),
        session_cookie(
            state,
            REFRESH_COOKIE,
            &tokens.refresh,
            keys.refresh_ttl.as_secs(),
        ),
    ]
}

/// The page's CSRF token: the browser's, or a new one to set.
fn page_csrf(req: &Request, state: &AppState) -> (String, Option<String>) {
    match csrf::read_cookie(req, CSRF_COOKIE).filter(|t| t.len() == 32) {
        Some(token) => (token, None),
        None => {
            let token = csrf::new_token();
            let cookie = csrf::cookie(CSRF_COOKIE, &token, PATH, secure(state));
            (token, Some(cookie))
        }
    }
}

fn html_response(status: StatusCode, body: String, cookies: &[String]) -> Response {
    let mut r = Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
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
async fn session(req: &Request, state: &AppState) -> Option<(DashboardUser, Vec<String>)> {
    if let Some(user) = csrf::read_cookie(req, ACCESS_COOKIE)
        .and_then(|token| auth::verify_access(&state.dashboard, &token))
    {
        return Some((user, Vec::new()));
    }
    let refresh = csrf::read_cookie(req, REFRESH_COOKIE)?;
    match auth::refresh(&state.db, &state.dashboard, &refresh).await {
        Ok(Some(tokens)) => {
            let cookies = token_cookies(state, &tokens).to_vec();
            Some((tokens.user, cookies))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard session refresh failed");
            None
        }
    }
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
    let address = req
        .remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    let (token, _) = page_csrf(req, &state);
    let again = |status, error: &str| {
        html_response(
            status,
            pages::sign_in(&token, &form.email, Some(error)).into_string(),
            &[],
        )
    };
    match auth::sign_in(
        &state.db,
        &state.cache,
        &state.dashboard,
        &form.email,
        &form.password,
        &address,
    )
    .await
    {
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
    if !csrf::verify(req, CSRF_COOKIE, sent) {
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

#[handler]
pub async fn overview(req: &Request, state: Data<&AppState>) -> Response {
    let Some((user, mut cookies)) = session(req, &state).await else {
        return to_sign_in();
    };
    let (token, csrf_cookie) = page_csrf(req, &state);
    cookies.extend(csrf_cookie);
    let loaded = async {
        let mut counts = Vec::new();
        for status in PaymentStatus::ALL {
            let n = payments::Entity::find()
                .filter(payments::Column::MerchantId.eq(&user.merchant_id))
                .filter(payments::Column::Status.eq(*status))
                .count(&state.db)
                .await?;
            counts.push((status.to_string(), n));
        }
        let latest: Vec<Payment> = payments::Entity::find()
            .filter(payments::Column::MerchantId.eq(&user.merchant_id))
            .order_by_desc(payments::Column::Id)
            .limit(20)
            .all(&state.db)
            .await?
            .iter()
            .map(Payment::from)
            .collect();
        let email = dashboard_users::Entity::find_by_id(user.user_id.clone())
            .one(&state.db)
            .await?
            .map(|u| u.email)
            .unwrap_or_default();
        Ok::<_, sea_orm::DbErr>((counts, latest, email))
    }
    .await;
    match loaded {
        Ok((counts, latest, email)) => html_response(
            StatusCode::OK,
            pages::overview(
                &token,
                &pages::Overview {
                    email: &email,
                    role: user.role.as_str(),
                    counts: &counts,
                    latest: &latest,
                },
            )
            .into_string(),
            &cookies,
        ),
        Err(e) => {
            tracing::error!(error = %e, "dashboard overview failed");
            html_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "The dashboard is unavailable; try again.".into(),
                &cookies,
            )
        }
    }
}
