//! The `countersign-desktop` binary: logging, then the window in `countersign_desktop::run`.
#![forbid(unsafe_code)]
// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

/// WebKitGTK's accelerated compositing renders through OpenGL; where there is no GPU (a VM, a
/// remote or virtual display) that is Mesa's software rasteriser, and every frame of this UI
/// then took 200 to 300 ms and about 90 MB more memory (docs/performance.md). The app draws
/// lists and text, which WebKit's non-composited path renders in a few milliseconds, so it
/// turns compositing off unless the environment already says otherwise
/// (`WEBKIT_DISABLE_COMPOSITING_MODE=0` keeps it).
fn choose_rendering() {
    const VAR: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";
    if std::env::var_os(VAR).is_none() {
        // Before any thread exists: nothing else reads the environment concurrently.
        std::env::set_var(VAR, "1");
    }
}

fn main() -> ExitCode {
    choose_rendering();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COUNTERSIGN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Started by an autostart entry of an earlier version: only the background service, no
    // window (and no WebKit).
    let result = if std::env::args()
        .skip(1)
        .any(|a| a == countersign_desktop::HIDDEN_FLAG)
    {
        countersign_desktop::start_agent_only()
    } else {
        countersign_desktop::run()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
