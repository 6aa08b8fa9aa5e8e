//! The window's calls (`countersign_ipc::agent::Command`): one function per command, each a few
//! lines over the engine and the IPC conversions. Nothing here decides policy; the engine does.
//!
//! The passkey ceremony blocks (a real key waits for a touch), so it runs on a blocking thread.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;

use countersign_approver::hoop::api::HoopVerdict;
use countersign_approver::{Delivery, EngineError, ListFilter};
use countersign_ipc::agent::{AgentMessage, Command, Hello, AGENT_PROTOCOL};
use countersign_ipc::{
    AuditEntryView, AuditVerifyView, AuthenticatorView, DecisionView, ErrorCode, GatewayView,
    IpcError, ListKind, RequestDetail, RequestSummary, Settings,
};

use crate::context::Agent;
use crate::state::lock;

type Res<T> = Result<T, IpcError>;

/// The most audit entries one call returns.
const AUDIT_LIMIT_MAX: usize = 10_000;
const AUDIT_LIMIT_DEFAULT: usize = 500;

/// Runs `command` and encodes its answer.
pub async fn dispatch(agent: &Agent, id: u64, command: Command) -> AgentMessage {
    use AgentMessage as M;
    match command {
        Command::Hello => M::reply(id, Ok(hello(agent))),
        Command::ListRequests { kind } => M::reply(id, list_requests(agent, kind)),
        Command::GetRequest { id: r } => M::reply(id, get_request(agent, &r)),
        Command::Approve { id: r, match_code } => M::reply(id, approve(agent, r, match_code).await),
        Command::Deny { id: r, reason } => M::reply(id, deny(agent, &r, &reason).await),
        Command::ReportUnexpected { id: r } => M::reply(id, report_unexpected(agent, &r).await),
        Command::Acknowledge { id: r } => M::reply(id, acknowledge(agent, &r).await),
        Command::Revoke { id: r, reason } => M::reply(id, revoke(agent, &r, &reason).await),
        Command::Pair { link } => M::reply(id, pair(agent, &link).await),
        Command::ListGateways => M::reply(id, list_gateways(agent)),
        Command::AuthenticatorInfo => M::reply(id, authenticator_info(agent)),
        Command::AuditList { query, limit } => M::reply(id, audit_list(agent, query, limit)),
        Command::AuditVerify => M::reply(id, audit_verify(agent)),
        Command::AuditExport => M::reply(id, audit_export(agent)),
        Command::GetSettings => M::reply(id, Ok(lock(&agent.state.settings).clone())),
        Command::SetSettings { settings } => M::reply(id, set_settings(agent, settings)),
        Command::Quit => {
            agent.quit();
            M::reply(id, Ok(()))
        }
        Command::KeyAnswer { answer } => M::reply(id, crate::passkeys::key_answer(agent, answer)),
        Command::KeySetPin => M::reply(id, crate::passkeys::key_set_pin(agent).await),
        Command::PasskeyList { gateway } => {
            M::reply(id, crate::passkeys::passkey_list(agent, &gateway).await)
        }
        Command::PasskeyAdd { gateway } => {
            M::reply(id, crate::passkeys::passkey_add(agent, gateway).await)
        }
        Command::PasskeyRemove { gateway, cred_id } => M::reply(
            id,
            crate::passkeys::passkey_remove(agent, &gateway, &cred_id).await,
        ),
        Command::HoopList => M::reply(id, crate::hoop::list(agent)),
        Command::HoopConnect { url, token } => {
            M::reply(id, crate::hoop::connect(agent, &url, token).await)
        }
        Command::HoopDisconnect { id: c } => M::reply(id, crate::hoop::disconnect(agent, &c)),
    }
}

fn hello(agent: &Agent) -> Hello {
    agent.launcher.connected();
    Hello {
        protocol: AGENT_PROTOCOL,
        pid: std::process::id(),
        connections: agent.state.connections(),
    }
}

/// One inbox: every paired gateway's requests, then every hoop connection's reviews.
fn list_requests(agent: &Agent, kind: ListKind) -> Res<Vec<RequestSummary>> {
    let state = &agent.state;
    let filter = match kind {
        ListKind::Pending => ListFilter::Pending,
        ListKind::All => ListFilter::All,
    };
    let now = state.engine.now();
    let items = state.engine.list(filter)?;
    let mut rows: Vec<RequestSummary> = items
        .iter()
        .map(|i| RequestSummary::from_item(i, now))
        .collect();
    // A hoop store that cannot be read must not hide every gateway's requests.
    match crate::hoop::rows(&state.engine, kind == ListKind::All) {
        Ok(hoop) => rows.extend(hoop),
        Err(e) => tracing::warn!(error = %e.message, "the hoop reviews cannot be listed"),
    }
    Ok(rows)
}

