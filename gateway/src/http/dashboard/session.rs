//! Who is signed in to the dashboard, for every page and form.
//!
//! A page is served to a session only (cookies `payrail_access` and `payrail_refresh`, both
//! `HttpOnly`, `SameSite=Strict`, `Path=/dashboard`); an `Authorization` header, API key or
//! not, is never looked at. An expired access token is renewed from the refresh token on the
//! way, which is replaced; anything else goes to the sign-in page.
//!
//! - [`SignedIn`]: the extractor of a page (the user, the token for its forms).
//! - [`Posted`]: the extractor of a form post: a session, this session's CSRF token, a role
//!   that may post it ([`Act`] or [`Own`]), and the form read.
//! - [`PageError`]: what a page answers instead of itself.
//! - [`keep_cookies`]: around every dashboard route, so a renewed session's cookies go out on
//!   whatever answer is given, an error's too (a lost renewal would end the session).

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use entity::ids::Scope;
use poem::http::{StatusCode, header};
use poem::web::{Form, Redirect};
use poem::{Endpoint, FromRequest, IntoResponse, Request, RequestBody, Response};
use serde::de::DeserializeOwned;

use crate::http::csrf;
use crate::http::dashboard::frame::Chrome;
use crate::http::state::AppState;
use crate::merchants::users::{self, DashboardUser, Tokens};

pub(super) const ACCESS_COOKIE: &str = "payrail_access";
/// Which mode the dashboard shows: `live`, or test when absent.
pub(super) const MODE_COOKIE: &str = "payrail_mode";
pub(super) const REFRESH_COOKIE: &str = "payrail_refresh";
/// The sign-in form's double-submit token (before there is a session to bind one to).
pub(super) const CSRF_COOKIE: &str = "payrail_dashboard_csrf";
pub(super) const PATH: &str = "/dashboard";
/// The one-time message a form post leaves for the page it sends the browser to. A cookie,
/// not the URL: a link cannot put words in the signed-in dashboard's mouth.
pub(super) const FLASH_COOKIE: &str = "payrail_flash";
/// Set by live.js on the fetch that refreshes a page's live regions.
const LIVE_REFRESH_HEADER: &str = "payrail-live-refresh";

/// Cookies chosen while answering a request, set on its answer by [`keep_cookies`].
#[derive(Clone, Default)]
struct Outgoing(Arc<Mutex<Vec<String>>>);

/// Middleware around the dashboard's routes: every cookie the request chose (a renewed
/// session, a new form token, the mode) is set on its answer, whichever answer it is.
pub async fn keep_cookies<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let outgoing = Outgoing::default();
    req.extensions_mut().insert(outgoing.clone());
    // A page's live refresh (live.js) is not the page the browser was sent to: were it to
    // take the message, a refresh racing the form's redirect would leave that page without it.
    let flash = (!req.headers().contains_key(LIVE_REFRESH_HEADER))
        .then(|| read_flash(&req))
        .flatten();
    if let Some(flash) = &flash {
        req.extensions_mut().insert(flash.clone());
    }
    let mut response = match next.call(req).await {
        Ok(r) => r.into_response(),
        Err(e) => e.into_response(),
    };
    // Shown once: the page that showed it (a page of ours, drawn) forgets it.
    let shown = response.status() == StatusCode::OK
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
    if flash.is_some() && shown {
        outgoing
            .0
            .lock()
            .map(|mut c| {
                c.push(format!(
                    "{FLASH_COOKIE}=; Path={PATH}; Max-Age=0; HttpOnly; SameSite=Strict"
                ))
            })
            .ok();
    }
    let cookies = outgoing
        .0
        .lock()
        .map(|mut c| std::mem::take(&mut *c))
        .unwrap_or_default();
    for cookie in cookies {
        if let Ok(v) = header::HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(response)
}

/// A message left by the form post before (see [`back_to`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flash(pub String);

