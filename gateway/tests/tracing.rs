//! One payment, one trace: the `gateway` binary (real mode: PostgreSQL, RabbitMQ, Redis) and a
//! worker started as its binary starts it (`telemetry::init`, `WorkerApplication`), both
//! exporting to a local OTLP/HTTP receiver. The trace must run from the API call through the
//! database transaction, the outbox publish, the worker's fan-out and the webhook attempt to
//! the merchant's server, which receives its `traceparent`.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::listener::{Acceptor as _, Listener as _, TcpListener};
use poem::web::Data;
use poem::{Body, EndpointExt as _, Request, Route, Server, handler, post};
use serde_json::{Value, json};

type Seen = Arc<Mutex<Vec<Value>>>;

/// The OTLP/HTTP JSON receiver: every export request's body.
#[handler]
async fn traces(body: Body, seen: Data<&Seen>) -> poem::Response {
    let bytes = body.into_vec().await.unwrap_or_default();
    if let Ok(v) = serde_json::from_slice(&bytes) {
        seen.lock().expect("lock").push(v);
    }
    poem::Response::builder()
        .content_type("application/json")
        .body("{}")
}

/// The merchant's server: every webhook's `traceparent` header.
#[handler]
async fn hook(req: &Request, seen: Data<&Seen>) -> &'static str {
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    seen.lock()
        .expect("lock")
        .push(json!({"traceparent": traceparent, "event": req.headers().get("x-payrail-event").and_then(|v| v.to_str().ok())}));
    "ok"
}

/// Moneroo's `POST /v1/payments/initialize`, answered as Moneroo does; keeps the
/// `traceparent` each call carried.
#[handler]
async fn moneroo_initialize(req: &Request, seen: Data<&Seen>) -> poem::Response {
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    seen.lock()
        .expect("lock")
        .push(json!({"traceparent": traceparent}));
    poem::Response::builder()
        .status(poem::http::StatusCode::CREATED)
        .content_type("application/json")
        .body(
            json!({"message": "Transaction initialized successfully",
                   "data": {"id": "mnr_trace_1", "checkout_url": "https://checkout.moneroo.io/mnr_trace_1"}})
            .to_string(),
        )
}

async fn serve(route: Route, seen: Seen) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind");
    let port = acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("tcp")
        .port();
    tokio::spawn(Server::new_with_acceptor(acceptor).run(route.data(seen)));
    format!("http://127.0.0.1:{port}")
}

/// Every exported span: (service, name, trace id, span id, parent span id).
fn spans(exports: &[Value]) -> Vec<(String, String, String, String, String)> {
    let mut out = Vec::new();
    for export in exports {
        for rs in export["resourceSpans"].as_array().into_iter().flatten() {
            let service = rs["resource"]["attributes"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["key"] == "service.name")
                .and_then(|a| a["value"]["stringValue"].as_str())
                .unwrap_or_default()
                .to_string();
            for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
                for s in ss["spans"].as_array().into_iter().flatten() {
                    let text = |k: &str| s[k].as_str().unwrap_or_default().to_string();
                    out.push((
                        service.clone(),
                        text("name"),
                        text("traceId").to_lowercase(),
                        text("spanId").to_lowercase(),
                        text("parentSpanId").to_lowercase(),
                    ));
                }
            }
        }
    }
    out
}

struct Gateway {
    child: Child,
    base: String,
    /// Everything it wrote so far: its banner (stderr) and its JSON logs (stdout).
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the `gateway` binary with `env` and waits until it says where it listens.
fn start_gateway(env: &HashMap<&str, String>) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    let stream = child.stderr.take().expect("stderr");
    let stderr: Arc<Mutex<Vec<String>>> = Arc::default();
    // The JSON logs go to stdout: kept with the rest.
    let logs = child.stdout.take().expect("stdout");
    let into = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(logs).lines().map_while(Result::ok) {
            into.lock().expect("lock").push(line);
        }
    });
    let lines = stderr.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if let Some(at) = line.find("Listening on ") {
                let url = line[at + 13..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let _ = tx.send(url);
            }
            lines.lock().expect("lock").push(line);
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the gateway says where it listens");
    Gateway {
        child,
        base,
        stderr,
    }
}

