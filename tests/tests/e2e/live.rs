//! The dashboard's real time: `/dashboard/stream` as a browser opens it (session cookies and
//! an `Origin`), over two gateway instances sharing the broker, in embedded mode's in-process
//! bus, and refused without a session or from another site.

use std::time::Duration;

use entity::status::UserRole;
use futures_util::StreamExt as _;
use payrail_tests::{Behavior, Receiver, TestApp};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::dashboard::{Browser, user};

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An open dashboard stream, greeted (so nothing after this point is missed).
pub(crate) struct LiveSocket {
    socket: Socket,
}

impl LiveSocket {
    /// Opens the stream as the page at `base` would; the HTTP status when it is refused.
    pub(crate) async fn open(base: &str, cookies: &str, origin: &str) -> Result<LiveSocket, u16> {
        let url = format!("{}/dashboard/stream", base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("request");
        request
            .headers_mut()
            .insert("cookie", cookies.parse().expect("cookie header"));
        request
            .headers_mut()
            .insert("origin", origin.parse().expect("origin header"));
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, _)) => {
                let mut live = LiveSocket { socket };
                let hello = live.next(Duration::from_secs(10)).await;
                assert_eq!(hello["kind"], "hello", "{hello}");
                Ok(live)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("stream: {e}"),
        }
    }

    /// The next text frame, as JSON.
    pub(crate) async fn next(&mut self, within: Duration) -> Value {
        loop {
            let frame = tokio::time::timeout(within, self.socket.next())
                .await
                .expect("a frame in time")
                .expect("the stream is open")
                .expect("a frame");
            match frame {
                Message::Text(text) => return serde_json::from_str(&text).expect("json"),
                Message::Close(close) => {
                    return json!({"kind": "closed", "close": close.map(|c| u16::from(c.code))});
                }
                _ => {}
            }
        }
    }

    /// Reads changes until one matches `wanted`; returns every change read so far.
    pub(crate) async fn until(
        &mut self,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            assert!(!left.is_zero(), "no {what} on the stream; saw {seen:?}");
            let frame = self.next(left).await;
            assert_eq!(frame["kind"], "changes", "{frame}");
            for change in frame["changes"].as_array().expect("changes") {
                seen.push(change.clone());
            }
            if seen.iter().any(&wanted) {
                return seen;
            }
        }
    }
}

fn origin(base: &str) -> &str {
    base
}

async fn signed_in(base: &str, email: &str, password: &str) -> Browser {
    let mut browser = Browser::new(base);
    assert_eq!(browser.sign_in(email, password).await.status, 303);
    browser
}

