//! The window's end of the socket: [`connect`] reaches the agent, starting it when it is not
//! running, and [`AgentClient::call`] sends a command and waits for its answer. What the agent
//! pushes arrives on the [`Pushed`] receiver; it closes when the agent goes away.

use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use countersign_ipc::agent::{AgentMessage, Call, Command, Hello, AGENT_PROTOCOL, MAX_LINE};
use countersign_ipc::{ErrorCode, IpcError, UiEvent};
use serde_json::value::RawValue;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::lines::read_line;
use crate::state::lock;

/// How long a started agent has to open its socket.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// What the agent pushes to the window.
#[derive(Debug)]
pub enum Pushed {
    Event(UiEvent),
    Show { request_id: Option<String> },
    Quit,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot start the background service {program}: {source}")]
    Spawn {
        program: PathBuf,
        source: std::io::Error,
    },
    #[error("the background service {program} exited before it listened ({status})")]
    Exited {
        program: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("the background service did not open {socket} within {timeout:?}")]
    Timeout { socket: PathBuf, timeout: Duration },
    #[error("the background service's socket failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the background service speaks protocol {found}, this window {expected}")]
    Version { found: u32, expected: u32 },
    #[error("the background service refused the greeting: {0}")]
    Refused(String),
    #[error("the background service did not answer within {0:?}")]
    NoAnswer(Duration),
    #[error("{socket} belongs to another user (uid {owner}); this window runs as uid {me}")]
    ForeignSocket {
        socket: PathBuf,
        owner: u32,
        me: u32,
    },
}

