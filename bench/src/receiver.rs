//! The merchant's receiver, run as its own process (`bench receive`) so that the deliveries it
//! takes do not share the driver's runtime. It answers 200 at once and keeps, per payment, the
//! wall-clock time of the first webhook about it; the driver reads them over HTTP.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{EndpointExt, Route, Server, get, handler, post};
use serde_json::Value;

/// Microseconds since the epoch: the one clock the driver and the receiver share.
pub fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

type Receipts = Arc<Mutex<HashMap<String, i64>>>;

#[handler]
async fn hook(body: poem::Body, receipts: Data<&Receipts>) -> &'static str {
    let at = unix_micros();
    if let Ok(bytes) = body.into_vec().await
        && let Ok(v) = serde_json::from_slice::<Value>(&bytes)
        && let Some(id) = v["data"]["id"].as_str()
        && let Ok(mut r) = receipts.lock()
    {
        r.entry(id.to_string()).or_insert(at);
    }
    "ok"
}

#[handler]
fn count(receipts: Data<&Receipts>) -> String {
    receipts.lock().map(|r| r.len()).unwrap_or(0).to_string()
}

#[handler]
fn all(receipts: Data<&Receipts>) -> Json<HashMap<String, i64>> {
    Json(receipts.lock().map(|r| r.clone()).unwrap_or_default())
}

/// `bench receive`: prints `listening http://ADDR` on its first line, then serves until killed.
pub async fn serve(bind: &str) -> anyhow::Result<()> {
    let receipts: Receipts = Arc::default();
    let acceptor = TcpListener::bind(bind.to_string()).into_acceptor().await?;
    let addr = acceptor.local_addr()[0]
        .as_socket_addr()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("not a TCP address"))?;
    println!("listening http://{addr}");
    let app = Route::new()
        .at("/hook", post(hook))
        .at("/count", get(count))
        .at("/receipts", get(all))
        .data(receipts);
    Server::new_with_acceptor(acceptor).run(app).await?;
    Ok(())
}

/// How many payments the receiver at `base` has had a webhook for.
pub async fn count_at(base: &str) -> anyhow::Result<u64> {
    Ok(reqwest::get(format!("{base}/count"))
        .await?
        .text()
        .await?
        .trim()
        .parse()?)
}

/// A `bench receive` child process, killed when dropped.
pub struct ReceiverProcess {
    child: Child,
    pub base: String,
}

impl ReceiverProcess {
    pub fn start() -> anyhow::Result<ReceiverProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["receive", "--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            BufReader::new(out).read_line(&mut line)?;
        }
        let base = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| anyhow::anyhow!("the receiver said {line:?}"))?
            .to_string();
        Ok(ReceiverProcess { child, base })
    }

    pub fn hook_url(&self) -> String {
        format!("{}/hook", self.base)
    }

    pub async fn count(&self) -> anyhow::Result<u64> {
        count_at(&self.base).await
    }

    /// Payment id → when its first webhook arrived (µs since the epoch).
    pub async fn receipts(&self) -> anyhow::Result<HashMap<String, i64>> {
        Ok(reqwest::get(format!("{}/receipts", self.base))
            .await?
            .json()
            .await?)
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
