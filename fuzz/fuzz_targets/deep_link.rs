//! `countersign://` deep links and pairing links: never a panic; an accepted pairing link
//! prints and parses back to itself; no link ever yields anything but navigation or an offer
//! to pair.
#![no_main]

use countersign_protocol::deeplink::{self, LinkAction};
use countersign_protocol::PairingLink;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(link) = PairingLink::parse(s) {
        assert_eq!(PairingLink::parse(&link.to_string()).expect("printed link parses"), link);
    }
    match deeplink::parse(s) {
        Ok(LinkAction::Pair { link }) => {
            PairingLink::parse(&link).expect("a pairing action carries a valid link");
        }
        Ok(LinkAction::OpenRequest { request_id }) => {
            assert!(!request_id.is_empty() && request_id.len() <= deeplink::MAX_REQUEST_ID_LEN);
        }
        Err(_) => {}
    }
});
