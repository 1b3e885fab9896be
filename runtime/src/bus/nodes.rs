//! The broker's addresses: `AMQP_URL` is one URL, or a cluster's nodes separated by commas.
//! Every connection (publisher, consumer, live notices, health checks) starts at the node the
//! last one reached and moves on to the next when a node does not answer, so a dead node is
//! left behind at the next reconnect; quorum queues keep the messages on the nodes that live.
//!
//! Every connection asks for frames of [`FRAME_MAX`] unless the URL names its own
//! (`?frame_max=`): lapin keeps, per connection, a send and a receive buffer of 32 frames,
//! zero-filled, so at RabbitMQ's default of 128 KiB each connection held 8 MiB, which was most
//! of an idle worker's memory and half of a gateway's (docs/benchmarks.md). Payrail's
//! messages are a few hundred bytes; a larger one is split into frames, never refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

use super::BusError;

/// How long one node may take to accept a connection before the next is tried.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// The largest frame asked of the broker when `AMQP_URL` does not say (see the module's
/// note): 32 of them are 512 KiB per buffer.
pub const FRAME_MAX: u32 = 16_384;

#[derive(Debug)]
pub struct BrokerNodes {
    urls: Vec<String>,
    /// The node the last connection reached: the first one tried next time.
    current: AtomicUsize,
}

impl BrokerNodes {
    /// The nodes in `AMQP_URL`, in order; empty entries are ignored.
    pub fn parse(text: &str) -> BrokerNodes {
        BrokerNodes {
            urls: text
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect(),
            current: AtomicUsize::new(0),
        }
    }

    /// A connection to the first node that accepts one, from the last that did. The URLs carry
    /// credentials, so only a node's position is ever logged.
    pub async fn connect(&self) -> Result<Connection, BusError> {
        let first = self.current.load(Ordering::Relaxed);
        let mut last = BusError::Unreachable;
        for step in 0..self.urls.len() {
            let at = (first + step) % self.urls.len();
            let tried = tokio::time::timeout(CONNECT_WAIT, connect_to(&self.urls[at])).await;
            match tried {
                Ok(Ok(connection)) => {
                    self.current.store(at, Ordering::Relaxed);
                    return Ok(connection);
                }
                Ok(Err(e)) => last = BusError::Amqp(e),
                Err(_) => last = BusError::Unreachable,
            }
            if self.urls.len() > 1 {
                tracing::warn!(node = at + 1, of = self.urls.len(), error = %last, "broker node unreachable; trying the next");
            }
        }
        Err(last)
    }
}

/// Connects to one node, with frames of [`FRAME_MAX`] unless its URL names a size. A URL
/// that does not parse goes to lapin as it is, for lapin's own error.
async fn connect_to(url: &str) -> lapin::Result<Connection> {
    match url.parse::<AMQPUri>() {
        Ok(uri) => {
            Connection::connect_uri(with_frame_max(uri), ConnectionProperties::default()).await
        }
        Err(_) => Connection::connect(url, ConnectionProperties::default()).await,
    }
}

fn with_frame_max(mut uri: AMQPUri) -> AMQPUri {
    uri.query.frame_max.get_or_insert(FRAME_MAX);
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_url_or_a_clusters_nodes_separated_by_commas() {
        assert_eq!(BrokerNodes::parse("amqp://a:5672/%2f").urls.len(), 1);
        let cluster = BrokerNodes::parse("amqp://a:5681/%2f, amqp://a:5682/%2f,amqp://a:5683/%2f,");
        assert_eq!(
            cluster.urls,
            [
                "amqp://a:5681/%2f",
                "amqp://a:5682/%2f",
                "amqp://a:5683/%2f"
            ]
        );
        assert!(BrokerNodes::parse(" , ").urls.is_empty());
    }

    #[tokio::test]
    async fn a_frame_size_named_in_the_url_is_kept() {
        let parse = |url: &str| url.parse::<AMQPUri>().expect("a URL");
        let named = with_frame_max(parse(
            "amqp://guest:guest@127.0.0.1:5672/%2f?frame_max=65536",
        ));
        assert_eq!(named.query.frame_max, Some(65_536));
        let nodes = BrokerNodes::parse("amqp://guest:guest@127.0.0.1:5672/%2f?frame_max=8192");
        let connection = nodes.connect().await.expect("the broker");
        assert_eq!(connection.configuration().frame_max(), 8192);
        let _ = connection.close(200, "bye".into()).await;
    }

    #[tokio::test]
    async fn a_dead_node_is_passed_over_and_the_live_one_is_tried_first_next_time() {
        // Nothing listens on the first port; the second is this machine's broker.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a port");
        let nodes = BrokerNodes::parse(&format!(
            "amqp://guest:guest@127.0.0.1:{dead}/%2f,amqp://guest:guest@127.0.0.1:5672/%2f"
        ));
        let connection = nodes.connect().await.expect("the live node");
        assert_eq!(nodes.current.load(Ordering::Relaxed), 1);
        assert_eq!(
            connection.configuration().frame_max(),
            FRAME_MAX,
            "the broker's 128 KiB default would cost 8 MiB of buffers per connection"
        );
        let _ = connection.close(200, "bye".into()).await;
        let again = nodes.connect().await.expect("the live node again");
        let _ = again.close(200, "bye".into()).await;
        assert!(
            BrokerNodes::parse(&format!("amqp://guest:guest@127.0.0.1:{dead}/%2f"))
                .connect()
                .await
                .is_err()
        );
    }
}
