//! Operability: what an SRE relies on. Prometheus accepts our metrics, config and alert
//! rules (and the rules' own unit tests pass); the dashboard and alerts only name metrics that
//! exist; every deploy file parses and sets every variable the binaries read; shutdown loses
//! nothing and leaves nothing claimed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use payrail_tests::mocks;
use payrail_tests::{Behavior, Options, Receiver, TcpProxy, TestApp};
use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// promtool, from Debian's `prometheus` package, installed on first use (one installer at a
/// time: tests run in parallel processes).
fn promtool() -> &'static str {
    let found = Command::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        let status = Command::new("flock")
            .args(["/tmp/payrail-promtool.lock", "sh", "-c", "command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }"])
            .status()
            .expect("run the installer");
        assert!(
            status.success(),
            "could not install promtool (Debian package prometheus)"
        );
    }
    "promtool"
}

fn promtool_ok(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(promtool())
        .args(args)
        .current_dir(repo().join("deploy/prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    if let Some(text) = stdin {
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool finishes");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn prometheus_accepts_the_config_the_rules_and_the_rules_unit_tests() {
    promtool_ok(&["check", "config", "prometheus.yml"], None);
    let rules = promtool_ok(&["check", "rules", "alerts.yml"], None);
    assert!(rules.contains("19 rules found"), "{rules}");
    promtool_ok(&["test", "rules", "alerts_test.yml"], None);
}

/// Brings traffic through every metric family, then returns (gateway, worker) /metrics text.
async fn scrape_after_traffic(app: &TestApp) -> (String, String) {
    let receiver = Receiver::start(Behavior::Statuses(vec![500], 200)).await;
    app.create_endpoint(&receiver.url).await;
    let payment = app.create_payment(1234).await;
    let complete = format!(
        "/v1/sandbox/payments/{}/complete",
        payment["id"].as_str().unwrap_or("")
    );
    app.post_json(&app.api_key, &complete, json!({"outcome": "succeeded"}))
        .await;
    // A payout out of that payment, so the payout metrics have series.
    let (s, _) = app
        .post_json(
            &app.api_key,
            "/v1/payouts",
            json!({"amount": 100, "currency": payment["currency"], "provider": "simulated",
                   "destination": {"type": "mobile_money", "phone": "22951345020", "operator": "mtn_bj"}}),
        )
        .await;
    assert_eq!(s, 201);
    app.get_json(&app.api_key, "/v1/payments/pay_missing").await;
    app.eventually(Duration::from_secs(15), "a retried delivery", || async {
        (receiver.received().len() >= 2).then_some(())
    })
    .await;
    let get = |url: String| async move {
        app.client
            .get(url)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text")
    };
    let worker = app.worker_base.clone().expect("worker runs");
    (
        get(format!("{}/metrics", app.metrics_base)).await,
        get(format!("{worker}/metrics")).await,
    )
}

#[tokio::test]
async fn promtool_accepts_both_metrics_endpoints() {
    let app = TestApp::spawn_with(Options {
        webhook: Options::default().webhook,
        ..Options::default()
    })
    .await;
    let (gateway, worker) = scrape_after_traffic(&app).await;
    promtool_ok(&["check", "metrics"], Some(&gateway));
    promtool_ok(&["check", "metrics"], Some(&worker));
    for family in [
        "http_request_duration_seconds",
        "http_requests_total",
        "http_request_errors_total",
        "payments_total",
        "payment_amount",
        "active_connections",
    ] {
        assert!(
            gateway.contains(&format!("# TYPE {family}")),
            "gateway lacks {family}"
        );
    }
    for family in [
        "webhook_deliveries_total",
        "webhook_delivery_errors_total",
        "webhook_delivery_duration_seconds",
        "queue_size",
        "webhook_oldest_due_delivery_age_seconds",
        "webhook_event_to_first_attempt_seconds",
    ] {
        assert!(
            worker.contains(&format!("# TYPE {family}")),
            "worker lacks {family}"
        );
    }
    assert!(
        worker.contains("webhook_delivery_errors_total{class=\"http_5xx\"} 1"),
        "{worker}"
    );
    assert!(
        gateway.contains("route=\"get_payment\""),
        "routes are labelled by template, not raw path"
    );
    assert!(!gateway.contains("pay_missing"), "no raw ids in labels");
    assert!(
        gateway.contains(r#"payouts_total{provider="simulated",status="processing"} 1"#),
        "the payout made above is counted: {gateway}"
    );
}

/// Metric families named in a PromQL expression: identifiers that are not function calls,
/// keywords, label matchers, ranges or grouping labels.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let strip = |re: &str, text: &str| {
        regex::Regex::new(re)
            .expect("regex")
            .replace_all(text, " ")
            .into_owned()
    };
    let text = strip(r"\{[^}]*\}", expr);
    let text = strip(r"\[[^\]]*\]", &text);
    let text = strip(r"\b(by|without|on|ignoring)\s*\([^)]*\)", &text);
    let keywords = ["and", "or", "unless", "bool", "offset"];
    regex::Regex::new(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
        .expect("regex")
        .captures_iter(&text)
        .filter(|c| c.get(2).is_none() && !keywords.contains(&&c[1]))
        .map(|c| {
            c[1].trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum")
                .to_string()
        })
        .collect()
}

/// Families with no series until something is wrong or configured (a failing endpoint, a
/// provider's circuit), which the exposition then leaves out altogether. Each is checked to be
/// registered under this very name in its source file instead.
fn series_only_when_something_is_wrong() -> Vec<String> {
    [
        ("webhook_endpoint_failing_streak", "worker/src/metrics.rs"),
        ("provider_circuit_state", "gateway/src/core/metrics.rs"),
    ]
    .into_iter()
    .map(|(name, file)| {
        let source = std::fs::read_to_string(repo().join(file)).expect("source");
        assert!(
            source.contains(&format!("\"{name}\",")),
            "{file} does not register {name}"
        );
        name.to_string()
    })
    .collect()
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_only_name_metrics_we_export() {
    let app = TestApp::spawn().await;
    let (gateway, worker) = scrape_after_traffic(&app).await;
    let exported: BTreeSet<String> = format!("{gateway}\n{worker}")
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .chain(["up".to_string()])
        .chain(series_only_when_something_is_wrong())
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboards/payrail-overview.json"))
            .expect("dashboard"),
    )
    .expect("dashboard is JSON");
    let mut exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(
        exprs.len() >= 12,
        "the dashboard covers payments, API, webhooks, queues"
    );
    let alerts: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).expect("alerts"),
    )
    .expect("alerts are YAML");
    for group in alerts["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            exprs.push(rule["expr"].as_str().expect("expr").to_string());
        }
    }
    for expr in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric in {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "{name} (in `{expr}`) is not exported; exported: {exported:?}"
            );
        }
    }
}

