//! A request sent once to its groups (docs/protocol.md 3.12): the device takes an envelope to a
//! group audience only when its current membership statement lists one of the groups.

use countersign_approver::{FrameRefusal, IngestOutcome, ListFilter};
use countersign_protocol::{Audience, Membership, Signed, Stage, StreamEvent, PROTOCOL_VERSION};

use super::{Rig, APPROVER, T0};

fn membership(rig: &Rig, seq: u64, groups: &[&str]) -> StreamEvent {
    let membership = Signed::sign(
        &rig.gw_key,
        Membership {
            v: PROTOCOL_VERSION,
            gateway: rig.fp.clone(),
            approver: APPROVER.into(),
            person: Some("alice".into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            seq,
            issued_at: T0,
        },
    )
    .unwrap();
    StreamEvent::Membership {
        membership: Box::new(membership),
    }
}

#[test]
fn a_group_audience_reaches_the_device_through_its_membership() {
    let rig = Rig::new();
    let mut body = rig.body("g-1");
    body.approvers.clear();
    body.stages = vec![Stage {
        name: "dba".into(),
        approvers: None,
        group: Some("dba".into()),
        min: 1,
    }];
    let request = StreamEvent::Request {
        request: Box::new(Signed::sign(&rig.gw_key, body).unwrap()),
        challenge: serde_json::Value::Null,
        signed_challenge: None,
    };
    let to_dba = |id: u64| {
        let mut e = rig.sealed(id, request.clone()).body;
        e.audience = Audience::wide(&[], &["dba".into()]);
        Signed::sign(&rig.gw_key, e).unwrap()
    };
    let ingest = |e| rig.engine.ingest(&rig.fp, &e).unwrap();

    // No statement yet, then one that lists another group: not for this device.
    assert_eq!(
        ingest(to_dba(5)),
        IngestOutcome::Refused {
            reason: FrameRefusal::NotAddressed
        }
    );
    assert_eq!(
        ingest(rig.sealed(6, membership(&rig, 1, &["managers"]))),
        IngestOutcome::Accepted
    );
    assert_eq!(
        ingest(to_dba(7)),
        IngestOutcome::Refused {
            reason: FrameRefusal::NotAddressed
        }
    );
    // Once its person is in dba, the same request arrives.
    assert_eq!(
        ingest(rig.sealed(8, membership(&rig, 2, &["dba", "managers"]))),
        IngestOutcome::Accepted
    );
    assert_eq!(ingest(to_dba(9)), IngestOutcome::Accepted);
    assert!(rig
        .engine
        .list(ListFilter::All)
        .unwrap()
        .iter()
        .any(|i| i.request.body.id == "g-1"));
    assert_eq!(rig.engine.gateway(&rig.fp).unwrap().last_event_id, 9);
}
