/**
 * An in-memory fake of the desktop shell for screenshots and design work in a plain browser:
 * `npx vite` then open `http://localhost:5173/?mock`. Installed only by the dev server, only
 * when `window.__TAURI_INTERNALS__` is absent and the URL has `?mock`.
 *
 * URL options: `?mock=10000` adds that many generated pending requests; `&hold` keeps the
 * passkey ceremony waiting forever; `&offline` reports the gateway as unreachable;
 * `&broken` makes the audit chain fail verification; `&unpaired` starts with no gateway.
 */
import { mockIPC } from "@tauri-apps/api/mocks";
import { emit } from "@tauri-apps/api/event";
import type { AuditEntryView } from "./bindings/AuditEntryView";
import type { AuthenticatorView } from "./bindings/AuthenticatorView";
import type { DecisionView } from "./bindings/DecisionView";
import type { HoopConnectionView } from "./bindings/HoopConnectionView";
import type { ErrorCode } from "./bindings/ErrorCode";
import type { GatewayView } from "./bindings/GatewayView";
import type { IpcError } from "./bindings/IpcError";
import type { KeyAnswer } from "./bindings/KeyAnswer";
import type { KeyAsk } from "./bindings/KeyAsk";
import type { PasskeyView } from "./bindings/PasskeyView";
import type { RequestDetail } from "./bindings/RequestDetail";
import type { Settings } from "./bindings/Settings";
import type { StageView } from "./bindings/StageView";
import type { Text } from "./bindings/Text";
import type { UiEvent } from "./bindings/UiEvent";
import { EVENT_NAME } from "./ipc";
import { visible } from "./text";

const ME = "alice@example.com";
const MATCH_CODE = "482913";

function text(raw: string): Text {
  const warnings: string[] = [];
  if (visible(raw.replace(/\n/g, "")) !== raw.replace(/\n/g, "")) {
    warnings.push("contains control, bidirectional or invisible characters (shown as \\u{...})");
  }
  if (/[A-Za-z]/.test(raw) && /[^\p{ASCII}]/u.test(raw.replace(/[^\p{L}]/gu, ""))) {
    warnings.push("mixes Latin with other letters (possible look-alike characters)");
  }
  return { raw, visible: raw.split("\n").map(visible).join("\n"), warnings };
}

function hex(seed: number, length = 64): string {
  let out = "";
  let x = seed * 2654435761;
  while (out.length < length) {
    x = (x * 1103515245 + 12345) % 2147483648;
    out += x.toString(16).padStart(8, "0");
  }
  return out.slice(0, length);
}

const GATEWAYS: GatewayView[] = [
  {
    fingerprint: hex(1),
    name: "prod-gateway",
    url: "https://gateway.prod.example.com",
    approver: ME,
    device_id: "9b2d4f6a-1c3e-4a5b-8d7f-0e1c2b3a4d5e",
    paired_at: 0,
    log_history_changed: null,
  },
  {
    fingerprint: hex(2),
    name: "ops-shell",
    url: "https://shell.ops.example.com:8740",
    approver: ME,
    device_id: "2c4e6a8b-0d1f-4e3a-9b5c-7d9e1f3a5b7c",
    paired_at: 0,
    log_history_changed: null,
  },
];

interface Seed {
  id: string;
  gateway: GatewayView;
  action: string;
  resource: string;
  risk: string;
  summary: string;
  requester: string;
  reason: string;
  detail: string;
  age: number;
  ttl: number;
  approvers: string[];
  min: number;
  /** Group stages instead of the one list stage of `approvers`. */
  groups?: { name: string; min: number }[];
  votes?: { approver: string; verdict: string; ago: number; stages?: string[] }[];
  match?: boolean;
  state?: string;
  decision?: DecisionView | null;
  /** Approved at once by breaking glass: the approvers are told and acknowledge it. */
  breakGlass?: boolean;
}