/// Every environment variable the binaries read, found in their source.
fn variables_read() -> BTreeSet<String> {
    let re = regex::Regex::new(r#""((?:PAYRAIL|STRIPE|MONEROO|EBILLING)_[A-Z_]*[A-Z]|DATABASE_URL|AMQP_URL|REDIS_URL|RUST_LOG)""#).expect("regex");
    let mut found = BTreeSet::new();
    for file in [
        "runtime/src/settings.rs",
        "runtime/src/telemetry.rs",
        "worker/src/settings.rs",
        "gateway/src/settings.rs",
        "gateway/src/providers/settings.rs",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect("source");
        // Unit tests name made-up variables on purpose (typos, bad values).
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        found.extend(re.captures_iter(text).map(|c| c[1].to_string()));
    }
    found
}

fn yaml_documents(path: &Path) -> Vec<serde_yaml::Value> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(path).expect("read");
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde_yaml::Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .collect()
}

#[test]
fn deploy_files_parse_and_set_every_variable_the_binaries_read() {
    // Old names still honoured for existing deployments; the deploy files use their successors
    // (setting both is refused at start-up).
    const DEPRECATED: &[&str] = &["PAYRAIL_ALLOW_PRIVATE_WEBHOOK_URLS"];
    let mut read = variables_read();
    for old in DEPRECATED {
        assert!(
            read.remove(*old),
            "{old} is no longer read: drop it from DEPRECATED"
        );
    }
    assert!(read.len() >= 25, "found only {read:?}");
    for dir in [
        "deploy",
        "deploy/prometheus",
        "deploy/k8s",
        "deploy/grafana/provisioning/datasources",
        "deploy/grafana/provisioning/dashboards",
    ] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("dir") {
            let path = entry.expect("entry").path();
            if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                assert!(
                    !yaml_documents(&path).is_empty(),
                    "{} is empty",
                    path.display()
                );
            }
        }
    }
    // Compose: the shared environment sets everything but the optional provider credentials.
    let compose = &yaml_documents(&repo().join("deploy/docker-compose.yml"))[0];
    let env = compose["x-payrail-env"]
        .as_mapping()
        .expect("x-payrail-env");
    let optional = |v: &str| {
        ["STRIPE_", "MONEROO_", "EBILLING_"]
            .iter()
            .any(|p| v.starts_with(p))
            || v == "PAYRAIL_SIMULATED_WEBHOOK_SECRET"
            || v == "PAYRAIL_WEBHOOK_PROXY"
            || v == "PAYRAIL_WEBHOOK_RETRY_SCHEDULE"
    };
    for var in read.iter().filter(|v| !optional(v)) {
        assert!(env.contains_key(var.as_str()), "compose does not set {var}");
    }
    for service in ["gateway", "worker-1", "worker-2", "migrate"] {
        assert!(
            compose["services"][service]["environment"].is_mapping(),
            "{service} has no environment"
        );
    }
    for service in ["postgres", "rabbitmq", "redis", "prometheus", "grafana"] {
        assert!(
            compose["services"].get(service).is_some(),
            "compose lacks {service}"
        );
    }
    // Kubernetes: ConfigMap + Secret together name every variable; probes, resources, HPA, PDB.
    let mut k8s = Vec::new();
    for file in ["configmap.yaml", "gateway.yaml", "worker.yaml"] {
        k8s.extend(yaml_documents(&repo().join("deploy/k8s").join(file)));
    }
    let kinds: Vec<&str> = k8s.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "Job",
    ] {
        assert!(kinds.contains(&kind), "no {kind} in deploy/k8s");
    }
    let mut named = BTreeSet::new();
    for doc in &k8s {
        for key in ["data", "stringData"] {
            if let Some(m) = doc[key].as_mapping() {
                named.extend(m.keys().filter_map(|k| k.as_str().map(str::to_string)));
            }
        }
    }
    for var in &read {
        assert!(named.contains(var), "deploy/k8s names no {var}");
    }
    for doc in k8s.iter().filter(|d| d["kind"] == "Deployment") {
        let container = &doc["spec"]["template"]["spec"]["containers"][0];
        assert!(
            container["readinessProbe"].is_mapping() && container["livenessProbe"].is_mapping(),
            "probes"
        );
        assert!(
            container["resources"]["requests"].is_mapping(),
            "resource requests"
        );
        assert_eq!(
            doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
            serde_yaml::Value::Bool(true)
        );
    }
    let dockerfile = std::fs::read_to_string(repo().join("deploy/Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("AS gateway")
            && dockerfile.contains("AS worker")
            && dockerfile.contains("USER 10001")
    );
}

