//! The gateway's log lines, on standard error: text for people, or one JSON object per line
//! for a log collector (`log_format = "json"`, `COUNTERSIGN_LOG_FORMAT=json`). The level filter
//! is `COUNTERSIGN_LOG` (`info` by default; `countersign_gateway=debug`, ...). No line carries
//! a secret: tokens, keys and codes are never logged at any level.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the process's log subscriber. Called once, by the binary, before anything logs.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("COUNTERSIGN_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        // Each line a whole object: the event's fields at the top level beside `timestamp`,
        // `level` and `target`, and the spans it ran in.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
}
