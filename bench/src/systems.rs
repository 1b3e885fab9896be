//! The two systems the harness can drive with the same scenarios: Payrail (a payment creation
//! is the event) and svix-server (a message is the event). Each run makes its own merchant (or
//! svix application), so runs do not see each other's webhooks. Whatever the system, the
//! merchant's receiver finds the event's id at `data.id` of the body it receives.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

/// Which server a scenario drives.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemKind {
    Payrail,
    Svix,
}

impl SystemKind {
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Payrail => "payrail",
            SystemKind::Svix => "svix",
        }
    }
}

/// Which server to drive, and how to authenticate to it.
#[derive(clap::Args, Clone)]
pub struct Target {
    #[arg(long, value_enum, default_value_t = SystemKind::Payrail)]
    pub system: SystemKind,
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base: String,
    /// Payrail: the admin token (PAYRAIL_ADMIN_TOKEN), to create the run's merchant.
    /// svix: the API token (`svix-server jwt generate`).
    #[arg(long)]
    pub admin_token: String,
}

enum Account {
    Payrail { key: String },
    Svix { token: String, app: String },
}

pub struct Harness {
    base: String,
    client: reqwest::Client,
    account: Account,
    /// svix messages carry an id the harness makes up; this numbers them.
    sequence: AtomicU64,
    run: u128,
}

impl Harness {
    pub async fn new(target: &Target) -> anyhow::Result<Harness> {
        let base = target.base.trim_end_matches('/').to_string();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .timeout(Duration::from_secs(30))
            .build()?;
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0);
        let account = match target.system {
            SystemKind::Payrail => payrail_merchant(&client, &base, &target.admin_token).await?,
            SystemKind::Svix => {
                let token = target.admin_token.clone();
                let app = post_json(
                    &client,
                    &format!("{base}/api/v1/app/"),
                    &token,
                    &json!({"name": format!("bench-{run}")}),
                )
                .await?;
                let app = field(&app, "id")?;
                Account::Svix { token, app }
            }
        };
        Ok(Harness {
            base,
            client,
            account,
            sequence: AtomicU64::new(0),
            run,
        })
    }

    /// Creates one event (a payment, or a svix message); its id, as the receiver will see it.
    pub async fn create_event(&self) -> anyhow::Result<String> {
        match &self.account {
            Account::Payrail { key } => {
                let body = post_json(
                    &self.client,
                    &format!("{}/v1/payments", self.base),
                    key,
                    &json!({"amount": 2000, "currency": "usd", "provider": "simulated"}),
                )
                .await?;
                field(&body, "id")
            }
            Account::Svix { token, app } => {
                let n = self.sequence.fetch_add(1, Ordering::Relaxed);
                let id = format!("evt_{}_{n}", self.run);
                self.client
                    .post(format!("{}/api/v1/app/{app}/msg/", self.base))
                    .bearer_auth(token)
                    .json(&json!({"eventType": "payment.pending",
                                  "payload": {"type": "payment.pending", "data": {"id": id}}}))
                    .send()
                    .await?
                    .error_for_status()?;
                Ok(id)
            }
        }
    }

    /// Subscribes `url` to the run's events.
    pub async fn endpoint(&self, url: &str) -> anyhow::Result<()> {
        let request = match &self.account {
            Account::Payrail { key } => self
                .client
                .post(format!("{}/v1/webhook_endpoints", self.base))
                .bearer_auth(key)
                .json(&json!({"url": url, "enabled_events": ["payment.pending"]})),
            Account::Svix { token, app } => self
                .client
                .post(format!("{}/api/v1/app/{app}/endpoint/", self.base))
                .bearer_auth(token)
                .json(&json!({"url": url})),
        };
        request.send().await?.error_for_status()?;
        Ok(())
    }
}

async fn payrail_merchant(
    client: &reqwest::Client,
    base: &str,
    admin: &str,
) -> anyhow::Result<Account> {
    let r = post_json(
        client,
        &format!("{base}/v1/admin/merchants"),
        admin,
        &json!({"name": "bench"}),
    )
    .await?;
    let key = field(&r, "api_key")?;
    // A load test must measure the gateway, not meet the free plan's monthly limits or the
    // default per-key rate limit (100/s).
    let id = field(&r, "id")?;
    client
        .patch(format!("{base}/v1/admin/merchants/{id}"))
        .bearer_auth(admin)
        .json(&json!({"plan": "custom", "usage_limits": {},
                      "rate_limit_per_second": 10000, "rate_limit_burst": 10000}))
        .send()
        .await?
        .error_for_status()?;
    Ok(Account::Payrail { key })
}

/// POSTs `body` with a bearer token; the answer's JSON, or an error for any non-2xx.
async fn post_json(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    Ok(client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

fn field(body: &Value, name: &str) -> anyhow::Result<String> {
    body[name]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no {name} in {body}"))
}