#[tokio::test]
async fn every_gateway_streams_its_merchants_changes_and_no_other_merchants() {
    let mut app = TestApp::spawn().await;
    let (merchant_a, key_a) = app.create_merchant_with_id("Shop A").await;
    let (merchant_b, key_b) = app.create_merchant_with_id("Shop B").await;
    // The first attempt fails, so the stream shows the attempt and then the retry.
    let receiver = Receiver::start(Behavior::Statuses(vec![500], 200)).await;
    let (s, _) = app
        .post_json(
            &key_a,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "enabled_events": ["payment.pending"]}),
        )
        .await;
    assert_eq!(s, 201);
    let ada = user(&app, &merchant_a, "ada@example.com", UserRole::Viewer).await;
    let bob = user(&app, &merchant_b, "bob@example.com", UserRole::Owner).await;
    // The pages are on a second gateway; the changes are made through the first one and
    // the worker: only the broker can carry them across.
    let (second, second_metrics) = app.spawn_second_gateway().await;
    let a_browser = signed_in(&second, "ada@example.com", &ada).await;
    let b_browser = signed_in(&second, "bob@example.com", &bob).await;
    let mut a = LiveSocket::open(&second, &a_browser.cookie_header(), origin(&second))
        .await
        .expect("A's stream");
    let mut b = LiveSocket::open(&second, &b_browser.cookie_header(), origin(&second))
        .await
        .expect("B's stream");
    let metrics = app.metrics_text_of(&second_metrics).await;
    assert!(metrics.contains("dashboard_stream_sockets 2"), "{metrics}");
    assert!(metrics.contains("dashboard_stream_listening 1"));

    let (s, payment) = app
        .post_json(
            &key_a,
            "/v1/payments",
            json!({"amount": 1500, "currency": "eur", "provider": "simulated"}),
        )
        .await;
    assert_eq!(s, 201);
    let payment_id = payment["id"].as_str().expect("id").to_string();
    let seen = a
        .until("payment.pending event", |c| {
            c["kind"] == "event" && c["event_type"] == "payment.pending"
        })
        .await;
    let event_id = seen
        .iter()
        .find(|c| c["event_type"] == "payment.pending")
        .and_then(|c| c["event_id"].as_str())
        .expect("event id")
        .to_string();
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM events WHERE id = '{event_id}' AND payment_id = '{payment_id}'"
        ))
        .await,
        1,
        "the change names the payment's event"
    );
    // The worker's attempts arrive too: the failed first one, then the one that succeeds. The
    // worker announces the event it fanned out from its express copy, so the first attempt
    // may come in the same message as the event, after it (and the retry too).
    let succeeded =
        |c: &serde_json::Value| c["kind"] == "delivery_attempt" && c["status"] == "succeeded";
    let attempts = if seen.iter().any(succeeded) {
        Vec::new()
    } else {
        a.until("a succeeded attempt", succeeded).await
    };
    let statuses: Vec<&str> = seen
        .iter()
        .chain(&attempts)
        .filter(|c| c["kind"] == "delivery_attempt")
        .filter_map(|c| c["status"].as_str())
        .collect();
    assert_eq!(statuses, ["pending", "succeeded"], "{attempts:?}");
    let delivery_id = seen
        .iter()
        .chain(&attempts)
        .find(|c| succeeded(c))
        .and_then(|c| c["delivery_id"].as_str())
        .expect("delivery id");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM webhook_deliveries WHERE id = '{delivery_id}' AND event_id = '{event_id}'"
        ))
        .await,
        1
    );
    // And the merchant's log entries.
    let (s, _) = app
        .post_json(
            &key_a,
            "/v1/logs",
            json!({"level": "warning", "message": "stock low", "source": "shop"}),
        )
        .await;
    assert_eq!(s, 201);
    a.until("a log entry", |c| {
        c["kind"] == "log_entry" && c["level"] == "warning"
    })
    .await;

    // B heard none of it: the first change B sees is B's own.
    let (s, theirs) = app
        .post_json(
            &key_b,
            "/v1/payments",
            json!({"amount": 99, "currency": "usd", "provider": "simulated"}),
        )
        .await;
    assert_eq!(s, 201);
    let first = b.next(Duration::from_secs(15)).await;
    let changes = first["changes"].as_array().expect("changes");
    assert!(!changes.is_empty());
    for change in changes {
        let event_id = change["event_id"].as_str().expect("an event");
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM events WHERE id = '{event_id}' AND payment_id = '{}'",
                theirs["id"].as_str().expect("id")
            ))
            .await,
            1,
            "B sees only B's payment: {change}"
        );
    }
}

