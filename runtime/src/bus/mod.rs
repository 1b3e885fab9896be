//! The event bus: RabbitMQ in production, an in-process channel in embedded mode.
//!
//! Callers publish and receive [`BusMessage`]s; only this module touches AMQP. RabbitMQ
//! topology: a durable direct exchange, a quorum queue bound to it whose dead letters go to a
//! fanout exchange and its own quorum queue. Publishing waits for publisher confirms; messages
//! are persistent; consumers ack manually after their work committed, and those acks go to
//! the broker together ([`acks`]).
//!
//! Live notices for the dashboards ride beside it: [`EventBus::announce`] publishes
//! [`LiveNotice`]s to a fanout exchange, best effort, those of [`LIVE_LINGER`] in one message;
//! [`EventBus::listen`] gives each gateway a queue of its own bound to that exchange and to the
//! events exchange, so every gateway hears every event and every notice. In process, a
//! broadcast channel does the same.
//!
//! Beside the broker, an [`Express`] lane on Redis carries best-effort copies of freshly
//! committed events, so a worker need not wait for the quorum queue's commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use entity::bus::{BusMessage, LiveNotice, QueueNames};
use futures_util::StreamExt as _;
use lapin::Connection;
use tokio::sync::{broadcast, mpsc};

mod acks;
mod amqp;
pub mod express;
mod in_process;
mod live;
mod nodes;

pub use acks::ACK_LINGER;
pub use amqp::AmqpBus;
pub use express::{Express, ExpressSource, Push, Pushed};
pub use in_process::InProcessBus;
pub use live::{LIVE_LINGER, LiveListener as AmqpLiveListener};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not confirm a publish (nack or unroutable)")]
    NotConfirmed,
    #[error("the in-process bus is closed")]
    Closed,
    #[error("no broker node accepted a connection in time")]
    Unreachable,
    #[error("another consumer already holds the in-process bus")]
    AlreadySubscribed,
}

/// The bus chosen at start-up.
#[derive(Clone)]
pub enum EventBus {
    Amqp(Arc<AmqpBus>),
    InProcess(Arc<InProcessBus>),
}

/// What a consumer receives: a parsed message, or bytes that parse as no known version.
#[expect(
    clippy::large_enum_variant,
    reason = "each is moved once, from the consumer into its batch: a box would be an allocation per message for nothing"
)]
pub enum Received {
    Message(BusMessage, Ack),
    Unparseable(Ack),
}

/// Settles one received message.
pub enum Ack {
    Amqp(acks::Tracked),
    InProcess {
        message: BusMessage,
        requeue: mpsc::UnboundedSender<BusMessage>,
        depth: Arc<AtomicU64>,
    },
}

impl Ack {
    /// The work is committed: the broker may forget the message (within [`ACK_LINGER`], with
    /// the others settled meanwhile).
    pub async fn ack(self) -> Result<(), BusError> {
        match self {
            Ack::Amqp(tracked) => tracked.ack().await,
            Ack::InProcess { .. } => Ok(()),
        }
    }

    /// The work failed for a reason that may pass: deliver the message again.
    pub async fn requeue(self) -> Result<(), BusError> {
        match self {
            Ack::Amqp(tracked) => tracked.reject(true).await,
            Ack::InProcess {
                message,
                requeue,
                depth,
            } => {
                depth.fetch_add(1, Ordering::Relaxed);
                requeue.send(message).map_err(|_| BusError::Closed)
            }
        }
    }

    /// The message can never be processed: move it to the dead-letter queue.
    pub async fn dead_letter(self) -> Result<(), BusError> {
        match self {
            Ack::Amqp(tracked) => tracked.reject(false).await,
            // Typed in-process messages always parse; nothing reaches here.
            Ack::InProcess { .. } => Ok(()),
        }
    }
}

/// A stream of received messages.
pub enum Subscription {
    /// The connection is held so it lives as long as its consumer (and, through `settles`,
    /// until the last message received is settled). Dropped in this order: the consumer is
    /// cancelled first.
    Amqp {
        consumer: Box<lapin::Consumer>,
        settles: acks::Settles,
        _connection: Box<Connection>,
    },
    InProcess {
        rx: mpsc::UnboundedReceiver<BusMessage>,
        tx: mpsc::UnboundedSender<BusMessage>,
        depth: Arc<AtomicU64>,
    },
}

impl Subscription {
    /// The next message; `None` or an error when the connection is gone (reconnect then).
    pub async fn next(&mut self) -> Option<Result<Received, BusError>> {
        match self {
            Subscription::Amqp {
                consumer, settles, ..
            } => {
                let delivery = match consumer.next().await? {
                    Ok(d) => d,
                    Err(e) => return Some(Err(e.into())),
                };
                let ack = Ack::Amqp(settles.track(delivery.delivery_tag, delivery.acker));
                Some(Ok(match BusMessage::decode(&delivery.data) {
                    Ok(message) => Received::Message(message, ack),
                    Err(_) => Received::Unparseable(ack),
                }))
            }
            Subscription::InProcess { rx, tx, depth } => {
                let message = rx.recv().await?;
                depth.fetch_sub(1, Ordering::Relaxed);
                let ack = Ack::InProcess {
                    message: message.clone(),
                    requeue: tx.clone(),
                    depth: depth.clone(),
                };
                Some(Ok(Received::Message(message, ack)))
            }
        }
    }