/// How long the agent has to answer the greeting.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `socket` if it is there and belongs to this process's user: a socket someone
/// else put in the data directory is never spoken to. `Ok(None)` when nothing listens.
async fn reach(socket: &Path) -> Result<Option<UnixStream>, ClientError> {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::metadata(socket) else {
        return Ok(None);
    };
    let me = std::fs::metadata("/proc/self")?.uid();
    if meta.uid() != me {
        return Err(ClientError::ForeignSocket {
            socket: socket.to_owned(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(UnixStream::connect(socket).await.ok())
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Box<RawValue>, IpcError>>>>>;

/// A connection to the agent.
pub struct AgentClient {
    write: tokio::sync::Mutex<OwnedWriteHalf>,
    waiters: Waiters,
    next: AtomicU64,
    hello: Hello,
}

/// The page's error for an agent that cannot be reached, saying why.
pub fn unavailable(why: impl std::fmt::Display) -> IpcError {
    IpcError::new(
        ErrorCode::AgentUnavailable,
        format!("Countersign's background service cannot be reached: {why}."),
    )
}

impl AgentClient {
    /// What the agent said when the window connected.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Sends `command` and waits for its answer: the result as JSON (exactly what the page
    /// receives), or the agent's error.
    pub async fn call(&self, command: Command) -> Result<Box<RawValue>, IpcError> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(id, tx);
        // Wiped once sent: a call may carry a security key's PIN.
        let line = serde_json::to_string(&Call { id, call: command })
            .map(zeroize::Zeroizing::new)
            .map_err(|e| {
                IpcError::new(
                    ErrorCode::Internal,
                    format!("The call could not be encoded: {e}."),
                )
            })?;
        let sent = {
            let mut w = self.write.lock().await;
            match w.write_all(line.as_bytes()).await {
                Ok(()) => w.write_all(b"\n").await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent {
            lock(&self.waiters).remove(&id);
            return Err(unavailable(e));
        }
        rx.await
            .unwrap_or_else(|_| Err(unavailable("it closed the connection")))
    }
}

/// Connects to the agent serving `data_dir`, starting `program` when none answers.
pub async fn connect(
    data_dir: &Path,
    program: &Path,
) -> Result<(AgentClient, mpsc::UnboundedReceiver<Pushed>), ClientError> {
    let socket = crate::paths::socket(data_dir);
    if let Some(stream) = reach(&socket).await? {
        return greet(stream).await;
    }
    tracing::info!(program = %program.display(), "starting the background service");
    let mut child = std::process::Command::new(program)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        // A process group of its own: the agent outlives the window, and whatever ends the
        // window's group (a terminal's Ctrl-C, a launcher, a test driver) leaves it running.
        .process_group(0)
        .spawn()
        .map_err(|source| ClientError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let start = Instant::now();
    let result = loop {
        match reach(&socket).await {
            Ok(Some(stream)) => break greet(stream).await,
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        if let Some(status) = child.try_wait()? {
            // Another window may have started an agent at the same moment: that one won the
            // data directory, and its socket appears shortly.
            if !status.success() && start.elapsed() > Duration::from_secs(2) {
                break Err(ClientError::Exited {
                    program: program.to_owned(),
                    status,
                });
            }
        }
        if start.elapsed() > START_TIMEOUT {
            break Err(ClientError::Timeout {
                socket: socket.clone(),
                timeout: START_TIMEOUT,
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // The agent outlives the window; reap it if it ends while the window runs.
    std::thread::spawn(move || child.wait());
    result
}

async fn greet(
    stream: UnixStream,
) -> Result<(AgentClient, mpsc::UnboundedReceiver<Pushed>), ClientError> {
    let (read, write) = stream.into_split();
    let waiters: Waiters = Arc::default();
    let (push_tx, push_rx) = mpsc::unbounded_channel();
    tokio::spawn(read_loop(read, waiters.clone(), push_tx));
    let mut client = AgentClient {
        write: tokio::sync::Mutex::new(write),
        waiters,
        next: AtomicU64::new(1),
        hello: Hello {
            protocol: 0,
            pid: 0,
            connections: Vec::new(),
        },
    };
    let raw = tokio::time::timeout(HELLO_TIMEOUT, client.call(Command::Hello))
        .await
        .map_err(|_| ClientError::NoAnswer(HELLO_TIMEOUT))?
        .map_err(|e| ClientError::Refused(e.message))?;
    let hello: Hello =
        serde_json::from_str(raw.get()).map_err(|e| ClientError::Refused(e.to_string()))?;
    if hello.protocol != AGENT_PROTOCOL {
        return Err(ClientError::Version {
            found: hello.protocol,
            expected: AGENT_PROTOCOL,
        });
    }
    client.hello = hello;
    Ok((client, push_rx))
}

async fn read_loop(
    read: tokio::net::unix::OwnedReadHalf,
    waiters: Waiters,
    pushed: mpsc::UnboundedSender<Pushed>,
) {
    let mut read = BufReader::new(read);
    let mut buf = Vec::new();
    loop {
        match read_line(&mut read, &mut buf, MAX_LINE).await {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                tracing::warn!(error = %e, "the background service's message could not be read");
                break;
            }
        }
        let message: AgentMessage = match serde_json::from_slice(&buf) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "the background service sent a message this window does not know");
                continue;
            }
        };
        let push = match message {
            AgentMessage::Reply { id, ok, err } => {
                let result = match (ok, err) {
                    (_, Some(e)) => Err(e),
                    (Some(v), None) => Ok(v),
                    (None, None) => Err(IpcError::new(
                        ErrorCode::Ipc,
                        "The background service answered with neither a result nor an error.",
                    )),
                };
                if let Some(w) = lock(&waiters).remove(&id) {
                    let _ = w.send(result);
                }
                continue;
            }
            AgentMessage::Event(e) => Pushed::Event(e),
            AgentMessage::Show { request_id } => Pushed::Show { request_id },
            AgentMessage::Quit {} => Pushed::Quit,
        };
        if pushed.send(push).is_err() {
            break;
        }
    }
    // Every call still waiting learns that the agent is gone (dropping its sender).
    lock(&waiters).clear();
}