#[tokio::test]
async fn the_stream_needs_a_session_and_this_sites_origin() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "eve@example.com", UserRole::Owner).await;
    assert_eq!(
        LiveSocket::open(&app.base, "", &app.base).await.err(),
        Some(401),
        "no session"
    );
    // An API key is no session, here either.
    let url = format!("{}/dashboard/stream", app.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401),
        other => panic!("an API key opened the stream: {:?}", other.map(|_| ())),
    }
    let browser = signed_in(&app.base, "eve@example.com", &password).await;
    // A page on another site cannot open it with the user's cookies.
    assert_eq!(
        LiveSocket::open(&app.base, &browser.cookie_header(), "https://evil.example")
            .await
            .err(),
        Some(403)
    );
    assert!(
        LiveSocket::open(&app.base, &browser.cookie_header(), &app.base)
            .await
            .is_ok()
    );
    // The page script is served, and the pages allow it and its socket, nothing else.
    let script = app
        .client
        .get(app.url("/dashboard/live.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/javascript")
    );
    assert!(
        script
            .text()
            .await
            .expect("body")
            .contains("/dashboard/stream")
    );
    let mut browser = browser;
    let page = browser.get("/dashboard").await;
    assert!(
        page.body
            .contains(r#"<script src="/dashboard/live.js" defer>"#)
    );
    assert!(
        page.body
            .contains(r#"data-live="event delivery_attempt log_entry""#)
    );
}

#[tokio::test]
async fn a_gateway_that_lost_the_broker_listens_again_and_tells_its_pages_to_resync() {
    let proxy = payrail_tests::TcpProxy::start("127.0.0.1:5672", true).await;
    let app = TestApp::spawn_with(payrail_tests::Options {
        gateway_amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port)),
        ..payrail_tests::Options::default()
    })
    .await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "sre@example.com", UserRole::Viewer).await;
    let browser = signed_in(&app.base, "sre@example.com", &password).await;
    let mut live = LiveSocket::open(&app.base, &browser.cookie_header(), &app.base)
        .await
        .expect("stream");
    let listening = |metrics: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("dashboard_stream_listening "))
            .map(str::to_string)
    };
    assert_eq!(listening(&app.metrics_text().await).as_deref(), Some("1"));
    // The broker is gone for a while: the gauge says the gateway is deaf (what
    // PayrailDashboardStreamDeaf watches), and the page's socket stays open meanwhile.
    proxy.set_enabled(false);
    app.eventually(Duration::from_secs(15), "the gauge says deaf", || async {
        (listening(&app.metrics_text().await).as_deref() == Some("0")).then_some(())
    })
    .await;
    assert!(
        app.metrics_text()
            .await
            .contains("dashboard_stream_sockets 1"),
        "the page's socket is still open"
    );
    proxy.set_enabled(true);
    // Back: the gateway listens again and, since changes may have gone by, says resync.
    let said = live.next(Duration::from_secs(20)).await;
    assert_eq!(said, json!({"kind": "resync"}));
    assert_eq!(listening(&app.metrics_text().await).as_deref(), Some("1"));
    let (s, payment) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 250, "currency": "eur", "provider": "simulated"}),
        )
        .await;
    assert_eq!(s, 201);
    let seen = live
        .until("the payment's event after the outage", |c| {
            c["kind"] == "event" && c["event_type"] == "payment.pending"
        })
        .await;
    let event_id = seen[seen.len() - 1]["event_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM events WHERE id = '{event_id}' AND payment_id = '{}'",
            payment["id"].as_str().expect("id")
        ))
        .await,
        1
    );
}

