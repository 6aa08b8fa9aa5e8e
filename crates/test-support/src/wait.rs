//! Waiting in a test for something another task or process does.

use std::time::{Duration, Instant};

/// Polls `f` every 10 ms until it gives a value, and returns it; panics after 10 s, saying
/// `what` did not happen.
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