#[tokio::test]
async fn the_gateway_finishes_requests_in_flight_on_shutdown() {
    let stripe = mocks::stripe().await;
    stripe.delay(Some(Duration::from_millis(600)));
    // No periodic relay passes: only the stopping gateway's own relay and final drain may
    // publish the event its request commits.
    let app = TestApp::spawn_with(Options {
        providers: mocks::settings(Some(&stripe), None, None),
        relay_interval: Duration::from_secs(3600),
        ..Options::default()
    })
    .await;
    // A dedicated gateway we can stop (the TestApp's runs until the test ends).
    let mut settings = app.settings.clone();
    settings.gateway.providers = mocks::settings(Some(&stripe), None, None);
    let gw = gateway::Application::build(settings)
        .await
        .expect("gateway");
    let base = format!("http://127.0.0.1:{}", gw.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(gw.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let slow = client
        .post(format!("{base}/v1/payments"))
        .bearer_auth(&app.api_key)
        .json(&json!({"amount": 2000, "currency": "usd", "provider": "stripe"}))
        .send();
    let slow = tokio::spawn(slow);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop.send(());
    let answer = slow
        .await
        .expect("join")
        .expect("the request in flight gets its answer");
    assert_eq!(answer.status(), 201);
    running.await.expect("join").expect("clean stop");
    assert!(
        client
            .get(format!("{base}/health/live"))
            .send()
            .await
            .is_err(),
        "no longer accepting"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM events WHERE published_at IS NULL")
            .await,
        0,
        "the outbox was drained"
    );
}

#[tokio::test]
async fn a_stopping_worker_finishes_its_sends_and_releases_what_it_could_not() {
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        webhook: {
            let mut w = Options::default().webhook;
            w.timeout = Duration::from_secs(1);
            w
        },
        ..Options::default()
    })
    .await;
    let receiver = Receiver::start(Behavior::Hang(Duration::from_millis(600))).await;
    app.create_endpoint(&receiver.url).await;

    // A send in flight at shutdown is finished and recorded.
    let first = worker::app::WorkerApplication::build(app.settings.worker_process())
        .await
        .expect("worker");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(first.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    app.create_payment(100).await;
    app.eventually(
        Duration::from_secs(10),
        "the receiver to be called",
        || async { (!receiver.received().is_empty()).then_some(()) },
    )
    .await;
    let _ = stop.send(());
    running.await.expect("join").expect("clean stop");
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_attempts").await,
        1,
        "the send in flight was recorded"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'processing'")
            .await,
        0
    );

    // With no time to wait, a claimed send is released (due now), not left leased.
    let second = worker::app::WorkerApplication::build(app.settings.worker_process())
        .await
        .expect("worker");
    second.worker().set_shutdown_grace(Duration::ZERO);
    receiver.behave(Behavior::Hang(Duration::from_secs(5)));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(second.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    app.create_payment(100).await;
    app.eventually(
        Duration::from_secs(10),
        "the second send to start",
        || async { (receiver.received().len() >= 2).then_some(()) },
    )
    .await;
    let _ = stop.send(());
    running.await.expect("join").expect("clean stop");
    assert_eq!(
        app.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'processing'")
            .await,
        0,
        "released, not leased"
    );
    assert_eq!(app.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending' AND locked_until IS NULL").await, 1);
}

#[tokio::test]
async fn made_up_methods_do_not_become_labels_and_metrics_are_off_the_public_port() {
    let app = TestApp::spawn().await;
    for i in 0..40 {
        let method = reqwest::Method::from_bytes(format!("BREW{i}").as_bytes()).expect("method");
        let _ = app
            .client
            .request(method, app.url("/v1/payments"))
            .send()
            .await
            .expect("send");
    }
    let text = app.metrics_text().await;
    assert!(!text.contains("BREW"), "an invented method became a label");
    assert!(text.contains(r#"method="other""#), "{text}");
    let public = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        public.status(),
        404,
        "metrics are not served on the public port"
    );
    let health = app
        .client
        .get(app.url("/health/ready"))
        .send()
        .await
        .expect("send");
    assert_eq!(
        health.status(),
        200,
        "health stays on the public port for load balancers"
    );
}

#[tokio::test]
async fn the_gateway_is_ready_without_a_worker_and_only_degraded_without_the_broker() {
    // No worker: on a fresh prefix nobody but the gateway can have declared the queues.
    let proxy = TcpProxy::start("127.0.0.1:5672", true).await;
    let app = TestApp::spawn_with(Options {
        start_worker: false,
        gateway_amqp_url: Some(format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port)),
        ..Options::default()
    })
    .await;
    let ready = |app: &TestApp| {
        let url = app.url("/health/ready");
        let client = app.client.clone();
        async move {
            let r = client.get(url).send().await.expect("probe");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = ready(&app).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    // Probes reuse one broker connection.
    let before = proxy.connections();
    for _ in 0..10 {
        assert_eq!(ready(&app).await.0, 200);
    }
    assert!(
        proxy.connections() <= before + 1,
        "ten probes opened {} connections",
        proxy.connections() - before
    );
    // The broker goes away: still ready (payments go to the outbox), reported as degraded.
    proxy.set_enabled(false);
    let (status, body) = ready(&app).await;
    assert_eq!(
        (
            status,
            body["status"].as_str(),
            body["checks"]["broker"].as_bool()
        ),
        (200, Some("degraded"), Some(false)),
        "{body}"
    );
    assert_eq!(app.create_payment(100).await["status"], "pending");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"dependency_up{dependency="broker"} 0"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_answer_names_its_request_in_request_id() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(gateway::http::middleware::MAX_BODY_BYTES + 1);
    let answers = [
        app.client
            .get(app.url("/v1/payments"))
            .bearer_auth(&app.api_key),
        app.client.get(app.url("/v1/payments")),
        app.client
            .get(app.url("/v1/nowhere"))
            .bearer_auth(&app.api_key),
        app.client
            .get(app.url("/v1/payments/pay_%00"))
            .bearer_auth(&app.api_key),
        app.client
            .post(app.url("/v1/payments"))
            .bearer_auth(&app.api_key)
            .header("content-type", "application/json")
            .body(big),
    ];
    let mut seen = std::collections::HashSet::new();
    for (request, expected) in answers.into_iter().zip([200, 401, 404, 422, 413]) {
        let r = request.send().await.expect("send");
        assert_eq!(r.status(), expected);
        let id = r.headers()["request-id"]
            .to_str()
            .expect("ascii")
            .to_string();
        assert!(id.starts_with("req_"), "{id}");
        assert_eq!(
            r.headers()["x-request-id"],
            id.as_str(),
            "both headers agree"
        );
        assert!(seen.insert(id), "each request has its own id");
    }
    // The caller's own id, under Stripe's header name, comes back.
    let r = app
        .client
        .get(app.url("/v1/payments"))
        .bearer_auth(&app.api_key)
        .header("Request-Id", "trace-7")
        .send()
        .await
        .expect("send");
    assert_eq!(r.headers()["request-id"], "trace-7");
}

/// The Kubernetes manifests against the Kubernetes schemas (kubernetes-validate, strict: an
/// unknown or misplaced field is an error, as `kubectl apply --validate=strict` would say).
#[tokio::test]
async fn the_kubernetes_manifests_fit_the_kubernetes_schemas() {
    let tools = crate::clients::tools().await;
    let manifests: Vec<PathBuf> = std::fs::read_dir(repo().join("deploy/k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    assert!(manifests.len() >= 3, "{manifests:?}");
    let mut validate = std::process::Command::new(tools.join(".venv/bin/kubernetes-validate"));
    validate.arg("--strict").args(&manifests);
    let output = crate::clients::run(validate).await;
    crate::clients::assert_success("kubernetes-validate --strict", &output);
    let said = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    // Every resource is checked, none skipped for an unknown kind or version.
    assert_eq!(said.matches(" passed for resource ").count(), 10, "{said}");
}
