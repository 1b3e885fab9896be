//! A clustered broker (issue 24): a RabbitMQ cluster of three nodes on this machine
//! (`deploy/rabbitmq/cluster.sh`, beside the default node), the real `gateway` and `worker`
//! binaries given all three in `AMQP_URL`, a steady stream of payments, and the node they are
//! connected to killed (SIGKILL) under load.
//!
//! Asserted: Payrail's queues are quorum queues with a member on each node; after the kill the
//! processes move to a live node and delivery goes on; then, as the fault suite asserts it
//! ([`stack::judge`]), every payment accepted once, no event lost, every delivery row
//! `succeeded`, duplicates at most 0.1 %, nothing waiting more than
//! `PAYRAIL_CLUSTER_STRANDED` (15 s: a new leader is elected, clients reconnect) past the kill.

mod stack;

use std::path::{Path, PathBuf};
use std::time::Instant;

use payrail_tests::{ScratchDatabase, free_port};
use sea_orm::Database;
use serde_json::Value;
use stack::{Fault, Knobs, Load, Shop, Stack, judge};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rabbitmq/cluster.sh")
}

/// Three nodes, stopped and their data removed when dropped.
struct Cluster {
    name: String,
    dir: PathBuf,
    amqp_url: String,
}

impl Cluster {
    fn start() -> Cluster {
        // Node names take letters and digits; three AMQP ports in a row, and their inter-node
        // ports 100 above, all free now.
        let name = format!("payrail{}", std::process::id());
        let first = (0..200)
            .map(|_| free_port())
            .find(|&p| {
                p < 65000
                    && [0, 1, 2, 100, 101, 102]
                        .iter()
                        .all(|d| std::net::TcpListener::bind(("127.0.0.1", p + d)).is_ok())
            })
            .expect("three free ports in a row");
        let dir = std::env::temp_dir().join(&name);
        let out = std::process::Command::new("bash")
            .arg(script())
            .args(["start", &name, &first.to_string()])
            .arg(&dir)
            .output()
            .expect("run cluster.sh");
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let cluster = Cluster {
            name,
            dir,
            amqp_url: printed
                .lines()
                .find_map(|l| l.strip_prefix("AMQP_URL="))
                .unwrap_or_default()
                .to_string(),
        };
        assert!(
            out.status.success() && !cluster.amqp_url.is_empty(),
            "the cluster did not start: {printed}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn node(&self, i: usize) -> String {
        format!("{}{i}@localhost", self.name)
    }

    /// SIGKILL to a node's Erlang VM, as a crash or an OOM kill would end it.
    fn kill(&self, i: usize) {
        let pid = std::fs::read_to_string(self.dir.join(i.to_string()).join("pid"))
            .expect("the node's pid file");
        let status = std::process::Command::new("kill")
            .args(["-9", pid.trim()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -9 {pid}");
    }

    /// The queues of `prefix` as a live node lists them: name, type and member nodes.
    fn queues(&self, node: usize, prefix: &str) -> Vec<(String, String, usize)> {
        let out = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "-n",
                &self.node(node),
                "list_queues",
                "name",
                "type",
                "members",
            ])
            .args(["--formatter", "json"])
            .output()
            .expect("rabbitmqctl list_queues");
        let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        listed
            .iter()
            .filter(|q| q["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .map(|q| {
                (
                    q["name"].as_str().unwrap_or_default().to_string(),
                    q["type"].as_str().unwrap_or_default().to_string(),
                    q["members"].as_array().map_or(0, Vec::len),
                )
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(script())
            .args(["stop", &self.name])
            .arg(&self.dir)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_loses_nothing_when_the_node_in_use_is_killed_under_load() {
    let knobs = Knobs::read("PAYRAIL_CLUSTER", 30, 15);
    let cluster = Cluster::start();
    let scratch = ScratchDatabase::create().await;
    let stack = Stack::on(&scratch).await.with_broker(&cluster.amqp_url);
    let db = Database::connect(&scratch.url).await.expect("connect");
    let (port, metrics_port) = (free_port(), free_port());
    let mut gateway = stack.start_gateway(port, metrics_port);
    let mut worker = stack.start_worker(free_port());
    let base = format!("http://127.0.0.1:{port}");
    let shop = Shop::open(std::slice::from_ref(&base)).await;
    let load = Load::start(
        &shop.client,
        std::slice::from_ref(&base),
        &shop.key,
        knobs.rate,
    );

    tokio::time::sleep(knobs.every).await;
    // The work queues are quorum queues replicated on the three nodes (the processes'
    // own live queues are exclusive, on the node they are connected to).
    let replicated: Vec<_> = cluster
        .queues(2, &stack.name)
        .into_iter()
        .filter(|(_, kind, _)| kind == "quorum")
        .collect();
    assert_eq!(
        replicated.len(),
        2,
        "the fan-out queue and its dead letters: {replicated:?}"
    );
    assert!(
        replicated.iter().all(|(_, _, members)| *members == 3),
        "{replicated:?}"
    );
    // Everyone starts on the first node listed: kill it.
    let began = Instant::now();
    cluster.kill(1);
    let faults: Vec<Fault> = vec![("node killed", began, Instant::now())];
    tokio::time::sleep(knobs.every).await;
    judge(&db, &shop, "cluster", &knobs, load, &faults).await;
    let survivors = cluster.queues(2, &stack.name);
    assert!(
        survivors
            .iter()
            .filter(|(_, kind, _)| kind == "quorum")
            .count()
            == 2,
        "the queues live on: {survivors:?}"
    );
    gateway.kill();
    worker.kill();
}
