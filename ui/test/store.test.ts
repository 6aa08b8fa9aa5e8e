import { waitFor } from "@testing-library/preact";
import { beforeEach, describe, expect, it } from "vitest";
import type { RequestSummary } from "../src/bindings/RequestSummary";
import {
  applyPendingChanges,
  handleUiEvent,
  pending,
  pendingLoaded,
  reloadPending,
  showToast,
  toasts,
} from "../src/store";
import { progressText } from "../src/stages";
import { backend, deferred } from "./backend";
import { detail, summary, text } from "./fixtures";

const ids = (rows: readonly RequestSummary[]) => rows.map((r) => r.id).sort();

/** Lets the store's batching timer (100 ms) run and apply what it gathered. */
const applied = (check: () => void) => waitFor(check, { timeout: 1000 });

beforeEach(() => {
  pending.value = [];
  pendingLoaded.value = true;
});

describe("applying changes to the pending list", () => {
  const a = summary({ id: "a" });
  const b = summary({ id: "b", approvals: 0, min_approvals: 2 });

  it("adds and replaces pending rows, and drops rows that are no longer pending", () => {
    const { rows, unknown } = applyPendingChanges(
      [a, b],
      [
        { kind: "upsert", row: summary({ id: "c" }) },
        { kind: "upsert", row: summary({ id: "a", state: "approved" }) },
        { kind: "status", id: "b", state: "pending", approvals: 1, min_approvals: 2, stages: [] },
      ],
    );
    expect(ids(rows)).toEqual(["b", "c"]);
    expect(rows.find((r) => r.id === "b")?.approvals).toBe(1);
    expect(unknown).toEqual([]);
  });

  it("drops a row whose status leaves pending, and applies changes in order", () => {
    const { rows } = applyPendingChanges(
      [a, b],
      [
        { kind: "status", id: "a", state: "denied", approvals: 0, min_approvals: 1, stages: [] },
        { kind: "upsert", row: summary({ id: "d" }) },
        { kind: "remove", id: "d" },
        { kind: "remove", id: "missing" },
      ],
    );
    expect(ids(rows)).toEqual(["b"]);
  });

  it("reports a pending status for a request it does not hold, so its row is fetched", () => {
    const { rows, unknown } = applyPendingChanges(
      [a],
      [{ kind: "status", id: "x", state: "pending", approvals: 1, min_approvals: 2, stages: [] }],
    );
    expect(ids(rows)).toEqual(["a"]);
    expect(unknown).toEqual(["x"]);
  });

  it("keeps a broken glass until it is acknowledged, fetching its row when its status changes", () => {
    const glass = summary({ id: "g", mode: "break_glass" });
    const { rows, unknown } = applyPendingChanges(
      [glass],
      [{ kind: "status", id: "g", state: "approved", approvals: 0, min_approvals: 1, stages: [] }],
    );
    expect(ids(rows)).toEqual(["g"]);
    expect(unknown).toEqual(["g"]);
    const asking = applyPendingChanges(rows, [{ kind: "upsert", row: { ...glass, state: "approved", needs_acknowledgement: true } }]);
    expect(ids(asking.rows)).toEqual(["g"]);
    const acknowledged = applyPendingChanges(asking.rows, [{ kind: "upsert", row: { ...glass, state: "approved", needs_acknowledgement: false } }]);
    expect(ids(acknowledged.rows)).toEqual([]);
  });

  it("leaves the input untouched", () => {
    const input = [a, b];
    applyPendingChanges(input, [{ kind: "remove", id: "a" }]);
    expect(input).toEqual([a, b]);
  });
});

describe("keeping the pending list current from events", () => {
  it("adds an arriving request from the row its event carries, without reading the inbox", async () => {
    const api = backend({ list_requests: () => [] });
    pending.value = [summary({ id: "a" })];
    handleUiEvent({ type: "request_received", request_id: "b", summary: summary({ id: "b" }) });
    handleUiEvent({ type: "request_received", request_id: "c", summary: summary({ id: "c" }) });
    await applied(() => expect(ids(pending.value)).toEqual(["a", "b", "c"]));
    expect(api.calls("list_requests")).toHaveLength(0);
  });

  it("removes a request decided elsewhere and updates the votes of one still pending", async () => {
    const api = backend({ list_requests: () => [] });
    pending.value = [summary({ id: "a" }), summary({ id: "b", min_approvals: 2 })];
    handleUiEvent({ type: "status_changed", request_id: "a", state: "approved", approvals: 1, min_approvals: 1, stages: [] });
    handleUiEvent({ type: "status_changed", request_id: "b", state: "pending", approvals: 1, min_approvals: 2, stages: [] });
    await applied(() => expect(ids(pending.value)).toEqual(["b"]));
    expect(pending.value[0]?.approvals).toBe(1);
    expect(api.calls("list_requests")).toHaveLength(0);
  });

  it("removes a request once its delivered decision closed it", async () => {
    backend({ list_requests: () => [] });
    pending.value = [summary({ id: "a" }), summary({ id: "b" })];
    handleUiEvent({ type: "decision_delivered", request_id: "a", request_state: "denied" });
    await applied(() => expect(ids(pending.value)).toEqual(["b"]));
  });

  it("drops the refusal toast of a request once a later decision on it is delivered", () => {
    backend({
      list_requests: () => [],
      get_request: () => detail({}, { id: "a", decision: null }),
    });
    toasts.value = [];
    showToast({ tone: "error", title: "Other", message: "about b", requestId: "b" });
    handleUiEvent({ type: "decision_refused", request_id: "a", code: "wrong_match_code", message: "Wrong code." });
    expect(toasts.value.map((t) => t.requestId)).toEqual(["b", "a"]);
    handleUiEvent({ type: "decision_delivered", request_id: "a", request_state: "approved" });
    expect(toasts.value.map((t) => t.requestId)).toEqual(["b"]);
  });

  it("fetches only the one row whose decision was queued", async () => {
    const api = backend({
      list_requests: () => [],
      get_request: () => detail({}, { id: "a", approvals: 0, decision: null, risk: "critical" }),
    });
    pending.value = [summary({ id: "a", risk: "high" }), summary({ id: "b" })];
    handleUiEvent({ type: "decision_queued", request_id: "a" });
    await applied(() => expect(pending.value.find((r) => r.id === "a")?.risk).toBe("critical"));
    expect(api.calls("get_request")).toEqual([{ id: "a" }]);
    expect(api.calls("list_requests")).toHaveLength(0);
  });

  it("re-reads everything when the shell says it missed events", async () => {
    const api = backend({ list_requests: () => [summary({ id: "z" })] });
    pending.value = [summary({ id: "a" })];
    handleUiEvent({ type: "resync" });
    await applied(() => expect(ids(pending.value)).toEqual(["z"]));
    expect(api.calls("list_requests")).toEqual([{ kind: "pending" }]);
  });
});

