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

use std::time::{Duration, Instant};

use payrail_tests::{Behavior, ScratchDatabase, free_port, until_ready};
use sea_orm::Database;
use stack::{Fault, Knobs, Load, Shop, Stack, judge};

/// How long a cut or an outage lasts.
const OUTAGE: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kills_cuts_and_outages_under_load_lose_nothing_and_strand_nothing() {
    let knobs = Knobs::read("PAYRAIL_FAULTS", 40, 10);
    let scratch = ScratchDatabase::create().await;
    let stack = Stack::on(&scratch).await;
    let db = Database::connect(&scratch.url).await.expect("connect");
    let (gateway_port, metrics_port) = (free_port(), free_port());
    let mut gateway = stack.start_gateway(gateway_port, metrics_port);
    let mut worker = stack.start_worker(free_port());
    let base = format!("http://127.0.0.1:{gateway_port}");
    let shop = Shop::open(std::slice::from_ref(&base)).await;
    let (client, receiver) = (&shop.client, &shop.receiver);

    // The load: `rate` payments a second until the faults are over and one more period has
    // passed.
    let load = Load::start(client, std::slice::from_ref(&base), &shop.key, knobs.rate);

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
        tokio::time::sleep(knobs.every).await;
        let began = Instant::now();
        match name {
            "worker killed" => {
                worker.kill();
                worker = stack.start_worker(free_port());
            }
            "gateway killed" => {
                gateway.kill();
                gateway = stack.start_gateway(gateway_port, metrics_port);
                until_ready(client, &base).await;
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
    tokio::time::sleep(knobs.every).await;
    judge(&db, &shop, "faults", &knobs, load, &faults).await;
    gateway.kill();
    worker.kill();
}
