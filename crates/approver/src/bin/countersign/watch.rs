//! `watch`: staying connected to every gateway until Ctrl-C (or SIGTERM), printing requests as
//! they arrive and are resolved, and the connection and delivery events.

use std::process::ExitCode;
use std::sync::Arc;

use countersign_approver::display::visible;
use countersign_approver::{Engine, InboxItem, Notifier};
use countersign_protocol::RequestState;

use crate::ctx::Ctx;
use crate::inbox::one_line;
use crate::json::{self, Line as _};

/// Prints arriving requests. It only prints: a notification never decides anything.
struct PrintNotifier {
    json: bool,
    engine: Engine,
    stop: Stop,
}

/// Ends the watch: a signal, or stdout closed by its reader (`countersign watch | head`).
#[derive(Clone)]
struct Stop(Arc<tokio::sync::watch::Sender<bool>>);

impl Stop {
    /// Prints a line; a closed stdout ends the watch instead (other write errors are ignored,
    /// as a terminal that cannot show a line must not stop the approver).
    fn say(&self, args: std::fmt::Arguments<'_>) {
        if let Err(e) = crate::out::write_line(args) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                let _ = self.0.send(true);
            }
        }
    }
}

impl Notifier for PrintNotifier {
    fn request_arrived(&self, item: &InboxItem) {
        let now = self.engine.now();
        if self.json {
            let notice = json::Notice::Request {
                request: Box::new(json::Request::new(item, now)),
            };
            if let Ok(line) = notice.line() {
                self.stop.say(format_args!("{line}"));
            }
        } else {
            self.stop
                .say(format_args!("new request {}", one_line(item, now)));
        }
    }

    fn hoop_review_arrived(&self, connection: &str, review_id: &str) {
        let Ok(Some(item)) = self.engine.hoop_item_in(connection, review_id) else {
            return;
        };
        if self.json {
            if let Ok(line) = json::HoopRequest::from(&item).line() {
                self.stop.say(format_args!("{line}"));
            }
        } else {
            self.stop.say(format_args!(
                "new hoop review {}",
                crate::hoop_items::one_line(&item)
            ));
        }
    }

    fn request_resolved(&self, request_id: &str, state: RequestState) {
        if self.json {
            if let Ok(line) = (json::Notice::Resolved { request_id, state }).line() {
                self.stop.say(format_args!("{line}"));
            }
        } else {
            self.stop.say(format_args!(
                "request {request_id} is now {}",
                state.as_str()
            ));
        }
    }
}

/// The line `watch` prints (on stderr) for an event without `--json`.
fn describe(event: &json::Event<'_>) -> String {
    match event {
        json::Event::RequestRejected {
            request_id, reason, ..
        } => format!(
            "rejected request {}: {}",
            request_id.unwrap_or("(unreadable)"),
            visible(reason)
        ),
        json::Event::ConnectionUp { gateway } => format!("connected to {gateway}"),
        json::Event::ConnectionDown { gateway, error } => {
            format!("connection to {gateway} lost: {error}; retrying")
        }
        json::Event::DecisionDelivered { decision_id, .. } => {
            format!("decision {decision_id} delivered")
        }
        json::Event::DecisionRefused {
            decision_id,
            code,
            message,
            ..
        } => format!("decision {decision_id} refused ({code}): {message}"),
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    if ctx.engine.gateways()?.is_empty() {
        anyhow::bail!("No gateway is paired yet; run `countersign pair <link>` first.");
    }
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = Stop(Arc::new(tx));
    ctx.engine.set_notifier(Arc::new(PrintNotifier {
        json: ctx.json,
        engine: ctx.engine.clone(),
        stop: stop.clone(),
    }));
    let mut events = ctx.engine.subscribe();
    let json = ctx.json;
    let printer_stop = stop.clone();
    let printer = tokio::spawn(async move {
        while let Ok(e) = events.recv().await {
            let Some(event) = json::Event::from_engine(&e) else {
                continue;
            };
            if json {
                if let Ok(line) = event.line() {
                    printer_stop.say(format_args!("{line}"));
                }
            } else {
                eprintln!("{}", describe(&event));
            }
        }
    });
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
        let _ = stop.0.send(true);
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
