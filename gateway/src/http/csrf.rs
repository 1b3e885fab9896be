//! Double-submit CSRF tokens for the HTML forms (the sandbox checkout, the dashboard): a page
//! puts one random token in an `HttpOnly`, `SameSite=Strict` cookie and in its forms; a post is
//! accepted only when both copies are there and equal (compared in constant time). A page on
//! another site can make a browser post, but can neither read nor set the cookie.

use poem::Request;
use poem::http::header;
use subtle::ConstantTimeEq as _;

/// A fresh token for a page.
pub fn new_token() -> String {
    entity::ids::random_token(TOKEN_LENGTH)
}

const TOKEN_LENGTH: usize = 32;

/// The token this browser already holds in `cookie_name`, when it has the shape of ours: a
/// page drawn again (a reload, a second tab) keeps it, so every open form stays valid.
pub fn held_token(req: &Request, cookie_name: &str) -> Option<String> {
    read_cookie(req, cookie_name)
        .filter(|t| t.len() == TOKEN_LENGTH && t.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The `Set-Cookie` value carrying `token` for the pages under `path`.
pub fn cookie(name: &str, token: &str, path: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={token}; Path={path}; HttpOnly; SameSite=Strict{secure}")
}

/// A cookie's value from the request, by name.
pub fn read_cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_string())
}

/// Whether the form's token matches the cookie's.
pub fn verify(req: &Request, cookie_name: &str, sent: Option<&str>) -> bool {
    match (read_cookie(req, cookie_name), sent) {
        (Some(cookie), Some(sent)) if !sent.is_empty() => {
            bool::from(cookie.as_bytes().ct_eq(sent.as_bytes()))
        }
        _ => false,
    }
}