    /// Stops receiving and sends the acknowledgements waiting for their linger; messages
    /// settled after this are acknowledged at once, while the connection stays open for them.
    pub async fn close(self) {
        if let Subscription::Amqp {
            consumer, settles, ..
        } = self
        {
            drop(consumer);
            settles.close().await;
        }
    }
}

/// Live notices one listener may fall behind by before it is told it missed some.
pub const LIVE_BACKLOG: usize = 10_000;

/// What a live listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveHeard {
    Notice(LiveNotice),
    /// The listener fell behind and this many notices were lost: resynchronise.
    Missed(u64),
}

/// One process's stream of live notices.
pub enum LiveListener {
    Amqp(AmqpLiveListener),
    InProcess(broadcast::Receiver<LiveNotice>),
}

impl LiveListener {
    /// The next notice; `None` or an error when the connection is gone (listen again then).
    pub async fn next(&mut self) -> Option<Result<LiveHeard, BusError>> {
        match self {
            LiveListener::Amqp(listener) => listener.next().await,
            LiveListener::InProcess(rx) => match rx.recv().await {
                Ok(notice) => Some(Ok(LiveHeard::Notice(notice))),
                Err(broadcast::error::RecvError::Lagged(n)) => Some(Ok(LiveHeard::Missed(n))),
                Err(broadcast::error::RecvError::Closed) => None,
            },
        }
    }

    pub async fn close(self) {
        if let LiveListener::Amqp(listener) = self {
            listener.close().await;
        }
    }
}

/// Messages waiting, for the `queue_size` gauge.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueDepths {
    pub events: u64,
    pub dead_letters: u64,
}

impl EventBus {
    pub fn amqp(url: &str, names: QueueNames) -> EventBus {
        EventBus::Amqp(Arc::new(AmqpBus::new(url, names)))
    }

    pub fn in_process() -> EventBus {
        EventBus::InProcess(Arc::new(InProcessBus::new()))
    }

    /// Publishes every message and returns once the broker confirmed all of them.
    pub async fn publish(&self, messages: &[BusMessage]) -> Result<(), BusError> {
        match self {
            EventBus::Amqp(bus) => bus.publish(messages).await,
            EventBus::InProcess(bus) => bus.publish(messages),
        }
    }

    /// Tells the dashboards of a change, without waiting and without failing: see
    /// [`LiveNotice`]. Events need no notice; listeners hear them from the events exchange.
    pub fn announce(&self, notice: LiveNotice) {
        match self {
            EventBus::Amqp(bus) => bus.announce(notice),
            EventBus::InProcess(bus) => bus.announce(notice),
        }
    }

    /// Every event and live notice from now on, from every process.
    pub async fn listen(&self) -> Result<LiveListener, BusError> {
        match self {
            EventBus::Amqp(bus) => bus.listen().await.map(LiveListener::Amqp),
            EventBus::InProcess(bus) => Ok(LiveListener::InProcess(bus.listen())),
        }
    }

    /// Receives up to `prefetch` messages ahead; their acknowledgements linger [`ACK_LINGER`].
    pub async fn subscribe(&self, prefetch: u16) -> Result<Subscription, BusError> {
        self.subscribe_lingering(prefetch, ACK_LINGER).await
    }

    /// [`EventBus::subscribe`] with acknowledgements that wait `linger` (tests lengthen it to
    /// tell a lingering acknowledgement from one sent at once).
    pub async fn subscribe_lingering(
        &self,
        prefetch: u16,
        linger: std::time::Duration,
    ) -> Result<Subscription, BusError> {
        match self {
            EventBus::Amqp(bus) => bus.subscribe(prefetch, linger).await,
            EventBus::InProcess(bus) => bus.subscribe().await,
        }
    }

    pub async fn depths(&self) -> Result<QueueDepths, BusError> {
        match self {
            EventBus::Amqp(bus) => bus.depths().await,
            EventBus::InProcess(bus) => Ok(QueueDepths {
                events: bus.depth(),
                dead_letters: 0,
            }),
        }
    }

    /// Declares the broker topology (a no-op in process), so either process may start first.
    pub async fn declare(&self) -> Result<(), BusError> {
        match self {
            EventBus::Amqp(bus) => bus.declare().await,
            EventBus::InProcess(_) => Ok(()),
        }
    }

    /// Moves what is in the dead-letter queue now back to the fan-out queue (the messages that
    /// arrive meanwhile wait for the next run). Each message is republished with a confirm
    /// before it is acked, so a crash in between leaves a copy in both queues, never in
    /// neither; fan-out is idempotent, so a copy delivers nothing twice. Returns how many moved.
    pub async fn redrive(&self) -> Result<u64, BusError> {
        match self {
            EventBus::Amqp(bus) => bus.redrive().await,
            // In process, nothing is dead-lettered.
            EventBus::InProcess(_) => Ok(0),
        }
    }

    /// Whether the broker answers, for readiness.
    pub async fn ping(&self) -> Result<(), BusError> {
        self.depths().await.map(drop)
    }

    pub fn kind(&self) -> &'static str {
        match self {
            EventBus::Amqp(_) => "rabbitmq",
            EventBus::InProcess(_) => "in-process",
        }
    }
}
