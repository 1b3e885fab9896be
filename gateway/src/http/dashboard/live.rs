//! Real time for the dashboard: `/dashboard/stream`, a WebSocket per open page.
//!
//! One [`LiveHub`] per gateway listens on the bus while pages are open on it (its own queue
//! bound to the events exchange and the live exchange in distributed mode, so every gateway
//! hears the changes made through any gateway or worker; a broadcast in process) and hands
//! every change to the sockets, each
//! of which forwards only its own merchant's. The browser is told *what* changed (an event, a
//! delivery attempt, a log entry, with ids); the page then reloads its live parts itself, from
//! the same handlers that drew them, so a page never shows data its user could not load.
//!
//! Nothing is silently lost: a socket that falls behind, or a hub that lost the bus for a
//! while, sends `{"kind":"resync"}` and the page reloads its live parts.
//!
//! The edge: only pages of `PAYRAIL_PUBLIC_URL` may open one (the `Origin` must be it), a
//! user has at most [`SOCKETS_PER_USER`](super::hub::SOCKETS_PER_USER) on a gateway, a message from the page may be
//! [`MOST_MESSAGE_BYTES`] (it sends none: the limit keeps a client from making the gateway
//! assemble megabytes), and a socket ends when the access token it was opened with expires,
//! or within [`SESSION_CHECK`] of its session's sign-out.

use std::time::Duration;

use entity::bus::LiveNotice;
use entity::ids::MerchantId;
use futures_util::{SinkExt as _, StreamExt as _};
use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::web::websocket::{CloseCode, Message, WebSocket};
use poem::{IntoResponse, Request, Response, handler};

use tokio::sync::{broadcast, watch};

use crate::http::state::AppState;

pub use super::hub::LiveHub;
use super::hub::Update;

/// Notices sent to a page in one frame at most.
const MOST_PER_FRAME: usize = 100;
/// The largest message (and frame) a page may send.
pub const MOST_MESSAGE_BYTES: usize = 4096;
/// How often an open socket checks that its session was not signed out.
pub const SESSION_CHECK: Duration = Duration::from_secs(5);

/// The page script (`live.js`, written here, served as is).
#[handler]
pub fn script() -> Response {
    Response::builder()
        .content_type("text/javascript; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(include_str!("live.js"))
}

/// Whether a browser's `Origin` is this site, `PAYRAIL_PUBLIC_URL`: a page elsewhere must not
/// open a socket with the user's cookies (cross-site WebSocket hijacking; cookies alone do not
/// prove intent). The request's own `Host` proves nothing (an attacker's client sets both).
/// On a loopback public URL (a laptop), `localhost` and `127.0.0.1` are the same site.
fn same_origin(req: &Request, public_url: &str) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        // Not a browser: it sent the cookies itself.
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let (Ok(origin), Ok(public)) = (url::Url::parse(origin), url::Url::parse(public_url)) else {
        return false;
    };
    if origin.origin() == public.origin() {
        return true;
    }
    let loopback = |u: &url::Url| matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    loopback(&origin)
        && loopback(&public)
        && origin.scheme() == public.scheme()
        && origin.port_or_known_default() == public.port_or_known_default()
}

/// The notice as the page reads it: its change, tagged by kind.
fn to_text(notices: &[LiveNotice]) -> String {
    let changes: Vec<_> = notices.iter().map(LiveNotice::change).collect();
    serde_json::json!({ "kind": "changes", "changes": changes }).to_string()
}

