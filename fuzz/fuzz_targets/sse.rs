//! The SSE parser on hostile bytes: never a panic, and the events do not depend on how the
//! bytes were split into chunks.
#![no_main]

use countersign_protocol::sse::SseParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let mut whole = SseParser::new();
    let all = whole.feed(rest);
    let at = (cut as usize).min(rest.len());
    let mut split = SseParser::new();
    let first = split.feed(&rest[..at]);
    let second = first
        .clone()
        .and_then(|_| split.feed(&rest[at..]));
    if let (Ok(all), Ok(a), Ok(b)) = (&all, &first, &second) {
        let joined: Vec<_> = a.iter().chain(b.iter()).cloned().collect();
        assert_eq!(all, &joined);
    }
});
