//! The `gateway` binary under a flood of wrong sign-ins (issue 20): 100 at once from one
//! address, over unknown emails, keep its memory growth under 64 MiB (a few passwords are
//! checked at a time; the rest are told to retry), never answer 5xx, and do not lock out the
//! owner: from that same address, the right password still signs in.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// The value of `name=` in the `Set-Cookie`s of `r`.
fn cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_wrong_sign_ins_costs_bounded_memory_and_locks_no_one_out() {
    let path = std::env::temp_dir().join(format!("payrail_flood_{}.db", std::process::id()));
    let port = payrail_tests::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}?mode=rwc", path.display()),
        )
        .env("PAYRAIL_BIND", format!("127.0.0.1:{port}"))
        .env("PAYRAIL_METRICS_BIND", "127.0.0.1:0")
        .env("PAYRAIL_WORKER_BIND", "127.0.0.1:0")
        .env("PAYRAIL_WEBHOOK_TARGETS", "loopback")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the gateway");
    // Its first start prints the owner's password once.
    let stderr = child.stderr.take().expect("stderr");
    let pid = child.id();
    let gateway = Gateway(child);
    let password = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stderr).lines();
        let mut next_is_password = false;
        for line in lines.by_ref() {
            let line = line.ok()?;
            if next_is_password && !line.trim().is_empty() {
                let password = line.trim().to_string();
                // Keep draining, so the process never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines {});
                return Some(password);
            }
            if line.contains("Dashboard (") {
                next_is_password = true;
            }
        }
        None
    })
    .await
    .expect("join")
    .expect("the owner's password is printed");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let page = client
        .get(format!("{base}/dashboard/login"))
        .send()
        .await
        .expect("sign-in page");
    let csrf = cookie(&page, "payrail_dashboard_csrf").expect("csrf cookie");
    let body = page.text().await.expect("page");
    let token = body
        .split(r#"name="csrf_token" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the form's token")
        .to_string();
    let sign_in = |email: String, password: String| {
        let (client, base, csrf, token) =
            (client.clone(), base.clone(), csrf.clone(), token.clone());
        async move {
            let form = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("email", &email)
                .append_pair("password", &password)
                .append_pair("csrf_token", &token)
                .finish();
            client
                .post(format!("{base}/dashboard/login"))
                .header("cookie", format!("payrail_dashboard_csrf={csrf}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form)
                .send()
                .await
                .expect("sign-in")
                .status()
                .as_u16()
        }
    };
    // Warm up (the first check builds the decoy hash), then measure.
    assert_eq!(sign_in("warm@example.com".into(), "nope".into()).await, 401);
    let before = rss_kib(pid);
    let answers = futures_util::future::join_all(
        (0..100).map(|i| sign_in(format!("guess{i}@example.com"), format!("wrong-{i}"))),
    )
    .await;
    assert!(
        answers.iter().all(|s| matches!(s, 401 | 429)),
        "only refusals: {answers:?}"
    );
    assert!(
        answers.contains(&429),
        "most are told to retry: {answers:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown = rss_kib(pid).saturating_sub(before);
    eprintln!(
        "rss before {} KiB, grown {} KiB; 401s {}, 429s {}",
        before,
        grown,
        answers.iter().filter(|s| **s == 401).count(),
        answers.iter().filter(|s| **s == 429).count()
    );
    assert!(
        grown < 64 * 1024,
        "the gateway grew by {} MiB",
        grown / 1024
    );
    // The owner, from the same address, is slowed at most, never refused.
    assert_eq!(
        sign_in("owner@payrail.localhost".into(), password).await,
        303,
        "the owner signs in"
    );
    // A NUL in the email is a wrong form, not a failure of ours.
    assert_eq!(sign_in("x\u{0}@y".into(), "p".into()).await, 422);
    drop(gateway);
    payrail_tests::remove_sqlite(&path);
}
