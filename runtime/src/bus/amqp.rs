//! RabbitMQ through lapin: topology, publisher confirms, consumers. With its two neighbours
//! (`acks`, a consumer's acknowledgements; `live`, the dashboards' notices), the only code
//! that touches AMQP bytes.

use std::sync::{Arc, OnceLock};

use entity::bus::{BusMessage, LiveNotice, QueueNames};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use tokio::sync::{Mutex, mpsc};

use super::live::LiveListener;
use super::nodes::BrokerNodes;
use super::{BusError, QueueDepths, Subscription};

/// RabbitMQ through lapin. One connection per process role; the publishing channel is reused
/// and dropped on any error, so the next call reconnects (the relay retries by itself).
pub struct AmqpBus {
    nodes: Arc<BrokerNodes>,
    names: QueueNames,
    /// The publishing channel, held only while a publish sends (not while it awaits its
    /// confirms, so that concurrent publishes overlap), with the count of channels opened
    /// so far as its name: a failed publish drops only the channel it used.
    publisher: Mutex<Option<(Connection, Channel, u64)>>,
    publishers_opened: std::sync::atomic::AtomicU64,
    /// Kept for health checks and depth gauges; see `inspect`.
    inspector: Mutex<Option<(Connection, Channel)>>,
    /// Hands live notices to their publishing task, started at the first notice.
    announcer: OnceLock<mpsc::Sender<LiveNotice>>,
}

impl AmqpBus {
    pub(super) fn new(url: &str, names: QueueNames) -> AmqpBus {
        AmqpBus {
            nodes: Arc::new(BrokerNodes::parse(url)),
            names,
            publisher: Mutex::new(None),
            publishers_opened: std::sync::atomic::AtomicU64::new(0),
            inspector: Mutex::new(None),
            announcer: OnceLock::new(),
        }
    }

    async fn open(&self) -> Result<(Connection, Channel), BusError> {
        let connection = self.nodes.connect().await?;
        let channel = connection.create_channel().await?;
        declare_topology(&channel, &self.names).await?;
        Ok((connection, channel))
    }

    pub(super) async fn publish(&self, messages: &[BusMessage]) -> Result<(), BusError> {
        let (confirms, used) = {
            let mut guard = self.publisher.lock().await;
            if guard.is_none() {
                let (connection, channel) = self.open().await?;
                channel
                    .confirm_select(ConfirmSelectOptions::default())
                    .await?;
                let opened = self
                    .publishers_opened
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                *guard = Some((connection, channel, opened));
            }
            let sent = match guard.as_ref() {
                Some((_, channel, opened)) => send_confirmable(channel, &self.names, messages)
                    .await
                    .map(|confirms| (confirms, *opened)),
                None => Err(BusError::Closed),
            };
            match sent {
                Ok(sent) => sent,
                Err(e) => {
                    // Start from a fresh connection next time rather than reuse a broken one.
                    *guard = None;
                    return Err(e);
                }
            }
        };
        let result = confirmed(confirms).await;
        if result.is_err() {
            let mut guard = self.publisher.lock().await;
            if guard.as_ref().is_some_and(|(_, _, opened)| *opened == used) {
                *guard = None;
            }
        }
        result
    }