function buildDetail(seed: Seed, now: number, index: number): RequestDetail {
  const votes = (seed.votes ?? []).map((v) => ({ approver: v.approver, verdict: v.verdict, at: now - v.ago, stages: v.stages ?? [] }));
  const approved = votes.filter((v) => v.verdict === "approve");
  const stages: StageView[] =
    seed.groups === undefined
      ? [{ name: text("approvers"), group: null, approvers: seed.approvers, approvals: approved.length, min: seed.min, satisfied: approved.length >= seed.min }]
      : seed.groups.map((g) => {
          const n = approved.filter((v) => v.stages.includes(g.name)).length;
          return { name: text(g.name), group: text(g.name), approvers: [], approvals: n, min: g.min, satisfied: n >= g.min };
        });
  return {
    summary: {
      id: seed.id,
      kind: "countersign",
      unsigned_from: null,
      gateway: seed.gateway.fingerprint,
      gateway_name: seed.gateway.name,
      action: text(seed.action),
      resource: text(seed.resource),
      risk: seed.risk,
      summary: text(seed.summary),
      requester: text(seed.requester),
      state: seed.state ?? "pending",
      created_at: now - seed.age,
      expires_at: now - seed.age + seed.ttl,
      received_at: now - seed.age + 1,
      approvals: stages.reduce((n, st) => n + Math.min(st.approvals, st.min), 0),
      min_approvals: stages.reduce((n, st) => n + st.min, 0),
      stages,
      match_required: seed.match ?? false,
      decision: seed.decision ?? null,
      mode: seed.breakGlass === true ? "break_glass" : "ask",
      needs_acknowledgement: seed.breakGlass === true,
    },
    detail: text(seed.detail),
    reason: text(seed.reason),
    approvers: seed.groups === undefined ? seed.approvers : [],
    votes,
    why_asked: [text(seed.groups === undefined ? "named in stage approvers" : `stage ${seed.groups[0]?.name ?? ""}: you are in group ${seed.groups[0]?.name ?? ""}, as the gateway's membership statement 4 says`)],
    policy_rule: text(seed.breakGlass === true ? "break_glass_oncall" : seed.groups === undefined ? "default.named_approvers" : "peer_and_manager.prod"),
    distinct_people: true,
    grant_seconds: seed.groups === undefined ? null : 900,
    windows: seed.groups === undefined ? [] : [text("weekdays 08:00-18:00 Europe/Berlin")],
    grant:
      seed.state === "approved"
        ? { expires_at: seed.breakGlass === true ? now - seed.age + 3600 : null, used_at: null, revoked_at: null, revoked_by: null, acknowledged_at: null, acknowledged_by: null }
        : null,
    not_before: now - seed.age,
    digest: hex(100 + index),
    own_request: seed.requester === ME,
    hoop: null,
  };
}

