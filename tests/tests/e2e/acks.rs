//! A consumer's acknowledgements reach the broker together, after a linger, and never for a
//! message still being worked on (`runtime::bus::acks`). What the broker delivers again once
//! a consumer's connection is gone shows what it was told.

use std::time::Duration;

use entity::bus::{BusMessage, QueueNames};
use entity::ids::{EventId, MerchantId};
use payrail_tests::{AMQP_URL, ScratchDatabase, TcpProxy};
use runtime::bus::{ACK_LINGER, Ack, EventBus, Received, Subscription};

const WAIT: Duration = Duration::from_secs(10);

fn message(n: usize) -> BusMessage {
    BusMessage::V1 {
        event_id: EventId::from_trusted(format!("evt_ack_{n}")),
        merchant_id: MerchantId::from_trusted("mer_acks"),
        event_type: "payment.pending".into(),
        request_id: None,
        traceparent: None,
    }
}

/// A bus of its own (the scratch database's name is its prefix, and its queues go with it)
/// with `n` messages waiting, and a subscription to it through a proxy that can cut it as a
/// dying process would: without a word to the broker.
async fn subscribed(
    n: usize,
    linger: Duration,
) -> (ScratchDatabase, EventBus, TcpProxy, Subscription) {
    let scratch = ScratchDatabase::create().await;
    let bus = EventBus::amqp(AMQP_URL, QueueNames::new(&scratch.name));
    let messages: Vec<BusMessage> = (0..n).map(message).collect();
    bus.publish(&messages).await.expect("publish");
    let proxy = TcpProxy::start("127.0.0.1:5672", true).await;
    let through = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let sub = EventBus::amqp(&through, QueueNames::new(&scratch.name))
        .subscribe_lingering(50, linger)
        .await
        .expect("subscribe");
    (scratch, bus, proxy, sub)
}

async fn take(sub: &mut Subscription) -> (String, Ack) {
    match tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message arrives")
        .expect("stream open")
        .expect("message")
    {
        Received::Message(m, ack) => (m.event_id().to_string(), ack),
        Received::Unparseable(_) => panic!("the test's messages parse"),
    }
}

/// Cuts the subscription's connection, then lists what a new consumer is given: what the
/// broker had not been told was done.
async fn redelivered_after_cut(bus: &EventBus, proxy: &TcpProxy) -> Vec<String> {
    proxy.set_enabled(false);
    let mut sub = bus.subscribe(50).await.expect("subscribe");
    let mut ids = Vec::new();
    while let Ok(Some(Ok(Received::Message(m, ack)))) =
        tokio::time::timeout(Duration::from_secs(1), sub.next()).await
    {
        ids.push(m.event_id().to_string());
        ack.ack().await.expect("ack");
    }
    sub.close().await;
    ids.sort();
    ids
}

#[tokio::test]
async fn a_message_still_in_work_holds_back_the_acks_after_it() {
    let (_scratch, bus, proxy, mut sub) = subscribed(3, ACK_LINGER).await;
    let (first, _first_ack) = take(&mut sub).await;
    let (_, second_ack) = take(&mut sub).await;
    let (_, third_ack) = take(&mut sub).await;
    assert_eq!(first, "evt_ack_0");
    second_ack.ack().await.expect("ack");
    third_ack.ack().await.expect("ack");
    tokio::time::sleep(ACK_LINGER * 5).await;
    // An acknowledgement of the third with `multiple` would have taken the first with it.
    assert_eq!(
        redelivered_after_cut(&bus, &proxy).await,
        ["evt_ack_0", "evt_ack_1", "evt_ack_2"],
        "nothing acknowledged past a message still in work"
    );
}

#[tokio::test]
async fn acks_settled_within_the_linger_are_sent_once_the_earliest_is_done() {
    let (_scratch, bus, proxy, mut sub) = subscribed(3, ACK_LINGER).await;
    let (_, first_ack) = take(&mut sub).await;
    let (_, second_ack) = take(&mut sub).await;
    let (_, third_ack) = take(&mut sub).await;
    third_ack.ack().await.expect("ack");
    second_ack.ack().await.expect("ack");
    first_ack.ack().await.expect("ack");
    tokio::time::sleep(ACK_LINGER * 5).await;
    let seen = redelivered_after_cut(&bus, &proxy).await;
    assert!(seen.is_empty(), "all three acknowledged: {seen:?}");
}

#[tokio::test]
async fn an_ack_waits_for_its_linger() {
    let (_scratch, bus, proxy, mut sub) = subscribed(1, Duration::from_secs(3)).await;
    let (_, ack) = take(&mut sub).await;
    ack.ack().await.expect("ack");
    // Time enough for an acknowledgement sent at once to reach the broker.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        redelivered_after_cut(&bus, &proxy).await,
        ["evt_ack_0"],
        "cut within the linger: not acknowledged yet"
    );
}