fn read_flash(req: &Request) -> Option<Flash> {
    let raw = csrf::read_cookie(req, FLASH_COOKIE)?;
    let text: String = url::form_urlencoded::parse(format!("m={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    // Never more than a sentence of ours; anything else was not set by us.
    (!text.is_empty() && text.len() <= 500).then_some(Flash(text))
}

/// Sets `cookie` on the answer to `req` (see [`keep_cookies`]).
pub(super) fn set_cookie(req: &Request, cookie: String) {
    if let Some(outgoing) = req.extensions().get::<Outgoing>()
        && let Ok(mut c) = outgoing.0.lock()
    {
        c.push(cookie);
    }
}

pub(super) fn secure(state: &AppState) -> bool {
    state.public_url.starts_with("https://")
}

pub(super) fn session_cookie(state: &AppState, name: &str, value: &str, max_age: u64) -> String {
    let secure = if secure(state) { "; Secure" } else { "" };
    format!("{name}={value}; Path={PATH}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// Sets the cookies of a sign-in or a refresh: the access token, and the new refresh token if
/// there is one (a refresh in its reuse grace keeps the browser's newer one).
pub(super) fn set_token_cookies(req: &Request, state: &AppState, tokens: &Tokens) {
    let keys = &state.dashboard;
    set_cookie(
        req,
        session_cookie(
            state,
            ACCESS_COOKIE,
            &tokens.access,
            keys.access_ttl.as_secs(),
        ),
    );
    if let Some(refresh) = &tokens.refresh {
        set_cookie(
            req,
            session_cookie(state, REFRESH_COOKIE, refresh, keys.refresh_ttl.as_secs()),
        );
    }
}

/// The sign-in page's CSRF token: the browser's, or a new one set on the answer.
pub(super) fn sign_in_csrf(req: &Request, state: &AppState) -> String {
    match csrf::held_token(req, CSRF_COOKIE) {
        Some(token) => token,
        None => {
            let token = csrf::new_token();
            set_cookie(req, csrf::cookie(CSRF_COOKIE, &token, PATH, secure(state)));
            token
        }
    }
}

/// The session's user, renewing an expired access token from the refresh token (its cookies
/// set on the answer). `None`: not signed in.
pub(crate) async fn session(req: &Request, state: &AppState) -> Option<DashboardUser> {
    let viewing_live = csrf::read_cookie(req, MODE_COOKIE).as_deref() == Some("live");
    if let Some(user) = csrf::read_cookie(req, ACCESS_COOKIE)
        .and_then(|token| users::verify_access(&state.dashboard, &token))
    {
        // A token outlives nothing: signed out, or its family ended, it opens nothing.
        match users::family_lives(&state.db, &user.family).await {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "dashboard session check failed");
                return None;
            }
        }
        return Some(DashboardUser {
            livemode: viewing_live,
            ..user
        });
    }
    let refresh = csrf::read_cookie(req, REFRESH_COOKIE)?;
    match users::refresh(&state.db, &state.dashboard, &refresh).await {
        Ok(Some(tokens)) => {
            set_token_cookies(req, state, &tokens);
            Some(DashboardUser {
                livemode: viewing_live,
                ..tokens.user
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard session refresh failed");
            None
        }
    }
}

fn state_of(req: &Request) -> poem::Result<&AppState> {
    req.data::<AppState>()
        .ok_or_else(|| PageError::Unavailable("the dashboard's state").into())
}

/// A signed-in user on a page, with the CSRF token of the page's forms (an HMAC of the
/// session, so a token is good for its own session only). Not signed in: the sign-in page.
pub struct SignedIn {
    pub user: DashboardUser,
    pub csrf: String,
    /// The message the last form post left for this page, shown once.
    pub flash: Option<String>,
}

impl SignedIn {
    pub fn scope(&self) -> Scope {
        self.user.scope()
    }

    /// What the page's frame needs.
    pub fn chrome(&self) -> Chrome<'_> {
        Chrome {
            csrf_token: &self.csrf,
            livemode: self.user.livemode,
            manages_keys: self.user.role == entity::status::UserRole::Owner,
        }
    }
}

impl<'a> FromRequest<'a> for SignedIn {
    async fn from_request(req: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        let state = state_of(req)?;
        // A page asked for signed out comes back after sign-in (a bookmark, a shared link).
        let user = session(req, state)
            .await
            .ok_or_else(|| PageError::SignIn(coming_back_to(req)))?;
        let csrf = state.dashboard.csrf_for(&user.family);
        let flash = req.extensions().get::<Flash>().map(|f| f.0.clone());
        Ok(SignedIn { user, csrf, flash })
    }
}

/// Who may post a form.
pub trait Role: Send + Sync {
    /// `None` if `user` may; else why not.
    fn refusal(user: &DashboardUser) -> Option<&'static str>;
}

/// Anyone signed in, viewers too (a form that changes what they see, not the data).
pub struct Look;
/// Owners and developers.
pub struct Act;
/// Owners only.
pub struct Own;

impl Role for Look {
    fn refusal(_: &DashboardUser) -> Option<&'static str> {
        None
    }
}

impl Role for Act {
    fn refusal(user: &DashboardUser) -> Option<&'static str> {
        (!user.can_act())
            .then_some("Your role (viewer) can look but not act: ask an owner or a developer.")
    }
}

impl Role for Own {
    fn refusal(user: &DashboardUser) -> Option<&'static str> {
        (user.role != entity::status::UserRole::Owner).then_some("Only owners manage API keys.")
    }
}