/// The socket's edge (issue 20): the `Origin` must be the public URL, not whatever `Host` the
/// client sends; a message of more than a few KiB ends the socket (it is never assembled);
/// a user holds at most ten sockets; a socket ends when its token expires and when its
/// session signs out.
#[tokio::test]
async fn the_stream_is_bounded_and_ends_with_its_token_and_its_session() {
    use futures_util::SinkExt as _;
    let app = TestApp::spawn_with(payrail_tests::Options {
        dashboard_access_ttl: Duration::from_secs(3),
        ..payrail_tests::Options::default()
    })
    .await;
    let (merchant, _) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "eve@example.com", UserRole::Owner).await;
    let mut browser = signed_in(&app.base, "eve@example.com", &password).await;
    let cookies = browser.cookie_header();

    // An attacker's page that also forges Host: refused, the public URL is what counts.
    let url = format!("{}/dashboard/stream", app.base.replacen("http", "ws", 1));
    let mut forged = url.clone().into_client_request().expect("request");
    forged
        .headers_mut()
        .insert("cookie", cookies.parse().expect("cookie"));
    forged
        .headers_mut()
        .insert("origin", "http://evil.example".parse().expect("origin"));
    forged
        .headers_mut()
        .insert("host", "evil.example".parse().expect("host"));
    match tokio_tungstenite::connect_async(forged).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("a forged Host opened the stream: {:?}", other.map(|_| ())),
    }

    // A 60 KiB message is refused by the socket (it would be assembled in memory).
    let mut big = LiveSocket::open(&app.base, &cookies, &app.base)
        .await
        .expect("open");
    let _ = big.socket.send(Message::text("x".repeat(60 * 1024))).await;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match big.socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the oversized message ended the socket");

    // Ten sockets per user; the eleventh is refused until one closes.
    let mut open = Vec::new();
    for _ in 0..10 {
        open.push(
            LiveSocket::open(&app.base, &cookies, &app.base)
                .await
                .expect("within the cap"),
        );
    }
    assert_eq!(
        LiveSocket::open(&app.base, &cookies, &app.base).await.err(),
        Some(429)
    );
    drop(open);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The token lives 3 s: the socket opened with it ends then, without a renewal.
    let mut short = LiveSocket::open(&app.base, &cookies, &app.base)
        .await
        .expect("open");
    let started = tokio::time::Instant::now();
    assert_eq!(
        short.next(Duration::from_secs(6)).await,
        json!({"kind": "closed", "close": 4001})
    );
    assert!(started.elapsed() <= Duration::from_secs(4));

    // Signed out, an open socket ends within its session check (5 s), and the old cookies
    // (with an access token still unexpired) open nothing.
    let page = browser.get("/dashboard").await;
    let cookies = browser.cookie_header();
    let mut after = LiveSocket::open(&app.base, &cookies, &app.base)
        .await
        .expect("open");
    let out = browser
        .post_form(
            "/dashboard/logout",
            &[("csrf_token", &Browser::token_in(&page))],
        )
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(
        after.next(Duration::from_secs(7)).await,
        json!({"kind": "closed", "close": 4001})
    );
    assert_eq!(
        LiveSocket::open(&app.base, &cookies, &app.base).await.err(),
        Some(401)
    );
}

/// The worker announces every attempt it records; notices announced together go to the
/// broker as one message (`runtime::bus::LIVE_LINGER`), and a listener hears each, in order.
#[tokio::test]
async fn notices_announced_together_travel_in_one_message_and_are_heard_one_by_one() {
    use entity::bus::{LiveChange, LiveNotice, QueueNames};
    use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    use runtime::bus::{EventBus, LiveHeard};

    let scratch = payrail_tests::ScratchDatabase::create().await;
    let names = QueueNames::new(&scratch.name);
    let bus = EventBus::amqp(payrail_tests::AMQP_URL, names.clone());
    let mut listener = bus.listen().await.expect("listen");
    // A queue of the test's own on the live exchange counts the messages.
    let connection = lapin::Connection::connect(
        payrail_tests::AMQP_URL,
        lapin::ConnectionProperties::default(),
    )
    .await
    .expect("connect");
    let channel = connection.create_channel().await.expect("channel");
    let queue = channel
        .queue_declare(
            "".into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("queue");
    channel
        .queue_bind(
            queue.name().clone(),
            names.live_exchange.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("bind");
    let mut messages = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..BasicConsumeOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let notice = |n: u32| {
        LiveNotice::new(
            entity::ids::MerchantId::from_trusted("mer_live"),
            LiveChange::DeliveryAttempt {
                delivery_id: entity::ids::DeliveryId::from_trusted(format!("dlv_{n}")),
                status: "succeeded".into(),
            },
        )
    };
    for n in 0..3 {
        bus.announce(notice(n));
    }
    for n in 0..3 {
        match tokio::time::timeout(Duration::from_secs(10), listener.next()).await {
            Ok(Some(Ok(LiveHeard::Notice(heard)))) => assert_eq!(heard, notice(n)),
            other => panic!("notice {n}: {other:?}"),
        }
    }
    let first = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("a message")
        .expect("open")
        .expect("delivery");
    assert_eq!(
        LiveNotice::decode_many(&first.data).expect("notices"),
        [notice(0), notice(1), notice(2)],
        "all three in the first message"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), messages.next())
            .await
            .is_err(),
        "and no other"
    );
    listener.close().await;
    let _ = connection.close(200, "bye".into()).await;
}
