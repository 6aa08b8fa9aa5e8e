//! The agent's end of the socket: accepts windows of the same user, answers their calls (each
//! on its own task, so a passkey ceremony waiting for a touch holds up nothing else) and
//! passes on what the agent pushes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use countersign_ipc::agent::{AgentMessage, Call, MAX_LINE};
use countersign_ipc::{ErrorCode, IpcError, UiEvent};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::context::Agent;
use crate::lines::read_line;

/// Binds the socket at `path` (owner-only), replacing a stale one. The caller holds the data
/// directory's lock, so no other agent serves it.
pub fn bind(path: &Path) -> std::io::Result<(UnixListener, u32)> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_file(path) {
        Ok(()) => tracing::debug!(path = %path.display(), "removed a stale socket"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let uid = std::fs::metadata(path)?.uid();
    Ok((listener, uid))
}

/// Serves windows for as long as the agent runs. A failed `accept` (out of file descriptors,
/// say) is logged and tried again after a pause, so the socket never silently stops serving.
pub async fn serve(agent: Arc<Agent>, listener: UnixListener, uid: u32) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                match stream.peer_cred() {
                    Ok(cred) if cred.uid() == uid => {}
                    Ok(cred) => {
                        tracing::warn!(peer_uid = cred.uid(), "refused a window of another user");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "refused a window whose user is unknown");
                        continue;
                    }
                }
                tokio::spawn(connection(agent.clone(), stream));
            }
            Err(e) => {
                tracing::error!(error = %e, "the agent's socket could not accept a window");
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

async fn connection(agent: Arc<Agent>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut sub = agent.clients.subscribe();
    tracing::info!(window = sub.id, "window connected");
    let (reply_tx, mut replies) = mpsc::unbounded_channel::<String>();
    let mut quitting = agent.quitting.subscribe();

    let reader_agent = agent.clone();
    let mut reader = tokio::spawn(async move {
        let mut read = BufReader::new(read);
        // Wiped between lines and when dropped: a line may carry a PIN.
        let mut buf = zeroize::Zeroizing::new(Vec::new());
        loop {
            match read_line(&mut read, &mut buf, MAX_LINE).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "a window's call could not be read");
                    return;
                }
            }
            let call: Call = match serde_json::from_slice(&buf) {
                Ok(c) => c,
                Err(e) => {
                    // A call this agent cannot read is answered when its id can be found.
                    let id = serde_json::from_slice::<serde_json::Value>(&buf)
                        .ok()
                        .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64));
                    tracing::warn!(error = %e, "a window sent a call the agent does not know");
                    if let Some(id) = id {
                        let err = IpcError::new(
                            ErrorCode::Ipc,
                            format!("The background service does not understand this call: {e}."),
                        );
                        send(&reply_tx, &AgentMessage::reply::<()>(id, Err(err)));
                    }
                    continue;
                }
            };
            let agent = reader_agent.clone();
            let tx = reply_tx.clone();
            tokio::spawn(async move {
                let reply = crate::commands::dispatch(&agent, call.id, call.call).await;
                send(&tx, &reply);
            });
        }
    });

    loop {
        if *quitting.borrow_and_update() {
            // Answers already made go first (the `quit` call's own among them); `quit` is
            // written here, not queued, so a window whose queue is full still learns of it.
            while let Ok(r) = replies.try_recv() {
                if write_line(&mut write, &r).await.is_err() {
                    break;
                }
            }
            if let Ok(l) = serde_json::to_string(&AgentMessage::Quit {}) {
                let _ = write_line(&mut write, &l).await;
            }
            break;
        }
        let line: String = tokio::select! {
            _ = quitting.changed() => continue,
            _ = &mut reader => break,
            Some(r) = replies.recv() => r,
            Some(pushed) = sub.messages.recv() => {
                if sub.lagged.swap(false, Ordering::Relaxed) {
                    // Messages were dropped before this one: the page re-reads instead.
                    match serde_json::to_string(&AgentMessage::Event(UiEvent::Resync)) {
                        Ok(l) => {
                            if write_line(&mut write, &l).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "cannot encode a resync"),
                    }
                }
                pushed.to_string()
            }
        };
        if write_line(&mut write, &line).await.is_err() {
            break;
        }
    }
    reader.abort();
    agent.clients.unsubscribe(sub.id);
    tracing::info!(window = sub.id, "window disconnected");
}

fn send(tx: &mpsc::UnboundedSender<String>, message: &AgentMessage) {
    match serde_json::to_string(message) {
        // The window is gone when this fails; nothing to tell.
        Ok(line) => {
            let _ = tx.send(line);
        }
        Err(e) => tracing::error!(error = %e, "cannot encode a reply"),
    }
}

async fn write_line(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    line: &str,
) -> std::io::Result<()> {
    write.write_all(line.as_bytes()).await?;
    write.write_all(b"\n").await?;
    write.flush().await
}
