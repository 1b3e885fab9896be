//! The dashboard as a browser uses it (cookies, forms, redirects), through the production
//! routes: sign-in with CSRF, sessions that only cookies open (never an API key), refresh
//! tokens that work once, sign-out that revokes, throttled guessing, one merchant's data only.

use std::collections::BTreeMap;
use std::time::Duration;

use entity::ids::MerchantId;
use entity::status::UserRole;
use payrail_tests::TestApp;
use sea_orm::ConnectionTrait as _;
use serde_json::json;

/// A cookie jar over a client that does not follow redirects.
pub(crate) struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: BTreeMap<String, String>,
}

pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) location: Option<String>,
    set_cookies: Vec<String>,
    pub(crate) body: String,
}

impl Page {
    /// The address of the page's `rel` link (`next`, `prev`), unescaped.
    pub(crate) fn link(&self, rel: &str) -> Option<String> {
        self.body
            .split(&format!(r#"rel="{rel}" href=""#))
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .map(|href| href.replace("&amp;", "&"))
    }

    /// The one-time message a form post left for the next page (its flash cookie).
    pub(crate) fn flash(&self) -> Option<String> {
        self.set_cookies.iter().find_map(|c| {
            let value = c.split(';').next()?.strip_prefix("payrail_flash=")?;
            url::form_urlencoded::parse(format!("m={value}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
        })
    }
}

impl Browser {
    pub(crate) fn new(base: &str) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_string(),
            cookies: BTreeMap::new(),
        }
    }

    pub(crate) fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let r = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let set_cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_string(), value.to_string());
                }
            }
        }
        let body = r.text().await.expect("body");
        Page {
            status,
            location,
            set_cookies,
            body,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// What live.js fetches to refresh a page's live regions.
    pub(crate) async fn live_refresh(&mut self, path: &str) -> Page {
        let request = self
            .client
            .get(format!("{}{path}", self.base))
            .header("payrail-live-refresh", "1");
        self.send(request).await
    }

    pub(crate) async fn post_form(&mut self, path: &str, pairs: &[(&str, &str)]) -> Page {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(request).await
    }

    /// The CSRF token the last page put in its forms.
    pub(crate) fn token_in(page: &Page) -> String {
        page.body
            .split(r#"name="csrf_token" value=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("a CSRF token in the page")
            .to_string()
    }

    /// Signs in with the sign-in `form` already drawn, asking to go back to `next`.
    pub(crate) async fn sign_in_from(
        &mut self,
        form: &Page,
        email: &str,
        password: &str,
        next: &str,
    ) -> Page {
        let token = Browser::token_in(form);
        self.post_form(
            "/dashboard/login",
            &[
                ("email", email),
                ("password", password),
                ("csrf_token", &token),
                ("next", next),
            ],
        )
        .await
    }

    pub(crate) async fn sign_in(&mut self, email: &str, password: &str) -> Page {
        let form = self.get("/dashboard/login").await;
        assert_eq!(form.status, 200);
        let token = Browser::token_in(&form);
        self.post_form(
            "/dashboard/login",
            &[
                ("email", email),
                ("password", password),
                ("csrf_token", &token),
            ],
        )
        .await
    }
}

pub(crate) async fn user(app: &TestApp, merchant_id: &str, email: &str, role: UserRole) -> String {
    let merchant_id = MerchantId::parse(merchant_id).expect("merchant id");
    gateway::merchants::users::create_user(&app.db, &merchant_id, email, role)
        .await
        .expect("user")
        .1
}

#[tokio::test]
async fn a_user_signs_in_sees_only_their_merchants_payments_and_signs_out() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop A").await;
    let (_, other_key) = app.create_merchant_with_id("Shop B").await;
    let (s, ours) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 4999, "currency": "eur", "provider": "simulated"}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, theirs) = app
        .post_json(
            &other_key,
            "/v1/payments",
            json!({"amount": 777, "currency": "usd", "provider": "simulated"}),
        )
        .await;
    assert_eq!(s, 201);
    let password = user(&app, &merchant, "Ada@Example.com", UserRole::Owner).await;
    let mut browser = Browser::new(&app.base);

    // Nothing without a session, and an API key is not one.
    let page = browser.get("/dashboard").await;
    assert_eq!(
        (page.status, page.location.as_deref()),
        (303, Some("/dashboard/login"))
    );
    let with_key = app
        .client
        .get(app.url("/dashboard"))
        .bearer_auth(&key)
        .send()
        .await
        .expect("request");
    assert!(
        with_key.url().path().ends_with("/dashboard/login"),
        "an API key opens nothing"
    );

    // A sign-in without the form's token is refused; a wrong password is a 401 saying so.
    let no_token = browser
        .post_form(
            "/dashboard/login",
            &[("email", "ada@example.com"), ("password", &password)],
        )
        .await;
    assert_eq!(no_token.status, 403);
    let wrong = browser.sign_in("ada@example.com", "not-the-password").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Wrong email or password."));
    assert!(!browser.cookies.contains_key("payrail_access"));

    let signed_in = browser.sign_in("ada@example.com", &password).await;
    assert_eq!(
        (signed_in.status, signed_in.location.as_deref()),
        (303, Some("/dashboard"))
    );
    for name in ["payrail_access", "payrail_refresh"] {
        let cookie = signed_in
            .set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} is set"));
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/dashboard"] {
            assert!(cookie.contains(flag), "{name} lacks {flag}: {cookie}");
        }
    }

    let overview = browser.get("/dashboard").await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains(ours["id"].as_str().expect("id")));
    assert!(overview.body.contains("€49.99"));
    assert!(
        overview
            .body
            .contains(r#"data-status="pending"><strong>1</strong>"#),
        "one pending payment counted"
    );
    assert!(
        overview
            .body
            .contains(r#"data-status="failed"><strong>0</strong>"#)
    );
    assert!(
        !overview.body.contains(theirs["id"].as_str().expect("id")),
        "another merchant's payment never shows"
    );
    assert!(overview.body.contains("ada@example.com (owner)"));

    // An expired access token is renewed from the refresh token, which is then used up.
    let first_refresh = browser.cookies["payrail_refresh"].clone();
    browser.cookies.remove("payrail_access");
    let renewed = browser.get("/dashboard").await;
    assert_eq!(renewed.status, 200, "renewed from the refresh token");
    assert_ne!(browser.cookies["payrail_refresh"], first_refresh, "rotated");
    let mut thief = Browser::new(&app.base);
    thief
        .cookies
        .insert("payrail_refresh".into(), first_refresh.clone());
    // Within the reuse grace (a page's requests racing) it still gets an access token, but
    // never a refresh token; past the grace it ends the session (the next test).
    let replay = thief.get("/dashboard").await;
    assert_eq!(replay.status, 200);
    assert!(
        !replay
            .set_cookies
            .iter()
            .any(|c| c.starts_with("payrail_refresh=")),
        "a used refresh token is never renewed"
    );

    // Signing out needs the token and revokes the session.
    let live_refresh = browser.cookies["payrail_refresh"].clone();
    let token = Browser::token_in(&browser.get("/dashboard").await);
    let forged = browser.post_form("/dashboard/logout", &[]).await;
    assert_eq!(forged.status, 403);
    let out = browser
        .post_form("/dashboard/logout", &[("csrf_token", &token)])
        .await;
    assert_eq!(
        (out.status, out.location.as_deref()),
        (303, Some("/dashboard/login"))
    );
    assert!(!browser.cookies.contains_key("payrail_access"));
    let mut after = Browser::new(&app.base);
    after.cookies.insert("payrail_refresh".into(), live_refresh);
    assert_eq!(
        after.get("/dashboard").await.status,
        303,
        "revoked at sign-out"
    );
}

#[tokio::test]
async fn guessing_a_password_is_throttled_per_account_even_with_the_right_one() {
    let app = TestApp::spawn().await;
    let (merchant, _) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "grace@example.com", UserRole::Viewer).await;
    let mut browser = Browser::new(&app.base);
    for _ in 0..gateway::merchants::users::MAX_FAILURES_PER_ACCOUNT {
        assert_eq!(
            browser.sign_in("grace@example.com", "guess").await.status,
            401
        );
    }
    let locked = browser.sign_in("grace@example.com", &password).await;
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Too many failed sign-ins"));
    // Another account from the same address is not locked by these five.
    let other = user(&app, &merchant, "linus@example.com", UserRole::Viewer).await;
    assert_eq!(
        browser.sign_in("linus@example.com", &other).await.status,
        303
    );
    let overview = browser.get("/dashboard").await;
    assert!(overview.body.contains("linus@example.com (viewer)"));
}

