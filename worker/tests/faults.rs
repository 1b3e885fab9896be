//! The fault suite (issue 25): the real `gateway` and `worker` binaries take a steady stream of
//! payments while, one after another, the worker is killed (SIGKILL) and restarted, the
//! gateway is killed and restarted, the broker's and the database's connections are cut for
//! five seconds, and the merchant's server answers 503 for five seconds; then the worker is
//! killed once more. A receiver counts every request and what it answered.
//!
//! Asserted: every payment the client asked for exists exactly once (its retries carry one
//! `Idempotency-Key`); no event is lost (each reached the receiver with a 2xx) and every
//! delivery row is `succeeded`; duplicates are at most 0.1 % of the events; every request the
//! receiver saw is an attempt row (a send that died with its worker counts as `unknown`); and
//! nothing is stranded: no payment is accepted, and no webhook received, more than 5 s after
//! the later of its start and the end of the fault that held it.
//!
//! The default is what CI can afford with debug builds on two cores: 40 payments a second, a
//! fault every 10 s, and at most 10 s waited past a fault (`PAYRAIL_FAULTS_STRANDED`; a
//! sweep tick or a lease of the old sizes is 25 to 30 s, so this still catches a stranded
//! retry). The scale is the same test with release builds (`bench/run.sh faults`):
//! `PAYRAIL_FAULTS_RATE=150 PAYRAIL_FAULTS_EVERY=25 PAYRAIL_FAULTS_STRANDED=5`.

mod stack;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use payrail_tests::{Behavior, Receiver, ScratchDatabase, free_port, until_ready};
use sea_orm::Database;
use stack::{Asked, Fault, Run, Stack, create_payment, judge, knob, merchant_with_endpoint};

/// How long a cut or an outage lasts.
const OUTAGE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_cuts_and_outages_under_load_lose_nothing_and_strand_nothing() {
    let rate = knob("PAYRAIL_FAULTS_RATE", 40).max(1);
    let every = Duration::from_secs(knob("PAYRAIL_FAULTS_EVERY", 10).max(6));
    let most_wait = Duration::from_secs(knob("PAYRAIL_FAULTS_STRANDED", 10));
    let scratch = ScratchDatabase::create().await;
    let stack = Stack::on(&scratch).await;
    let db = Database::connect(&scratch.url).await.expect("connect");
    let (gateway_port, metrics_port) = (free_port(), free_port());
    let mut gateway = stack.start_gateway(gateway_port, metrics_port);
    let mut worker = stack.start_worker(free_port());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{gateway_port}");
    until_ready(&client, &base).await;
    let receiver = Receiver::start(Behavior::Statuses(vec![], 200)).await;
    let (_, key) = merchant_with_endpoint(&client, &base, &receiver).await;

    // The load: `rate` payments a second until the faults are over and one more period has
    // passed, each in its own task so a stalled request never slows the rate.
    let anchor = (Instant::now(), SystemTime::now());
    let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let load = {
        let (client, bases, key, asked) = (
            client.clone(),
            vec![base.clone()],
            key.clone(),
            asked.clone(),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
            let mut tasks = Vec::new();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stopped.changed() => break,
                }
                let (client, bases, key, asked) =
                    (client.clone(), bases.clone(), key.clone(), asked.clone());
                tasks.push(tokio::spawn(async move {
                    let result = create_payment(&client, &bases, 0, &key).await;
                    asked.lock().expect("lock").push(result);
                }));
            }
            futures_util::future::join_all(tasks).await;
        })
    };

    // The faults, one every `every`; each one's window is when it held things up (a killed
    // gateway's, until its successor, started at once as a supervisor would, is ready).
    let mut faults: Vec<Fault> = Vec::new();
    let names = [
        "worker killed",
        "gateway killed",
        "broker cut",
        "database cut",
        "merchant down",
        "worker killed",
    ];
    for name in names {
        tokio::time::sleep(every).await;
        let began = Instant::now();
        match name {
            "worker killed" => {
                worker.kill();
                worker = stack.start_worker(free_port());
            }
            "gateway killed" => {
                gateway.kill();
                gateway = stack.start_gateway(gateway_port, metrics_port);
                until_ready(&client, &base).await;
            }
            "broker cut" => {
                stack.amqp_proxy.set_enabled(false);
                tokio::time::sleep(OUTAGE).await;
                stack.amqp_proxy.set_enabled(true);
            }
            "database cut" => {
                stack.db_proxy.set_enabled(false);
                tokio::time::sleep(OUTAGE).await;
                stack.db_proxy.set_enabled(true);
            }
            _ => {
                receiver.behave(Behavior::Statuses(vec![], 503));
                tokio::time::sleep(OUTAGE).await;
                receiver.behave(Behavior::Statuses(vec![], 200));
            }
        }
        faults.push((name, began, Instant::now()));
    }
    tokio::time::sleep(every).await;
    let _ = stop.send(true);
    load.await.expect("the load");

    let asked = std::mem::take(&mut *asked.lock().expect("lock"));
    judge(
        &db,
        &receiver,
        &Run {
            label: "faults",
            rate,
            asked: &asked,
            faults: &faults,
            anchor,
            most_wait,
        },
    )
    .await;
    gateway.kill();
    worker.kill();
}
