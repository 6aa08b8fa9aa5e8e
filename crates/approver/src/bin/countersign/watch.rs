//! `watch`: staying connected to every gateway until Ctrl-C (or SIGTERM), printing requests as
//! they arrive and are resolved, and the connection and delivery events.

use std::process::ExitCode;
use std::sync::Arc;

use countersign_approver::display::visible;
use countersign_approver::{Engine, EngineEvent, InboxItem, Notifier};
use countersign_protocol::RequestState;

use crate::ctx::Ctx;
use crate::inbox::{item_json, one_line};

/// Prints arriving requests. It only prints: a notification never decides anything.
struct PrintNotifier {
    json: bool,
    engine: Engine,
}

impl Notifier for PrintNotifier {
    fn request_arrived(&self, item: &InboxItem) {
        let now = self.engine.now();
        if self.json {
            if let Ok(v) = item_json(item, now) {
                println!("{}", serde_json::json!({"type": "request", "request": v}));
            }
        } else {
            println!("new request {}", one_line(item, now));
        }
    }

    fn request_resolved(&self, request_id: &str, state: RequestState) {
        if self.json {
            println!(
                "{}",
                serde_json::json!({"type": "resolved", "request_id": request_id, "state": state})
            );
        } else {
            println!("request {request_id} is now {}", state.as_str());
        }
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if ctx.engine.gateways()?.is_empty() {
        anyhow::bail!("No gateway is paired yet; run `countersign pair <link>` first.");
    }
    ctx.engine.set_notifier(Arc::new(PrintNotifier {
        json: ctx.json,
        engine: ctx.engine.clone(),
    }));
    let mut events = ctx.engine.subscribe();
    let json = ctx.json;
    let printer = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let line = match &e {
                EngineEvent::RequestRejected {
                    request_id, reason, ..
                } => format!(
                    "rejected request {}: {}",
                    request_id.as_deref().unwrap_or("(unreadable)"),
                    visible(reason)
                ),
                EngineEvent::ConnectionUp { gateway } => format!("connected to {gateway}"),
                EngineEvent::ConnectionDown { gateway, error } => {
                    format!("connection to {gateway} lost: {error}; retrying")
                }
                EngineEvent::DecisionDelivered { decision_id, .. } => {
                    format!("decision {decision_id} delivered")
                }
                EngineEvent::DecisionRefused {
                    decision_id,
                    code,
                    message,
                    ..
                } => {
                    format!("decision {decision_id} refused ({code}): {message}")
                }
                _ => continue,
            };
            if json {
                if let Ok(v) = serde_json::to_string(&e) {
                    println!("{v}");
                }
            } else {
                eprintln!("{line}");
            }
        }
    });
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
        let _ = tx.send(true);
    });
    if !ctx.json {
        eprintln!(
            "watching {} gateway(s); Ctrl-C to stop",
            ctx.engine.gateways()?.len()
        );
    }
    ctx.engine.run(rx).await?;
    printer.abort();
    Ok(ExitCode::SUCCESS)
}
