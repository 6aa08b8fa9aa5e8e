pub const GATEWAY_PAIRED: &str = "gateway.paired";
pub const REQUEST_RECEIVED: &str = "request.received";
pub const REQUEST_REJECTED: &str = "request.rejected";
pub const REQUEST_STATUS: &str = "request.status";
/// A genuine status older than the one held, or after the request closed: ignored.
pub const STATUS_STALE: &str = "status.stale";
/// A stream frame that is not a verified event for this device (aggregated).
pub const STREAM_FRAME_REJECTED: &str = "stream.frame_rejected";
/// A stream hello that does not verify or is not for this connection.
pub const STREAM_HELLO_REJECTED: &str = "stream.hello_rejected";
/// A stream that broke the protocol's order (ids not rising, events above the head).
pub const STREAM_VIOLATION: &str = "stream.violation";
/// The resume point was dropped and the backlog read again in full.
pub const STREAM_RESYNC: &str = "stream.resync";
/// The gateway signed a lower stream head than it signed before.
pub const GATEWAY_ROLLED_BACK: &str = "gateway.rolled_back";
/// A decision's answer that was not a verified receipt or refusal: it will be sent again
/// (aggregated).
pub const DECISION_RETRY: &str = "decision.retry";
/// A signed refusal whose request status did not bear it out: retried.
pub const REFUSAL_UNCONFIRMED: &str = "refusal.unconfirmed";
pub const DECISION_MADE: &str = "decision.made";
pub const DECISION_SENT: &str = "decision.sent";
pub const RECEIPT_RECEIVED: &str = "receipt.received";
pub const DECISION_REFUSED: &str = "decision.refused";
pub const AUDIT_ROLLED_BACK: &str = "audit.rolled_back";
pub const REPORT_SENT: &str = "report.sent";
/// This device acknowledged a request approved without asking (break-glass).
pub const ACK_SENT: &str = "ack.sent";
/// The gateway's newer statement of this approver's person and groups, kept.
pub const MEMBERSHIP_RECEIVED: &str = "membership.received";
/// A membership statement not newer than the one held: ignored.
pub const MEMBERSHIP_STALE: &str = "membership.stale";
/// This device revoked its approval; the detail names the gateway's receipt.
pub const APPROVAL_REVOKED: &str = "approval.revoked";
/// A passkey added at a gateway (a backup key), proven by a registered one.
pub const PASSKEY_ADDED: &str = "passkey.added";
/// A passkey removed at a gateway.
pub const PASSKEY_REMOVED: &str = "passkey.removed";
/// A gateway log checkpoint this device verified as extending the ones before, and co-signed.
pub const LOG_WITNESSED: &str = "log.witnessed";
/// A gateway log checkpoint refused: the log was rolled back or forked (once per checkpoint).
pub const LOG_HISTORY_CHANGED: &str = "log.history_changed";
/// A hoop.dev gateway connected (its URL, who the token is, where the token is kept).
pub const HOOP_CONNECTED: &str = "hoop.connected";
/// A hoop.dev connection removed, with its token.
pub const HOOP_DISCONNECTED: &str = "hoop.disconnected";
/// A hoop review arrived (unsigned): its connection, session, requester, action, resource and
/// the SHA-256 of its script.
pub const HOOP_REVIEW_RECEIVED: &str = "hoop.review_received";
/// A hoop review left the pending state: its status and who decided each group.
pub const HOOP_REVIEW_STATUS: &str = "hoop.review_status";
/// A hoop review decided here: the signed decision, confirmed with the connection's passkey.
pub const HOOP_DECISION_MADE: &str = "hoop.decision_made";
/// hoop took a decision (or a retry found an earlier attempt applied): the review's status.
pub const HOOP_DECISION_SENT: &str = "hoop.decision_sent";
/// hoop refused a decision for good: its code and sentence.
pub const HOOP_DECISION_REFUSED: &str = "hoop.decision_refused";
/// A queued decision found its review decided elsewhere: never sent.
pub const HOOP_DECISION_SUPERSEDED: &str = "hoop.decision_superseded";