fn get_request(agent: &Agent, id: &str) -> Res<RequestDetail> {
    let state = &agent.state;
    if let Some(h) = crate::hoop::target(&state.engine, id)? {
        return crate::hoop::detail(&state.engine, &h);
    }
    let item = state.engine.show(id)?;
    let me = state.engine.gateway(&item.gateway).ok().map(|g| g.approver);
    Ok(RequestDetail::from_item(
        &item,
        state.engine.now(),
        me.as_deref(),
    ))
}

async fn approve(agent: &Agent, id: String, match_code: Option<String>) -> Res<DecisionView> {
    if let Some(h) = crate::hoop::target(&agent.state.engine, &id)? {
        return crate::hoop::decide(agent, &h, HoopVerdict::Approve, "").await;
    }
    let engine = agent.state.engine.clone();
    let slot = agent.state.authenticator_slot();
    let run = id.clone();
    // The ceremony blocks its thread and holds the authenticator's lock, so it runs on a
    // blocking thread that drives the engine's future to completion itself.
    let e2 = engine.clone();
    let runtime = tokio::runtime::Handle::current();
    let outcome = crate::state::spawn_blocking(move || {
        slot.with(|a| runtime.block_on(e2.approve(&run, match_code, a)))
    })
    .await?;
    decided(&engine, &id, &outcome.delivery)
}

async fn deny(agent: &Agent, id: &str, reason: &str) -> Res<DecisionView> {
    if let Some(h) = crate::hoop::target(&agent.state.engine, id)? {
        return crate::hoop::decide(agent, &h, HoopVerdict::Reject, reason).await;
    }
    let engine = agent.state.engine.clone();
    if !engine.deny_needs_passkey(id)? {
        let outcome = engine.deny(id, reason).await?;
        return decided(&engine, id, &outcome.delivery);
    }
    // The gateway wants the denial confirmed with the passkey: a ceremony, as for approving.
    let slot = agent.state.authenticator_slot();
    let (run, why) = (id.to_owned(), reason.to_owned());
    let e2 = engine.clone();
    let runtime = tokio::runtime::Handle::current();
    let outcome = crate::state::spawn_blocking(move || {
        slot.with(|a| runtime.block_on(e2.deny_with(&run, &why, Some(a))))
    })
    .await?;
    decided(&engine, id, &outcome.delivery)
}

/// "I did not expect this": denies with a fixed reason and reports the request to its gateway,
/// which blocks the requester from this approver (see `Engine::report_unexpected`). Both are
/// device-signed and audited here and at the gateway.
async fn report_unexpected(agent: &Agent, id: &str) -> Res<DecisionView> {
    crate::hoop::refuse_for_hoop(
        agent,
        id,
        "reported as unexpected (reject it with a reason)",
    )?;
    let engine = agent.state.engine.clone();
    if !engine.deny_needs_passkey(id)? {
        engine.report_unexpected(id).await?;
        return decision_of(&engine, id);
    }
    // The denial part wants the passkey, as a plain denial does.
    let slot = agent.state.authenticator_slot();
    let run = id.to_owned();
    let e2 = engine.clone();
    let runtime = tokio::runtime::Handle::current();
    crate::state::spawn_blocking(move || {
        slot.with(|a| runtime.block_on(e2.report_unexpected_with(&run, Some(a))))
    })
    .await?;
    decision_of(&engine, id)
}

/// Acknowledges a request approved without asking this approver (break-glass); answers the
/// request as it is after the gateway's answer.
async fn acknowledge(agent: &Agent, id: &str) -> Res<RequestDetail> {
    crate::hoop::refuse_for_hoop(agent, id, "acknowledged (hoop has no break-glass)")?;
    agent.state.engine.acknowledge(id).await?;
    get_request(agent, id)
}

/// Revokes this approver's live approval of a request, confirmed with the passkey; answers the
/// request as this device holds it (the revoked grant follows on the stream).
async fn revoke(agent: &Agent, id: &str, reason: &str) -> Res<RequestDetail> {
    crate::hoop::refuse_for_hoop(agent, id, "revoked from Countersign (revoke it in hoop)")?;
    let engine = agent.state.engine.clone();
    let slot = agent.state.authenticator_slot();
    let (run, why) = (id.to_owned(), reason.to_owned());
    let runtime = tokio::runtime::Handle::current();
    crate::state::spawn_blocking(move || {
        slot.with(|a| runtime.block_on(engine.revoke(&run, &why, a)))
    })
    .await?;
    get_request(agent, id)
}

