//! The event bus: RabbitMQ in production, an in-process channel in embedded mode.
//!
//! Callers publish and receive [`BusMessage`]s; only this module touches AMQP. RabbitMQ
//! topology: a durable direct exchange, a quorum queue bound to it whose dead letters go to a
//! fanout exchange and its own quorum queue. Publishing waits for publisher confirms; messages
//! are persistent; consumers ack manually after their work committed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use entity::bus::{BusMessage, QueueNames};
use futures_util::StreamExt as _;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Mutex, mpsc};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("broker: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker did not confirm a publish (nack or unroutable)")]
    NotConfirmed,
    #[error("the in-process bus is closed")]
    Closed,
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
pub enum Received {
    Message(BusMessage, Ack),
    Unparseable(Ack),
}

/// Settles one received message.
pub enum Ack {
    Amqp(lapin::Acker),
    InProcess {
        message: BusMessage,
        requeue: mpsc::UnboundedSender<BusMessage>,
        depth: Arc<AtomicU64>,
    },
}

impl Ack {
    /// The work is committed: the broker may forget the message.
    pub async fn ack(self) -> Result<(), BusError> {
        match self {
            Ack::Amqp(acker) => acker
                .ack(BasicAckOptions::default())
                .await
                .map(drop)
                .map_err(Into::into),
            Ack::InProcess { .. } => Ok(()),
        }
    }

    /// The work failed for a reason that may pass: deliver the message again.
    pub async fn requeue(self) -> Result<(), BusError> {
        match self {
            Ack::Amqp(acker) => acker
                .reject(BasicRejectOptions { requeue: true })
                .await
                .map(drop)
                .map_err(Into::into),
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
            Ack::Amqp(acker) => acker
                .reject(BasicRejectOptions { requeue: false })
                .await
                .map(drop)
                .map_err(Into::into),
            // Typed in-process messages always parse; nothing reaches here.
            Ack::InProcess { .. } => Ok(()),
        }
    }
}