function samples(now: number): Seed[] {
  const [prod, ops] = GATEWAYS as [GatewayView, GatewayView];
  return [
    {
      id: "7d0f3c2a-5b1e-4c8a-9f3d-2e6b8a1c4d59",
      gateway: prod,
      action: "sql.exec",
      resource: "prod-db",
      risk: "critical",
      summary: "Drop the legacy sessions table",
      requester: "ci-deploy",
      reason: "Cleanup after the sessions migration, ticket OPS-2231. Approved in the change board.",
      detail:
        "BEGIN;\nDROP TABLE sessions_legacy; -- keep \u202Eusers\u202C\nDROP TABLE audit_archive_2023;\nCOMMIT;",
      age: 95,
      ttl: 600,
      approvers: [ME, "bob@example.com"],
      min: 1,
      match: true,
    },
    {
      id: "b3a9e8d7-1c2f-4a5b-9e8d-7c6b5a4f3e2d",
      gateway: prod,
      action: "k8s.rollout.restart",
      resource: "prod-eu-1/settlement/worker",
      risk: "high",
      summary: "Restart the settlement worker",
      requester: "dana@example.com",
      reason: "Settlement stuck for 40 minutes, INC-2291; paging did not reach the SREs.",
      detail: "kubectl --context prod-eu-1 -n settlement rollout restart deploy/worker",
      age: 120,
      ttl: 600,
      approvers: [],
      min: 1,
      groups: [{ name: "sre", min: 1 }],
      state: "approved",
      breakGlass: true,
    },
    {
      id: "c41e9b77-2f0a-4d8e-a1b3-5e6f7a8b9c0d",
      gateway: ops,
      action: "k8s.exec",
      resource: "prod-eu-1/payments",
      risk: "high",
      summary: "Shell into payments-api to inspect a stuck batch",
      requester: "dana@example.com",
      reason: "Investigating stuck settlement batch INC-4471; read-only, will not restart anything.",
      detail: "kubectl --context prod-eu-1 exec -n payments deploy/payments-api -it -- /bin/sh",
      age: 240,
      ttl: 900,
      approvers: [ME, "erin@example.com"],
      min: 1,
    },
    {
      id: "5a8d2e1f-9c3b-4f7a-b6e5-0d1c2b3a4f5e",
      gateway: prod,
      action: "deploy",
      resource: "checkout-service@production",
      risk: "medium",
      summary: "Release checkout-service v2.14.0 to production",
      requester: "github-actions",
      reason: "Release train 2026-W03: payment retries and the new address form.",
      detail:
        "pipeline: release/checkout-service#1842\nimage: registry.internal/checkout-service@sha256:" +
        hex(7, 64) +
        "\nversion: v2.14.0 (from v2.13.2)\nstrategy: canary 10% → 50% → 100%, 15 min between steps\nmigrations: 0042_address_lines.sql",
      age: 1500,
      ttl: 3600,
      approvers: [ME, "bob@example.com", "carol@example.com"],
      min: 2,
      groups: [
        { name: "release-managers", min: 1 },
        { name: "sre", min: 1 },
      ],
      votes: [{ approver: "bob@example.com", verdict: "approve", ago: 600, stages: ["sre"] }],
    },
    {
      id: "e2b7c9d1-6a4f-4e3b-8c2d-1f0e9a8b7c6d",
      gateway: prod,
      action: "feature-flag.set",
      resource: "billing/new-invoices",
      risk: "low",
      summary: "Turn on new invoices for 5% of accounts",
      requester: ME,
      reason: "Gradual rollout planned in the billing sync.",
      detail: "flag: billing/new-invoices\nfrom: off\nto: 5% of accounts (hash on account id)",
      age: 30,
      ttl: 1800,
      approvers: [ME, "bob@example.com"],
      min: 1,
    },
    {
      id: "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0",
      gateway: ops,
      action: "ssh.session",
      resource: "bastion-01.ops",
      risk: "high",
      summary: "Interactive root session on the bastion (pаtch window)",
      requester: "oncall-bot",
      reason: "Patch window, kernel update",
      detail: "ssh root@bastion-01.ops -- sudo apt-get upgrade linux-image-amd64",
      age: 20,
      ttl: 300,
      approvers: [ME],
      min: 1,
    },
    {
      id: "a9b8c7d6-e5f4-4a3b-2c1d-0e9f8a7b6c5d",
      gateway: prod,
      action: "sql.exec",
      resource: "analytics-replica",
      risk: "low",
      summary: "Read-only export of last week's signups",
      requester: "frank@example.com",
      reason: "Weekly growth report",
      detail: "SELECT date_trunc('day', created_at), count(*) FROM signups\nWHERE created_at > now() - interval '7 days'\nGROUP BY 1 ORDER BY 1;",
      age: 3000,
      ttl: 3600,
      approvers: [ME],
      min: 1,
      state: "approved",
      decision: {
        decision_id: "3f6c1e9a-2b7d-4e0f-8a15-c94d7b2e6f30",
        verdict: "approve",
        decided_at: now - 2900,
        delivery: "delivered",
        last_error: null,
        receipt: { request_state: "approved", approvals: 1, min_approvals: 1, stages: [], accepted_at: now - 2899, digest: hex(55) },
      },
    },
    {
      id: "b1c2d3e4-f5a6-4b7c-8d9e-0f1a2b3c4d5e",
      gateway: ops,
      action: "k8s.scale",
      resource: "prod-us-2/search",
      risk: "medium",
      summary: "Scale search to zero replicas",
      requester: "gary@example.com",
      reason: "cost saving",
      detail: "kubectl --context prod-us-2 scale deploy/search --replicas=0",
      age: 7200,
      ttl: 3600,
      approvers: [ME],
      min: 1,
      state: "denied",
      decision: {
        decision_id: "8e7d6c5b-4a39-4281-b0f1-e2d3c4b5a697",
        verdict: "deny",
        decided_at: now - 7000,
        delivery: "queued",
        last_error: "connection refused (os error 111)",
        receipt: null,
      },
    },
    {
      id: "d4c3b2a1-0f9e-4d8c-b7a6-958473625140",
      gateway: prod,
      action: "secrets.read",
      resource: "vault:prod/stripe",
      risk: "critical",
      summary: "Read the Stripe live key",
      requester: "unknown-agent",
      reason: "need it",
      detail: "vault kv get -field=live_key prod/stripe",
      age: 90000,
      ttl: 600,
      approvers: [ME],
      min: 1,
      state: "expired",
    },
  ];
}

