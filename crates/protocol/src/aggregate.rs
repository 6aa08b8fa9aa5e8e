//! Aggregation of audit entries that a peer can repeat at will (refused stream frames,
//! decision retries, refused requester calls and stream connections), so that the audit log
//! cannot be flooded and no occurrence vanishes (`docs/protocol.md` 9.5). Pure bookkeeping:
//! the caller writes the entries it is given.
//!
//! Per key and window of [`WINDOW_SECONDS`]: the first occurrence is written at once with
//! `count: 1`; later ones in the window are counted; once the window has passed, one entry of
//! the same kind says how many more there were (`count`), when (`first_at`, `last_at`), with
//! the first of them as `sample`. So a key writes at most two entries a window.

use std::collections::HashMap;

/// Length of an aggregation window, in seconds.
pub const WINDOW_SECONDS: i64 = 60;

/// An entry to write: its kind and detail.
pub type Entry = (&'static str, serde_json::Value);

/// The open windows, by key.
#[derive(Debug, Default)]
pub struct Aggregator(HashMap<String, Window>);

#[derive(Debug)]
struct Window {
    kind: &'static str,
    opened_at: i64,
    /// Occurrences after the first.
    more: u64,
    first_at: i64,
    last_at: i64,
    sample: serde_json::Value,
}

impl Aggregator {
    /// Records one occurrence of `kind` under `key` at `now`; returns the entries to write now
    /// (summaries of windows that have passed, and this occurrence if it opens a window).
    pub fn record(
        &mut self,
        now: i64,
        kind: &'static str,
        key: &str,
        detail: serde_json::Value,
    ) -> Vec<Entry> {
        let mut out = self.close(now, false);
        match self.0.get_mut(key) {
            Some(w) => {
                if w.more == 0 {
                    w.first_at = now;
                    w.sample = detail;
                }
                w.more += 1;
                w.last_at = now;
            }
            None => {
                self.0.insert(
                    key.to_string(),
                    Window {
                        kind,
                        opened_at: now,
                        more: 0,
                        first_at: now,
                        last_at: now,
                        sample: serde_json::Value::Null,
                    },
                );
                let mut first = detail;
                if let Some(o) = first.as_object_mut() {
                    o.insert("count".into(), 1.into());
                }
                out.push((kind, first));
            }
        }
        out
    }

    /// Closes the windows that have passed at `now` (all of them with `all`, at shutdown),
    /// returning the summary entries to write.
    pub fn close(&mut self, now: i64, all: bool) -> Vec<Entry> {
        let mut out = Vec::new();
        self.0.retain(|_, w| {
            let done = all || now >= w.opened_at + WINDOW_SECONDS;
            if done && w.more > 0 {
                out.push((
                    w.kind,
                    serde_json::json!({
                        "count": w.more,
                        "first_at": w.first_at,
                        "last_at": w.last_at,
                        "sample": w.sample,
                    }),
                ));
            }
            !done
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_writes_two_entries_a_window_and_counts_everything() {
        let mut a = Aggregator::default();
        let mut written = Vec::new();
        for i in 0..1000 {
            let now = 100 + i / 10; // 100 s of 10 occurrences a second
            written.extend(a.record(now, "x", "k", serde_json::json!({"i": i})));
        }
        written.extend(a.close(200, true));
        // Two windows of 60 s, each its first at once and one summary.
        assert_eq!(written.len(), 4, "{written:?}");
        let total: u64 = written
            .iter()
            .map(|(_, d)| d["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 1000);
        assert_eq!(written[0].1["i"], 0);
        assert_eq!(written[1].1["sample"]["i"], 1);
    }

    #[test]
    fn keys_are_separate_and_a_lone_occurrence_needs_no_summary() {
        let mut a = Aggregator::default();
        assert_eq!(a.record(0, "x", "a", serde_json::json!({})).len(), 1);
        assert_eq!(a.record(1, "x", "b", serde_json::json!({})).len(), 1);
        assert!(a.record(2, "x", "a", serde_json::json!({})).is_empty());
        let closed = a.close(61, false);
        assert_eq!(closed.len(), 1, "only `a` had more: {closed:?}");
        assert_eq!(closed[0].1["count"], 1);
        assert!(a.close(1000, true).is_empty());
    }
}
