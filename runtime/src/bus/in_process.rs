//! Embedded mode's bus: one unbounded channel and one consumer, no broker; and a broadcast of
//! live notices for the dashboard, which hears every event published too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use entity::bus::{BusMessage, LiveNotice};
use tokio::sync::{Mutex, broadcast, mpsc};

use super::{BusError, Subscription};

/// Embedded mode's bus: an unbounded channel with one consumer.
pub struct InProcessBus {
    tx: mpsc::UnboundedSender<BusMessage>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<BusMessage>>>,
    depth: Arc<AtomicU64>,
    live: broadcast::Sender<LiveNotice>,
}

impl InProcessBus {
    pub(super) fn new() -> InProcessBus {
        let (tx, rx) = mpsc::unbounded_channel();
        InProcessBus {
            tx,
            rx: Mutex::new(Some(rx)),
            depth: Arc::new(AtomicU64::new(0)),
            live: broadcast::channel(super::LIVE_BACKLOG).0,
        }
    }

    pub(super) fn publish(&self, messages: &[BusMessage]) -> Result<(), BusError> {
        for m in messages {
            self.tx.send(m.clone()).map_err(|_| BusError::Closed)?;
            self.depth.fetch_add(1, Ordering::Relaxed);
            // Nobody listening is not an error: no dashboard is open.
            let _ = self.live.send(LiveNotice::from(m));
        }
        Ok(())
    }

    pub(super) async fn subscribe(&self) -> Result<Subscription, BusError> {
        let rx = self
            .rx
            .lock()
            .await
            .take()
            .ok_or(BusError::AlreadySubscribed)?;
        Ok(Subscription::InProcess {
            rx,
            tx: self.tx.clone(),
            depth: self.depth.clone(),
        })
    }

    pub(super) fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
}

impl InProcessBus {
    pub(super) fn announce(&self, notice: LiveNotice) {
        let _ = self.live.send(notice);
    }

    pub(super) fn listen(&self) -> broadcast::Receiver<LiveNotice> {
        self.live.subscribe()
    }
}
