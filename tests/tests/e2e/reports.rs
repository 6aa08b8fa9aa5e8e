//! "I did not expect this" from the engine: the requester is blocked on both sides.

use countersign_protocol::RequestState;
use countersign_test_support::{Approver, TestGateway};

/// "I did not expect this" from the engine: the reported request is denied by a device-signed
/// decision, the gateway blocks the requester from this approver and denies their other
/// pending requests to her, the engine hears of those denials on its stream, and both audit
/// logs hold the report. A new request from the same requester to her is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reporting_an_unexpected_request_blocks_the_requester_on_both_sides() {
    let gw = TestGateway::start().await;
    let requester = gw.requester();
    let mut alice = Approver::new();
    alice.pair(&gw.invite("alice@example.com")).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let c = requester
            .create(&gw.new_request(&["alice@example.com"], &format!("bombing {i}")))
            .await
            .unwrap();
        ids.push(c.request.body.id.clone());
    }
    alice.engine.sync().await.unwrap();

    let out = alice.engine.report_unexpected(&ids[0]).await.unwrap();
    let denial = out.denial.expect("the reported request is denied here");
    assert_eq!(
        denial.decision.body.verdict,
        countersign_protocol::Verdict::Deny
    );
    assert_eq!(
        denial.decision.body.reason.as_deref(),
        Some(countersign_approver::UNEXPECTED_REASON)
    );
    assert_eq!(out.ack.requester, "ci-bot");
    let mut denied = out.ack.denied.clone();
    denied.sort();
    let mut others = ids[1..].to_vec();
    others.sort();
    assert_eq!(
        denied, others,
        "the other pending requests are denied by the gateway"
    );

    alice.engine.sync().await.unwrap();
    for id in &ids {
        assert_eq!(
            alice.engine.show(id).unwrap().state,
            RequestState::Denied,
            "{id}"
        );
    }
    let kinds: Vec<String> = alice
        .engine
        .audit_entries()
        .unwrap()
        .into_iter()
        .map(|(e, _)| e.kind)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "report.sent").count(), 1);
    let gateway_audit = gw.audit();
    let reported = gateway_audit
        .iter()
        .filter(|(e, _)| e.kind == "report.unexpected")
        .count();
    assert_eq!(reported, 1);
    let again = requester
        .create(&gw.new_request(&["alice@example.com"], "once more"))
        .await;
    assert!(
        matches!(
            &again,
            Err(countersign_gateway::client::ClientError::Refused { code, .. })
                if *code == countersign_protocol::api::ErrorCode::RequesterBlocked
        ),
        "{again:?}"
    );
}
