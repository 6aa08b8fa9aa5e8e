//! Serving a [`Gateway`]: [`serve`] and [`serve_on`] start the HTTP or HTTPS server, the
//! expiry sweeper, the policy's watcher (`reload`) and the log's checkpointer (`tlog`), and
//! [`Running`] stops them.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::{http, lifecycle, reload};

/// A gateway serving on a socket, with its background tasks.
pub struct Running {
    pub gateway: Arc<Gateway>,
    pub addr: SocketAddr,
    /// The Kubernetes admission webhook, when `[kubernetes]` configures it.
    pub kubernetes: Option<crate::kubernetes::Webhook>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    sweeper: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
    checkpointer: tokio::task::JoinHandle<()>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Running {
    /// The base URL clients use, e.g. `http://127.0.0.1:40123/`.
    pub fn url(&self) -> url::Url {
        let mut u = self.gateway.config.public_url();
        if self.gateway.config.public_url.is_none() {
            let _ = u.set_port(Some(self.addr.port()));
        }
        u
    }

    /// Stops accepting connections and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.sweeper.abort();
        self.watcher.abort();
        self.checkpointer.abort();
        self.dispatcher.abort();
        self.gateway.hub.close();
        if let Some(k) = self.kubernetes.take() {
            k.shutdown().await;
        }
        let _ = (&mut self.task).await;
        // Counted refusals of windows still open are written, so none vanishes.
        let gw = self.gateway.clone();
        let _ = tokio::task::spawn_blocking(move || gw.flush_refusals(true)).await;
    }

    /// Ends the server task at once, as a crash would (connections are dropped).
    pub fn abort(self) {
        if let Some(k) = &self.kubernetes {
            k.abort();
        }
        self.task.abort();
        self.sweeper.abort();
        self.watcher.abort();
        self.checkpointer.abort();
        self.dispatcher.abort();
        self.gateway.hub.close();
    }
}

/// Binds `config.listen` (port 0 picks a free port) and serves until shut down.
pub async fn serve(gateway: Arc<Gateway>) -> Result<Running, GatewayError> {
    let listener = tokio::net::TcpListener::bind(gateway.config.listen)
        .await
        .map_err(|source| GatewayError::Listen {
            addr: gateway.config.listen,
            source,
        })?;
    serve_on(gateway, listener)
}

/// Serves on an already bound listener.
pub fn serve_on(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
) -> Result<Running, GatewayError> {
    let addr = listener
        .local_addr()
        .map_err(|source| GatewayError::Listen {
            addr: gateway.config.listen,
            source,
        })?;
    let app = http::router(gateway.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = match &gateway.tls {
        None => tokio::spawn(async move {
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::error!(%e, "the HTTP server stopped");
            }
        }),
        Some(t) => {
            let std_listener = listener
                .into_std()
                .map_err(|source| GatewayError::Listen { addr, source })?;
            crate::tls::serve(std_listener, app, t.server.clone(), rx)?
        }
    };
    let kubernetes = match &gateway.config.kubernetes {
        Some(k) => Some(crate::kubernetes::serve(gateway.clone(), k.clone())?),
        None => None,
    };
    // Every approver's membership statement, as the directory is now, before the first stream.
    if let Err(e) = crate::memberships::sync(&gateway) {
        tracing::error!(%e, "the membership statements could not be brought up to date");
    }
    let sweeper = tokio::spawn(lifecycle::expiry_sweeper(gateway.clone()));
    let watcher = tokio::spawn(reload::watch(gateway.clone()));
    let checkpointer = tokio::spawn(crate::tlog::checkpointer(gateway.clone()));
    let dispatcher = tokio::spawn(crate::webhooks::dispatcher(gateway.clone()));
    Ok(Running {
        gateway,
        addr,
        kubernetes,
        shutdown: Some(tx),
        task,
        sweeper,
        watcher,
        checkpointer,
        dispatcher,
    })
}
