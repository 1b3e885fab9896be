//! Embedded mode's bus: one unbounded channel and one consumer, no broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use entity::bus::BusMessage;
use tokio::sync::{Mutex, mpsc};

use super::{BusError, Subscription};

/// Embedded mode's bus: an unbounded channel with one consumer.
pub struct InProcessBus {
    tx: mpsc::UnboundedSender<BusMessage>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<BusMessage>>>,
    depth: Arc<AtomicU64>,
}

impl InProcessBus {
    pub(super) fn new() -> InProcessBus {
        let (tx, rx) = mpsc::unbounded_channel();
        InProcessBus {
            tx,
            rx: Mutex::new(Some(rx)),
            depth: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(super) fn publish(&self, messages: &[BusMessage]) -> Result<(), BusError> {
        for m in messages {
            self.tx.send(m.clone()).map_err(|_| BusError::Closed)?;
            self.depth.fetch_add(1, Ordering::Relaxed);
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
