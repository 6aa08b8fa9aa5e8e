//! The window's calls about hoop.dev gateways: their reviews in the one inbox, deciding one with
//! the connection's passkey, and connecting or forgetting a gateway from Settings. Each is a few
//! lines over the engine's hoop connector (`countersign_approver::hoop`).

use countersign_approver::hoop::api::HoopVerdict;
use countersign_approver::hoop::decide::HoopDelivery;
use countersign_approver::hoop::inbox::HoopItem;
use countersign_approver::{display, Engine, EngineError};
use countersign_ipc::agent::AgentMessage;
use countersign_ipc::{
    DecisionView, ErrorCode, HoopConnectionView, IpcError, RequestDetail, RequestSummary, Secret,
    UiEvent,
};

use crate::context::Agent;

type Res<T> = Result<T, IpcError>;

/// This device's decision on a hoop review, if it made one.
fn decision(engine: &Engine, review_id: &str) -> Res<Option<DecisionView>> {
    Ok(engine
        .hoop_decision(review_id)?
        .map(|(d, state, note)| DecisionView::from_hoop(&d, &state, note.as_deref())))
}

/// The hoop rows of the pending list, or of every list with `all`.
pub fn rows(engine: &Engine, all: bool) -> Res<Vec<RequestSummary>> {
    engine
        .hoop_items(all)?
        .iter()
        .map(|i| Ok(RequestSummary::from_hoop(i, decision(engine, i.id())?)))
        .collect()
}

/// The hoop review whose id is exactly `id`, when it is not also a Countersign request's.
/// The window names items by the full ids it listed, and hoop chooses its own: exact matching
/// keeps a hoop id that is a request id's prefix (or the reverse) from reaching the other
/// item, and an id that two gateways both use is refused rather than guessed.
pub fn target(engine: &Engine, id: &str) -> Res<Option<HoopItem>> {
    let mut hoop = engine.hoop_items_with_id(id)?;
    if hoop.is_empty() {
        return Ok(None);
    }
    let signed = match engine.show(id) {
        Ok(item) => item.id() == id,
        // No request has it, or it is a prefix of several requests' ids: not theirs exactly.
        Err(EngineError::UnknownRequest(_) | EngineError::AmbiguousRequest(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if hoop.len() + usize::from(signed) > 1 {
        return Err(IpcError::new(
            ErrorCode::AmbiguousRequest,
            format!(
                "{} names items of more than one gateway; decide it with the command line, which names the gateway.",
                display::visible(id)
            ),
        ));
    }
    Ok(hoop.pop())
}

/// `Err` when `id` names a hoop review, which cannot be `what`.
pub fn refuse_for_hoop(agent: &Agent, id: &str, what: &str) -> Res<()> {
    match target(&agent.state.engine, id)? {
        Some(h) => Err(IpcError::new(
            ErrorCode::InvalidInput,
            format!(
                "{} is a hoop review, which cannot be {what}.",
                display::visible(h.id())
            ),
        )),
        None => Ok(()),
    }
}

/// The decision screen of a hoop review.
pub fn detail(engine: &Engine, item: &HoopItem) -> Res<RequestDetail> {
    let me = engine.hoop_connection(&item.connection)?.user;
    Ok(RequestDetail::from_hoop(
        item,
        decision(engine, item.id())?,
        &me,
    ))
}

/// Approves or rejects a hoop review: the connection's passkey on a blocking thread (a real
/// key waits for a touch), then the signed decision sent once. hoop's refusal, or a review
/// decided elsewhere meanwhile, is the error it is; a decision only queued is a success.
pub async fn decide(
    agent: &Agent,
    item: &HoopItem,
    verdict: HoopVerdict,
    reason: &str,
) -> Res<DecisionView> {
    let engine = agent.state.engine.clone();
    let slot = agent.state.authenticator_slot();
    let (id, why) = (item.id().to_owned(), reason.to_owned());
    let e2 = engine.clone();
    let runtime = tokio::runtime::Handle::current();
    let outcome = crate::state::spawn_blocking(move || {
        slot.with(|a| runtime.block_on(e2.decide_hoop(&id, verdict, &why, a)))
    })
    .await?;
    agent.tray_changed();
    match &outcome.delivery {
        HoopDelivery::Refused { code, message } => Err(IpcError::new(
            ErrorCode::parse(code),
            display::visible(message),
        )),
        HoopDelivery::Superseded { status } => Err(IpcError::new(
            ErrorCode::HoopAlreadyDecided,
            format!(
                "The review was decided in hoop meanwhile (it is {}); your decision was kept here and not sent.",
                display::visible(&status.to_lowercase())
            ),
        )),
        HoopDelivery::Delivered { .. } | HoopDelivery::Queued { .. } => {
            decision(&engine, item.id())?.ok_or_else(|| {
                IpcError::new(ErrorCode::Internal, "The decision was not recorded.")
            })
        }
    }
}

/// The connected hoop gateways, each with whether its polls reach hoop.
pub fn list(agent: &Agent) -> Res<Vec<HoopConnectionView>> {
    let engine = &agent.state.engine;
    engine
        .hoop_connections()?
        .iter()
        .map(|c| Ok(HoopConnectionView::new(c, &engine.hoop_health(&c.id)?)))
        .collect()
}

/// Connects a hoop gateway from Settings: hoop checks the token, then a passkey is registered
/// for the connection (a ceremony, so on a blocking thread).
pub async fn connect(agent: &Agent, url: &str, token: Secret) -> Res<HoopConnectionView> {
    let url: url::Url = url.trim().parse().map_err(|e| {
        IpcError::new(
            ErrorCode::InvalidInput,
            format!("{} is not an address: {e}.", display::visible(url.trim())),
        )
    })?;
    let token = zeroize::Zeroizing::new(token.take());
    let engine = agent.state.engine.clone();
    let slot = agent.state.authenticator_slot();
    let e2 = engine.clone();
    let runtime = tokio::runtime::Handle::current();
    let c = crate::state::spawn_blocking(move || {
        slot.with(|a| runtime.block_on(e2.connect_hoop(url, token, a)))
    })
    .await?;
    Ok(HoopConnectionView::new(&c, &engine.hoop_health(&c.id)?))
}

/// Forgets a hoop connection; answers the connections left. Its reviews leave the inbox, so
/// their notifications are closed, and it leaves the windows' connection count.
pub fn disconnect(agent: &Agent, id: &str) -> Res<Vec<HoopConnectionView>> {
    let engine = &agent.state.engine;
    let c = engine.hoop_connection(id)?;
    let pending: Vec<String> = engine
        .hoop_items(false)?
        .into_iter()
        .filter(|i| i.connection == c.id)
        .map(|i| i.review.id)
        .collect();
    let gone = engine.disconnect_hoop(&c.id)?;
    for review in &pending {
        agent
            .state
            .notification_resolved(review, countersign_protocol::RequestState::Withdrawn);
    }
    agent.state.forget_connection(&gone.id);
    agent
        .clients
        .push(&AgentMessage::Event(UiEvent::ConnectionRemoved {
            gateway: gone.id,
        }));
    agent.clients.push(&AgentMessage::Event(UiEvent::Resync));
    agent.tray_changed();
    list(agent)
}
