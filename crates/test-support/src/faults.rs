//! A fault-injecting TCP proxy in the test process, between an approver and a gateway: latency,
//! connection resets, truncated answers and half-open silence, switched while traffic flows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use url::Url;

/// What [`FaultProxy`] does to the bytes passing through it, from the moment it is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Hold each chunk this long before forwarding it.
    Latency(Duration),
    /// Reset every connection (RST) at its next chunk.
    Reset,
    /// Half-open: keep every connection open but forward nothing, in either direction, and send
    /// no FIN. Only a keep-alive timeout can tell.
    Silence,
    /// Forward half of the next chunk from the gateway, then close the connection (a truncated
    /// response or stream).
    Truncate,
}

/// A fault-injecting TCP proxy in the test process, between an approver and a gateway.
pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: Arc<Mutex<Fault>>,
    accepted: Arc<AtomicUsize>,
    injected: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let fault = Arc::new(Mutex::new(Fault::None));
        let accepted = Arc::new(AtomicUsize::new(0));
        let injected = Arc::new(AtomicUsize::new(0));
        let (f, a, i) = (fault.clone(), accepted.clone(), injected.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, f.clone(), i.clone()));
            }
        });
        FaultProxy {
            addr,
            fault,
            accepted,
            injected,
            task,
        }
    }

    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}/", self.addr)).unwrap()
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Faults injected so far (one per chunk reset, silenced, truncated or delayed).
    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    mut client: tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
    fault: Arc<Mutex<Fault>>,
    injected: Arc<AtomicUsize>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let count = || injected.fetch_add(1, Ordering::SeqCst);
    let mut cbuf = vec![0u8; 16 * 1024];
    let mut sbuf = vec![0u8; 16 * 1024];
    loop {
        let (read, from_gateway) = tokio::select! {
            r = client.read(&mut cbuf) => (r, false),
            r = server.read(&mut sbuf) => (r, true),
        };
        let n = match read {
            Ok(0) | Err(_) => {
                let _ = client.shutdown().await;
                let _ = server.shutdown().await;
                return;
            }
            Ok(n) => n,
        };
        let now = *fault.lock().unwrap();
        match now {
            Fault::None => {}
            Fault::Latency(d) => {
                count();
                tokio::time::sleep(d).await;
            }
            Fault::Reset => {
                count();
                // SO_LINGER 0 makes close send RST. (Tokio deprecates set_linger because a
                // non-zero linger blocks the thread on drop; a zero linger does not.)
                #[allow(deprecated)]
                {
                    let _ = client.set_linger(Some(Duration::ZERO));
                    let _ = server.set_linger(Some(Duration::ZERO));
                }
                return;
            }
            Fault::Silence => {
                count();
                // Swallow everything from now on; never write, never close.
                loop {
                    let r = tokio::select! {
                        r = client.read(&mut cbuf) => r,
                        r = server.read(&mut sbuf) => r,
                    };
                    if matches!(r, Ok(0) | Err(_)) {
                        // A peer gave up; keep the other side open, as a dead path would.
                        std::future::pending::<()>().await;
                    }
                }
            }
            Fault::Truncate if from_gateway => {
                count();
                let _ = client.write_all(&sbuf[..n / 2]).await;
                let _ = client.shutdown().await;
                return;
            }
            Fault::Truncate => {}
        }
        let written = if from_gateway {
            client.write_all(&sbuf[..n]).await
        } else {
            server.write_all(&cbuf[..n]).await
        };
        if written.is_err() {
            return;
        }
    }
}
