//! One per gateway: listens on the bus (its own queue bound to the events exchange and the
//! live exchange in distributed mode, so every gateway hears the changes made through any
//! gateway or worker; a broadcast in process) and hands every change to the open sockets of
//! [`super::live`], counting each user's.

use std::time::Duration;

use entity::bus::LiveNotice;
use entity::ids::UserId;
use runtime::bus::{EventBus, LiveHeard};
use tokio::sync::{broadcast, watch};

/// What the hub hands to the sockets.
#[derive(Debug, Clone)]
pub(super) enum Update {
    Notice(LiveNotice),
    /// Changes may have been missed: every page reloads its live parts.
    Resync,
}

/// Changes a socket may fall behind by before it is told to resynchronise.
const SOCKET_BACKLOG: usize = 1024;
/// The longest wait between two attempts to listen on the bus.
const MOST_BACKOFF: Duration = Duration::from_secs(10);
/// Open sockets one user may hold on one gateway (a page each; a person has a few tabs).
pub const SOCKETS_PER_USER: usize = 10;

/// The gateway's fan-out of live changes to its open dashboard pages.
#[derive(Clone)]
pub struct LiveHub {
    pub(super) updates: broadcast::Sender<Update>,
    pub(super) closing: watch::Sender<bool>,
    /// True while the hub hears the bus: a socket greets its page only then, so a page that
    /// was greeted misses nothing after.
    pub(super) listening: watch::Sender<bool>,
    /// Open sockets per user.
    pub(super) per_user: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<UserId, usize>>>,
}

/// A user's hold on one of its sockets; dropping it gives the place back.
pub(super) struct SocketSlot {
    per_user: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<UserId, usize>>>,
    user: UserId,
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.per_user.lock()
            && let Some(n) = map.get_mut(&self.user)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.user);
            }
        }
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        LiveHub {
            updates: broadcast::channel(SOCKET_BACKLOG).0,
            closing: watch::channel(false).0,
            listening: watch::channel(false).0,
            per_user: Default::default(),
        }
    }
}

impl LiveHub {
    /// Listens on the bus until `stop` turns true, listening again after a drop (with
    /// backoff) and telling the pages to resynchronise, since notices went by meanwhile.
    pub async fn run(self, bus: EventBus, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(200);
        let mut first = true;
        while !*stop.borrow() {
            let mut listener = match bus.listen().await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "dashboard stream cannot listen on the bus");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(MOST_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            self.listening.send_replace(true);
            if !first {
                let _ = self.updates.send(Update::Resync);
            }
            first = false;
            loop {
                tokio::select! {
                    heard = listener.next() => match heard {
                        Some(Ok(LiveHeard::Notice(notice))) => {
                            let _ = self.updates.send(Update::Notice(notice));
                        }
                        Some(Ok(LiveHeard::Missed(n))) => {
                            tracing::warn!(missed = n, "dashboard stream fell behind the bus");
                            let _ = self.updates.send(Update::Resync);
                        }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "dashboard stream lost the bus; listening again");
                            break;
                        }
                        None => break,
                    },
                    _ = stop.changed() => break,
                }
            }
            self.listening.send_replace(false);
            listener.close().await;
        }
    }

    /// Closes every socket (going away): the server is shutting down.
    pub fn close(&self) {
        let _ = self.closing.send(true);
    }

    /// Sockets open on this gateway now.
    pub fn sockets(&self) -> usize {
        self.updates.receiver_count()
    }

    /// Whether the hub hears the bus now.
    pub fn listening(&self) -> bool {
        *self.listening.borrow()
    }

    /// A place for one more socket of `user`, unless it has [`SOCKETS_PER_USER`] already.
    pub(super) fn slot(&self, user: &UserId) -> Option<SocketSlot> {
        let mut map = self.per_user.lock().ok()?;
        let n = map.entry(user.clone()).or_default();
        if *n >= SOCKETS_PER_USER {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            per_user: self.per_user.clone(),
            user: user.clone(),
        })
    }
}
