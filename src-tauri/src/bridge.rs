//! The window's link to the agent: every command goes through [`call`], which connects (and
//! starts the agent) when needed, and what the agent pushes is applied here: the page's events,
//! "show the window" (a notification click, the tray) and quit.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use countersign_agent::client::{AgentClient, Pushed};
use countersign_ipc::agent::Command;
use countersign_ipc::{IpcError, UiEvent};
use tauri::ipc::Response;
use tauri::{AppHandle, Manager, Runtime};
use tokio::sync::mpsc;

use crate::state::Desktop;
use crate::window::{emit, focus_request, show_main};

/// Set when the agent said it quits, so its closing connection is not reconnected.
static QUITTING: AtomicBool = AtomicBool::new(false);

/// The connection, made when there is none.
pub async fn client<R: Runtime>(app: &AppHandle<R>) -> Result<Arc<AgentClient>, IpcError> {
    let state = app.state::<Desktop>();
    let handle = app.clone();
    state
        .client(move |pushed| {
            tauri::async_runtime::spawn(apply_pushed(handle, pushed));
        })
        .await
}

/// Runs `command` in the agent; its answer goes to the page as it came, without decoding it.
pub async fn call<R: Runtime>(app: &AppHandle<R>, command: Command) -> Result<Response, IpcError> {
    let c = client(app).await?;
    let raw = c.call(command).await?;
    Ok(Response::new(String::from(Box::<str>::from(raw))))
}

async fn apply_pushed<R: Runtime>(app: AppHandle<R>, mut pushed: mpsc::UnboundedReceiver<Pushed>) {
    while let Some(p) = pushed.recv().await {
        match p {
            Pushed::Event(event) => {
                app.state::<Desktop>().note_connection(&event);
                emit(&app, event);
            }
            Pushed::Show {
                request_id: Some(id),
            } => focus_request(&app, id),
            Pushed::Show { request_id: None } => show_main(&app),
            Pushed::Quit => {
                QUITTING.store(true, Ordering::Relaxed);
                app.exit(0);
                return;
            }
        }
    }
    // The agent went away without quitting (it crashed, or was killed): start it again, so
    // requests keep arriving while the window is open.
    app.state::<Desktop>().disconnected().await;
    if QUITTING.load(Ordering::Relaxed) {
        return;
    }
    tracing::warn!("the background service went away; starting it again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    reconnect(app).await;
}

/// Connects again. Boxed, because the connection it makes is read by [`apply_pushed`], which
/// calls this: the future's type would otherwise contain itself.
/// After it, the page re-reads what it shows (events may have been missed meanwhile) and hears
/// the connection states again.
fn reconnect<R: Runtime>(app: AppHandle<R>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        match client(&app).await {
            Ok(_) => {
                emit(&app, UiEvent::Resync);
                for event in app.state::<Desktop>().connections() {
                    emit(&app, event);
                }
            }
            Err(e) => {
                tracing::error!(code = %e.code, error = %e.message, "the background service cannot be started again");
            }
        }
    })
}