/// A form that carries its page's CSRF token.
pub trait WithCsrf {
    fn csrf_token(&self) -> Option<&str>;
}

/// Implements [`WithCsrf`] for forms with a `csrf_token: Option<String>` field.
macro_rules! with_csrf {
    ($($form:ty),* $(,)?) => {
        $(impl $crate::http::dashboard::session::WithCsrf for $form {
            fn csrf_token(&self) -> Option<&str> {
                self.csrf_token.as_deref()
            }
        })*
    };
}
pub(crate) use with_csrf;

/// A form posted by a signed-in user whose role `R` may post it, with this session's token.
/// In that order: not signed in goes to the sign-in page; a form that cannot be read is a
/// 400; another session's (or no) token a 403; a role that may not post it a 403.
pub struct Posted<T, R = Act> {
    pub form: T,
    pub user: DashboardUser,
    pub csrf: String,
    role: PhantomData<R>,
}

impl<T, R> Posted<T, R> {
    pub fn scope(&self) -> Scope {
        self.user.scope()
    }

    pub fn chrome(&self) -> Chrome<'_> {
        Chrome {
            csrf_token: &self.csrf,
            livemode: self.user.livemode,
            manages_keys: self.user.role == entity::status::UserRole::Owner,
        }
    }
}

impl<'a, T, R> FromRequest<'a> for Posted<T, R>
where
    T: DeserializeOwned + WithCsrf + Send,
    R: Role,
{
    async fn from_request(req: &'a Request, body: &mut RequestBody) -> poem::Result<Self> {
        let state = state_of(req)?;
        let user = session(req, state).await.ok_or(PageError::SignIn(None))?;
        let Form(form) = Form::<T>::from_request(req, body)
            .await
            .map_err(|e| PageError::Unreadable(format!("The form could not be read: {e}.")))?;
        if !state
            .dashboard
            .csrf_matches(&user.family, form.csrf_token())
        {
            return Err(PageError::Expired.into());
        }
        if let Some(why) = R::refusal(&user) {
            return Err(PageError::Forbidden(why).into());
        }
        let csrf = state.dashboard.csrf_for(&user.family);
        Ok(Posted {
            form,
            user,
            csrf,
            role: PhantomData,
        })
    }
}

