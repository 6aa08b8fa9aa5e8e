import type { DecisionView } from "../bindings/DecisionView";
import { formatTime } from "../clock";
import { progressParts } from "../stages";

/** The delivery state in words: what happened to the signed decision. */
export function deliveryText(decision: DecisionView): string {
  switch (decision.delivery) {
    case "queued":
      return "queued: gateway unreachable";
    case "delivered":
      return "delivered";
    case "refused":
      return `refused: ${decision.last_error ?? "no reason given"}`;
    case "superseded":
      return "not sent: the review was decided elsewhere meanwhile";
    default:
      return decision.delivery;
  }
}

/** `hoop`: a decision on a hoop review, which hoop answers without a receipt. */
export function DecisionResult({ decision, hoop = false }: { decision: DecisionView; hoop?: boolean }) {
  const approved = decision.verdict === "approve";
  const receipt = decision.receipt;
  return (
    <div class={`result result-${decision.verdict}`} role="status" aria-live="polite">
      <h3 class="result-title" tabIndex={-1} id="decision-result">
        {hoop ? (approved ? "✓ You approved this review" : "✕ You rejected this review") : approved ? "✓ You approved this request" : "✕ You denied this request"}
      </h3>
      <dl class="facts-list">
        <dt>Decided at</dt>
        <dd>{formatTime(decision.decided_at)}</dd>
        <dt>Delivery</dt>
        <dd class={`delivery delivery-${decision.delivery}`}>
          {deliveryText(decision)}
          {decision.delivery === "queued" && (
            <span class="muted small block">Signed and kept; it is sent as soon as the gateway is back.</span>
          )}
        </dd>
        {decision.delivery === "queued" && decision.last_error !== null && (
          <>
            <dt>Last attempt</dt>
            <dd class="muted">{decision.last_error}</dd>
          </>
        )}
      </dl>
      {receipt ? (
        <div class="receipt" aria-label="Receipt">
          <h4>Receipt from the gateway</h4>
          <dl class="facts-list">
            <dt>Request state</dt>
            <dd>
              <span class={`state state-${receipt.request_state}`}>{receipt.request_state}</span>
            </dd>
            <dt>Approvals</dt>
            <dd>
              {receipt.stages.length > 1
                ? progressParts(receipt.stages).map((part, i) => (
                    <span key={part}>
                      {i > 0 && " · "}
                      <span class="nowrap">{part}</span>
                    </span>
                  ))
                : `${receipt.approvals} of ${receipt.min_approvals}`}
            </dd>
            <dt>Accepted at</dt>
            <dd>{formatTime(receipt.accepted_at)}</dd>
            <dt>Receipt digest</dt>
            <dd class="mono digest">{receipt.digest}</dd>
          </dl>
        </div>
      ) : hoop ? (
        <p class="muted small">hoop gives no receipt: it signs nothing. Your signed decision is kept in the audit log.</p>
      ) : (
        <p class="muted small">No receipt yet: the gateway signs one when it accepts the decision.</p>
      )}
      <p class="muted small mono">decision {decision.decision_id}</p>
    </div>
  );
}
