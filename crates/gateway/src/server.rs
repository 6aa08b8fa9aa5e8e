//! Serving a [`Gateway`]: [`serve`] and [`serve_on`] start the HTTP or HTTPS server, the
//! operations listener (`http::ops`), the expiry sweeper, the policy's watcher (`reload`) and
//! the log's checkpointer (`tlog`), and [`Running`] stops them: [`Running::shutdown`] drains
//! first, so that a load balancer moves the devices' streams to another replica.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::{http, lifecycle, reload};

/// A gateway serving on a socket, with its background tasks.
pub struct Running {
    pub gateway: Arc<Gateway>,
    pub addr: SocketAddr,
    /// Where the operations endpoints listen (`operations_listen`), when configured.
    pub operations_addr: Option<SocketAddr>,
    /// The Kubernetes admission webhook, when `[kubernetes]` configures it.
    pub kubernetes: Option<crate::kubernetes::Webhook>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    operations: Option<tokio::task::JoinHandle<()>>,
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

    /// Shuts down gracefully. `/readyz` answers 503 at once and long polls are answered, then,
    /// after `shutdown_drain_seconds` (time for a load balancer to notice), the streams are
    /// closed (their devices reconnect, through the load balancer, to another replica), the
    /// listener stops accepting, and the requests in flight are finished.
    pub async fn shutdown(mut self) {
        self.gateway.start_draining();
        let drain = self.gateway.config.shutdown_drain_seconds;
        if drain > 0 {
            tracing::info!(
                seconds = drain,
                "draining: /readyz answers 503, the streams close after"
            );
            tokio::time::sleep(std::time::Duration::from_secs(drain)).await;
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.sweeper.abort();
        self.watcher.abort();
        self.checkpointer.abort();
        self.dispatcher.abort();
        self.gateway.store.step_down();
        self.gateway.hub.close();
        if let Some(k) = self.kubernetes.take() {
            k.shutdown().await;
        }
        let _ = (&mut self.task).await;
        if let Some(ops) = self.operations.take() {
            ops.abort();
        }
        // Counted refusals of windows still open are written, so none vanishes.
        let gw = self.gateway.clone();
        let _ = tokio::task::spawn_blocking(move || gw.flush_refusals(true)).await;
    }

    /// Ends the server task at once, as a crash would (connections are dropped).
    pub fn abort(self) {
        if let Some(k) = &self.kubernetes {
            k.abort();
        }
        if let Some(ops) = &self.operations {
            ops.abort();
        }
        self.task.abort();
        self.sweeper.abort();
        self.watcher.abort();
        self.checkpointer.abort();
        self.dispatcher.abort();
        // A crash closes the leader's connection with the process.
        self.gateway.store.step_down();
        self.gateway.hub.close();
    }
}

/// Binds `config.listen` (port 0 picks a free port), and `operations_listen` when set, and
/// serves until shut down.
pub async fn serve(gateway: Arc<Gateway>) -> Result<Running, GatewayError> {
    let listener = bind(gateway.config.listen).await?;
    let mut running = serve_on(gateway, listener)?;
    if let Some(addr) = running.gateway.config.operations_listen {
        let ops = bind(addr).await?;
        running.operations_addr = Some(
            ops.local_addr()
                .map_err(|source| GatewayError::Listen { addr, source })?,
        );
        let app = http::ops::router(running.gateway.clone());
        running.operations = Some(tokio::spawn(async move {
            if let Err(e) = axum::serve(ops, app.into_make_service()).await {
                tracing::error!(%e, "the operations listener stopped");
            }
        }));
    }
    Ok(running)
}

async fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener, GatewayError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Listen { addr, source })
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
            // `into_make_service` hands each connection a clone of the router (reference
            // counted). Serving the `Router` itself calls `with_state` for every connection,
            // which rebuilds the route table: 18 KiB held for the life of each connection, so
            // more than a third of an idle stream's memory (docs/performance.md section 4).
            let result = axum::serve(listener, app.into_make_service())
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
        operations_addr: None,
        kubernetes,
        shutdown: Some(tx),
        task,
        operations: None,
        sweeper,
        watcher,
        checkpointer,
        dispatcher,
    })
}

/// Raises the soft open-files limit to the hard one: each device stream is a socket, and the
/// soft limit a shell or a container starts with (often 1,024) would refuse connections long
/// before 10,000 streams. The systemd unit sets both (`LimitNOFILE`).
pub fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => tracing::info!(from = soft, to = hard, "open-files limit raised"),
            Err(e) => tracing::warn!(%e, soft, hard, "cannot raise the open-files limit"),
        },
        Ok((soft, _)) => tracing::debug!(limit = soft, "open-files limit"),
        Err(e) => tracing::warn!(%e, "cannot read the open-files limit"),
    }
}
