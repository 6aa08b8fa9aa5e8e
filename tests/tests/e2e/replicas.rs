//! Gateway replicas as an operator runs them: the real binary, twice, on one real PostgreSQL
//! server (the harness's), with the same key, behind a real HAProxy that checks `/readyz`.
//! A replica is killed with SIGKILL under load, the leader is killed, PostgreSQL is
//! restarted: devices resume through the load balancer with nothing lost or repeated, expiry
//! carries on, and no acknowledged write is lost.

use std::collections::HashSet;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign_gateway::client::RequesterClient;
use countersign_protocol::api::NewRequest;
use countersign_protocol::{PairingLink, RequestState, StreamMode};
use countersign_test_support::haproxy::Haproxy;
use countersign_test_support::postgres::Postgres;
use countersign_test_support::sse::EventStream;
use countersign_test_support::{request_id, Device, GatewayProcess};

const ALICE: &str = "alice@example.com";

/// Two gateway processes on one database, and HAProxy in front.
struct Cluster {
    pg: Postgres,
    _dir: tempfile::TempDir,
    gateways: Vec<Option<GatewayProcess>>,
    /// Each replica's operations listener (`/metrics`).
    ops: Vec<SocketAddr>,
    lb: Haproxy,
    token: String,
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// The gateways' clock (an unshifted `Clock` is the system's).
fn now() -> i64 {
    countersign_gateway::clock::Clock::default().now()
}

impl Cluster {
    fn start(replicas: usize) -> Cluster {
        let pg = Postgres::start().unwrap();
        let db = pg.database().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut gateways = Vec::new();
        let mut ops = Vec::new();
        for i in 0..replicas {
            let data = dir.path().join(format!("gateway{i}"));
            if i > 0 {
                // One gateway identity: every replica has the first one's key.
                std::fs::create_dir_all(&data).unwrap();
                std::fs::copy(
                    dir.path().join("gateway0/gateway.key"),
                    data.join("gateway.key"),
                )
                .unwrap();
            }
            let addr = free_addr();
            let config = dir.path().join(format!("gateway{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    "database_url = \"{db}\"\noperations_listen = \"{addr}\"\n\
                     rate_limit_per_minute = 1000000\nexpiry_sweep_ms = 100\n\
                     keepalive_seconds = 1\n"
                ),
            )
            .unwrap();
            gateways.push(Some(GatewayProcess::start_with_config(&data, &config)));
            ops.push(addr);
        }
        let servers: Vec<SocketAddr> = gateways
            .iter()
            .flatten()
            .map(|g| {
                format!("127.0.0.1:{}", g.url.port().unwrap())
                    .parse()
                    .unwrap()
            })
            .collect();
        let lb = Haproxy::start(&servers).unwrap();
        let token = gateways[0]
            .as_ref()
            .unwrap()
            .admin(&["token", "create", "ci-bot"]);
        Cluster {
            pg,
            _dir: dir,
            gateways,
            ops,
            lb,
            token,
        }
    }

    fn requester(&self) -> RequesterClient {
        RequesterClient::new(self.lb.url.clone(), self.token.clone()).unwrap()
    }

    /// A device of `approver` paired through the load balancer.
    async fn pair(&self, approver: &str) -> Device {
        let link = self.gateways[0].as_ref().unwrap().admin(&[
            "invite",
            approver,
            "--public-url",
            self.lb.url.as_str(),
        ]);
        let link = PairingLink::parse(&link).unwrap();
        Device::pair(&reqwest::Client::new(), &link, "replica test")
            .await
            .unwrap()
    }