#[tokio::test]
async fn an_owner_retries_a_failed_delivery_from_the_payment_page_and_a_viewer_cannot() {
    use payrail_tests::{Behavior, Receiver};
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    // Five failures (every attempt the test knobs allow), then the endpoint is back.
    let receiver = Receiver::start(Behavior::Statuses(vec![500; 5], 200)).await;
    let (s, endpoint) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "enabled_events": ["payment.pending"]}),
        )
        .await;
    assert_eq!(s, 201, "{endpoint}");
    let (s, payment) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 500000, "currency": "xaf", "provider": "simulated"}),
        )
        .await;
    assert_eq!(s, 201);
    let payment_id = payment["id"].as_str().expect("id").to_string();
    let delivery_id = app
        .eventually(
            std::time::Duration::from_secs(20),
            "the delivery fails",
            || async {
                let (_, list) = app
                    .get_json(
                        &key,
                        &format!(
                            "/v1/webhook_deliveries?endpoint_id={}",
                            endpoint["id"].as_str().unwrap_or_default()
                        ),
                    )
                    .await;
                list["data"]
                    .as_array()
                    .and_then(|d| d.first())
                    .filter(|d| d["status"] == "failed")
                    .and_then(|d| d["id"].as_str().map(str::to_string))
            },
        )
        .await;

    let viewer_password = user(&app, &merchant, "viewer@example.com", UserRole::Viewer).await;
    let mut viewer = Browser::new(&app.base);
    assert_eq!(
        viewer
            .sign_in("viewer@example.com", &viewer_password)
            .await
            .status,
        303
    );
    let page = viewer
        .get(&format!("/dashboard/payments/{payment_id}"))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&delivery_id) && page.body.contains("500\u{a0}000\u{a0}FCFA"));
    assert!(
        !page.body.contains("Retry delivery"),
        "no button for a viewer"
    );
    assert!(
        !page.body.contains(r#"href="/dashboard/keys""#),
        "no link for a viewer to a page that refuses them"
    );
    // A viewer crafting the post has a valid token (from any form of theirs, sign-out here).
    let token = Browser::token_in(&viewer.get("/dashboard").await);
    let refused = viewer
        .post_form(
            &format!("/dashboard/deliveries/{delivery_id}/retry"),
            &[("csrf_token", &token), ("payment_id", &payment_id)],
        )
        .await;
    assert_eq!(
        refused.status, 403,
        "a viewer cannot retry, even by posting"
    );
    let (_, d) = app
        .get_json(&key, &format!("/v1/webhook_deliveries/{delivery_id}"))
        .await;
    assert_eq!(d["status"], "failed", "the refused retry changed nothing");

    let owner_password = user(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let mut owner = Browser::new(&app.base);
    assert_eq!(
        owner
            .sign_in("owner@example.com", &owner_password)
            .await
            .status,
        303
    );
    let page = owner
        .get(&format!("/dashboard/payments/{payment_id}"))
        .await;
    assert!(page.body.contains(&format!("Retry delivery {delivery_id}")));
    assert!(
        page.body.contains(r#"href="/dashboard/keys""#),
        "an owner has the keys link"
    );
    let token = Browser::token_in(&page);
    let retried = owner
        .post_form(
            &format!("/dashboard/deliveries/{delivery_id}/retry"),
            &[("csrf_token", &token), ("payment_id", &payment_id)],
        )
        .await;
    assert_eq!(retried.status, 303);
    let payment_page = format!("/dashboard/payments/{payment_id}");
    assert_eq!(
        retried.location.as_deref(),
        Some(payment_page.as_str()),
        "the result travels in a one-time cookie, not in the URL"
    );
    // The old page's live refresh can land between the redirect and the page it names: it
    // leaves the message to that page (CI saw the message vanish that way).
    let refreshed = owner.live_refresh(&payment_page).await;
    assert_eq!(refreshed.status, 200);
    assert!(!refreshed.body.contains("Retry sent now"));
    let shown = owner.get(&payment_page).await;
    assert!(shown.body.contains("Retry sent now"), "the flash is shown");
    let again = owner.get(&payment_page).await;
    assert!(!again.body.contains("Retry sent now"), "and only once");
    // Text in a link is never shown inside the signed-in dashboard.
    let phishing = owner
        .get(&format!(
            "{payment_page}?notice=Your+account+is+locked.+Call+0800+123+456"
        ))
        .await;
    assert_eq!(phishing.status, 200);
    assert!(!phishing.body.contains("account is locked"));
    app.eventually(
        std::time::Duration::from_secs(20),
        "the retried delivery succeeds",
        || async {
            let (_, d) = app
                .get_json(&key, &format!("/v1/webhook_deliveries/{delivery_id}"))
                .await;
            (d["status"] == "succeeded").then_some(())
        },
    )
    .await;
    let page = owner
        .get(&format!("/dashboard/payments/{payment_id}"))
        .await;
    assert!(page.body.contains("succeeded"));

    // Someone of another merchant sees no such payment.
    let (stranger_merchant, _) = app.create_merchant_with_id("Stranger").await;
    let stranger_password = user(
        &app,
        &stranger_merchant,
        "stranger@example.com",
        UserRole::Owner,
    )
    .await;
    let mut stranger = Browser::new(&app.base);
    assert_eq!(
        stranger
            .sign_in("stranger@example.com", &stranger_password)
            .await
            .status,
        303
    );
    let page = stranger
        .get(&format!("/dashboard/payments/{payment_id}"))
        .await;
    assert_eq!(page.status, 404);
    assert!(!page.body.contains(&delivery_id));
}

#[tokio::test]
async fn the_log_page_filters_the_merchants_entries_and_charts_them_per_level() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let (_, other_key) = app.create_merchant_with_id("Other").await;
    for (level, message) in [
        ("error", "checkout timed out"),
        ("error", "stock service down"),
        ("info", "order shipped"),
    ] {
        let (s, body) = app
            .post_json(
                &key,
                "/v1/logs",
                json!({"level": level, "message": message, "source": "shop"}),
            )
            .await;
        assert_eq!(s, 201, "{body}");
    }
    let (s, _) = app
        .post_json(
            &other_key,
            "/v1/logs",
            json!({"level": "error", "message": "not yours", "source": "shop"}),
        )
        .await;
    assert_eq!(s, 201);
    let password = user(&app, &merchant, "ops@example.com", UserRole::Viewer).await;
    let mut browser = Browser::new(&app.base);
    assert_eq!(
        browser.sign_in("ops@example.com", &password).await.status,
        303
    );

    let all = browser.get("/dashboard/logs").await;
    assert_eq!(all.status, 200);
    for message in ["checkout timed out", "stock service down", "order shipped"] {
        assert!(all.body.contains(message), "{message}");
    }
    assert!(!all.body.contains("not yours"), "another merchant's entry");
    assert!(
        all.body.contains(r#"data-level="error" data-count="2""#),
        "the chart counts"
    );
    assert!(all.body.contains(r#"data-level="info" data-count="1""#));
    assert!(all.body.contains(r#"role="img""#) && all.body.contains("error: 2"));

    let errors = browser.get("/dashboard/logs?level=error&window=1h").await;
    assert!(errors.body.contains("stock service down"));
    assert!(!errors.body.contains("order shipped"), "filtered by level");
    let by_source = browser.get("/dashboard/logs?source=nobody").await;
    assert!(
        !by_source.body.contains("checkout timed out"),
        "filtered by source"
    );

    let bad = browser.get("/dashboard/logs?level=loud").await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("Unknown level"));
    let bad = browser.get("/dashboard/logs?window=forever").await;
    assert_eq!(bad.status, 422);

    // Text search, any case; `%` is a letter, not a wildcard.
    let timed = browser.get("/dashboard/logs?q=TIMED").await;
    assert_eq!(timed.body.matches("<tr data-log=").count(), 1);
    assert!(
        timed.body.contains("checkout timed out")
            && timed.body.contains("<strong>1</strong> entry found")
    );
    let literal = browser.get("/dashboard/logs?q=%25").await;
    assert_eq!(literal.body.matches("<tr data-log=").count(), 0);

    // Pages of 50 both ways, with the count.
    for i in 0..52 {
        let (s, _) = app
            .post_json(
                &key,
                "/v1/logs",
                json!({"level": "debug", "message": format!("tick {i}"), "source": "clock"}),
            )
            .await;
        assert_eq!(s, 201);
    }
    let first = browser.get("/dashboard/logs").await;
    assert_eq!(first.body.matches("<tr data-log=").count(), 50);
    assert!(first.body.contains("<strong>55</strong> entries found"));
    let older = browser
        .get(&first.link("next").expect("an older page"))
        .await;
    assert_eq!(older.body.matches("<tr data-log=").count(), 5);
    assert!(older.body.contains("checkout timed out"), "the oldest last");
    let newer = browser.get(&older.link("prev").expect("a way back")).await;
    assert_eq!(newer.body.matches("<tr data-log=").count(), 50);

    // The export holds what the filters find, and only this merchant's.
    let csv = browser.get("/dashboard/logs.csv?level=error").await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines[0], "id,created,level,source,message,request_id");
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",error,merchant:shop,stock service down,"))
    );
    assert!(!csv.body.contains("not yours"));
    assert_eq!(
        browser
            .get("/dashboard/logs.csv?window=forever")
            .await
            .status,
        422
    );
}

#[tokio::test]
async fn the_overview_alerts_on_a_high_failure_rate_and_on_a_disabled_endpoint() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "ops@example.com", UserRole::Viewer).await;
    let mut browser = Browser::new(&app.base);
    assert_eq!(
        browser.sign_in("ops@example.com", &password).await.status,
        303
    );
    let calm = browser.get("/dashboard").await;
    assert!(!calm.body.contains(r#"role="alert""#), "nothing to say yet");

    let card = |number: &str| {
        json!({"amount": 1500, "currency": "eur", "provider": "simulated",
               "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}}})
    };
    for number in [
        "4000000000000002",
        "4000000000000002",
        "4242424242424242",
        "4242424242424242",
    ] {
        let (s, _) = app.post_json(&key, "/v1/payments", card(number)).await;
        assert_eq!(s, 201);
    }
    let few = browser.get("/dashboard").await;
    assert!(
        !few.body.contains("payments failed in the last hour"),
        "four payments are too few to call a rate"
    );
    let (s, _) = app
        .post_json(&key, "/v1/payments", card("4242424242424242"))
        .await;
    assert_eq!(s, 201);
    let (s, endpoint) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": "https://shop.example.com/hooks", "enabled_events": ["*"]}),
        )
        .await;
    assert_eq!(s, 201);
    let id = endpoint["id"].as_str().expect("id");
    let (status, _) = app
        .patch_json(
            &key,
            &format!("/v1/webhook_endpoints/{id}"),
            json!({"status": "disabled"}),
        )
        .await;
    assert_eq!(status, 200);
    let alarmed = browser.get("/dashboard").await;
    assert!(
        alarmed
            .body
            .contains("2 of 5 payments failed in the last hour (40 %)."),
        "the failure rate"
    );
    assert!(
        alarmed
            .body
            .contains("Webhook endpoint https://shop.example.com/hooks is disabled (manual).")
    );
}

/// The id of the key whose row shows `prefix` (its first 12 characters).
fn key_row_id(page: &Page, secret: &str) -> String {
    page.body
        .split(r#"<tr data-key=""#)
        .skip(1)
        .find(|row| {
            row.split("</tr>")
                .next()
                .is_some_and(|r| r.contains(&secret[..12]))
        })
        .and_then(|row| row.split('"').next())
        .expect("the key's row")
        .to_string()
}

/// The secret a keys page shows once.
fn new_secret(page: &Page) -> String {
    page.body
        .split(r#"<code id="new-secret">"#)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new secret on the page")
        .to_string()
}

#[tokio::test]
async fn only_owners_create_roll_and_revoke_api_keys_and_the_api_follows_at_once() {
    let app = TestApp::spawn().await;
    let (merchant, _) = app.create_merchant_with_id("Shop").await;
    let owner_password = user(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let dev_password = user(&app, &merchant, "dev@example.com", UserRole::Developer).await;

    let mut dev = Browser::new(&app.base);
    assert_eq!(
        dev.sign_in("dev@example.com", &dev_password).await.status,
        303
    );
    assert_eq!(dev.get("/dashboard/keys").await.status, 403);
    let token = Browser::token_in(&dev.get("/dashboard").await);
    let refused = dev
        .post_form(
            "/dashboard/keys",
            &[("csrf_token", &token), ("mode", "test")],
        )
        .await;
    assert_eq!(refused.status, 403, "a developer cannot make keys");

    let mut owner = Browser::new(&app.base);
    assert_eq!(
        owner
            .sign_in("owner@example.com", &owner_password)
            .await
            .status,
        303
    );
    let page = owner.get("/dashboard/keys").await;
    assert_eq!(page.status, 200);
    let token = Browser::token_in(&page);
    let made = owner
        .post_form(
            "/dashboard/keys",
            &[("csrf_token", &token), ("mode", "test")],
        )
        .await;
    assert_eq!(made.status, 200);
    let secret = new_secret(&made);
    assert!(secret.starts_with("sk_test_"));
    let (s, _) = app.get_json(&secret, "/v1/payments").await;
    assert_eq!(s, 200, "the new key works on the API");
    let shown_again = owner.get("/dashboard/keys").await;
    assert!(!shown_again.body.contains(&secret), "shown only once");

    let key_id = key_row_id(&shown_again, &secret);
    let rolled = owner
        .post_form(
            &format!("/dashboard/keys/{key_id}/roll"),
            &[("csrf_token", &token), ("expires_in", "0")],
        )
        .await;
    assert_eq!(rolled.status, 200);
    let replacement = new_secret(&rolled);
    assert_eq!(
        app.get_json(&secret, "/v1/payments").await.0,
        401,
        "rolled with no grace"
    );
    assert_eq!(app.get_json(&replacement, "/v1/payments").await.0, 200);

    let page = owner.get("/dashboard/keys").await;
    let replacement_id = key_row_id(&page, &replacement);
    let asked = owner
        .post_form(
            &format!("/dashboard/keys/{replacement_id}/revoke"),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(asked.status, 200);
    assert!(asked.body.contains("Revoke the key"), "revoking asks first");
    assert_eq!(
        app.get_json(&replacement, "/v1/payments").await.0,
        200,
        "asking revokes nothing"
    );
    let revoked = owner
        .post_form(
            &format!("/dashboard/keys/{replacement_id}/revoke"),
            &[("csrf_token", &token), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(revoked.status, 200);
    assert!(revoked.body.contains("revoked"));
    assert_eq!(
        app.get_json(&replacement, "/v1/payments").await.0,
        401,
        "revoked at once"
    );
}

#[tokio::test]
async fn the_payments_list_filters_and_pages_and_a_refund_form_refunds_once() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let card = |number: &str, reference: &str| {
        json!({"amount": 4999, "currency": "eur", "provider": "simulated", "reference": reference,
               "payment_method": {"type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2031, "cvc": "123"}}})
    };
    let mut succeeded = Vec::new();
    for i in 0..26 {
        let (s, p) = app
            .post_json(
                &key,
                "/v1/payments",
                card("4242424242424242", &format!("order_{i}")),
            )
            .await;
        assert_eq!(s, 201);
        succeeded.push(p["id"].as_str().expect("id").to_string());
    }
    let (s, declined) = app
        .post_json(&key, "/v1/payments", card("4000000000000002", "order_x"))
        .await;
    assert_eq!(s, 201);
    let password = user(&app, &merchant, "dev@example.com", UserRole::Developer).await;
    let mut browser = Browser::new(&app.base);
    assert_eq!(
        browser.sign_in("dev@example.com", &password).await.status,
        303
    );

    let first = browser.get("/dashboard/payments").await;
    assert_eq!(first.status, 200);
    assert_eq!(
        first.body.matches("<tr data-payment=").count(),
        25,
        "25 a page"
    );
    let next = first.link("next").expect("a next page");
    let second = browser.get(&next).await;
    assert_eq!(
        second.body.matches("<tr data-payment=").count(),
        2,
        "27 in all"
    );
    assert!(
        second.body.contains(&succeeded[0]),
        "the oldest on the last page"
    );
    assert!(
        first.body.contains("<strong>27</strong> payments found")
            && !first.body.contains(r#"rel="prev""#),
        "the count, and no newer page before the first"
    );
    let back = second.link("prev").expect("a way back");
    let again = browser.get(&back).await;
    assert_eq!(
        again.body.matches("<tr data-payment=").count(),
        25,
        "back to the newest 25"
    );
    assert!(again.body.contains(&succeeded[25]) && !again.body.contains(&succeeded[0]));

    let failed = browser.get("/dashboard/payments?status=failed").await;
    assert_eq!(failed.body.matches("<tr data-payment=").count(), 1);
    assert!(failed.body.contains(declined["id"].as_str().expect("id")));
    // A reference's start; `_` is a letter here, not a wildcard.
    let by_reference = browser.get("/dashboard/payments?q=order_7").await;
    assert!(by_reference.body.contains(&succeeded[7]));
    assert_eq!(by_reference.body.matches("<tr data-payment=").count(), 1);
    assert_eq!(
        browser.get("/dashboard/payments?status=lost").await.status,
        422
    );

    // Refund 10.00 of a succeeded payment; the same form sent twice refunds once.
    let id = &succeeded[3];
    let page = browser.get(&format!("/dashboard/payments/{id}")).await;
    let token = Browser::token_in(&page);
    let idempotency_key = page
        .body
        .split(r#"name="idempotency_key" value=""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the refund form")
        .to_string();
    // The form is prefilled with what is left, in major units of the payment's currency.
    let detail = browser.get(&format!("/dashboard/payments/{id}")).await;
    assert!(
        detail.body.contains(r#"value="49.99""#) && detail.body.contains("Refund amount (EUR)"),
        "prefilled in euros"
    );
    // The first press only asks: what goes back, with the amount read in euros.
    let asked = browser
        .post_form(
            &format!("/dashboard/payments/{id}/refund"),
            &[
                ("csrf_token", &token),
                ("idempotency_key", &idempotency_key),
                ("amount", "10"),
                ("reason", "requested_by_customer"),
            ],
        )
        .await;
    assert_eq!(asked.status, 200);
    assert!(asked.body.contains("Refund €10.00?"), "{}", asked.body);
    assert!(
        asked.body.contains("refunded), requested by the customer.")
            && asked
                .body
                .contains(r#"name="reason" value="requested_by_customer""#),
        "the reason is said and carried to the confirmation: {}",
        asked.body
    );
    assert!(asked.body.contains(r#"name="confirmed" value="yes""#));
    let (_, p) = app.get_json(&key, &format!("/v1/payments/{id}")).await;
    assert_eq!(p["amount_refunded"], 0, "asking refunds nothing");
    for _ in 0..2 {
        let r = browser
            .post_form(
                &format!("/dashboard/payments/{id}/refund"),
                &[
                    ("csrf_token", &token),
                    ("idempotency_key", &idempotency_key),
                    ("amount", "10.00"),
                    ("reason", "requested_by_customer"),
                    ("confirmed", "yes"),
                ],
            )
            .await;
        assert_eq!(r.status, 303);
        let shown = browser
            .get(r.location.as_deref().expect("back to the payment"))
            .await;
        assert!(
            shown.body.contains("recorded ("),
            "the refund's flash is shown"
        );
    }
    let (_, p) = app.get_json(&key, &format!("/v1/payments/{id}")).await;
    assert_eq!(p["amount_refunded"], 1000, "refunded once");
    let (_, made) = app
        .get_json(&key, &format!("/v1/payments/{id}/refunds"))
        .await;
    assert_eq!(made["data"][0]["reason"], "requested_by_customer", "{made}");
    let shown = browser.get(&format!("/dashboard/payments/{id}")).await;
    assert!(
        shown
            .body
            .contains(r#"<span class="reason">requested by the customer</span>"#),
        "the payment page says why"
    );
    let unknown_reason = browser
        .post_form(
            &format!("/dashboard/payments/{id}/refund"),
            &[
                ("csrf_token", &token),
                ("amount", "1.00"),
                ("reason", "changed_mind"),
                ("confirmed", "yes"),
            ],
        )
        .await;
    assert_eq!(unknown_reason.status, 422);
    assert!(
        unknown_reason
            .body
            .contains("must be one of duplicate, fraudulent, requested_by_customer"),
        "{}",
        unknown_reason.body
    );
    let bad = browser
        .post_form(
            &format!("/dashboard/payments/{id}/refund"),
            &[
                ("csrf_token", &token),
                ("idempotency_key", "other"),
                ("amount", "45.00"),
                ("confirmed", "yes"),
            ],
        )
        .await;
    // The service's rule, as the API tells it.
    assert!(
        bad.flash().is_some_and(|l| l.contains("Not refunded")),
        "{:?}",
        bad.flash()
    );
    // Not a number: refused before the service; a key over 255 characters is refused too,
    // never dropped (a dropped key would let a double submit refund twice).
    let unreadable = browser
        .post_form(
            &format!("/dashboard/payments/{id}/refund"),
            &[("csrf_token", &token), ("amount", "ten")],
        )
        .await;
    assert_eq!(unreadable.status, 422);
    let long_key = "k".repeat(256);
    let too_long = browser
        .post_form(
            &format!("/dashboard/payments/{id}/refund"),
            &[("csrf_token", &token), ("idempotency_key", &long_key)],
        )
        .await;
    assert_eq!(too_long.status, 422);
    assert!(too_long.body.contains("1 to 255"), "{}", too_long.body);
    let (_, p) = app.get_json(&key, &format!("/v1/payments/{id}")).await;
    assert_eq!(p["amount_refunded"], 1000, "a bad amount changes nothing");
}

async fn signed_in_as(app: &TestApp, merchant: &str, email: &str, role: UserRole) -> Browser {
    let password = user(app, merchant, email, role).await;
    let mut browser = Browser::new(&app.base);
    assert_eq!(browser.sign_in(email, &password).await.status, 303);
    browser
}

#[tokio::test]
async fn the_webhooks_pages_manage_endpoints_and_show_every_attempt() {
    use entity::webhook_endpoints;
    use payrail_tests::{Behavior, Receiver};
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    // The test event's first attempt meets a 503, the sweep's retry a 200.
    let receiver = Receiver::start(Behavior::Statuses(vec![503], 200)).await;
    let mut owner = signed_in_as(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let page = owner.get("/dashboard/webhooks").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("No endpoint yet."));
    let token = Browser::token_in(&page);

    // Checked as the API checks it: a bad URL is a 422 that adds nothing; no token, a 403.
    let forged = owner
        .post_form("/dashboard/webhooks", &[("url", &receiver.url)])
        .await;
    assert_eq!(forged.status, 403);
    let bad = owner
        .post_form(
            "/dashboard/webhooks",
            &[
                ("csrf_token", &token),
                ("url", "ftp://example.com/x"),
                ("events", "*"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains(r#"class="error""#));
    let unknown_event = owner
        .post_form(
            "/dashboard/webhooks",
            &[
                ("csrf_token", &token),
                ("url", &receiver.url),
                ("events", "payment.exploded"),
            ],
        )
        .await;
    assert_eq!(unknown_event.status, 422);
    assert_eq!(app.count("SELECT count(*) FROM webhook_endpoints").await, 0);
    let created = owner
        .post_form(
            "/dashboard/webhooks",
            &[
                ("csrf_token", &token),
                ("url", &receiver.url),
                ("events", "payment.pending, payment.succeeded"),
            ],
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let endpoint = webhook_endpoints::Entity::find()
        .filter(webhook_endpoints::Column::Url.eq(&receiver.url))
        .one(&app.db)
        .await
        .expect("query")
        .expect("created");
    assert!(
        created.body.contains(&endpoint.secret),
        "the secret is shown once"
    );
    assert!(created.body.contains("payment.pending, payment.succeeded"));
    assert!(
        !owner
            .get("/dashboard/webhooks")
            .await
            .body
            .contains(&endpoint.secret),
        "and never again"
    );

    // Send test: the first attempt is made at once and its answer said.
    let sent = owner
        .post_form(
            &format!("/dashboard/webhooks/{}/test", endpoint.id),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(sent.status, 303);
    assert!(
        sent.flash().is_some_and(|l| l.contains("answered 503")
            && l.contains("attempt 1 failed")
            && !l.contains("WillRetry")),
        "said as a person reads it: {:?}",
        sent.flash()
    );
    let delivery_id: String = app
        .eventually(
            Duration::from_secs(20),
            "the test delivery succeeds",
            || async {
                let d = entity::webhook_deliveries::Entity::find()
                    .filter(entity::webhook_deliveries::Column::EndpointId.eq(endpoint.id.clone()))
                    .one(&app.db)
                    .await
                    .expect("query")?;
                (d.status == entity::status::DeliveryStatus::Succeeded).then(|| d.id.to_string())
            },
        )
        .await;
    let page = owner
        .get(&format!("/dashboard/deliveries/{delivery_id}"))
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("webhook_endpoint.test"));
    assert!(page.body.contains(r#"data-attempt="1""#) && page.body.contains(r#"data-attempt="2""#));
    // Metered like any delivery: the gateway's first attempt and the worker's retry.
    let (_, usage) = app.get_json(&key, "/v1/usage").await;
    assert_eq!(
        (&usage["webhook_deliveries"], &usage["webhook_attempts"]),
        (&serde_json::json!(1), &serde_json::json!(2)),
        "{usage}"
    );
    assert!(
        page.body.contains(r#"<td data-label="Answer">503</td>"#)
            && page.body.contains(r#"<td data-label="Answer">200</td>"#)
    );
    assert!(page.body.contains(" ms</td>"), "latency shown");
    assert!(
        page.body.contains("answer from the merchant"),
        "response excerpt shown"
    );
    // The request as the receiver got it: the one body, and each attempt's own headers.
    let escaped = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let got = receiver.received();
    assert_eq!(got.len(), 2, "two attempts reached the receiver");
    let body = String::from_utf8(got[0].body.clone()).expect("utf-8");
    assert!(
        page.body.contains(&format!(
            r#"<pre class="sent" id="request-body">{}</pre>"#,
            escaped(&body)
        )),
        "the body sent is shown exactly: {body}"
    );
    for request in &got {
        for name in [
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "x-payrail-delivery",
        ] {
            let value = request.header(name).expect("sent");
            assert!(
                page.body.contains(&escaped(&format!("{name}: {value}\n"))),
                "{name}: {value} shown"
            );
        }
    }
    // The API says the same.
    let (_, d) = app
        .get_json(&key, &format!("/v1/webhook_deliveries/{delivery_id}"))
        .await;
    let sent = &d["attempt_history"][0]["request_headers"];
    assert!(
        sent.as_array()
            .is_some_and(|h| h.iter().any(|h| h["name"] == "webhook-signature"
                && got
                    .iter()
                    .any(|r| r.header("webhook-signature") == h["value"].as_str()))),
        "{d}"
    );

    assert!(
        !page.body.contains("Retry now"),
        "a delivered webhook is not retried"
    );
    let list = owner.get("/dashboard/webhooks?status=succeeded").await;
    assert!(list.body.contains(&delivery_id));
    assert_eq!(
        owner.get("/dashboard/webhooks?status=lost").await.status,
        422
    );

    // Disable, enable, rotate.
    let off = owner
        .post_form(
            &format!("/dashboard/webhooks/{}/disable", endpoint.id),
            &[("csrf_token", &token)],
        )
        .await;
    assert_eq!(off.status, 200, "disabling asks first");
    assert!(off.body.contains("Disable the endpoint"));
    let off = owner
        .post_form(
            &format!("/dashboard/webhooks/{}/disable", endpoint.id),
            &[("csrf_token", &token), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(off.status, 303);
    assert!(
        owner
            .get("/dashboard/webhooks")
            .await
            .body
            .contains(r#"data-status="disabled">disabled</span> (manual)"#)
    );
    let refused_test = owner
        .post_form(
            &format!("/dashboard/webhooks/{}/test", endpoint.id),
            &[("csrf_token", &token)],
        )
        .await;
    assert!(refused_test.flash().is_some_and(|l| l.contains("Enable")));
    owner
        .post_form(
            &format!("/dashboard/webhooks/{}/enable", endpoint.id),
            &[("csrf_token", &token)],
        )
        .await;
    let rotated = owner
        .post_form(
            &format!("/dashboard/webhooks/{}/rotate", endpoint.id),
            &[("csrf_token", &token), ("confirmed", "yes")],
        )
        .await;
    assert_eq!(rotated.status, 200);
    let after = webhook_endpoints::Entity::find_by_id(endpoint.id.clone())
        .one(&app.db)
        .await
        .expect("query")
        .expect("endpoint");
    assert_eq!(after.status, entity::status::EndpointStatus::Enabled);
    assert_ne!(after.secret, endpoint.secret);
    assert_eq!(
        after.previous_secret.as_deref(),
        Some(endpoint.secret.as_str())
    );
    assert!(rotated.body.contains(&after.secret));
    let recover_bad = owner
        .post_form(
            &format!("/dashboard/webhooks/{}/recover", endpoint.id),
            &[("csrf_token", &token), ("hours", "0")],
        )
        .await;
    assert_eq!(recover_bad.status, 422);
    let recovered = owner
        .post_form(
            &format!("/dashboard/webhooks/{}/recover", endpoint.id),
            &[("csrf_token", &token), ("hours", "24")],
        )
        .await;
    assert!(
        recovered
            .flash()
            .is_some_and(|l| l.contains("0 failed deliveries")),
        "{:?}",
        recovered.flash()
    );
    // The test delivery failed after all (as in an outage): Recover makes it due again, the
    // worker sends it, and its attempt numbers go on from the first round's.
    assert_eq!(
        app.count(&format!(
            "WITH d AS (UPDATE webhook_deliveries SET status = 'failed', next_retry_at = NULL WHERE id = '{delivery_id}' RETURNING 1) SELECT count(*) FROM d"
        ))
        .await,
        1
    );
    let recovered = owner
        .post_form(
            &format!("/dashboard/webhooks/{}/recover", endpoint.id),
            &[("csrf_token", &token), ("hours", "24")],
        )
        .await;
    assert!(
        recovered
            .flash()
            .is_some_and(|l| l.contains("1 failed deliveries")),
        "{:?}",
        recovered.flash()
    );
    app.eventually(Duration::from_secs(20), "the recovered delivery", || async {
        (app.count(&format!(
            "SELECT count(*) FROM webhook_deliveries WHERE id = '{delivery_id}' AND status = 'succeeded'"
        ))
        .await
            == 1)
            .then_some(())
    })
    .await;
    let page = owner
        .get(&format!("/dashboard/deliveries/{delivery_id}"))
        .await;
    assert!(page.body.contains(r#"data-attempt="3""#), "{}", page.body);

    // A viewer looks and cannot act; another merchant sees nothing of it.
    let mut viewer = signed_in_as(&app, &merchant, "viewer@example.com", UserRole::Viewer).await;
    let page = viewer.get("/dashboard/webhooks").await;
    assert!(page.body.contains(&receiver.url));
    assert!(!page.body.contains("Add an endpoint") && !page.body.contains("Rotate secret"));
    let viewer_token = Browser::token_in(&page);
    let refused = viewer
        .post_form(
            &format!("/dashboard/webhooks/{}/disable", endpoint.id),
            &[("csrf_token", &viewer_token)],
        )
        .await;
    assert_eq!(refused.status, 403);
    let (stranger, _) = app.create_merchant_with_id("Stranger").await;
    let mut other = signed_in_as(&app, &stranger, "other@example.com", UserRole::Owner).await;
    assert_eq!(
        other
            .get(&format!("/dashboard/deliveries/{delivery_id}"))
            .await
            .status,
        404
    );
    let other_page = other.get("/dashboard/webhooks").await;
    assert!(!other_page.body.contains(&receiver.url));
    let other_token = Browser::token_in(&other_page);
    let r = other
        .post_form(
            &format!("/dashboard/webhooks/{}/disable", endpoint.id),
            &[("csrf_token", &other_token)],
        )
        .await;
    assert_eq!(r.status, 404);
    let still = webhook_endpoints::Entity::find_by_id(endpoint.id.clone())
        .one(&app.db)
        .await
        .expect("query")
        .expect("endpoint");
    assert_eq!(
        still.status,
        entity::status::EndpointStatus::Enabled,
        "nothing changed"
    );
}

#[tokio::test]
async fn the_overview_charts_the_last_day_of_payments_and_webhooks() {
    use payrail_tests::{Behavior, Receiver};
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (s, _) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "enabled_events": ["payment.succeeded"]}),
        )
        .await;
    assert_eq!(s, 201);
    for (amount, currency, outcome) in [
        (1500, "eur", "succeeded"),
        (2500, "eur", "succeeded"),
        (700, "usd", "failed"),
        (900, "usd", "pending"),
        (1100, "usd", "cancelled"),
    ] {
        let (s, p) = app
            .post_json(
                &key,
                "/v1/payments",
                json!({"amount": amount, "currency": currency, "provider": "simulated"}),
            )
            .await;
        assert_eq!(s, 201);
        let id = p["id"].as_str().expect("id");
        if outcome == "cancelled" {
            let (s, _) = app
                .post_json(&key, &format!("/v1/payments/{id}/cancel"), json!({}))
                .await;
            assert_eq!(s, 200);
        } else if outcome != "pending" {
            let (s, _) = app
                .post_json(
                    &key,
                    &format!(
                        "/v1/sandbox/payments/{}/complete",
                        p["id"].as_str().expect("id")
                    ),
                    json!({"outcome": outcome}),
                )
                .await;
            assert_eq!(s, 200);
            if amount == 1500 {
                // €5.00 of it goes back: gross stays, net drops.
                let (s, r) = app
                    .post_json(
                        &key,
                        &format!("/v1/payments/{id}/refunds"),
                        json!({"amount": 500}),
                    )
                    .await;
                assert_eq!(s, 201, "{r}");
            }
        }
    }
    app.eventually(
        Duration::from_secs(20),
        "two webhooks delivered",
        || async { (receiver.of_type("payment.succeeded").len() == 2).then_some(()) },
    )
    .await;
    let mut owner = signed_in_as(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let page = loop {
        let page = owner.get("/dashboard").await;
        if page.body.contains(r#"id="backlog"><strong>0</strong>"#) {
            break page.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the backlog never drained"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        receiver.received().len(),
        2,
        "the endpoint subscribed to payment.succeeded alone"
    );
    let hour = chrono::Utc::now().format("%Y-%m-%dT%H").to_string();
    // Succeeded 2 of the 3 that succeeded or failed: a cancellation is the merchant's choice,
    // not a failure (as Stripe counts it); the pending and cancelled ones are "other".
    assert!(
        page.contains(r#"id="success-rate"><strong>66.7 %</strong>"#),
        "{page}"
    );
    assert!(page.contains(&format!(
        r#"data-hour="{hour}" data-status="succeeded" data-count="2""#
    )));
    assert!(page.contains(&format!(
        r#"data-hour="{hour}" data-status="failed" data-count="1""#
    )));
    assert!(page.contains(&format!(
        r#"data-hour="{hour}" data-status="other" data-count="2""#
    )));
    assert!(page.contains("2 succeeded, 1 failed, 2 other"));
    assert!(
        page.contains(r#"id="chart-scale""#)
            && page.contains("the dashed top line is 5 payments an hour"),
        "the chart says its scale"
    );
    assert!(!page.contains(r#"id="first-steps""#));
    // The last 7 days, by day: today's bar holds the same payments.
    let week = owner.get("/dashboard?range=7d").await;
    assert_eq!(week.status, 200);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert!(
        week.body.contains(&format!(
            r#"data-hour="{today}" data-status="succeeded" data-count="2""#
        )) && week.body.contains("Last 7 days")
            && week.body.contains("5 payments a day"),
        "{}",
        week.body
    );
    assert!(week.body.contains(r#"<option value="7d" selected>"#));
    let bad = owner.get("/dashboard?range=1y").await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("range must be 24h, 7d or 30d"));
    // Any run of UTC days, by day: the pending payment, moved back three days, is in that
    // day's window and in no later one; dates left out or wrong are a 422 naming the field.
    use sea_orm::ConnectionTrait as _;
    app.db
        .execute_unprepared(&format!(
            "UPDATE payments SET created_at = created_at - interval '3 days' WHERE merchant_id = '{merchant}' AND amount = 900"
        ))
        .await
        .expect("moved back");
    let then = (chrono::Utc::now() - chrono::Duration::days(3))
        .format("%Y-%m-%d")
        .to_string();
    let that_day = owner
        .get(&format!("/dashboard?from={then}&to={then}"))
        .await;
    assert_eq!(that_day.status, 200);
    assert!(
        that_day.body.contains(&format!(
            r#"data-hour="{then}" data-status="other" data-count="1""#
        )) && that_day.body.contains(&format!("{then} (UTC)"))
            && !that_day
                .body
                .contains(r#"data-status="succeeded" data-count"#)
            && that_day
                .body
                .contains(&format!(r#"name="from" value="{then}""#)),
        "{}",
        that_day.body
    );
    let since = owner.get(&format!("/dashboard?from={then}")).await;
    assert_eq!(since.status, 200, "to defaults to today");
    assert!(
        since.body.contains(&format!(
            r#"data-hour="{then}" data-status="other" data-count="1""#
        )) && since.body.contains(&format!(
            r#"data-hour="{today}" data-status="succeeded" data-count="2""#
        )) && since.body.contains(&format!(
            r#"data-hour="{today}" data-status="other" data-count="1""#
        )) && since.body.contains(&format!("{then} to {today} (UTC)")),
        "{}",
        since.body
    );
    for (query, said) in [
        ("from=2026-13-01", "from must be a date such as 2026-11-01"),
        ("from=2026-11-02&to=yesterday", "to must be a date"),
        ("to=2026-11-02", "to needs a from"),
        ("from=2026-11-02&to=2026-11-01", "must not be after"),
        ("from=2025-01-01&to=2026-11-01", "at most 366 days"),
    ] {
        let refused = owner.get(&format!("/dashboard?{query}")).await;
        assert_eq!(refused.status, 422, "{query}");
        assert!(refused.body.contains(said), "{query}: {}", refused.body);
    }
    // A merchant with no payment yet is shown the first step, with its API's address.
    let (newcomer, _) = app.create_merchant_with_id("New shop").await;
    let mut new_owner = signed_in_as(&app, &newcomer, "new@example.com", UserRole::Owner).await;
    let empty = new_owner.get("/dashboard").await.body;
    assert!(
        empty.contains(r#"id="first-steps""#)
            && empty.contains(&format!(
                "curl -X POST {}/v1/payments",
                app.state.public_url
            ))
            && empty.contains(r#"href="/dashboard/keys""#),
        "{empty}"
    );
    // Volume by currency: what succeeded, gross and net of refunds.
    assert!(
        page.contains(r#"data-currency="EUR"><strong class="net">€35.00</strong> net · <span class="gross">€40.00</span> gross, €5.00 refunded · 2 payments"#),
        "{page}"
    );
    assert!(!page.contains(r#"data-currency="USD""#));
    assert!(page.contains(r#"id="webhook-success"><strong>100.0 %</strong>"#));
    assert!(
        page.contains(r#"id="webhook-p95"><strong>"#)
            && !page.contains(r#"id="webhook-p95"><strong>—"#)
    );
}

/// The issue's story in Debian's Chromium (`tests/clients/dashboard.mjs`): a payment appears
/// live, its failed delivery is retried and the attempt arrives live; a viewer has no button;
/// another merchant's user never sees it. Screenshots of every page are kept under
/// `target/tmp/dashboard-screenshots/`.
#[tokio::test]
async fn a_person_watches_a_payment_arrive_and_retries_its_delivery_in_chromium() {
    use payrail_tests::{Behavior, Receiver};
    let dir = crate::clients::tools().await;
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop A").await;
    let (stranger, _) = app.create_merchant_with_id("Shop B").await;
    // Every attempt of the first round fails; then the endpoint is back, slowly.
    let receiver = Receiver::start(Behavior::Statuses(vec![500; 5], 200)).await;
    let (s, _) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "enabled_events": ["payment.pending"]}),
        )
        .await;
    assert_eq!(s, 201);
    let owner = user(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let viewer = user(&app, &merchant, "viewer@example.com", UserRole::Viewer).await;
    let other = user(&app, &stranger, "other@example.com", UserRole::Owner).await;
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let story = json!({
        "base": app.base,
        "apiKey": key,
        "owner": {"email": "owner@example.com", "password": owner},
        "viewer": {"email": "viewer@example.com", "password": viewer},
        "stranger": {"email": "other@example.com", "password": other},
        "shots": shots,
    });
    // Once the first round has failed, the endpoint answers 200 after 1.2 s: the retried
    // attempt lands after the page that pressed Retry is shown, so it must arrive live.
    let slow_once_failed = {
        let receiver = receiver.clone();
        let db = app.db.clone();
        tokio::spawn(async move {
            use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
            loop {
                let failed = entity::webhook_deliveries::Entity::find()
                    .filter(
                        entity::webhook_deliveries::Column::Status
                            .eq(entity::status::DeliveryStatus::Failed),
                    )
                    .count(&db)
                    .await
                    .unwrap_or(0);
                if failed > 0 {
                    receiver.behave(Behavior::Hang(Duration::from_millis(1200)));
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut node = std::process::Command::new("node");
    node.arg(dir.join("dashboard.mjs"))
        .env("STORY", story.to_string())
        .current_dir(&dir);
    let output = crate::clients::run(node).await;
    crate::clients::assert_success("the dashboard story in Chromium", &output);
    slow_once_failed.abort();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("the dashboard story passed"), "{said}");
    for step in [
        "a refund of €25.00 with its reason was made from a phone",
        "the overview shows the days chosen",
        "every page fits a 390 px screen",
    ] {
        assert!(said.contains(step), "the story never said: {step}\n{said}");
    }
    // The retried attempt reached the endpoint: five failures, then the one that succeeded
    // (the story's later payments may add theirs).
    assert!(receiver.of_type("payment.pending").len() >= 6);
    for shot in [
        "1-overview.png",
        "2-payment.png",
        "3-delivery-failed.png",
        "4-delivery-retried.png",
        "5-payments.png",
        "6-webhooks.png",
        "7-logs.png",
        "8-keys.png",
        "9-overview-after.png",
        "10-viewer.png",
        "11-other-merchant.png",
        "phone-payments.png",
        "phone-payment.png",
    ] {
        let bytes = std::fs::read(shots.join(shot)).expect("screenshot kept");
        assert!(bytes.starts_with(b"\x89PNG"), "{shot} is a PNG");
    }
    // `PAYRAIL_REFRESH_SCREENSHOTS=1` makes this run's pictures the README's.
    if std::env::var("PAYRAIL_REFRESH_SCREENSHOTS").as_deref() == Ok("1") {
        let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/screenshots");
        for (taken, shown) in [
            ("9-overview-after.png", "overview.png"),
            ("4-delivery-retried.png", "delivery-retried.png"),
            ("phone-payments.png", "phone-payments.png"),
            ("phone-payment.png", "phone-payment.png"),
        ] {
            std::fs::copy(shots.join(taken), readme.join(shown)).expect("refresh a screenshot");
        }
    }
}

#[tokio::test]
async fn racing_refreshes_all_succeed_and_a_refresh_token_replayed_later_ends_the_session() {
    let app = TestApp::spawn().await;
    let (merchant, _) = app.create_merchant_with_id("Shop").await;
    let mut browser = signed_in_as(&app, &merchant, "rita@example.com", UserRole::Owner).await;
    // The access token has expired: two requests of the page go at once with one refresh token.
    browser.cookies.remove("payrail_access");
    let before = browser.cookies["payrail_refresh"].clone();
    let twin = |b: &Browser| {
        let mut t = Browser::new(&app.base);
        t.cookies = b.cookies.clone();
        t
    };
    let (mut one, mut two) = (twin(&browser), twin(&browser));
    let (a, b) = tokio::join!(one.get("/dashboard"), two.get("/dashboard"));
    assert_eq!(
        (a.status, b.status),
        (200, 200),
        "neither is sent to sign in"
    );
    let renewed: Vec<&String> = [&a, &b]
        .iter()
        .flat_map(|p| p.set_cookies.iter())
        .filter(|c| c.starts_with("payrail_refresh="))
        .collect();
    assert_eq!(renewed.len(), 1, "one new refresh token: {renewed:?}");
    let current = if one.cookies["payrail_refresh"] != before {
        one.cookies["payrail_refresh"].clone()
    } else {
        two.cookies["payrail_refresh"].clone()
    };
    // Past the grace, the replaced token comes back: a thief or a victim holds it, so every
    // session of the family ends, the current one too.
    app.db
        .execute_unprepared(
            "UPDATE dashboard_sessions SET revoked_at = revoked_at - interval '11 seconds' WHERE revoked_at IS NOT NULL",
        )
        .await
        .expect("age the replaced session");
    let mut thief = Browser::new(&app.base);
    thief.cookies.insert("payrail_refresh".into(), before);
    assert_eq!(thief.get("/dashboard").await.status, 303);
    let mut owner = Browser::new(&app.base);
    owner.cookies.insert("payrail_refresh".into(), current);
    assert_eq!(
        owner.get("/dashboard").await.status,
        303,
        "the family was ended"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM dashboard_sessions WHERE revoked_at IS NULL")
            .await,
        0
    );
}

/// A page's socket is closed when its access token expires (3 s here): in Chromium, the page
/// renews the session, reconnects, and a payment created afterwards still appears live.
#[tokio::test]
async fn a_page_whose_socket_dropped_renews_its_session_reconnects_and_stays_live() {
    let dir = crate::clients::tools().await;
    let app = TestApp::spawn_with(payrail_tests::Options {
        dashboard_access_ttl: Duration::from_secs(3),
        ..payrail_tests::Options::default()
    })
    .await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let story = json!({
        "base": app.base,
        "apiKey": key,
        "owner": {"email": "owner@example.com", "password": password},
    });
    let mut node = std::process::Command::new("node");
    node.arg(dir.join("dashboard-reconnect.mjs"))
        .env("STORY", story.to_string())
        .current_dir(&dir);
    let output = crate::clients::run(node).await;
    crate::clients::assert_success("the reconnection story in Chromium", &output);
    assert!(String::from_utf8_lossy(&output.stdout).contains("the reconnection story passed"));
    // The renewal went through the refresh token: its first session was replaced.
    assert!(
        app.count("SELECT count(*) FROM dashboard_sessions WHERE revoked_at IS NOT NULL")
            .await
            >= 1
    );
}

/// The dashboard shows one mode at a time, says which, and switches (issue 19): test data with
/// a banner by default, live data after the switch, each with its own balance; another mode's
/// payment is a 404 like another merchant's. Viewers switch too; a forged or odd switch is
/// refused.
#[tokio::test]
async fn the_dashboard_shows_one_mode_at_a_time_with_its_balance_and_switches() {
    let app = TestApp::spawn().await;
    let (merchant, test_key) = app.create_merchant_with_id("Two worlds").await;
    let (s, test_payment) = app
        .post_json(
            &test_key,
            "/v1/payments",
            json!({"amount": 4200, "currency": "eur", "provider": "simulated",
                   "payment_method": {"type": "card", "card": {"number": "4242424242424242",
                   "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .await;
    assert_eq!(s, 201);
    let test_id = test_payment["id"].as_str().expect("id").to_string();
    // Live money: an operator's adjustment (no live provider here).
    let r = app
        .client
        .post(app.url(&format!("/v1/admin/merchants/{merchant}/adjustments")))
        .bearer_auth(payrail_tests::ADMIN_TOKEN)
        .json(&json!({"livemode": true, "currency": "usd", "amount": 9900, "description": "Opening balance"}))
        .send()
        .await
        .expect("adjust");
    assert_eq!(r.status(), 201);

    let password = user(&app, &merchant, "owner@example.com", UserRole::Viewer).await;
    let mut browser = Browser::new(&app.base);
    browser.sign_in("owner@example.com", &password).await;
    let overview = browser.get("/dashboard").await;
    assert_eq!(overview.status, 200);
    assert!(
        overview
            .body
            .contains("Test mode: you are viewing test data")
    );
    assert!(overview.body.contains(r#"data-mode="test""#));
    assert!(
        overview.body.contains(r#"data-currency="EUR""#),
        "the test balance"
    );
    assert!(!overview.body.contains(r#"data-currency="USD""#));
    assert!(overview.body.contains(&test_id));
    assert_eq!(
        browser
            .get(&format!("/dashboard/payments/{test_id}"))
            .await
            .status,
        200
    );

    // A switch needs the page's token, and a mode that exists.
    let token = Browser::token_in(&overview);
    let forged = browser
        .post_form("/dashboard/mode", &[("mode", "live")])
        .await;
    assert_eq!(forged.status, 403);
    let odd = browser
        .post_form(
            "/dashboard/mode",
            &[("csrf_token", &token), ("mode", "staging")],
        )
        .await;
    assert_eq!(odd.status, 422);
    let switched = browser
        .post_form(
            "/dashboard/mode",
            &[("csrf_token", &token), ("mode", "live")],
        )
        .await;
    assert_eq!(
        (switched.status, switched.location.as_deref()),
        (303, Some("/dashboard"))
    );
    let live = browser.get("/dashboard").await;
    assert!(!live.body.contains("Test mode: you are viewing test data"));
    assert!(live.body.contains(r#"data-mode="live""#));
    assert!(
        live.body.contains(r#"data-currency="USD""#),
        "the live balance"
    );
    assert!(live.body.contains("$99.00"));
    assert!(!live.body.contains(r#"data-currency="EUR""#));
    assert!(
        !live.body.contains(&test_id),
        "test payments are not live data"
    );
    assert_eq!(
        browser
            .get(&format!("/dashboard/payments/{test_id}"))
            .await
            .status,
        404
    );
    let back = browser
        .post_form(
            "/dashboard/mode",
            &[("csrf_token", &Browser::token_in(&live)), ("mode", "test")],
        )
        .await;
    assert_eq!(back.status, 303);
    assert!(browser.get("/dashboard").await.body.contains(&test_id));
}

/// Issue 20: guesses are counted before they are checked, so a burst of 20 at once for one
/// account has at most five checked (the limit), not all twenty; and behind the operator's
/// proxies (`PAYRAIL_TRUSTED_PROXIES`) each client is counted by the address the proxies name,
/// while a client that is not a proxy cannot choose its address with `X-Forwarded-For`.
#[tokio::test]
async fn a_burst_of_guesses_gets_five_checks_and_clients_are_told_apart_behind_proxies() {
    let mut app = TestApp::spawn().await;
    let (merchant, _) = app.create_merchant_with_id("Shop").await;
    user(&app, &merchant, "target@example.com", UserRole::Owner).await;
    let page = Browser::new(&app.base).get("/dashboard/login").await;
    let token = Browser::token_in(&page);
    let csrf = page
        .set_cookies
        .iter()
        .find_map(|c| c.strip_prefix("payrail_dashboard_csrf="))
        .and_then(|c| c.split(';').next())
        .expect("csrf cookie")
        .to_string();
    let client = app.client.clone();
    let attempt = |base: String, email: String, forwarded: Option<String>| {
        let (client, csrf, token) = (client.clone(), csrf.clone(), token.clone());
        async move {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("email", &email)
                .append_pair("password", "guess")
                .append_pair("csrf_token", &token)
                .finish();
            let mut r = client
                .post(format!("{base}/dashboard/login"))
                .header("cookie", format!("payrail_dashboard_csrf={csrf}"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body);
            if let Some(f) = forwarded {
                r = r.header("x-forwarded-for", f);
            }
            r.send().await.expect("sign-in").status().as_u16()
        }
    };
    let checks = |text: &str| {
        text.lines()
            .find(|l| l.starts_with("dashboard_password_checks_total "))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let metrics_base = app.metrics_base.clone();
    let scrape = |client: reqwest::Client| {
        let url = format!("{metrics_base}/metrics");
        async move {
            client
                .get(url)
                .send()
                .await
                .expect("scrape")
                .text()
                .await
                .expect("text")
        }
    };
    let before = checks(&scrape(client.clone()).await);
    let answers = futures_util::future::join_all(
        (0..20).map(|_| attempt(app.base.clone(), "target@example.com".into(), None)),
    )
    .await;
    let after = checks(&scrape(client.clone()).await);
    assert_eq!(after - before, 5.0, "{answers:?}");
    assert_eq!(answers.iter().filter(|s| **s == 401).count(), 5);
    assert_eq!(answers.iter().filter(|s| **s == 429).count(), 15);

    // Behind a trusted proxy: two clients, counted apart by the address it names.
    let mut settings = app.settings.clone();
    settings.gateway.trusted_proxies =
        gateway::http::client_address::TrustedProxies::parse("127.0.0.1/32").expect("cidr");
    let (behind, _) = app.spawn_second_gateway_with(settings).await;
    for i in 0..3 {
        attempt(
            behind.clone(),
            format!("nobody{i}@example.com"),
            Some("198.51.100.7".into()),
        )
        .await;
    }
    let redis = redis::Client::open(payrail_tests::REDIS_URL).expect("redis");
    let mut conn = redis
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let prefix = app.prefix.clone();
    let count = |address: &'static str| {
        let mut conn = conn.clone();
        let key = format!("{prefix}:dashboard_signin_failures:address:{address}");
        async move {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<u64>>(&mut conn)
                .await
                .expect("get")
                .unwrap_or(0)
        }
    };
    assert_eq!(count("198.51.100.7").await, 3, "counted as the client");
    // Not through a trusted proxy: the header is a client's claim, ignored.
    let loopback_before = count("127.0.0.1").await;
    attempt(
        app.base.clone(),
        "nobody9@example.com".into(),
        Some("203.0.113.50".into()),
    )
    .await;
    assert_eq!(count("203.0.113.50").await, 0);
    assert_eq!(count("127.0.0.1").await, loopback_before + 1);
    let _ = redis::cmd("PING").query_async::<String>(&mut conn).await;
}

/// Issue 20: a signed-in form's CSRF token is bound to its session: another session's token
/// (even the same user's, in another browser) is refused, and so is one kept from before a
/// sign-out.
#[tokio::test]
async fn a_forms_token_is_bound_to_its_session() {
    let app = TestApp::spawn().await;
    let (merchant, _) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "ada@example.com", UserRole::Owner).await;
    let mut laptop = Browser::new(&app.base);
    let mut phone = Browser::new(&app.base);
    assert_eq!(
        laptop.sign_in("ada@example.com", &password).await.status,
        303
    );
    assert_eq!(
        phone.sign_in("ada@example.com", &password).await.status,
        303
    );
    let laptop_token = Browser::token_in(&laptop.get("/dashboard/keys").await);
    let phone_token = Browser::token_in(&phone.get("/dashboard/keys").await);
    assert_ne!(laptop_token, phone_token);
    let crossed = phone
        .post_form(
            "/dashboard/keys",
            &[("csrf_token", &laptop_token), ("mode", "test")],
        )
        .await;
    assert_eq!(crossed.status, 403, "another session's token");
    let own = phone
        .post_form(
            "/dashboard/keys",
            &[("csrf_token", &phone_token), ("mode", "test")],
        )
        .await;
    assert_eq!(own.status, 200);
    // Signed out and in again: the old page's token is dead.
    let out = laptop
        .post_form("/dashboard/logout", &[("csrf_token", &laptop_token)])
        .await;
    assert_eq!(out.status, 303);
    assert_eq!(
        laptop.sign_in("ada@example.com", &password).await.status,
        303
    );
    let stale = laptop
        .post_form(
            "/dashboard/keys",
            &[("csrf_token", &laptop_token), ("mode", "test")],
        )
        .await;
    assert_eq!(stale.status, 403, "a token from before the sign-out");
}

/// An HS256 token over `claims`, signed as the gateway signs its sessions.
fn hs256(claims: &serde_json::Value) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, KeyInit as _, Mac as _};
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let head = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(payrail_tests::DASHBOARD_SECRET.as_bytes())
        .expect("key");
    mac.update(format!("{head}.{body}").as_bytes());
    format!("{head}.{body}.{}", b64.encode(mac.finalize().into_bytes()))
}

/// Issue 20's forgery: whoever holds the dashboard secret can sign a token, but a token opens
/// nothing unless it names a session that still exists: the audit's forged owner token (no
/// session at all), one naming an invented session, and one naming a real session after its
/// sign-out all see the sign-in page, and mint no key.
#[tokio::test]
async fn a_signed_token_opens_nothing_without_a_live_session() {
    use base64::Engine as _;
    let app = TestApp::spawn().await;
    let (merchant, _) = app.create_merchant_with_id("Victim").await;
    let password = user(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();

    // A real session, to borrow its shape, then ended.
    let mut owner = Browser::new(&app.base);
    assert_eq!(
        owner.sign_in("owner@example.com", &password).await.status,
        303
    );
    let real = owner
        .cookies
        .get("payrail_access")
        .expect("access cookie")
        .clone();
    let real_claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(real.split('.').nth(1).expect("claims"))
            .expect("base64"),
    )
    .expect("json");
    // The genuine token works before sign-out: the forgeries below fail for the session alone.
    let mut genuine = Browser::new(&app.base);
    genuine
        .cookies
        .insert("payrail_access".into(), hs256(&real_claims));
    assert_eq!(genuine.get("/dashboard/keys").await.status, 200);
    let token = Browser::token_in(&owner.get("/dashboard/keys").await);
    assert_eq!(
        owner
            .post_form("/dashboard/logout", &[("csrf_token", &token)])
            .await
            .status,
        303
    );

    let user_id = real_claims["sub"].clone();
    let live_before = live_keys(&app).await;
    let forgeries = [
        json!({"sub": "usr_forged", "mer": merchant, "role": "owner", "exp": now + 600, "iat": now}),
        json!({"sub": user_id, "mer": merchant, "role": "owner", "fam": entity::ids::SessionId::generate(),
               "exp": now + 600, "iat": now}),
        json!({"sub": user_id, "mer": merchant, "role": "owner", "fam": real_claims["fam"],
               "exp": now + 600, "iat": now}),
    ];
    for claims in forgeries {
        let mut forger = Browser::new(&app.base);
        forger
            .cookies
            .insert("payrail_access".into(), hs256(&claims));
        let page = forger.get("/dashboard/keys").await;
        assert_eq!(page.status, 303, "{claims}: {}", page.body);
        assert_eq!(
            page.location.as_deref(),
            Some("/dashboard/login?next=%2Fdashboard%2Fkeys")
        );
        let minted = forger
            .post_form("/dashboard/keys", &[("mode", "live")])
            .await;
        assert_ne!(minted.status, 200, "{claims}");
    }
    assert_eq!(live_keys(&app).await, live_before, "no live key was minted");
}

async fn live_keys(app: &TestApp) -> i64 {
    app.db
        .query_one_raw(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT count(*) AS n FROM api_keys WHERE livemode = true".to_string(),
        ))
        .await
        .expect("count")
        .expect("row")
        .try_get::<i64>("", "n")
        .expect("n")
}

/// The payment page shows the payment as Stripe's does (issue 23 item 2): amount and status
/// with what was refunded, the customer, description, reference, method, provider, times and
/// metadata, each event with its payload; a decline says so; lists mark a partial refund.
#[tokio::test]
async fn the_payment_page_shows_the_payment_its_refunds_its_decline_and_its_events() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let (s, paid) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 11954, "currency": "eur", "provider": "simulated",
                   "description": "Two lamps", "reference": "order-7781",
                   "customer": {"email": "ada@example.com", "name": "Ada Lovelace"},
                   "metadata": {"cart": "c-42", "channel": "web"}}),
        )
        .await;
    assert_eq!(s, 201, "{paid}");
    let id = paid["id"].as_str().expect("id");
    let (s, _) = app
        .post_json(
            &key,
            &format!("/v1/sandbox/payments/{id}/complete"),
            json!({"outcome": "succeeded"}),
        )
        .await;
    assert_eq!(s, 200);
    let (s, refund) = app
        .post_json(
            &key,
            &format!("/v1/payments/{id}/refunds"),
            json!({"amount": 2000}),
        )
        .await;
    assert_eq!(s, 201, "{refund}");
    let (_, declined) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 500, "currency": "eur", "provider": "simulated"}),
        )
        .await;
    let declined_id = declined["id"].as_str().expect("id");
    app.post_json(
        &key,
        &format!("/v1/sandbox/payments/{declined_id}/complete"),
        json!({"outcome": "failed"}),
    )
    .await;

    let mut owner = Browser::new(&app.base);
    assert_eq!(
        owner.sign_in("owner@example.com", &password).await.status,
        303
    );
    let page = owner.get(&format!("/dashboard/payments/{id}")).await;
    assert_eq!(page.status, 200);
    for shown in [
        "€119.54",
        r#"data-status="succeeded""#,
        r#"data-status="partially_refunded""#,
        "€20.00 of €119.54 refunded.",
        "Two lamps",
        "order-7781",
        "Ada Lovelace",
        "mailto:ada@example.com",
        "simulated",
        "<code>cart</code>: c-42",
        "<code>channel</code>: web",
        "payment.succeeded",
        "Open the checkout",
    ] {
        assert!(page.body.contains(shown), "the payment page shows {shown}");
    }
    // Each event with its payload, as the webhook carried it.
    assert!(
        page.body
            .contains("&quot;reference&quot;: &quot;order-7781&quot;"),
        "an event's payload is shown"
    );
    let list = owner.get("/dashboard/payments").await;
    assert!(
        list.body.contains(r#"data-status="partially_refunded""#),
        "the list marks the partial refund"
    );
    let failed = owner
        .get(&format!("/dashboard/payments/{declined_id}"))
        .await;
    assert!(failed.body.contains("Declined:"), "a decline says so");
    assert!(!page.body.contains("Declined:"));
}

/// Finding a payment (issue 23 item 3): by id, email, amount in major units in its own
/// currency, a card's last 4, a reference's start, currency, provider, method and dates; a
/// bad filter is a 422 naming it; the CSV export holds exactly what the search finds.
#[tokio::test]
async fn payments_are_found_by_what_a_person_remembers_and_exported_as_csv() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let create = |body: serde_json::Value| {
        let (app, key) = (&app, key.clone());
        async move {
            let (s, p) = app.post_json(&key, "/v1/payments", body).await;
            assert_eq!(s, 201, "{p}");
            p["id"].as_str().expect("id").to_string()
        }
    };
    let ada = create(
        json!({"amount": 1050, "currency": "eur", "provider": "simulated",
        "reference": "inv-2026-001", "description": "Lamp, \"large\"",
        "customer": {"email": "Ada@Example.com"}}),
    )
    .await;
    let francs = create(
        json!({"amount": 1050, "currency": "xaf", "provider": "simulated",
        "reference": "inv-2026-002"}),
    )
    .await;
    let card = create(json!({"amount": 777, "currency": "usd", "provider": "simulated",
        "reference": "=SUM(A1)",
        "payment_method": {"type": "card", "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}))
    .await;
    let mut owner = Browser::new(&app.base);
    assert_eq!(
        owner.sign_in("owner@example.com", &password).await.status,
        303
    );
    let found = |page: &Page| -> Vec<String> {
        page.body
            .split(r#"<tr data-payment=""#)
            .skip(1)
            .filter_map(|rest| rest.split('"').next().map(str::to_string))
            .collect()
    };
    for (query, expected, why) in [
        (format!("q={card}"), vec![&card], "by id"),
        (
            "q=ada%40example.com".to_string(),
            vec![&ada],
            "by email, any case",
        ),
        (
            "q=10.50".to_string(),
            vec![&ada],
            "€10.50 is 1050 cents; 1050 XAF is not 10.50",
        ),
        (
            "q=1050".to_string(),
            vec![&francs],
            "1050 XAF; €1050 would be 105000 cents",
        ),
        ("q=4444".to_string(), vec![&card], "a card's last 4"),
        (
            "q=inv-2026".to_string(),
            vec![&francs, &ada],
            "a reference's start",
        ),
        ("currency=XAF".to_string(), vec![&francs], "by currency"),
        ("method=card".to_string(), vec![&card], "paid by card"),
        (
            "method=provider_checkout&q=inv".to_string(),
            vec![&francs, &ada],
            "method and search together",
        ),
        (
            "provider=simulated&from=2000-01-01&to=2999-12-31".to_string(),
            vec![&card, &francs, &ada],
            "a date range",
        ),
        ("to=2000-01-01".to_string(), vec![], "nothing before 2000"),
        (
            "q=1.23456".to_string(),
            vec![],
            "no amount in any currency: a reference's start",
        ),
    ] {
        let page = owner.get(&format!("/dashboard/payments?{query}")).await;
        assert_eq!(page.status, 200, "{why}: {}", page.body);
        let expected: Vec<String> = expected.into_iter().cloned().collect();
        assert_eq!(found(&page), expected, "{why} ({query})");
    }
    for (query, named) in [
        ("currency=ABC", "currency"),
        ("provider=paypal", "provider"),
        ("from=yesterday", "From"),
        ("from=2026-02-01&to=2026-01-01", "From must not be after To"),
    ] {
        let page = owner.get(&format!("/dashboard/payments?{query}")).await;
        assert_eq!(page.status, 422, "{query}");
        assert!(page.body.contains(named), "{query}: {}", page.body);
    }

    let csv = owner.get("/dashboard/payments.csv?q=inv-2026").await;
    assert_eq!(csv.status, 200);
    let lines: Vec<&str> = csv.body.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        "id,created,amount,currency,status,amount_refunded,provider,reference,description,customer_email,card_last4"
    );
    assert_eq!(
        lines.len(),
        3,
        "the header and what the search found: {lines:?}"
    );
    assert!(
        lines[1].starts_with(&format!("{francs},")) && lines[1].contains(",1050,XAF,pending,0,")
    );
    assert!(
        lines[2].contains(
            r#",10.50,EUR,pending,0.00,simulated,inv-2026-001,"Lamp, ""large""",Ada@Example.com,"#
        ),
        "quoted as RFC 4180 says: {}",
        lines[2]
    );
    let all = owner.get("/dashboard/payments.csv").await;
    assert!(
        all.body.contains(",'=SUM(A1),"),
        "a cell a spreadsheet would run is defused: {}",
        all.body
    );
    assert!(all.body.contains(",4444\r\n"), "the card's last 4");
    assert_eq!(
        owner
            .get("/dashboard/payments.csv?currency=ABC")
            .await
            .status,
        422
    );
    // Signed out, nothing is exported.
    assert_ne!(
        Browser::new(&app.base)
            .get("/dashboard/payments.csv")
            .await
            .status,
        200
    );
}

/// A link opened signed out comes back after sign-in (never to another site), and signing out
/// says so (issue 23).
#[tokio::test]
async fn a_deep_link_survives_sign_in_and_signing_out_says_so() {
    let app = TestApp::spawn().await;
    let (merchant, _) = app.create_merchant_with_id("Shop").await;
    let password = user(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let mut browser = Browser::new(&app.base);
    let wanted = "/dashboard/payments?q=inv-7&status=failed";
    let bounced = browser.get(wanted).await;
    assert_eq!(bounced.status, 303);
    let login = bounced.location.expect("to sign-in");
    assert_eq!(
        login,
        "/dashboard/login?next=%2Fdashboard%2Fpayments%3Fq%3Dinv-7%26status%3Dfailed"
    );
    let form = browser.get(&login).await;
    assert!(
        form.body
            .contains(r#"name="next" value="/dashboard/payments?q=inv-7&amp;status=failed""#),
        "the form carries where to go back to"
    );
    let signed_in = browser
        .sign_in_from(&form, "owner@example.com", &password, wanted)
        .await;
    assert_eq!(
        signed_in.location.as_deref(),
        Some(wanted),
        "back where they meant to go"
    );

    // Signing out says so, once.
    let page = browser.get("/dashboard").await;
    let token = Browser::token_in(&page);
    let out = browser
        .post_form("/dashboard/logout", &[("csrf_token", &token)])
        .await;
    assert_eq!(out.location.as_deref(), Some("/dashboard/login"));
    assert!(
        browser
            .get("/dashboard/login")
            .await
            .body
            .contains("You are signed out.")
    );
    assert!(
        !browser
            .get("/dashboard/login")
            .await
            .body
            .contains("You are signed out.")
    );

    // Anywhere else is refused as a destination: the dashboard's overview instead.
    for elsewhere in [
        "https://evil.example/",
        "//evil.example/dashboard",
        "/dashboard/..//evil.example",
        "/\\evil.example",
        "/v1/payments",
    ] {
        let form = browser
            .get(&format!(
                "/dashboard/login?next={}",
                url::form_urlencoded::byte_serialize(elsewhere.as_bytes()).collect::<String>()
            ))
            .await;
        assert!(
            !form.body.contains(r#"name="next""#),
            "{elsewhere} is not carried"
        );
        let signed_in = browser
            .sign_in_from(&form, "owner@example.com", &password, elsewhere)
            .await;
        assert_eq!(
            signed_in.location.as_deref(),
            Some("/dashboard"),
            "{elsewhere}"
        );
    }
}

/// The balance (with its transactions and payouts) and the usage against the plan have pages
/// of their own (issue 23 item 7).
#[tokio::test]
async fn the_balance_and_usage_pages_show_the_ledger_and_the_plan() {
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let (s, paid) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 4999, "currency": "eur", "provider": "simulated",
                   "payment_method": {"type": "card", "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2031, "cvc": "123"}}}),
        )
        .await;
    assert_eq!(
        (s, paid["status"].as_str()),
        (201, Some("succeeded")),
        "{paid}"
    );
    let id = paid["id"].as_str().expect("id");
    let row = gateway::merchants::get(&app.db, &MerchantId::parse(&merchant).expect("id"))
        .await
        .expect("merchant");
    gateway::merchants::set_plan(&app.db, row, Some(entity::status::Plan::Free), None)
        .await
        .expect("plan");
    let mut owner = signed_in_as(&app, &merchant, "owner@example.com", UserRole::Owner).await;

    let balance = owner.get("/dashboard/balance").await;
    assert_eq!(balance.status, 200, "{}", balance.body);
    assert!(
        balance.body.contains(r#"href="/dashboard/balance""#),
        "in the navigation"
    );
    assert!(
        balance.body.contains(r#"<tr data-currency="EUR">"#) && balance.body.contains("€49.99"),
        "the balance: {}",
        balance.body
    );
    assert!(
        balance.body.contains("<tr data-transaction=")
            && balance
                .body
                .contains(&format!(r#"href="/dashboard/payments/{id}""#)),
        "the charge's transaction, linked to its payment"
    );
    assert!(balance.body.contains("No payout in this mode yet"));
    assert_eq!(
        owner
            .get("/dashboard/balance?starting_after=nonsense")
            .await
            .status,
        422,
        "a cursor that is no id is refused"
    );

    let usage = owner.get("/dashboard/usage").await;
    assert_eq!(usage.status, 200);
    assert!(
        usage
            .body
            .contains(r#"<strong id="plan-name">free</strong>"#),
        "{}",
        usage.body
    );
    assert!(
        usage.body.contains(r#"<tr data-metric="payments_created"><td data-label="Metric">payments created</td><td data-label="Used">1</td><td data-label="Limit">1000 (hard)</td>"#),
        "one payment of the free plan's 1,000: {}",
        usage.body
    );
    assert!(usage.body.contains("0.1 %"));
}

/// An endpoint has a page of its own: its settings, how its latest deliveries went, and those
/// deliveries (issue 23 item 7); never its secret, never another merchant's.
#[tokio::test]
async fn an_endpoints_page_shows_its_state_success_rate_and_deliveries() {
    use payrail_tests::{Behavior, Receiver};
    let app = TestApp::spawn().await;
    let (merchant, key) = app.create_merchant_with_id("Shop").await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (s, endpoint) = app
        .post_json(
            &key,
            "/v1/webhook_endpoints",
            json!({"url": receiver.url, "enabled_events": ["payment.succeeded"], "description": "orders"}),
        )
        .await;
    assert_eq!(s, 201, "{endpoint}");
    let endpoint_id = endpoint["id"].as_str().expect("id");
    let secret = endpoint["secret"].as_str().expect("secret");
    let (_, p) = app
        .post_json(
            &key,
            "/v1/payments",
            json!({"amount": 900, "currency": "eur", "provider": "simulated"}),
        )
        .await;
    let id = p["id"].as_str().expect("id");
    app.post_json(
        &key,
        &format!("/v1/sandbox/payments/{id}/complete"),
        json!({"outcome": "succeeded"}),
    )
    .await;
    app.eventually(
        Duration::from_secs(20),
        "the delivery succeeded",
        || async {
            (app.count("SELECT count(*) FROM webhook_deliveries WHERE status = 'succeeded'")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;
    let mut owner = signed_in_as(&app, &merchant, "owner@example.com", UserRole::Owner).await;
    let list = owner.get("/dashboard/webhooks").await;
    assert!(
        list.body
            .contains(&format!(r#"href="/dashboard/webhooks/{endpoint_id}""#))
    );
    let page = owner
        .get(&format!("/dashboard/webhooks/{endpoint_id}"))
        .await;
    assert_eq!(page.status, 200);
    for shown in [
        receiver.url.as_str(),
        "orders",
        r#"data-status="enabled""#,
        r#"id="endpoint-success"><strong>100.0 %</strong>of its last 1 finished deliveries succeeded"#,
        "<tr data-delivery=",
    ] {
        assert!(page.body.contains(shown), "{shown}: {}", page.body);
    }
    assert!(
        !page.body.contains(secret),
        "the signing secret is never shown"
    );
    assert_eq!(
        owner.get("/dashboard/webhooks/we_nonsense").await.status,
        404
    );
    let (stranger, _) = app.create_merchant_with_id("Other").await;
    let mut other = signed_in_as(&app, &stranger, "other@example.com", UserRole::Owner).await;
    assert_eq!(
        other
            .get(&format!("/dashboard/webhooks/{endpoint_id}"))
            .await
            .status,
        404,
        "another merchant's endpoint does not exist for them"
    );
}