#[handler]
pub async fn stream(req: &Request, ws: WebSocket, state: Data<&AppState>) -> Response {
    if !same_origin(req, &state.public_url) {
        return (
            StatusCode::FORBIDDEN,
            "cross-origin dashboard stream refused",
        )
            .into_response();
    }
    let Some(user) = crate::http::dashboard::session::session(req, &state).await else {
        // A script cannot follow a redirect on an upgrade; a 401 tells it to reload the page.
        return (StatusCode::UNAUTHORIZED, "sign in again").into_response();
    };
    let hub = state.live.clone();
    let Some(slot) = hub.slot(&user.user_id) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "too many open dashboard pages; close some",
        )
            .into_response();
    };
    let updates = hub.updates.subscribe();
    let closing = hub.closing.subscribe();
    let listening = hub.listening.subscribe();
    // The socket lives no longer than the access token it was opened with; the page opens a
    // new one, which renews the session or finds it ended.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let lifetime = Duration::from_secs(user.expires_at.saturating_sub(now));
    let session = Session {
        db: state.db.clone(),
        family: user.family.clone(),
    };
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MOST_MESSAGE_BYTES))
        .max_frame_size(Some(MOST_MESSAGE_BYTES));
    let response = ws
        .config(config)
        .on_upgrade(move |socket| async move {
            let _slot = slot;
            forward(
                socket,
                user.merchant_id,
                updates,
                closing,
                listening,
                lifetime,
                session,
            )
            .await
        })
        .into_response();
    // A renewed session's cookies go out on the upgrade (see `session::keep_cookies`).
    response
}

/// The session a socket was opened in, checked every [`SESSION_CHECK`].
struct Session {
    db: sea_orm::DatabaseConnection,
    family: entity::ids::SessionId,
}

impl Session {
    /// Waits until the session is signed out (or its family ended).
    async fn ended(&self) {
        loop {
            tokio::time::sleep(SESSION_CHECK).await;
            if matches!(
                crate::merchants::users::family_lives(&self.db, &self.family).await,
                Ok(false)
            ) {
                return;
            }
        }
    }
}

async fn forward(
    socket: poem::web::websocket::WebSocketStream,
    merchant_id: MerchantId,
    mut updates: broadcast::Receiver<Update>,
    mut closing: watch::Receiver<bool>,
    mut listening: watch::Receiver<bool>,
    lifetime: Duration,
    session: Session,
) {
    let (mut sink, mut incoming) = socket.split();
    let ends = tokio::time::sleep(lifetime);
    tokio::pin!(ends);
    let signed_out = session.ended();
    tokio::pin!(signed_out);
    tokio::select! {
        heard = listening.wait_for(|l| *l) => if heard.is_err() { return },
        _ = closing.changed() => return,
        _ = &mut ends => return,
    }
    if sink
        .send(Message::text(r#"{"kind":"hello"}"#))
        .await
        .is_err()
    {
        return;
    }
    let close = loop {
        let first = tokio::select! {
            update = updates.recv() => update,
            message = incoming.next() => match message {
                // The page says nothing; pings are answered by the library.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => continue,
            },
            _ = closing.changed() => break Message::close_with(CloseCode::Away, "server shutting down"),
            _ = &mut ends => break Message::close_with(4001u16, "session check"),
            _ = &mut signed_out => break Message::close_with(4001u16, "session check"),
        };
        // Everything already waiting goes in the same frame.
        let mut mine = Vec::new();
        let mut resync = false;
        let mut next = Some(first);
        while let Some(update) = next.take() {
            match update {
                Ok(Update::Notice(n)) if n.merchant_id() == &merchant_id => mine.push(n),
                Ok(Update::Notice(_)) => {}
                Ok(Update::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => resync = true,
                Err(broadcast::error::RecvError::Closed) => return,
            }
            if mine.len() < MOST_PER_FRAME {
                next = match updates.try_recv() {
                    Ok(u) => Some(Ok(u)),
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Some(Err(broadcast::error::RecvError::Lagged(n)))
                    }
                    Err(_) => None,
                };
            }
        }
        let text = if resync {
            r#"{"kind":"resync"}"#.to_string()
        } else if mine.is_empty() {
            continue;
        } else {
            to_text(&mine)
        };
        if sink.send(Message::text(text)).await.is_err() {
            return;
        }
    };
    let _ = sink.send(close).await;
}