    /// The value of `metric` on replica `i`, if it answers.
    async fn metric(&self, i: usize, metric: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.ops[i]))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(metric)?.strip_prefix(' ')?.parse().ok())
    }

    /// The replica whose `metric` is 1, waiting for one.
    async fn which(&self, metric: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for i in 0..self.ops.len() {
                if self.gateways[i].is_some() && self.metric(i, metric).await == Some(1.0) {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no replica has {metric} 1");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL of replica `i`.
    fn kill(&mut self, i: usize) {
        let mut g = self.gateways[i].take().unwrap();
        g.child.0.kill().unwrap();
        g.child.0.wait().unwrap();
    }
}

fn new_request(summary: &str, ttl: u32) -> NewRequest {
    NewRequest {
        ttl_seconds: ttl,
        ..countersign_test_support::sample_request(&[ALICE], summary)
    }
}

/// Creates `new` until a replica acknowledges it (an identical pending request is collapsed,
/// so a retry after a lost answer is the same request), and returns its id.
async fn create_acked(requester: &RequesterClient, new: &NewRequest) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match requester.create(new).await {
            Ok(created) => return created.request.body.id,
            Err(e) => {
                assert!(Instant::now() < deadline, "never acknowledged: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// A device's stream through the load balancer, reconnecting after its last event whenever it
/// ends; every request event's id is added to `seen` (twice is a failure).
async fn follow(
    device: Arc<Device>,
    base: url::Url,
    seen: Arc<Mutex<HashSet<String>>>,
    resumes: Arc<Mutex<Vec<StreamMode>>>,
) {
    let http = reqwest::Client::new();
    let mut last = 0u64;
    loop {
        let Ok(mut stream) =
            EventStream::open(&http, &base, &device.key, &device.id, now(), last).await
        else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let mut hello = false;
        while let Ok((id, e)) = stream.try_next_event(Duration::from_secs(5)).await {
            if !hello {
                if let Some(h) = &stream.hello {
                    resumes.lock().unwrap().push(h.body.mode);
                    hello = true;
                }
            }
            assert!(id > last, "event {id} after {last}");
            last = id;
            if let Some(r) = request_id(&e) {
                assert!(seen.lock().unwrap().insert(r.clone()), "request {r} twice");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_and_repeats_nothing_for_a_device_that_resumes_elsewhere()
{
    const REQUESTS: usize = 5000;
    let mut cluster = Cluster::start(2);
    let alice = Arc::new(cluster.pair(ALICE).await);
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let reader = tokio::spawn(follow(
        alice.clone(),
        cluster.lb.url.clone(),
        seen.clone(),
        resumes.clone(),
    ));
    let holder = cluster.which("countersign_streams_open").await;

    let acked = Arc::new(Mutex::new(Vec::new()));
    let creators: Vec<_> = (0..8)
        .map(|w| {
            let (requester, acked) = (cluster.requester(), acked.clone());
            tokio::spawn(async move {
                for n in (w..REQUESTS).step_by(8) {
                    let id =
                        create_acked(&requester, &new_request(&format!("load {n}"), 600)).await;
                    acked.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    // A fifth of the way in, the replica serving the device's stream dies.
    while acked.lock().unwrap().len() < REQUESTS / 5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.kill(holder);
    for c in creators {
        c.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    assert_eq!(acked.len(), REQUESTS, "every request acknowledged once");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !acked.is_subset(&seen.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "{} acknowledged requests never reached the device",
            acked.difference(&seen.lock().unwrap()).count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader.abort();
    let resumes = resumes.lock().unwrap();
    assert!(resumes.len() >= 2, "the device reconnected: {resumes:?}");
    assert!(
        resumes[1..].iter().all(|m| *m == StreamMode::Resume),
        "it resumed after its last event on the other replica: {resumes:?}"
    );
    drop(cluster.pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_expiry_carries_on_on_the_other_replica() {
    let mut cluster = Cluster::start(2);
    cluster.pair(ALICE).await;
    let leader = cluster.which("countersign_leader").await;
    cluster.kill(leader);
    let started = Instant::now();
    let id = create_acked(&cluster.requester(), &new_request("expires soon", 1)).await;
    let view = cluster
        .requester()
        .get(&id, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(view.status.body.state, RequestState::Expired);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let other = 1 - leader;
    assert_eq!(cluster.metric(other, "countersign_leader").await, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgresql_restarted_under_load_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(2);
    cluster.pair(ALICE).await;
    let requester = cluster.requester();
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (requester, acked, stop) = (cluster.requester(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                n += 1;
                // One attempt each: a write refused while the database is down is not
                // acknowledged, and is not counted.
                let new = new_request(&format!("load {n}"), 600);
                match tokio::time::timeout(Duration::from_secs(10), requester.create(&new)).await {
                    Ok(Ok(c)) => acked.lock().unwrap().push(c.request.body.id),
                    Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(20)).await,
                    Err(_) => panic!("a request hung for 10 s"),
                }
            }
        })
    };
    while acked.lock().unwrap().len() < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.pg.stop().unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.pg.run().unwrap();
    // The gateways recover: new writes are acknowledged again.
    let before = acked.lock().unwrap().len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked.lock().unwrap().len() < before + 20 {
        assert!(Instant::now() < deadline, "the gateways did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    load.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    for id in &acked {
        let view = requester.get(id, Duration::ZERO).await.unwrap();
        assert_eq!(view.status.body.state, RequestState::Pending, "{id}");
    }
    for i in 0..2 {
        let ready = reqwest::get(format!("http://{}/readyz", cluster.ops[i]))
            .await
            .unwrap();
        assert_eq!(ready.status(), 200, "replica {i} is ready again");
    }
    assert!(cluster.gateways.iter().all(Option::is_some));
}