/// What a page answers instead of itself.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in: to the sign-in page, and after it back to this page (when it is one).
    SignIn(Option<String>),
    /// The form's token is not this session's.
    Expired,
    Forbidden(&'static str),
    NotFound(&'static str),
    /// The request or form could not be read (400).
    Unreadable(String),
    /// Read, but a value is not acceptable (422).
    Invalid(String),
    /// Our side failed (the cause is logged where it happened): 503, said plainly.
    Unavailable(&'static str),
}

impl PageError {
    /// For `map_err`: logs a database failure under `what`, and answers 503.
    pub fn db(what: &'static str) -> impl FnOnce(sea_orm::DbErr) -> PageError {
        move |e| {
            tracing::error!(error = %e, "dashboard {what} failed");
            PageError::Unavailable(what)
        }
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::SignIn(_) => f.write_str("Sign in first."),
            PageError::Expired => f.write_str("This form has expired; reload the page."),
            PageError::Forbidden(why) | PageError::NotFound(why) => f.write_str(why),
            PageError::Unreadable(why) | PageError::Invalid(why) => f.write_str(why),
            PageError::Unavailable(_) => f.write_str("The dashboard is unavailable; try again."),
        }
    }
}

impl std::error::Error for PageError {}

impl From<PageError> for poem::Error {
    fn from(e: PageError) -> poem::Error {
        poem::Error::from_response(e.into_response())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = match &self {
            PageError::SignIn(next) => {
                let to = match next {
                    Some(next) => format!(
                        "/dashboard/login?next={}",
                        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                    ),
                    None => "/dashboard/login".to_string(),
                };
                return Redirect::see_other(to).into_response();
            }
            PageError::Expired | PageError::Forbidden(_) => StatusCode::FORBIDDEN,
            PageError::NotFound(_) => StatusCode::NOT_FOUND,
            PageError::Unreadable(_) => StatusCode::BAD_REQUEST,
            PageError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PageError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        html_response(
            status,
            crate::http::dashboard::frame::message(&self.to_string()).into_string(),
        )
    }
}

/// A page's answer: HTML that is never cached, framed by no one, and runs our script only.
pub(super) fn html_response(status: StatusCode, body: String) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/html; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-store")
        .header("x-frame-options", "DENY")
        // Our one script, our one socket, our one stylesheet; nothing inline, nothing from
        // elsewhere.
        .header(
            "content-security-policy",
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )
        .body(body)
}

/// A page drawn for a signed-in user.
pub(super) fn page(markup: maud::Markup) -> Response {
    html_response(StatusCode::OK, markup.into_string())
}

/// After a form post: back to `path` (a dashboard page), which shows `notice` once (a
/// flash cookie, never text in the URL).
/// Where a signed-out GET meant to go, to come back to after sign-in.
fn coming_back_to(req: &Request) -> Option<String> {
    if req.method() != poem::http::Method::GET {
        return None;
    }
    // The original: inside the nested routes the path has lost its `/dashboard`.
    let wanted = req.original_uri().path_and_query().map(|p| p.as_str())?;
    safe_next(wanted)
        .filter(|next| *next != PATH)
        .map(str::to_string)
}

/// `next` when it is a page of this dashboard, never another site (`//evil.example`,
/// `/\evil.example`) nor anything but a plain path and query.
pub(super) fn safe_next(next: &str) -> Option<&str> {
    let ours = next == PATH || next.starts_with("/dashboard/") || next.starts_with("/dashboard?");
    let plain = next.len() <= 2000
        && !next.contains("//")
        && !next.contains("..")
        && !next.contains('\\')
        && next.chars().all(|c| c.is_ascii_graphic());
    (ours && plain).then_some(next)
}

pub(super) fn back_to(path: &str, notice: &str) -> Response {
    let value: String = url::form_urlencoded::byte_serialize(notice.as_bytes()).collect();
    let mut response = Redirect::see_other(path).into_response();
    if let Ok(cookie) = header::HeaderValue::from_str(&format!(
        "{FLASH_COOKIE}={value}; Path={PATH}; Max-Age=60; HttpOnly; SameSite=Strict"
    )) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Why an action was refused, as the API would tell it: the database's own text (table names,
/// constraint names, connection details) stays in the log.
pub(super) fn told(e: crate::core::error::ServiceError) -> String {
    crate::http::api::error::ApiError::from(e)
        .message()
        .to_string()
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
