import type { DecisionView } from "../src/bindings/DecisionView";
import type { RequestDetail } from "../src/bindings/RequestDetail";
import type { RequestSummary } from "../src/bindings/RequestSummary";
import type { Text } from "../src/bindings/Text";

export const NOW = 1_767_225_600;

export function text(visible: string, warnings: string[] = []): Text {
  return { raw: visible, visible, warnings };
}

export function summary(overrides: Partial<RequestSummary> = {}): RequestSummary {
  return {
    id: "req-1",
    kind: "countersign",
    unsigned_from: null,
    gateway: "fp-1",
    gateway_name: "prod-gateway",
    action: text("sql.exec"),
    resource: text("prod-db"),
    risk: "high",
    summary: text("Delete expired sessions"),
    requester: text("ci-deploy"),
    state: "pending",
    created_at: NOW - 60,
    expires_at: NOW + 245,
    received_at: NOW - 59,
    approvals: 0,
    min_approvals: 1,
    stages: [{ name: text("approvers"), group: null, approvers: ["alice@example.com", "bob@example.com"], approvals: 0, min: 1, satisfied: false }],
    match_required: false,
    decision: null,
    mode: "ask",
    needs_acknowledgement: false,
    ...overrides,
  };
}

export function detail(overrides: Partial<RequestDetail> = {}, summaryOverrides: Partial<RequestSummary> = {}): RequestDetail {
  return {
    summary: summary(summaryOverrides),
    detail: text("DELETE FROM sessions WHERE expires_at < now();"),
    reason: text("Nightly cleanup, ticket OPS-1234"),
    approvers: ["alice@example.com", "bob@example.com"],
    votes: [],
    why_asked: [text("named in stage approvers")],
    policy_rule: text("default.named_approvers"),
    distinct_people: true,
    grant_seconds: null,
    windows: [],
    grant: null,
    not_before: NOW - 60,
    digest: "ca6eff9ef57081b7c4482928c1394529f452d62e125be8a89c70b2b196151a1b",
    own_request: false,
    hoop: null,
    ...overrides,
  };
}

export function decision(overrides: Partial<DecisionView> = {}): DecisionView {
  return {
    decision_id: "3f6c1e9a-2b7d-4e0f-8a15-c94d7b2e6f30",
    verdict: "approve",
    decided_at: NOW,
    delivery: "delivered",
    last_error: null,
    receipt: {
      request_state: "approved",
      approvals: 2,
      min_approvals: 2,
      stages: [],
      accepted_at: NOW + 1,
      digest: "9d1c0ffee0000000000000000000000000000000000000000000000000000abc",
    },
    ...overrides,
  };
}