describe("reading the whole pending list", () => {
  it("never runs two reads at once: calls during a read make one more read after it", async () => {
    const first = deferred<RequestSummary[]>();
    const second = deferred<RequestSummary[]>();
    const answers = [first.promise, second.promise];
    const api = backend({ list_requests: () => answers.shift() ?? Promise.resolve([]) });
    const done = reloadPending();
    void reloadPending();
    void reloadPending();
    expect(api.calls("list_requests")).toHaveLength(1);
    first.resolve([summary({ id: "a" })]);
    await waitFor(() => expect(api.calls("list_requests")).toHaveLength(2));
    second.resolve([summary({ id: "a" }), summary({ id: "b" })]);
    await done;
    expect(api.calls("list_requests")).toHaveLength(2);
    expect(ids(pending.value)).toEqual(["a", "b"]);
  });

  it("keeps changes that arrive while a read is in flight on top of its answer", async () => {
    const read = deferred<RequestSummary[]>();
    backend({ list_requests: () => read.promise });
    const done = reloadPending();
    handleUiEvent({ type: "request_received", request_id: "new", summary: summary({ id: "new" }) });
    handleUiEvent({ type: "status_changed", request_id: "old", state: "approved", approvals: 1, min_approvals: 1, stages: [] });
    await applied(() => expect(ids(pending.value)).toEqual(["new"]));
    // The answer was read before those two events.
    read.resolve([summary({ id: "old" }), summary({ id: "other" })]);
    await done;
    expect(ids(pending.value)).toEqual(["new", "other"]);
  });
});

describe("fetching one request again", () => {
  it("does not bring back a request with an answer older than a later event for it", async () => {
    const answers = [deferred<ReturnType<typeof detail>>(), deferred<ReturnType<typeof detail>>()];
    const calls = [...answers];
    const api = backend({ list_requests: () => [], get_request: () => calls.shift()?.promise });
    pending.value = [summary({ id: "a" }), summary({ id: "b" })];
    handleUiEvent({ type: "decision_queued", request_id: "a" });
    await waitFor(() => expect(api.calls("get_request")).toHaveLength(1));
    handleUiEvent({ type: "status_changed", request_id: "a", state: "approved", approvals: 1, min_approvals: 1, stages: [] });
    await applied(() => expect(ids(pending.value)).toEqual(["b"]));
    // Read before the approval: still pending. Not applied; the row is fetched again.
    answers[0]?.resolve(detail({}, { id: "a", state: "pending" }));
    await waitFor(() => expect(api.calls("get_request")).toHaveLength(2));
    answers[1]?.resolve(detail({}, { id: "a", state: "approved" }));
    await new Promise((r) => setTimeout(r, 250));
    expect(ids(pending.value)).toEqual(["b"]);
  });
});

describe("stage progress from status events", () => {
  it("merges a status's stage progress into the pending row, stage by stage", () => {
    const stage = (name: string) => ({ name: text(name), group: text(name), approvers: [], approvals: 0, min: 1, satisfied: false });
    const row = summary({ id: "s", min_approvals: 2, stages: [stage("dba"), stage("managers")] });
    const { rows } = applyPendingChanges(
      [row],
      [
        {
          kind: "status",
          id: "s",
          state: "pending",
          approvals: 1,
          min_approvals: 2,
          stages: [
            { name: "dba", approvals: 1, min: 1, satisfied: true },
            { name: "managers", approvals: 0, min: 1, satisfied: false },
          ],
        },
      ],
    );
    expect(rows[0]?.stages.map((s) => [s.approvals, s.satisfied])).toEqual([
      [1, true],
      [0, false],
    ]);
    expect(progressText(rows[0]?.stages ?? [])).toBe("dba 1/1 ✓ · managers 0/1");
  });
});
