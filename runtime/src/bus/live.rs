//! Live notices for the dashboards on RabbitMQ: the publisher that gathers them into one
//! message per [`LIVE_LINGER`], and each gateway's listener, which hears them and the events.
//!
//! Gathered because the worker announces every attempt it records: one message per attempt
//! was one more publish per event for the broker to route (usually to no queue at all, as
//! gateways bind only while pages are open). A page sees a change at most that much later.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use entity::bus::{BusMessage, LiveNotice, QueueNames};
use futures_util::StreamExt as _;
use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::mpsc;

use super::amqp::declare_topology;
use super::nodes::BrokerNodes;
use super::{BusError, LiveHeard};

/// How long the first notice waits for others to go in the same message.
pub const LIVE_LINGER: Duration = Duration::from_millis(50);

/// Most notices in one message.
const LIVE_BATCH: usize = 500;

/// One process's stream of live notices from the broker.
pub struct LiveListener {
    consumer: Box<lapin::Consumer>,
    connection: Box<Connection>,
    events_exchange: String,
    /// The rest of a message that carried several notices.
    heard: VecDeque<LiveNotice>,
}

impl LiveListener {
    pub(super) fn new(
        consumer: lapin::Consumer,
        connection: Connection,
        events_exchange: String,
    ) -> LiveListener {
        LiveListener {
            consumer: Box::new(consumer),
            connection: Box::new(connection),
            events_exchange,
            heard: VecDeque::new(),
        }
    }

    /// The next notice; `None` or an error when the connection is gone (listen again then).
    pub(super) async fn next(&mut self) -> Option<Result<LiveHeard, BusError>> {
        loop {
            if let Some(notice) = self.heard.pop_front() {
                return Some(Ok(LiveHeard::Notice(notice)));
            }
            let delivery = match self.consumer.next().await? {
                Ok(d) => d,
                Err(e) => return Some(Err(e.into())),
            };
            // Events are decoded as events; anything else on the live exchange as notices.
            let heard = if delivery.exchange.as_str() == self.events_exchange {
                BusMessage::decode(&delivery.data).map(|m| vec![LiveNotice::from(&m)])
            } else {
                LiveNotice::decode_many(&delivery.data)
            };
            match heard {
                Ok(notices) => self.heard.extend(notices),
                // The fan-out queue dead-letters what does not parse; a hint is only skipped.
                Err(e) => tracing::warn!(error = %e, "skipped a live notice that does not parse"),
            }
        }
    }

    pub(super) async fn close(self) {
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// Publishes queued live notices until the bus is dropped, those of each [`LIVE_LINGER`] in
/// one message, reconnecting after an error.
pub(super) async fn announce_until_dropped(
    nodes: Arc<BrokerNodes>,
    names: QueueNames,
    mut notices: mpsc::Receiver<LiveNotice>,
) {
    let mut open: Option<(Connection, Channel)> = None;
    while let Some(first) = notices.recv().await {
        let mut batch = vec![first];
        let until = tokio::time::Instant::now() + LIVE_LINGER;
        while batch.len() < LIVE_BATCH {
            match tokio::time::timeout_at(until, notices.recv()).await {
                Ok(Some(notice)) => batch.push(notice),
                Ok(None) | Err(_) => break,
            }
        }
        if open.is_none() {
            match nodes.connect().await {
                Ok(connection) => match connection.create_channel().await {
                    Ok(channel) => match declare_topology(&channel, &names).await {
                        Ok(()) => open = Some((connection, channel)),
                        Err(e) => tracing::warn!(error = %e, "live notices: cannot declare"),
                    },
                    Err(e) => tracing::warn!(error = %e, "live notices: cannot open a channel"),
                },
                Err(e) => tracing::warn!(error = %e, "live notices: cannot connect"),
            }
        }
        let Some((_, channel)) = open.as_ref() else {
            tracing::warn!(
                notices = batch.len(),
                "live notices not sent: the broker is unreachable"
            );
            continue;
        };
        let sent = channel
            .basic_publish(
                names.live_exchange.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                &LiveNotice::encode_many(&batch),
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, notices = batch.len(), "live notices not sent; reconnecting");
            open = None;
        }
    }
    if let Some((connection, _)) = open {
        let _ = connection.close(200, "bye".into()).await;
    }
}
