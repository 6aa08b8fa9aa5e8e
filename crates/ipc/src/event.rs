//! Engine events as the page receives them: free text made visible, refusal codes typed.

use countersign_approver::{display, EngineEvent};

use crate::{state_str, IpcError, UiEvent};

impl From<&EngineEvent> for UiEvent {
    fn from(e: &EngineEvent) -> Self {
        match e {
            EngineEvent::RequestReceived { request_id, .. } => UiEvent::RequestReceived {
                request_id: request_id.clone(),
                summary: None,
            },
            EngineEvent::RequestRejected { reason, .. } => UiEvent::RequestRejected {
                reason: display::visible(reason),
            },
            EngineEvent::StatusChanged {
                request_id,
                state,
                approvals,
                min_approvals,
                stages,
                ..
            } => UiEvent::StatusChanged {
                request_id: request_id.clone(),
                state: state_str(*state),
                approvals: *approvals,
                min_approvals: *min_approvals,
                stages: stages.iter().map(Into::into).collect(),
            },
            EngineEvent::DecisionQueued { request_id, .. } => UiEvent::DecisionQueued {
                request_id: request_id.clone(),
            },
            EngineEvent::DecisionDelivered {
                request_id,
                request_state,
                ..
            } => UiEvent::DecisionDelivered {
                request_id: request_id.clone(),
                request_state: state_str(*request_state),
            },
            EngineEvent::DecisionRefused {
                request_id,
                code,
                message,
                ..
            } => {
                let e = IpcError::refused(code, message);
                UiEvent::DecisionRefused {
                    request_id: request_id.clone(),
                    code: e.code,
                    message: e.message,
                }
            }
            EngineEvent::GatewayPaired {
                gateway,
                name,
                approver,
            } => UiEvent::GatewayPaired {
                gateway: gateway.clone(),
                name: display::visible(name),
                approver: display::visible(approver),
            },
            EngineEvent::ConnectionUp { gateway } => UiEvent::Connection {
                gateway: gateway.clone(),
                up: true,
                error: None,
            },
            EngineEvent::ConnectionDown { gateway, error } => UiEvent::Connection {
                gateway: gateway.clone(),
                up: false,
                error: Some(display::visible(error)),
            },
            EngineEvent::AuditRolledBack {
                gateway,
                damage,
                problem,
            } => UiEvent::AuditRolledBack {
                gateway: gateway.clone(),
                damage: damage.clone(),
                problem: display::visible(problem),
            },
            // The inbox the page shows is read again; hoop items reach it from there.
            EngineEvent::HoopReviewReceived { review_id, .. }
            | EngineEvent::HoopReviewChanged { review_id, .. } => UiEvent::RequestReceived {
                request_id: review_id.clone(),
                summary: None,
            },
            EngineEvent::LogHistoryChanged {
                gateway,
                damage,
                problem,
            } => UiEvent::LogHistoryChanged {
                gateway: gateway.clone(),
                damage: damage.clone(),
                problem: display::visible(problem),
            },
        }
    }
}