function generated(count: number, now: number): Seed[] {
  const actions = ["sql.exec", "deploy", "k8s.exec", "ssh.session", "feature-flag.set"];
  const risks = ["low", "medium", "high", "critical"];
  const [prod] = GATEWAYS as [GatewayView];
  return Array.from({ length: count }, (_, i) => ({
    id: `gen-${String(i).padStart(5, "0")}`,
    gateway: prod,
    action: actions[i % actions.length] ?? "deploy",
    resource: `service-${i % 97}`,
    risk: risks[i % risks.length] ?? "low",
    summary: `Generated request number ${i}`,
    requester: `bot-${i % 13}`,
    reason: "load test",
    detail: `echo ${i}`,
    age: i % 500,
    ttl: 600 + (i % 3000),
    approvers: [ME],
    min: 1,
  })).filter(() => now > 0);
}

function auditLog(requests: RequestDetail[], now: number): AuditEntryView[] {
  const entries: AuditEntryView[] = [];
  let seq = 1;
  const push = (at: number, kind: string, requestId: string | null, detail: Record<string, unknown>) => {
    entries.push({ seq, at, kind, request_id: requestId, detail: visible(JSON.stringify(detail, null, 2)).replace(/\\u\{A\}/g, "\n"), hash: hex(500 + seq) });
    seq++;
  };
  push(now - 86400 * 3, "paired", null, { gateway: "prod-gateway", fingerprint: hex(1).slice(0, 16), approver: ME });
  push(now - 86400 * 3 + 60, "paired", null, { gateway: "ops-shell", fingerprint: hex(2).slice(0, 16), approver: ME });
  push(now - 4000, "request_rejected", null, { reason: "expired", gateway: "ops-shell", request_id: "99e1…" });
  for (const r of [...requests].sort((a, b) => a.summary.received_at - b.summary.received_at)) {
    push(r.summary.received_at, "request_received", r.summary.id, {
      action: r.summary.action.visible,
      resource: r.summary.resource.visible,
      requester: r.summary.requester.visible,
      digest: r.digest.slice(0, 16),
    });
    const d = r.summary.decision;
    if (d) {
      push(d.decided_at, "decision_signed", r.summary.id, { verdict: d.verdict, decision_id: d.decision_id });
      if (d.receipt) push(d.receipt.accepted_at, "receipt_stored", r.summary.id, { request_state: d.receipt.request_state, digest: d.receipt.digest.slice(0, 16) });
    }
  }
  return entries.sort((a, b) => b.seq - a.seq);
}

