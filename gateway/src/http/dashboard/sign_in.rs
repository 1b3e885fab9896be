//! Signing in and out, and switching the mode the dashboard shows.

use maud::{Markup, html};
use poem::http::{StatusCode, header};
use poem::web::{Data, Form, Query, Redirect};
use poem::{IntoResponse, Request, Response, handler};
use serde::Deserialize;

use crate::http::csrf;
use crate::http::dashboard::frame::frame;
use crate::http::dashboard::session::{
    self, CSRF_COOKIE, MODE_COOKIE, PATH, PageError, Posted, REFRESH_COOKIE, html_response,
    with_csrf,
};
use crate::http::state::AppState;
use crate::merchants::users::{self, SignInError};

#[derive(Deserialize)]
pub struct SignInQuery {
    next: Option<String>,
}

/// The sign-in form; `next` is the page to go back to afterwards (ours only), and a message
/// left by signing out is shown once.
#[handler]
pub async fn sign_in_page(
    req: &Request,
    state: Data<&AppState>,
    Query(query): Query<SignInQuery>,
) -> Response {
    let token = session::sign_in_csrf(req, &state);
    let next = query.next.as_deref().and_then(session::safe_next);
    let said = req
        .extensions()
        .get::<session::Flash>()
        .map(|f| f.0.as_str());
    let form = SignInView {
        csrf_token: &token,
        email: "",
        error: None,
        notice: said,
        next,
    };
    html_response(StatusCode::OK, sign_in_view(&form).into_string())
}

#[derive(Deserialize)]
pub struct SignInForm {
    email: String,
    password: String,
    csrf_token: Option<String>,
    next: Option<String>,
}

#[handler]
pub async fn sign_in(
    req: &Request,
    state: Data<&AppState>,
    form: Option<Form<SignInForm>>,
) -> Result<Response, PageError> {
    let Some(Form(form)) = form else {
        return Err(PageError::Unreadable("Send the sign-in form.".into()));
    };
    if !csrf::verify(req, CSRF_COOKIE, form.csrf_token.as_deref()) {
        return Err(PageError::Expired);
    }
    let address = state
        .client_address(req)
        .map(|a| a.to_string())
        .unwrap_or_default();
    let token = session::sign_in_csrf(req, &state);
    let next = form.next.as_deref().and_then(session::safe_next);
    let again = |status, error: &str| {
        let view = SignInView {
            csrf_token: &token,
            email: &form.email,
            error: Some(error),
            notice: None,
            next,
        };
        html_response(status, sign_in_view(&view).into_string())
    };
    // Screened like an API field: no control characters, bounded lengths (a password of a
    // megabyte would be hashed whole).
    let readable = |s: &str, most: usize| {
        s.chars().count() <= most && crate::core::error::plain_text("field", s).is_ok()
    };
    if !readable(&form.email, 254) || !readable(&form.password, 1024) {
        return Ok(again(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter an email address and a password (no control characters).",
        ));
    }
    let deps = users::SignInDeps {
        cache: &state.cache,
        keys: &state.dashboard,
        checks: &state.password_checks,
    };
    Ok(
        match users::sign_in(&state.db, &deps, &form.email, &form.password, &address).await {
            Ok(tokens) => {
                session::set_token_cookies(req, &state, &tokens);
                Redirect::see_other(next.unwrap_or(PATH)).into_response()
            }
            Err(SignInError::Invalid) => {
                again(StatusCode::UNAUTHORIZED, "Wrong email or password.")
            }
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
        },
    )
}

#[derive(Deserialize)]
pub struct CsrfForm {
    pub(super) csrf_token: Option<String>,
}

#[handler]
pub async fn sign_out(
    req: &Request,
    state: Data<&AppState>,
    form: Option<Form<CsrfForm>>,
) -> Result<Response, PageError> {
    let sent = form.as_ref().and_then(|f| f.0.csrf_token.as_deref());
    // Signed in, the form must be this session's; signed out already, there is nothing to
    // end and the cookies are cleared all the same.
    if let Some(user) = session::session(req, &state).await
        && !state.dashboard.csrf_matches(&user.family, sent)
    {
        return Err(PageError::Expired);
    }
    if let Some(refresh) = csrf::read_cookie(req, REFRESH_COOKIE) {
        users::sign_out(&state.db, &refresh)
            .await
            .map_err(PageError::db("sign-out"))?;
    }
    for name in [session::ACCESS_COOKIE, REFRESH_COOKIE] {
        session::set_cookie(req, session::session_cookie(&state, name, "", 0));
    }
    Ok(session::back_to("/dashboard/login", "You are signed out."))
}

#[derive(Deserialize)]
pub struct ModeForm {
    csrf_token: Option<String>,
    mode: Option<String>,
}

with_csrf!(CsrfForm, ModeForm);

/// The modes the dashboard shows, as the switch posts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Test,
    Live,
}

impl Mode {
    fn parse(text: Option<&str>) -> Result<Mode, PageError> {
        match text {
            Some("live") => Ok(Mode::Live),
            Some("test") => Ok(Mode::Test),
            _ => Err(PageError::Invalid("mode must be test or live.".into())),
        }
    }
}

/// Switches the mode the dashboard shows (any signed-in user, viewers too: it changes what
/// they see, not the data), kept in a cookie, and goes back to the overview.
#[handler]
pub async fn switch_mode(
    req: &Request,
    state: Data<&AppState>,
    posted: Posted<ModeForm, session::Look>,
) -> Result<Response, PageError> {
    let mode = Mode::parse(posted.form.mode.as_deref())?;
    let value = if mode == Mode::Live { "live" } else { "test" };
    session::set_cookie(
        req,
        session::session_cookie(&state, MODE_COOKIE, value, 365 * 86_400),
    );
    Ok(Redirect::see_other(PATH).into_response())
}

/// The sign-in form; `error` says why the last attempt failed.
/// What the sign-in page shows.
struct SignInView<'a> {
    csrf_token: &'a str,
    email: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    next: Option<&'a str>,
}

fn sign_in_view(view: &SignInView<'_>) -> Markup {
    frame(
        "Sign in",
        "",
        html! {
            main {
                form.signin method="post" action="/dashboard/login" {
                    h1 { "Sign in to Payrail" }
                    @if let Some(notice) = view.notice { p role="status" { (notice) } }
                    @if let Some(error) = view.error {
                        p.error role="alert" { (error) }
                    }
                    input type="hidden" name="csrf_token" value=(view.csrf_token);
                    @if let Some(next) = view.next { input type="hidden" name="next" value=(next); }
                    label for="email" { "Email" }
                    input #email type="email" name="email" autocomplete="username" required value=(view.email);
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    p { button type="submit" { "Sign in" } }
                }
            }
        },
    )
}