/// A stream of received messages.
pub enum Subscription {
    /// The connection is held so it lives as long as its consumer.
    Amqp {
        consumer: Box<lapin::Consumer>,
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
            Subscription::Amqp { consumer, .. } => {
                let delivery = match consumer.next().await? {
                    Ok(d) => d,
                    Err(e) => return Some(Err(e.into())),
                };
                let ack = Ack::Amqp(delivery.acker);
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

    pub async fn subscribe(&self, prefetch: u16) -> Result<Subscription, BusError> {
        match self {
            EventBus::Amqp(bus) => bus.subscribe(prefetch).await,
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

/// Embedded mode's bus: an unbounded channel with one consumer.
pub struct InProcessBus {
    tx: mpsc::UnboundedSender<BusMessage>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<BusMessage>>>,
    depth: Arc<AtomicU64>,
}

impl InProcessBus {
    fn new() -> InProcessBus {
        let (tx, rx) = mpsc::unbounded_channel();
        InProcessBus {
            tx,
            rx: Mutex::new(Some(rx)),
            depth: Arc::new(AtomicU64::new(0)),
        }
    }

    fn publish(&self, messages: &[BusMessage]) -> Result<(), BusError> {
        for m in messages {
            self.tx.send(m.clone()).map_err(|_| BusError::Closed)?;
            self.depth.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<Subscription, BusError> {
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

    fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
}

/// RabbitMQ through lapin. One connection per process role; the publishing channel is reused
/// and dropped on any error, so the next call reconnects (the relay retries by itself).
pub struct AmqpBus {
    url: String,
    names: QueueNames,
    publisher: Mutex<Option<(Connection, Channel)>>,
}

impl AmqpBus {
    fn new(url: &str, names: QueueNames) -> AmqpBus {
        AmqpBus {
            url: url.to_string(),
            names,
            publisher: Mutex::new(None),
        }
    }

    async fn open(&self) -> Result<(Connection, Channel), BusError> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        declare_topology(&channel, &self.names).await?;
        Ok((connection, channel))
    }

    async fn publish(&self, messages: &[BusMessage]) -> Result<(), BusError> {
        let mut guard = self.publisher.lock().await;
        if guard.is_none() {
            let (connection, channel) = self.open().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            *guard = Some((connection, channel));
        }
        let result = match guard.as_ref() {
            Some((_, channel)) => publish_confirmed(channel, &self.names, messages).await,
            None => Err(BusError::Closed),
        };
        if result.is_err() {
            // Start from a fresh connection next time rather than reuse a broken channel.
            *guard = None;
        }
        result
    }

    async fn subscribe(&self, prefetch: u16) -> Result<Subscription, BusError> {
        let (connection, channel) = self.open().await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        let consumer = channel
            .basic_consume(
                self.names.queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Subscription::Amqp {
            consumer: Box::new(consumer),
            _connection: Box::new(connection),
        })
    }

    async fn depths(&self) -> Result<QueueDepths, BusError> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let passive = QueueDeclareOptions::default().passive();
        let events = channel
            .queue_declare(
                self.names.queue.as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await?
            .message_count();
        let dead = channel
            .queue_declare(
                self.names.dead_letter_queue.as_str().into(),
                passive,
                FieldTable::default(),
            )
            .await?
            .message_count();
        let _ = connection.close(200, "depth check done".into()).await;
        Ok(QueueDepths {
            events: u64::from(events),
            dead_letters: u64::from(dead),
        })
    }

    /// Removes this prefix's exchanges and queues (test teardown).
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let connection = Connection::connect(&self.url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        for q in [&self.names.queue, &self.names.dead_letter_queue] {
            channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for e in [&self.names.exchange, &self.names.dead_letter_exchange] {
            channel
                .exchange_delete(e.as_str().into(), ExchangeDeleteOptions::default())
                .await?;
        }
        let _ = connection.close(200, "bye".into()).await;
        Ok(())
    }

    /// Publishes raw bytes, as a foreign or broken producer would (tests of dead-lettering).
    pub async fn publish_raw(&self, bytes: &[u8]) -> Result<(), BusError> {
        let (connection, channel) = self.open().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let confirm = channel
            .basic_publish(
                self.names.exchange.as_str().into(),
                self.names.routing_key.as_str().into(),
                BasicPublishOptions::default(),
                bytes,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?
            .await?;
        let _ = connection.close(200, "bye".into()).await;
        if confirm.is_ack() {
            Ok(())
        } else {
            Err(BusError::NotConfirmed)
        }
    }
}

async fn publish_confirmed(
    channel: &Channel,
    names: &QueueNames,
    messages: &[BusMessage],
) -> Result<(), BusError> {
    let mut confirms = Vec::with_capacity(messages.len());
    for message in messages {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message.event_id().into());
        let confirm = channel
            .basic_publish(
                names.exchange.as_str().into(),
                names.routing_key.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.encode(),
                properties,
            )
            .await?;
        confirms.push(confirm);
    }
    for confirm in confirms {
        match confirm.await? {
            lapin::Confirmation::Ack(None) => {}
            _ => return Err(BusError::NotConfirmed),
        }
    }
    Ok(())
}

async fn declare_topology(channel: &Channel, names: &QueueNames) -> Result<(), BusError> {
    let durable_exchange = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            names.exchange.as_str().into(),
            ExchangeKind::Direct,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            names.dead_letter_exchange.as_str().into(),
            ExchangeKind::Fanout,
            durable_exchange,
            FieldTable::default(),
        )
        .await?;
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    channel
        .queue_declare(
            names.dead_letter_queue.as_str().into(),
            QueueDeclareOptions::durable(),
            quorum.clone(),
        )
        .await?;
    channel
        .queue_bind(
            names.dead_letter_queue.as_str().into(),
            names.dead_letter_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut main = quorum;
    main.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(names.dead_letter_exchange.as_str().into()),
    );
    channel
        .queue_declare(
            names.queue.as_str().into(),
            QueueDeclareOptions::durable(),
            main,
        )
        .await?;
    channel
        .queue_bind(
            names.queue.as_str().into(),
            names.exchange.as_str().into(),
            names.routing_key.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}