function fail(code: ErrorCode, message: string): never {
  const error: IpcError = { code, message };
  // eslint-disable-next-line @typescript-eslint/only-throw-error -- the shell rejects with a plain IpcError
  throw error;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function installMockBackend(): void {
  const params = new URLSearchParams(location.search);
  const now = Math.floor(Date.now() / 1000);
  const extra = Number(params.get("mock")) || 0;
  const hold = params.has("hold");
  const offline = params.has("offline");
  const seeds = [...samples(now), ...generated(extra, now)];
  const requests = new Map<string, RequestDetail>(seeds.map((s, i) => [s.id, buildDetail(s, now, i)]));
  // `?forked` shows the first gateway as one whose log changed history.
  const forked =
    "This device witnessed 412 entries (root 3q2+7w==), and the gateway now signs 412 entries (root q83v7Q==) that do not extend them: its log was forked. Its evidence cannot be trusted until whoever runs it explains why.";
  const gateways = params.has("unpaired")
    ? []
    : GATEWAYS.map((g, i) => ({
        ...g,
        paired_at: now - 86400 * 3,
        log_history_changed: i === 0 && params.has("forked") ? forked : null,
      }));
  let audit = auditLog([...requests.values()].slice(0, 8), now);
  let hoopConnections: HoopConnectionView[] = [];
  let settings: Settings = { notifications_paused_until: null, notifications_enabled: true, autostart: true, theme: params.get("theme") ?? "system" };
  const authenticator: AuthenticatorView = params.has("securitykey")
    ? { kind: "security-key", label: "YubiKey 5C NFC (USB)", development_mode: false }
    : { kind: "software", label: "softpasskey (in-memory, this machine only)", development_mode: true };

  const send = (event: UiEvent) => void emit(EVENT_NAME, event);
  // The security key's questions: an ask is pushed, the page's `key_answer` settles it.
  let answerKey: ((a: KeyAnswer) => void) | null = null;
  const askKey = (ask: KeyAsk): Promise<KeyAnswer> =>
    new Promise((resolve) => {
      answerKey = resolve;
      send({ type: "security_key", ask });
    });
  const touched = async () => {
    send({ type: "security_key", ask: { kind: "touch", among: 1 } });
    await sleep(1200);
  };
  const passkeys = new Map<string, PasskeyView[]>(
    gateways.map((g) => [g.fingerprint, [{ cred_id: `${g.device_id}-key-1`, aaguid: "ee882879-721c-4913-9775-3dfcce97072a", this_device: true, created_at: g.paired_at, last_used_at: now - 3600 }]]),
  );
  const record = (kind: string, requestId: string | null, detail: Record<string, unknown>) => {
    const seq = (audit[0]?.seq ?? 0) + 1;
    audit = [{ seq, at: Math.floor(Date.now() / 1000), kind, request_id: requestId, detail: JSON.stringify(detail, null, 2), hash: hex(500 + seq) }, ...audit];
  };

  const find = (id: string): RequestDetail => requests.get(id) ?? fail("unknown_request", `No request ${id} in the inbox.`);

  const decide = (r: RequestDetail, verdict: string, gatewayDown: boolean): DecisionView => {
    const at = Math.floor(Date.now() / 1000);
    const s = r.summary;
    const approvals = s.approvals + (verdict === "approve" ? 1 : 0);
    const state = verdict === "deny" ? "denied" : approvals >= s.min_approvals ? "approved" : "pending";
    const decision: DecisionView = {
      decision_id: crypto.randomUUID(),
      verdict,
      decided_at: at,
      delivery: gatewayDown ? "queued" : "delivered",
      last_error: gatewayDown ? "gateway unreachable: connection refused (os error 111)" : null,
      receipt: gatewayDown ? null : { request_state: state, approvals, min_approvals: s.min_approvals, stages: [], accepted_at: at, digest: hex(at % 9973) },
    };
    r.summary = { ...s, decision, state: gatewayDown ? s.state : state, approvals: gatewayDown ? s.approvals : approvals };
    if (!gatewayDown) r.votes = [...r.votes, { approver: ME, verdict, at, stages: [] }];
    if (!gatewayDown && state === "approved" && r.summary.stages.length > 0 && r.grant === null) {
      r.grant = { expires_at: r.grant_seconds === null ? null : at + r.grant_seconds, used_at: null, revoked_at: null, revoked_by: null, acknowledged_at: null, acknowledged_by: null };
    }
    record("decision_signed", s.id, { verdict, decision_id: decision.decision_id });
    send(gatewayDown ? { type: "decision_queued", request_id: s.id } : { type: "decision_delivered", request_id: s.id, request_state: state });
    return decision;
  };
  const isOpsShell = (r: RequestDetail) => offline || r.summary.gateway === GATEWAYS[1]?.fingerprint;

  mockIPC(
    async (cmd, payload) => {
      const args = (payload ?? {}) as Record<string, unknown>;
      const id = typeof args.id === "string" ? args.id : "";
      switch (cmd) {
        case "list_requests": {
          const all = [...requests.values()].map((r) => r.summary);
          return args.kind === "pending" ? all.filter((r) => r.state === "pending" || r.needs_acknowledgement) : all;
        }
        case "get_request":
          return structuredClone(find(id));
        case "approve": {
          const r = find(id);
          await sleep(hold ? 2 ** 31 - 1 : 2200);
          if (r.summary.match_required) {
            const code = typeof args.matchCode === "string" ? args.matchCode : null;
            if (code === null) fail("match_code_required", "This request needs the match code the requester sees.");
            if (code !== MATCH_CODE) fail("wrong_match_code", "The gateway refused the decision: the match code is wrong.");
          }
          return decide(r, "approve", isOpsShell(r));
        }
        case "deny": {
          const reason = typeof args.reason === "string" ? args.reason.trim() : "";
          if (reason === "") fail("invalid_input", "A reason is required.");
          await sleep(400);
          return decide(find(id), "deny", isOpsShell(find(id)));
        }
        case "revoke": {
          await sleep(1200);
          const r = find(id);
          const mine = r.summary.decision?.verdict === "approve" && r.summary.decision.delivery === "delivered";
          if (!mine || r.grant === null || r.grant.revoked_at !== null) fail("not_revocable", `The approval of ${id} cannot be revoked.`);
          r.grant = { ...r.grant, revoked_at: Math.floor(Date.now() / 1000), revoked_by: text(ME) };
          record("approval.revoked", id, { reason: typeof args.reason === "string" ? args.reason : "" });
          return r;
        }
        case "acknowledge": {
          await sleep(300);
          const r = find(id);
          if (r.summary.mode === "ask") fail("invalid_input", `${id} asks for your decision; only a request approved without asking you is acknowledged`);
          if (r.summary.needs_acknowledgement && r.grant !== null) {
            r.grant = { ...r.grant, acknowledged_at: Math.floor(Date.now() / 1000), acknowledged_by: text(ME) };
            r.summary = { ...r.summary, needs_acknowledgement: false };
            record("ack.sent", id, {});
          }
          return r;
        }
        case "report_unexpected": {
          await sleep(400);
          const r = find(id);
          record("reported_unexpected", id, { requester: r.summary.requester.visible });
          return decide(r, "deny", isOpsShell(r));
        }
        case "pair": {
          await sleep(1500);
          const link = typeof args.link === "string" ? args.link : "";
          if (!link.includes("code=")) fail("protocol", "The pairing link has no one-time code.");
          const g = { ...GATEWAYS[0], name: "staging-gateway", url: "https://gateway.staging.example.com", fingerprint: hex(3), paired_at: Math.floor(Date.now() / 1000) } as GatewayView;
          gateways.push(g);
          return g;
        }
        case "list_gateways":
          return gateways;
        case "authenticator_info":
          return authenticator;
        case "audit_list": {
          const q = typeof args.query === "string" ? args.query.toLowerCase() : "";
          const limit = typeof args.limit === "number" ? args.limit : 100;
          return audit
            .filter((e) => q === "" || e.kind.includes(q) || (e.request_id ?? "").toLowerCase().includes(q) || e.detail.toLowerCase().includes(q))
            .slice(0, limit);
        }
        case "audit_verify":
          await sleep(500);
          return params.has("broken")
            ? { ok: false, entries: audit.length, head: null, problem: "entry 7: hash does not match its content (edited after it was written)" }
            : { ok: true, entries: audit.length, head: audit[0]?.hash ?? null, problem: null };
        case "audit_export":
          await sleep(300);
          return "/home/alice/.local/share/countersign/exports/audit-2026-01-14T09-30-12Z.jsonl";
        case "get_settings":
          return settings;
        case "set_settings":
          settings = args.settings as Settings;
          return settings;
        case "pending_navigation":
          return null;
        case "quit":
          return null;
        case "key_answer": {
          const answer = args.answer as KeyAnswer;
          if (answerKey === null) fail("invalid_input", "The security key is not waiting for an answer.");
          answerKey(answer);
          answerKey = null;
          return null;
        }
        case "key_set_pin": {
          const a = await askKey({ kind: "new_pin", min_length: 4 });
          if (a.answer !== "pin") fail("ceremony_cancelled", "Cancelled.");
          await touched();
          return null;
        }
        case "passkey_list":
          return passkeys.get(String(args.gateway)) ?? fail("unknown_gateway", "No such gateway.");
        case "passkey_add": {
          const list = passkeys.get(String(args.gateway)) ?? fail("unknown_gateway", "No such gateway.");
          await touched();
          if ((await askKey({ kind: "next_key" })).answer !== "continue") fail("ceremony_cancelled", "Cancelled.");
          await touched();
          const added = { cred_id: `backup-key-${list.length + 1}`, aaguid: null, this_device: true, created_at: Math.floor(Date.now() / 1000), last_used_at: null };
          passkeys.set(String(args.gateway), [...list, added]);
          return passkeys.get(String(args.gateway));
        }
        case "passkey_remove": {
          const list = passkeys.get(String(args.gateway)) ?? fail("unknown_gateway", "No such gateway.");
          if (list.length <= 1) fail("last_passkey", "The gateway refuses to remove your last passkey.");
          passkeys.set(String(args.gateway), list.filter((p) => p.cred_id !== args.credId));
          return passkeys.get(String(args.gateway));
        }
        case "hoop_list":
          return hoopConnections;
        case "hoop_connect": {
          await touched();
          const url = typeof args.url === "string" ? args.url.trim() : "";
          if (!url.startsWith("https://")) fail("invalid_input", `${url} is not an https:// address (plain http is only for this machine)`);
          if (args.token !== "hpk_demo") fail("hoop_unauthorized", "hoop refused the token (401): invalid token. Check it, or make a new one in hoop.");
          const c: HoopConnectionView = {
            id: `hoop-${hoopConnections.length + 1}`,
            name: new URL(url).host,
            url,
            user_email: ME,
            user_name: "Alice",
            role: "standard",
            token_kept_in: "the Secret Service",
            connected_at: Math.floor(Date.now() / 1000),
            unreachable_since: null,
            error: null,
          };
          hoopConnections = [...hoopConnections.filter((h) => h.url !== url), c];
          return c;
        }
        case "hoop_disconnect":
          hoopConnections = hoopConnections.filter((h) => h.id !== args.id);
          return hoopConnections;
        default:
          return fail("ipc", `The mock backend has no command ${cmd}.`);
      }
    },
    { shouldMockEvents: true },
  );

  // The live feel: connection reports once the UI listens, and a fresh request after a while.
  setTimeout(() => {
    send({ type: "connection", gateway: "prod-gateway", up: !offline, error: offline ? "connection refused" : null });
    send({ type: "connection", gateway: "ops-shell", up: false, error: "gateway unreachable: connection refused (os error 111)" });
  }, 300);
}