/// Waits until the exported spans of `trace` include every `(service, name)` wanted.
async fn spans_of(
    exports: &Seen,
    trace: &str,
    wanted: &[(&str, &str)],
) -> Vec<(String, String, String, String, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let all = spans(&exports.lock().expect("lock"));
        let ours: Vec<_> = all.into_iter().filter(|s| s.2 == trace).collect();
        let names: HashSet<(String, String)> =
            ours.iter().map(|s| (s.0.clone(), s.1.clone())).collect();
        if wanted
            .iter()
            .all(|(svc, n)| names.contains(&(svc.to_string(), n.to_string())))
        {
            return ours;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spans of the trace so far: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first webhook's `traceparent`, once one arrived.
async fn first_hook(hooks: &Seen) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(h) = hooks.lock().expect("lock").first().cloned() {
            return h["traceparent"].as_str().expect("header").to_string();
        }
        assert!(tokio::time::Instant::now() < deadline, "no webhook arrived");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A caller's own trace: Payrail's spans must join it.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Creates an endpoint and a payment (sent with the caller's `traceparent`).
async fn pay(base: &str, key: &str, merchant_server: &str) {
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/webhook_endpoints"))
        .bearer_auth(key)
        .json(&json!({"url": format!("{merchant_server}/hook"), "enabled_events": ["payment.pending"]}))
        .send()
        .await
        .expect("endpoint");
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{base}/v1/payments"))
        .bearer_auth(key)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({"amount": 2500, "currency": "eur", "provider": "simulated"}))
        .send()
        .await
        .expect("payment");
    assert_eq!(r.status(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payment_is_one_trace_from_the_api_call_to_the_merchants_server() {
    let exports: Seen = Arc::default();
    let hooks: Seen = Arc::default();
    let collector = serve(Route::new().at("/v1/traces", post(traces)), exports.clone()).await;
    let merchant_server = serve(Route::new().at("/hook", post(hook)), hooks.clone()).await;
    let provider_calls: Seen = Arc::default();
    let moneroo = serve(
        Route::new().at("/v1/payments/initialize", post(moneroo_initialize)),
        provider_calls.clone(),
    )
    .await;

    // Dropped (database, queues, cache keys) when the test ends, passed or failed.
    let scratch = payrail_tests::ScratchDatabase::create().await;
    let (name, database_url) = (scratch.name.clone(), scratch.url.clone());
    let db = runtime::db::connect(&database_url).await.expect("connect");
    runtime::db::migrate(&db).await.expect("migrate");
    let env: HashMap<&str, String> = HashMap::from([
        ("DATABASE_URL", database_url.clone()),
        ("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        ("REDIS_URL", "redis://127.0.0.1:6379".into()),
        ("PAYRAIL_AMQP_PREFIX", name.clone()),
        ("PAYRAIL_REDIS_PREFIX", name.clone()),
        (
            "PAYRAIL_ADMIN_TOKEN",
            "trace-admin-token-8e41c2b79d05fa63".into(),
        ),
        (
            "PAYRAIL_DASHBOARD_SECRET",
            "trace-dashboard-secret-of-some-length".into(),
        ),
        ("PAYRAIL_BIND", "127.0.0.1:0".into()),
        ("PAYRAIL_METRICS_BIND", "127.0.0.1:0".into()),
        ("PAYRAIL_WORKER_BIND", "127.0.0.1:0".into()),
        ("PAYRAIL_WEBHOOK_TARGETS", "loopback".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.clone()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        ("MONEROO_SECRET_KEY", "test_moneroo_trace".into()),
        ("MONEROO_WEBHOOK_SECRET", "moneroo_trace_secret".into()),
        ("MONEROO_API_BASE", moneroo),
    ]);

    // The gateway: its binary, as deployed.
    let mut gateway_env = env.clone();
    gateway_env.insert("OTEL_SERVICE_NAME", "payrail-gateway".into());
    // Quiet logs, as production often runs: RUST_LOG chooses log lines, not spans.
    gateway_env.insert("RUST_LOG", "warn".into());
    let gateway = start_gateway(&gateway_env);
    let base = gateway.base.clone();

    // The worker, started as its binary starts it, exporting as `payrail-worker`.
    // SAFETY: set before any thread of this test reads the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &collector);
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
        std::env::set_var("OTEL_SERVICE_NAME", "payrail-worker");
    }
    let telemetry = runtime::telemetry::init("payrail-worker");
    assert!(telemetry.tracing(), "the endpoint turns tracing on");
    let settings = worker::Settings::read(&runtime::settings::Env::from_lookup(|k| {
        env.get(k).cloned()
    }))
    .expect("worker settings");
    let worker = worker::app::WorkerApplication::build(settings)
        .await
        .expect("worker");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let merchant: Value = client
        .post(format!("{base}/v1/admin/merchants"))
        .bearer_auth("trace-admin-token-8e41c2b79d05fa63")
        .json(&json!({"name": "Traced shop"}))
        .send()
        .await
        .expect("merchant")
        .json()
        .await
        .expect("json");
    let key = merchant["api_key"].as_str().expect("key").to_string();
    pay(&base, &key, &merchant_server).await;

    // The merchant's server received the webhook with the trace's context.
    let traceparent = first_hook(&hooks).await;
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    assert_eq!(
        parts[1], CALLER_TRACE,
        "the webhook carries the caller's trace"
    );

    // Both processes exported their spans of that trace, linked parent to child.
    let wanted = [
        ("payrail-gateway", "POST create_payment"),
        ("payrail-gateway", "db.transaction"),
        ("payrail-gateway", "outbox.publish"),
        ("payrail-worker", "webhook.fanout"),
        ("payrail-worker", "webhook.attempt"),
    ];
    let found = spans_of(&exports, CALLER_TRACE, &wanted).await;
    let by_id: HashMap<&str, &(String, String, String, String, String)> =
        found.iter().map(|s| (s.3.as_str(), s)).collect();
    let span = |name: &str| {
        found
            .iter()
            .find(|s| s.1 == name)
            .unwrap_or_else(|| panic!("{name}"))
    };
    let parent_name = |name: &str| {
        by_id
            .get(span(name).4.as_str())
            .map(|p| p.1.clone())
            .unwrap_or_else(|| format!("(parent {} not exported)", span(name).4))
    };
    assert_eq!(
        span("POST create_payment").4,
        CALLER_SPAN,
        "the request is a child of the caller's span"
    );
    assert_eq!(parent_name("db.transaction"), "POST create_payment");
    // The event was written inside the transaction: what follows descends from it.
    assert_eq!(parent_name("outbox.publish"), "db.transaction");
    assert_eq!(parent_name("webhook.fanout"), "db.transaction");
    assert_eq!(parent_name("webhook.attempt"), "db.transaction");
    // The merchant received the attempt's own context.
    assert_eq!(
        parts[2],
        span("webhook.attempt").3,
        "the header names the attempt's span"
    );

    // A provider call is a span of the request's trace, and the provider receives its context.
    let other_trace = "0af7651916cd43dd8448eb211c80319c";
    let r = client
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&key)
        .header(
            "traceparent",
            format!("00-{other_trace}-b7ad6b7169203331-01"),
        )
        .json(
            &json!({"amount": 5000, "currency": "xof", "provider": "moneroo",
                      "return_url": "https://shop.example/done",
                      "customer": {"email": "ada@example.com", "name": "Ada Lovelace"}}),
        )
        .send()
        .await
        .expect("moneroo payment");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let sent = provider_calls.lock().expect("lock")[0]["traceparent"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(sent.split('-').nth(1), Some(other_trace), "{sent:?}");
    let found = spans_of(
        &exports,
        other_trace,
        &[
            ("payrail-gateway", "provider.call"),
            ("payrail-gateway", "POST create_payment"),
        ],
    )
    .await;
    let call = found.iter().find(|s| s.1 == "provider.call").expect("span");
    assert_eq!(
        sent.split('-').nth(2),
        Some(call.3.as_str()),
        "the provider got the call's span"
    );
    let parent = found.iter().find(|s| s.3 == call.4).map(|s| s.1.as_str());
    assert!(
        matches!(parent, Some("POST create_payment" | "db.transaction")),
        "{parent:?}"
    );

    // An anonymous caller (no credentials: here the sign-in page) may not pick our trace id
    // nor turn our recording off: its request is a trace of our own, linked to theirs.
    let anonymous_trace = "5ce0e9a56015fec5aadfa328ae398115";
    let r = client
        .get(format!("{base}/dashboard/login"))
        .header(
            "traceparent",
            format!("00-{anonymous_trace}-ab1c2d3e4f5a6b7c-00"),
        )
        .send()
        .await
        .expect("sign-in page");
    assert_eq!(r.status(), 200);
    let (name, trace) = linked_to(&exports, anonymous_trace).await;
    assert!(name.starts_with("GET "), "{name}");
    assert_ne!(trace, anonymous_trace);
    assert!(
        spans(&exports.lock().expect("lock"))
            .iter()
            .all(|s| s.2 != anonymous_trace),
        "no span joined the anonymous caller's trace"
    );

    let _ = stop.send(());
    let _ = worker.await;
    telemetry.shutdown();
    drop(gateway);
}

/// Waits for the exported span linked to `trace`: its (name, own trace id).
async fn linked_to(exports: &Seen, trace: &str) -> (String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let found =
            exports
                .lock()
                .expect("lock")
                .iter()
                .flat_map(|e| e["resourceSpans"].as_array().cloned().unwrap_or_default())
                .flat_map(|rs| rs["scopeSpans"].as_array().cloned().unwrap_or_default())
                .flat_map(|ss| ss["spans"].as_array().cloned().unwrap_or_default())
                .find(|s| {
                    s["links"].as_array().into_iter().flatten().any(|l| {
                        l["traceId"].as_str().map(str::to_lowercase).as_deref() == Some(trace)
                    })
                });
        if let Some(s) = found {
            return (
                s["name"].as_str().unwrap_or_default().to_string(),
                s["traceId"].as_str().unwrap_or_default().to_lowercase(),
            );
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no span linked to {trace}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Embedded mode (the README's first command): one process, the worker inside, the
/// in-process bus; the trace still runs from the call to the merchant's server, and the
/// gateway's log lines name it.
#[tokio::test]
async fn embedded_mode_traces_a_payment_to_the_merchants_server_too() {
    let exports: Seen = Arc::default();
    let hooks: Seen = Arc::default();
    let collector = serve(Route::new().at("/v1/traces", post(traces)), exports.clone()).await;
    let merchant_server = serve(Route::new().at("/hook", post(hook)), hooks.clone()).await;
    let path = std::env::temp_dir().join(format!(
        "payrail_trace_{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let env: HashMap<&str, String> = HashMap::from([
        (
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", path.display()),
        ),
        ("PAYRAIL_BIND", "127.0.0.1:0".into()),
        ("PAYRAIL_METRICS_BIND", "127.0.0.1:0".into()),
        ("PAYRAIL_WEBHOOK_TARGETS", "loopback".into()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".into()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".into()),
        // The gateway's own lines off: its spans are still traced, and the worker's line
        // inside the trace still names it.
        ("RUST_LOG", "warn,worker=info".into()),
    ]);
    let gateway = start_gateway(&env);
    // The sandbox key is printed once, on the line after its announcement.
    let key = {
        let lines = gateway.stderr.lock().expect("lock");
        lines
            .iter()
            .map(|l| l.trim())
            .find(|l| l.starts_with("sk_test_"))
            .expect("the sandbox API key is printed")
            .to_string()
    };
    pay(&gateway.base, &key, &merchant_server).await;
    let traceparent = first_hook(&hooks).await;
    assert_eq!(traceparent.split('-').nth(1), Some(CALLER_TRACE));
    let found = spans_of(
        &exports,
        CALLER_TRACE,
        &[
            ("payrail-gateway", "POST create_payment"),
            ("payrail-gateway", "webhook.fanout"),
            ("payrail-gateway", "webhook.attempt"),
        ],
    )
    .await;
    assert!(
        found.iter().all(|s| s.0 == "payrail-gateway"),
        "one process"
    );
    // Its JSON log lines inside the trace carry the trace id.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let logged = gateway.stderr.lock().expect("lock").iter().any(|l| {
            l.contains("webhook attempt") && l.contains(&format!(r#""trace_id":"{CALLER_TRACE}""#))
        });
        if logged {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no log line names the trace"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(gateway);
    payrail_tests::remove_sqlite(&path);
}
