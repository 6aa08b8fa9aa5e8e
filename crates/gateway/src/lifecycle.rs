//! A request after its creation: its view for the requester (with the long poll of
//! `GET /v1/requests/{id}?wait=`), withdrawal by the requester, and expiry on the gateway's
//! clock by the background sweeper.

use std::sync::Arc;
use std::time::Duration;

use countersign_protocol::api::{ErrorCode, RequestView};
use countersign_protocol::{ApprovalRequest, RequestState, Signed, StatusUpdate};
use serde_json::json;

use crate::error::ApiError;
use crate::gateway::Gateway;
use crate::hub::Pushed;
use crate::status::{push_status, status_of};

/// The request and its status, for its requester.
pub fn view(gw: &Gateway, requester: &str, id: &str) -> Result<RequestView, ApiError> {
    gw.store.read(|c| {
        let signed = c.request_and_requester(id)?;
        let Some((signed, owner)) = signed.filter(|(_, owner)| owner == requester) else {
            return Err(ApiError::not_found(
                ErrorCode::UnknownRequest,
                format!("There is no request {id} from {requester}."),
            ));
        };
        let _ = owner;
        let request: Signed<ApprovalRequest> =
            serde_json::from_str(&signed).map_err(|e| ApiError::internal("stored request", e))?;
        let (status, _) = status_of(gw, c, id)?;
        Ok(RequestView { request, status })
    })
}

/// Waits up to `wait` for the request to reach a final state, then returns its view. Each
/// look at the request is a read on the blocking pool ([`Gateway::blocking`]); in between it
/// waits for a change, registered before the read so that none is missed.
pub async fn view_wait(
    gw: &Arc<Gateway>,
    requester: &str,
    id: &str,
    wait: Duration,
) -> Result<RequestView, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let changed = gw.changes.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let (requester, id) = (requester.to_owned(), id.to_owned());
        let v = gw.blocking(move |gw| view(gw, &requester, &id)).await?;
        let done = v.status.body.state.is_final() || gw.is_draining();
        if done || tokio::time::Instant::now() >= deadline {
            return Ok(v);
        }
        let _ = tokio::time::timeout_at(deadline, changed).await;
    }
}

/// The requester withdraws its own pending request.
pub fn withdraw(gw: &Gateway, requester: &str, id: &str) -> Result<RequestView, ApiError> {
    let now = gw.now();
    gw.store
        .write_publish(|tx| -> Result<((), Vec<Pushed>), ApiError> {
            if !tx.withdraw_request(id, requester, now)? {
                return Err(ApiError::conflict(
                    ErrorCode::NotWithdrawable,
                    format!("There is no pending request {id} from {requester} to withdraw."),
                ));
            }
            tx.audit_append(now, "request.withdrawn", Some(id), json!({"by": requester}))?;
            Ok(((), push_status(gw, tx, id)?))
        })?;
    gw.changes.notify_waiters();
    view(gw, requester, id)
}

/// Revokes the approval of request `id` for `by` (an approver, or `admin`), while its grant is
/// live: approved, not used, not revoked and inside its window (`not_revocable`). One status
/// change, pushed to the request's addressees and seen by its requester; audited
/// `request.revoked`. Answers the status after it.
pub fn revoke(
    gw: &Gateway,
    id: &str,
    by: &str,
    reason: &str,
) -> Result<Signed<StatusUpdate>, ApiError> {
    let now = gw.now();
    let status = gw.store.write_publish(
        |tx| -> Result<(Signed<StatusUpdate>, Vec<Pushed>), ApiError> {
            if tx.request_signed(id)?.is_none() {
                return Err(ApiError::not_found(
                    ErrorCode::UnknownRequest,
                    format!("There is no request {id}."),
                ));
            }
            crate::revocations::check_grant_live(gw, tx, id, now)?;
            tx.revoke_request(id, by, now)?;
            tx.audit_append(
                now,
                "request.revoked",
                Some(id),
                json!({"by": by, "reason": reason}),
            )?;
            let pushed = push_status(gw, tx, id)?;
            Ok((status_of(gw, tx, id)?.0, pushed))
        },
    )?;
    gw.changes.notify_waiters();
    Ok(status)
}

/// Marks due pending requests expired and pushes the change. Returns how many expired.
pub fn expire_due(gw: &Gateway) -> Result<usize, ApiError> {
    let now = gw.now();
    let n = gw
        .store
        .write_publish(|tx| -> Result<(usize, Vec<Pushed>), ApiError> {
            let ids = tx.due_requests(now)?;
            let mut pushed = Vec::new();
            for id in &ids {
                tx.close_request(id, RequestState::Expired, now)?;
                tx.audit_append(now, "request.expired", Some(id), json!({}))?;
                pushed.extend(push_status(gw, tx, id)?);
            }
            Ok((ids.len(), pushed))
        })?;
    if n > 0 {
        gw.changes.notify_waiters();
    }
    Ok(n)
}

/// Background task: expires requests on the gateway's clock (on the leader, see
/// `Store::is_leader`), and closes this gateway's streams of devices revoked meanwhile, by any
/// replica (see `admin`). Each sweep is a write, so it runs
/// on the blocking pool ([`Gateway::blocking`]), like the handlers' writes.
pub async fn expiry_sweeper(gw: Arc<Gateway>) {
    let mut tick = tokio::time::interval(Duration::from_millis(gw.config.expiry_sweep_ms.max(10)));
    let mut revoked_since = gw.now();
    loop {
        tick.tick().await;
        let since = revoked_since;
        match gw
            .blocking(move |gw| crate::admin::close_revoked_streams(gw, since))
            .await
        {
            Ok(next) => revoked_since = next,
            Err(e) => tracing::warn!(%e, "looking for revoked devices failed"),
        }
        // Every replica closes its own streams; one (the leader) expires.
        if gw.store.is_leader() {
            if let Err(e) = gw.blocking(expire_due).await {
                tracing::warn!(%e, "expiry sweep failed");
            }
        }
        let _ = gw
            .blocking(|gw| {
                gw.flush_refusals(false);
                Ok(())
            })
            .await;
    }
}
