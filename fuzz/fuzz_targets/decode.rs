//! Strict decoding of every protocol message: never a panic, and whatever decodes survives
//! canonical re-encoding and decoding again unchanged.
#![no_main]

use countersign_protocol::api::{CheckpointState, ReportAck};
use countersign_protocol::audit::{AuditEntry, Checkpoint};
use countersign_protocol::canonical::to_canonical_bytes;
use countersign_protocol::types::Decode;
use countersign_protocol::*;
use libfuzzer_sys::fuzz_target;

fn round_trip<T: Decode + serde::Serialize + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(v) = T::decode(data) {
        let bytes = to_canonical_bytes(&v).expect("a decoded message canonicalises");
        let again = T::decode(&bytes).expect("a canonical re-encoding decodes");
        assert_eq!(again, v);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Signed<ApprovalRequest>>(data);
    round_trip::<Signed<StatusUpdate>>(data);
    round_trip::<Signed<Decision>>(data);
    round_trip::<Signed<Receipt>>(data);
    round_trip::<Signed<Report>>(data);
    round_trip::<Signed<PairFinish>>(data);
    round_trip::<Signed<Paired>>(data);
    round_trip::<Signed<Checkpoint>>(data);
    round_trip::<PairStart>(data);
    round_trip::<PairChallenge>(data);
    round_trip::<StreamEvent>(data);
    round_trip::<Signed<Event>>(data);
    round_trip::<Signed<StreamHello>>(data);
    round_trip::<Signed<Refusal>>(data);
    round_trip::<GatewayInfo>(data);
    round_trip::<AuditEntry>(data);
    round_trip::<CheckpointState>(data);
    round_trip::<ReportAck>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = DeviceAuth::parse_header(s);
    }
    // The gateway's client data checks take any bytes without a panic.
    if let Ok(origin) = url::Url::parse("https://localhost") {
        let _ = countersign_protocol::webauthn::check_client_data(
            data,
            countersign_protocol::webauthn::Ceremony::Get,
            &origin,
        );
    }
});
