//! One per gateway: listens on the bus (its own queue bound to the events exchange and the
//! live exchange in distributed mode, so every gateway hears the changes made through any
//! gateway or worker; a broadcast in process) and hands every change to the open sockets of
//! [`super::live`], counting each user's.
//!
//! It listens only while pages are open (and for [`LINGER`] after the last one closes, so a
//! page being reloaded does not make it bind its queue again). A queue bound while nobody
//! reads it made the broker route every event and every delivery attempt a second time, and
//! the gateway decode each, for no page at all: most of the time no dashboard is open.

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
/// How long the hub goes on listening once no page is open.
pub const LINGER: Duration = Duration::from_secs(30);

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
    /// Sockets holding a slot, all users together: the hub listens while there are any.
    pub(super) open: watch::Sender<usize>,
    /// How long it goes on listening once none is open ([`LINGER`]).
    linger: Duration,
}

/// A user's hold on one of its sockets; dropping it gives the place back.
pub(super) struct SocketSlot {
    per_user: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<UserId, usize>>>,
    open: watch::Sender<usize>,
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
        self.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Default for LiveHub {
    fn default() -> Self {
        LiveHub {
            updates: broadcast::channel(SOCKET_BACKLOG).0,
            closing: watch::channel(false).0,
            listening: watch::channel(false).0,
            per_user: Default::default(),
            open: watch::channel(0).0,
            linger: LINGER,
        }
    }
}

impl LiveHub {
    /// Listens on the bus while pages are open, until `stop` turns true: listening again
    /// after a drop (with backoff) and telling the pages to resynchronise, since notices went
    /// by meanwhile; and stopping once no page has been open for its linger ([`LINGER`]).
    pub async fn run(self, bus: EventBus, mut stop: watch::Receiver<bool>) {
        let mut open = self.open.subscribe();
        let mut backoff = Duration::from_millis(200);
        // Whether pages may have missed notices since the hub last heard the bus.
        let mut dropped = false;
        while !*stop.borrow() {
            tokio::select! {
                wanted = open.wait_for(|n| *n > 0) => if wanted.map(|_| ()).is_err() { return },
                changed = stop.changed() => if changed.is_err() { return } else { continue },
            }
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
            if dropped {
                let _ = self.updates.send(Update::Resync);
            }
            dropped = true;
            // One wait for the whole listening spell: remade on every notice, it would never
            // run out while changes keep coming.
            let idle = idle_for(&mut open, self.linger);
            tokio::pin!(idle);
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
                    () = &mut idle => {
                        // No page left to miss anything: the next one is greeted once the
                        // hub hears the bus again, and needs no resync.
                        dropped = false;
                        break;
                    }
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
        *self.open.borrow()
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
        self.open.send_modify(|n| *n += 1);
        Some(SocketSlot {
            per_user: self.per_user.clone(),
            open: self.open.clone(),
            user: user.clone(),
        })
    }
}

/// Returns once no socket has been open for `linger`.
async fn idle_for(open: &mut watch::Receiver<usize>, linger: Duration) {
    loop {
        // The hub holds the sender, so these waits end only by the count changing.
        let closed = open.wait_for(|n| *n == 0).await.is_err();
        if closed {
            return std::future::pending().await;
        }
        let closed = tokio::select! {
            _ = tokio::time::sleep(linger) => return,
            wanted = open.wait_for(|n| *n > 0) => wanted.is_err(),
        };
        if closed {
            return std::future::pending().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits until the hub's listening flag is `want`.
    async fn listening_becomes(hub: &LiveHub, want: bool) {
        let mut listening = hub.listening.subscribe();
        tokio::time::timeout(Duration::from_secs(10), listening.wait_for(|l| *l == want))
            .await
            .expect("in time")
            .expect("hub alive");
    }

    #[tokio::test]
    async fn the_hub_listens_only_while_pages_are_open_and_a_linger_after() {
        let linger = Duration::from_secs(1);
        let hub = LiveHub {
            linger,
            ..LiveHub::default()
        };
        let (stop, stopped) = watch::channel(false);
        let running = tokio::spawn(hub.clone().run(EventBus::in_process(), stopped));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!hub.listening(), "no page open: nothing to listen for");
        let user = UserId::generate();
        let page = hub.slot(&user).expect("a slot");
        listening_becomes(&hub, true).await;
        let reload = hub.slot(&user).expect("a second slot");
        drop(page);
        tokio::time::sleep(linger * 2).await;
        assert!(hub.listening(), "a page is still open");
        drop(reload);
        tokio::time::sleep(linger / 5).await;
        assert!(
            hub.listening(),
            "within the linger a reloaded page finds it listening"
        );
        let back = hub.slot(&user).expect("a slot");
        tokio::time::sleep(linger * 2).await;
        assert!(
            hub.listening(),
            "the linger starts again once the last page closes"
        );
        drop(back);
        listening_becomes(&hub, false).await;
        let _again = hub.slot(&user).expect("a slot");
        listening_becomes(&hub, true).await;
        let _ = stop.send(true);
        running.await.expect("the hub stops");
    }
}
