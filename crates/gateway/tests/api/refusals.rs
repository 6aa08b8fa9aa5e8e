//! The checks every refusal test makes: the refusal carries its stable code and a sentence, and
//! the gateway wrote it to its audit log, whose chain still verifies.

use countersign_test_support::{Refusal, TestGateway};

pub trait Refusals {
    /// A refused decision: `code`, a client error with a message, audited as
    /// `decision.rejected`.
    fn expect_rejection(&self, f: &Refusal, code: &str);
    /// A refused pairing: `code`, audited as `pairing.rejected`.
    fn expect_pairing_rejection(&self, f: &Refusal, code: &str);
    /// A refused passkey change: `code`, audited (aggregated) as `passkey.refused`.
    fn expect_passkey_refusal(&self, f: &Refusal, code: &str);
}

impl Refusals for TestGateway {
    fn expect_rejection(&self, f: &Refusal, code: &str) {
        assert_eq!(f.code(), Some(code), "{f:?}");
        assert!((400..500).contains(&f.status), "{f:?}");
        assert!(!f.body.as_ref().unwrap().error.message.is_empty());
        expect_audited(self, "decision.rejected", code);
    }

    fn expect_pairing_rejection(&self, f: &Refusal, code: &str) {
        assert_eq!(f.code(), Some(code), "{f:?}");
        expect_audited(self, "pairing.rejected", code);
    }

    fn expect_passkey_refusal(&self, f: &Refusal, code: &str) {
        assert_eq!(f.code(), Some(code), "{f:?}");
        assert!((400..500).contains(&f.status), "{f:?}");
        expect_audited(self, "passkey.refused", code);
    }
}

/// The latest `kind` entry in the gateway's audit log carries `code`, and the chain verifies.
fn expect_audited(h: &TestGateway, kind: &str, code: &str) {
    let entries = h.audit();
    let last = entries
        .iter()
        .rev()
        .find(|(e, _)| e.kind == kind)
        .unwrap_or_else(|| panic!("no {kind} in the audit log"));
    assert_eq!(
        last.0.detail["code"], code,
        "audited {kind}: {:?}",
        last.0.detail
    );
    countersign_protocol::audit::verify_chain(entries).unwrap();
}
