//! Gateway restarts under load: 5,000 requests through ten restarts arrive exactly once.

use std::sync::Arc;
use std::time::Duration;

use countersign_approver::ListFilter;
use countersign_test_support::{reopen_gateway, Approver, TestGateway};

/// The gateway is restarted 10 times on the same address and data while 5,000 requests are
/// created. The approver's engine, streaming throughout, receives every request exactly once:
/// 5,000 inbox rows, 5,000 `request.received` audit entries, no rejection, and its chain
/// verifies. (Creation retries through the outages; a retried POST that had already committed
/// collapses into the first request, so each summary is one request.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_requests_through_ten_gateway_restarts_arrive_exactly_once() {
    const REQUESTS: usize = 5000;
    const RESTARTS: usize = 10;
    let gw = TestGateway::start_with(|c| c.rate_limit_per_minute = 1_000_000).await;
    let addr = gw.running.addr;
    let url = gw.url.clone();
    let token = gw.token.clone();
    let data_dir = gw.gw().config.data_dir.clone();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    alice.start();
    let template = gw.new_request(&["alice@example.com"], "restart");
    let created_so_far = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = created_so_far.clone();

    let creator = tokio::spawn(async move {
        let client = countersign_gateway::client::RequesterClient::new(url, token).unwrap();
        let mut ids = std::collections::BTreeSet::new();
        let mut retries = 0u32;
        for i in 0..REQUESTS {
            let mut req = template.clone();
            req.summary = format!("restart {i}");
            loop {
                match client.create(&req).await {
                    Ok(created) => {
                        ids.insert(created.request.body.id.clone());
                        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    Err(_) => {
                        retries += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }
        (ids, retries)
    });

    let TestGateway {
        mut running, dir, ..
    } = gw;
    // Spread the restarts over the whole push: one each time another 1/11 of it is created.
    for k in 1..=RESTARTS {
        while created_so_far.load(std::sync::atomic::Ordering::SeqCst)
            < k * REQUESTS / (RESTARTS + 1)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        running.shutdown().await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        running = reopen_gateway(
            &data_dir,
            addr,
            |c| c.rate_limit_per_minute = 1_000_000,
            |_| {},
        )
        .await;
    }
    let (ids, retries) = creator.await.unwrap();
    assert_eq!(ids.len(), REQUESTS, "each summary is one request");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    let received = loop {
        let n = alice.engine.list(ListFilter::All).unwrap().len();
        if n >= REQUESTS || tokio::time::Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    alice.stop().await;
    assert_eq!(received, REQUESTS);
    let inbox: std::collections::BTreeSet<String> = alice
        .engine
        .list(ListFilter::All)
        .unwrap()
        .into_iter()
        .map(|i| i.request.body.id)
        .collect();
    assert_eq!(inbox, ids);
    let entries = alice.engine.audit_entries().unwrap();
    let received_entries = entries
        .iter()
        .filter(|(e, _)| e.kind == "request.received")
        .count();
    let rejected = entries
        .iter()
        .filter(|(e, _)| e.kind == "request.rejected")
        .count();
    assert_eq!((received_entries, rejected), (REQUESTS, 0));
    alice.engine.audit_verify().unwrap();
    println!(
        "restarts: {RESTARTS}, requests pushed: {REQUESTS}, create retries: {retries}, received: {received_entries}, duplicated: 0, lost: 0"
    );
    running.shutdown().await;
    dir.close().unwrap();
}