    pub(super) async fn subscribe(
        &self,
        prefetch: u16,
        ack_linger: std::time::Duration,
    ) -> Result<Subscription, BusError> {
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
            settles: super::acks::Settles::new(channel, ack_linger),
            _connection: Box::new(connection),
        })
    }

    /// Connects (once) and declares the topology, so publishers and consumers may start in
    /// any order on a fresh broker.
    pub(super) async fn declare(&self) -> Result<(), BusError> {
        self.inspect(|_| async { Ok(()) }).await
    }

    /// Runs `check` on the inspector channel: one connection kept for health checks and
    /// depth gauges (a probe must not open a connection each time), reopened after an error.
    async fn inspect<T, F, Fut>(&self, check: F) -> Result<T, BusError>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, BusError>>,
    {
        let mut guard = self.inspector.lock().await;
        let channel = match guard.as_ref() {
            Some((connection, channel)) if connection.status().connected() => channel.clone(),
            _ => {
                let (connection, channel) = self.open().await?;
                *guard = Some((connection, channel.clone()));
                channel
            }
        };
        let result = check(channel).await;
        if result.is_err() {
            *guard = None;
        }
        result
    }

    pub(super) async fn depths(&self) -> Result<QueueDepths, BusError> {
        let names = self.names.clone();
        self.inspect(|channel| async move { queue_depths(&channel, &names).await })
            .await
    }

    pub(super) async fn redrive(&self) -> Result<u64, BusError> {
        let (connection, channel) = self.open().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let waiting = channel
            .queue_declare(
                self.names.dead_letter_queue.as_str().into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await?
            .message_count();
        let mut moved = 0u64;
        while moved < u64::from(waiting) {
            let Some(message) = channel
                .basic_get(
                    self.names.dead_letter_queue.as_str().into(),
                    BasicGetOptions::default(),
                )
                .await?
            else {
                break;
            };
            let delivery = message.delivery;
            // The original properties go with it, less the broker's death record.
            let mut properties = delivery.properties.clone();
            if let Some(headers) = properties.headers().clone() {
                let mut kept = FieldTable::default();
                for (k, v) in headers.inner() {
                    if k.as_str() != "x-death" && !k.as_str().starts_with("x-first-death") {
                        kept.insert(k.clone(), v.clone());
                    }
                }
                properties = properties.with_headers(kept);
            }
            let confirm = channel
                .basic_publish(
                    self.names.exchange.as_str().into(),
                    self.names.routing_key.as_str().into(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    &delivery.data,
                    properties,
                )
                .await?
                .await?;
            if !matches!(confirm, lapin::Confirmation::Ack(None)) {
                let _ = delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await;
                return Err(BusError::NotConfirmed);
            }
            delivery.acker.ack(BasicAckOptions::default()).await?;
            moved += 1;
        }
        let _ = connection.close(200, "bye".into()).await;
        Ok(moved)
    }

    /// Queues a live notice for the dashboards without waiting: it is a hint, published
    /// unconfirmed and not persisted by a task of its own, so a slow broker never slows the
    /// work it describes. When the queue is full the notice is counted in a warning and
    /// dropped; open pages resynchronise when they reconnect.
    pub(super) fn announce(&self, notice: LiveNotice) {
        let sender = self.announcer.get_or_init(|| {
            let (tx, rx) = mpsc::channel(super::LIVE_BACKLOG);
            tokio::spawn(super::live::announce_until_dropped(
                self.nodes.clone(),
                self.names.clone(),
                rx,
            ));
            tx
        });
        if let Err(mpsc::error::TrySendError::Full(_)) = sender.try_send(notice) {
            tracing::warn!("live notice queue is full; a dashboard update was not sent");
        }
    }

    /// A queue of this process's own (exclusive, deleted with its connection, bounded) bound
    /// to the events exchange and the live exchange: every gateway hears every change.
    pub(super) async fn listen(&self) -> Result<LiveListener, BusError> {
        let (connection, channel) = self.open().await?;
        let mut arguments = FieldTable::default();
        // A stalled listener must not grow the broker's memory: keep the newest only.
        arguments.insert(
            "x-max-length".into(),
            AMQPValue::LongInt(super::LIVE_BACKLOG as i32),
        );
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                arguments,
            )
            .await?;
        for (exchange, key) in [
            (&self.names.exchange, self.names.routing_key.as_str()),
            (&self.names.live_exchange, ""),
        ] {
            channel
                .queue_bind(
                    queue.name().clone(),
                    exchange.as_str().into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(LiveListener::new(
            consumer,
            connection,
            self.names.exchange.clone(),
        ))
    }

    /// Removes this prefix's exchanges and queues (test teardown).
    pub async fn delete_topology(&self) -> Result<(), BusError> {
        let connection = self.nodes.connect().await?;
        let channel = connection.create_channel().await?;
        for q in [&self.names.queue, &self.names.dead_letter_queue] {
            channel
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await?;
        }
        for e in [
            &self.names.exchange,
            &self.names.dead_letter_exchange,
            &self.names.live_exchange,
        ] {
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

/// Sends every message on the confirming channel; their confirms are awaited apart
/// ([`confirmed`]), after the channel is free for the next publish.
async fn send_confirmable(
    channel: &Channel,
    names: &QueueNames,
    messages: &[BusMessage],
) -> Result<Vec<lapin::PublisherConfirm>, BusError> {
    let mut confirms = Vec::with_capacity(messages.len());
    for message in messages {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(message.event_id().as_str().into());
        // Also a header, where AMQP tools and other consumers look for trace context.
        if let Some(traceparent) = message.traceparent() {
            let mut headers = FieldTable::default();
            headers.insert(
                crate::trace_context::TRACEPARENT.into(),
                AMQPValue::LongString(traceparent.into()),
            );
            properties = properties.with_headers(headers);
        }
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
    Ok(confirms)
}

/// Waits for the broker to confirm every message sent.
async fn confirmed(confirms: Vec<lapin::PublisherConfirm>) -> Result<(), BusError> {
    for confirm in confirms {
        match confirm.await? {
            lapin::Confirmation::Ack(None) => {}
            _ => return Err(BusError::NotConfirmed),
        }
    }
    Ok(())
}

pub(super) async fn declare_topology(
    channel: &Channel,
    names: &QueueNames,
) -> Result<(), BusError> {
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
    for fanout in [&names.dead_letter_exchange, &names.live_exchange] {
        channel
            .exchange_declare(
                fanout.as_str().into(),
                ExchangeKind::Fanout,
                durable_exchange,
                FieldTable::default(),
            )
            .await?;
    }
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

async fn queue_depths(channel: &Channel, names: &QueueNames) -> Result<QueueDepths, BusError> {
    let passive = QueueDeclareOptions::default().passive();
    let events = channel
        .queue_declare(names.queue.as_str().into(), passive, FieldTable::default())
        .await?
        .message_count();
    let dead = channel
        .queue_declare(
            names.dead_letter_queue.as_str().into(),
            passive,
            FieldTable::default(),
        )
        .await?
        .message_count();
    Ok(QueueDepths {
        events: u64::from(events),
        dead_letters: u64::from(dead),
    })
}