async fn pair(agent: &Agent, link: &str) -> Res<GatewayView> {
    let record = crate::pairing::pair_with(agent, link).await?;
    Ok(GatewayView::from(&record))
}

fn list_gateways(agent: &Agent) -> Res<Vec<GatewayView>> {
    let engine = &agent.state.engine;
    engine
        .gateways()?
        .iter()
        .map(|g| {
            let mut view = GatewayView::from(g);
            view.log_history_changed = engine
                .log_witness(&g.fingerprint)?
                .history_changed
                .map(|h| countersign_approver::display::visible(&h.explanation()));
            Ok(view)
        })
        .collect()
}

fn authenticator_info(agent: &Agent) -> Res<AuthenticatorView> {
    Ok(agent.state.authenticator_view())
}

/// Newest first, filtered by `query` (kind, request id, detail), at most `limit` entries.
fn audit_list(
    agent: &Agent,
    query: Option<String>,
    limit: Option<u32>,
) -> Res<Vec<AuditEntryView>> {
    let state = &agent.state;
    let limit = limit.map_or(AUDIT_LIMIT_DEFAULT, |l| (l as usize).min(AUDIT_LIMIT_MAX));
    let query = query.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty());
    let entries = state.engine.audit_entries()?;
    Ok(entries
        .iter()
        .rev()
        .map(|(e, h)| AuditEntryView::new(e, h))
        .filter(|v| query.as_deref().is_none_or(|q| v.matches(q)))
        .take(limit)
        .collect())
}

fn audit_verify(agent: &Agent) -> Res<AuditVerifyView> {
    match agent.state.engine.audit_verify() {
        Ok(s) => Ok(AuditVerifyView {
            ok: true,
            entries: s.entries,
            head: (s.entries > 0).then(|| s.head.to_hex()),
            problem: None,
        }),
        Err(EngineError::AuditBroken(b)) => Ok(AuditVerifyView {
            ok: false,
            entries: 0,
            head: None,
            problem: Some(countersign_approver::display::visible(&b.to_string())),
        }),
        Err(e) => Err(e.into()),
    }
}

/// Writes the audit log as JSON Lines (with a signed checkpoint) to
/// `<data dir>/exports/audit-<UTC time>.jsonl` and returns the path.
fn audit_export(agent: &Agent) -> Res<String> {
    let state = &agent.state;
    let dir = state.data_dir().join("exports");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(EngineError::from)?;
    let stamp = time::OffsetDateTime::from_unix_timestamp(state.engine.now())
        .map_err(|e| {
            IpcError::new(
                ErrorCode::Io,
                format!("The export time is out of range: {e}."),
            )
        })?
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .map_err(|e| {
            IpcError::new(
                ErrorCode::Io,
                format!("The export time cannot be formatted: {e}."),
            )
        })?;
    let path = dir.join(format!("audit-{stamp}.jsonl"));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(EngineError::from)?;
    let mut out = std::io::BufWriter::new(file);
    state.engine.audit_export(&mut out)?;
    out.flush().map_err(EngineError::from)?;
    out.get_ref().sync_all().map_err(EngineError::from)?;
    Ok(path.display().to_string())
}

/// Saves the settings and applies them: the autostart entry, and the notification switch and
/// pause to the desktop notifier.
fn set_settings(agent: &Agent, settings: Settings) -> Res<Settings> {
    crate::settings::validate(&settings)?;
    if let Err(e) = crate::autostart::apply(settings.autostart) {
        // Removing an autostart entry that cannot be removed is not worth refusing the rest.
        if settings.autostart {
            return Err(IpcError::new(
                ErrorCode::AutostartFailed,
                format!("Starting at login could not be turned on: {e}."),
            ));
        }
        tracing::warn!(error = %e, "autostart entry not removed");
    }
    agent.state.store_settings(settings.clone())?;
    agent.tray_changed();
    Ok(settings)
}

/// The decision just made, or, when the gateway refused it for good, that refusal as the
/// error it is (a mistyped match code is `wrong_match_code`, and the request can be decided
/// again). A decision that is only queued is a success: it is kept and sent later.
fn decided(
    engine: &countersign_approver::Engine,
    id: &str,
    delivery: &Delivery,
) -> Res<DecisionView> {
    if let Delivery::Refused { code, message } = delivery {
        return Err(IpcError::refused(code, message));
    }
    decision_of(engine, id)
}

fn decision_of(engine: &countersign_approver::Engine, id: &str) -> Res<DecisionView> {
    let item = engine.show(id)?;
    item.decision
        .as_ref()
        .map(DecisionView::from_local)
        .ok_or_else(|| IpcError::new(ErrorCode::Internal, "The decision was not recorded."))
}
