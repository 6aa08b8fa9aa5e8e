/** App-wide state: what the header, toasts and views share, fed by commands and UiEvents. */
import { computed, signal } from "@preact/signals";
import type { AuthenticatorView } from "./bindings/AuthenticatorView";
import type { KeyAsk } from "./bindings/KeyAsk";
import type { RequestSummary } from "./bindings/RequestSummary";
import type { Settings } from "./bindings/Settings";
import type { StageProgressView } from "./bindings/StageProgressView";
import type { UiEvent } from "./bindings/UiEvent";
import { ipc, toIpcFailure } from "./ipc";
import { navigate, route } from "./route";
import { withProgress } from "./stages";

export interface Toast {
  id: number;
  tone: "error" | "warning" | "info";
  title: string;
  message: string;
  requestId?: string;
}

export interface ConnectionState {
  up: boolean;
  error: string | null;
}

/**
 * Pending requests. Read in full (`list_requests({kind: "pending"})`) at start and when the
 * shell asks for it; otherwise kept up to date one change at a time from the shell's events
 * (`pendingChanges`), so an inbox of thousands is never re-read for one arrival.
 */
export const pending = signal<RequestSummary[]>([]);
export const pendingLoaded = signal(false);
export const pendingError = signal<string | null>(null);
export const pendingCount = computed(() => pending.value.length);

/** Bumped whenever the shell reports a change: views holding their own data reload on it. */
export const changes = signal(0);

export const connections = signal<ReadonlyMap<string, ConnectionState>>(new Map());
export const authenticator = signal<AuthenticatorView | null>(null);
export const settings = signal<Settings | null>(null);
export const toasts = signal<Toast[]>([]);
/** True until a gateway is paired: the pairing screen is then the welcome screen. */
export const firstRun = signal(false);
/** Set by the first `gateway_paired` event, so a gateway list read before it cannot bring the
 * welcome screen back. */
export const pairedThisSession = signal(false);
/** What the security key of the running ceremony asks for now; null when nothing is asked
 * (or the answer was just given). Reset when a ceremony starts. */
export const keyAsk = signal<KeyAsk | null>(null);
/** A link from a deep link, waiting for the user to confirm pairing. */
export const offeredPairingLink = signal<string | null>(null);

let nextToast = 1;

export function showToast(toast: Omit<Toast, "id">): void {
  const id = nextToast++;
  toasts.value = [...toasts.value, { ...toast, id }].slice(-5);
  setTimeout(() => dismissToast(id), toast.tone === "info" ? 6000 : 15000);
}

export function dismissToast(id: number): void {
  toasts.value = toasts.value.filter((t) => t.id !== id);
}

/** Drops the error toasts about `requestId`: a later decision on it went out, so a refusal
 * shown for an earlier one no longer describes the request. */
export function dismissErrorsAbout(requestId: string): void {
  toasts.value = toasts.value.filter((t) => t.tone !== "error" || t.requestId !== requestId);
}

/** One change to the pending list, as an event reported it. */
export type PendingChange =
  | { kind: "upsert"; row: RequestSummary }
  | { kind: "status"; id: string; state: string; approvals: number; min_approvals: number; stages: StageProgressView[] }
  | { kind: "remove"; id: string };

/** A request the inbox lists: pending, or approved without asking and not yet acknowledged. */
export function inInbox(r: RequestSummary): boolean {
  return r.state === "pending" || r.needs_acknowledgement;
}

/**
 * `rows` with `batch` applied in order: a row that is no longer pending leaves (unless it asks
 * to be acknowledged), a pending one is added or replaced. O(rows + batch). `unknown` lists the ids of pending requests that a
 * status change named but `rows` does not hold (their row must be fetched).
 */
export function applyPendingChanges(
  rows: readonly RequestSummary[],
  batch: readonly PendingChange[],
): { rows: RequestSummary[]; unknown: string[] } {
  const byId = new Map(rows.map((r) => [r.id, r]));
  const unknown = new Set<string>();
  for (const c of batch) {
    switch (c.kind) {
      case "upsert":
        if (inInbox(c.row)) byId.set(c.row.id, c.row);
        else byId.delete(c.row.id);
        unknown.delete(c.row.id);
        break;
      case "status": {
        const row = byId.get(c.id);
        if (c.state !== "pending" && row !== undefined && row.mode !== "ask") {
          // Approved without asking: whether it still asks for acknowledgement is in its row.
          unknown.add(c.id);
        } else if (c.state !== "pending") {
          byId.delete(c.id);
          unknown.delete(c.id);
        } else if (row !== undefined) {
          byId.set(c.id, {
            ...row,
            state: c.state,
            approvals: c.approvals,
            min_approvals: c.min_approvals,
            stages: c.stages.length > 0 ? withProgress(row.stages, c.stages) : row.stages,
          });
        } else {
          unknown.add(c.id);
        }
        break;
      }
      case "remove":
        byId.delete(c.id);
        unknown.delete(c.id);
        break;
    }
  }
  return { rows: [...byId.values()], unknown: [...unknown] };
}

/** Changes waiting for the next flush. */
let queued: PendingChange[] = [];
let flushTimer: ReturnType<typeof setTimeout> | undefined;
/** While a full read is in flight: every change flushed since it started, to apply on top. */
let replay: PendingChange[] | null = null;
let reloading = false;
let reloadAgain = false;

/** Read through a call, as a read in flight may have asked for another meanwhile. */
function anotherRead(): boolean {
  return reloadAgain;
}

/** How long changes gather before they are applied: one list update per burst. */
const FLUSH_MS = 100;

function flushPending(): void {
  if (flushTimer !== undefined) clearTimeout(flushTimer);
  flushTimer = undefined;
  if (queued.length === 0) return;
  const batch = queued;
  queued = [];
  replay?.push(...batch);
  const result = applyPendingChanges(pending.value, batch);
  pending.value = result.rows;
  changes.value++;
  result.unknown.forEach((id) => void refreshRequest(id));
}

/** Requests whose row is being fetched again, and whether an event named them meanwhile. */
const refreshing = new Map<string, boolean>();

const changedId = (c: PendingChange) => (c.kind === "upsert" ? c.row.id : c.id);

/** Queues changes for the pending list; they are applied together within `FLUSH_MS`. */
export function pendingChanges(...batch: PendingChange[]): void {
  for (const c of batch) if (refreshing.has(changedId(c))) refreshing.set(changedId(c), true);
  queued.push(...batch);
  flushTimer ??= setTimeout(flushPending, FLUSH_MS);
}

/**
 * Fetches one request's row again (its decision or votes changed). An answer overtaken by a
 * newer event for the same request is not applied: the row is fetched once more instead.
 */
export async function refreshRequest(id: string): Promise<void> {
  if (refreshing.has(id)) {
    refreshing.set(id, true);
    return;
  }
  try {
    for (;;) {
      refreshing.set(id, false);
      let change: PendingChange | null;
      try {
        change = { kind: "upsert", row: (await ipc.getRequest(id)).summary };
      } catch (error) {
        change = toIpcFailure(error).code === "unknown_request" ? { kind: "remove", id } : null;
      }
      if (refreshing.get(id) === true) continue;
      refreshing.delete(id);
      if (change === null) scheduleReload();
      else pendingChanges(change);
      return;
    }
  } finally {
    refreshing.delete(id);
  }
}

/**
 * Reads the whole pending list. Never two at once: a call during a read makes one more read
 * after it. Changes that arrive during a read are applied on top of its answer.
 */
export async function reloadPending(): Promise<void> {
  if (reloading) {
    reloadAgain = true;
    return;
  }
  reloading = true;
  try {
    do {
      reloadAgain = false;
      replay = [];
      try {
        const rows = await ipc.listRequests("pending");
        flushPending();
        pending.value = applyPendingChanges(rows, replay).rows;
        pendingError.value = null;
      } catch (error) {
        pendingError.value = toIpcFailure(error).message;
      } finally {
        replay = null;
        pendingLoaded.value = true;
      }
    } while (anotherRead());
  } finally {
    reloading = false;
  }
}

let reloadTimer: ReturnType<typeof setTimeout> | undefined;

/** Coalesces a burst of calls into one full read (and one `changes` bump). */
export function scheduleReload(delayMs = 150): void {
  if (reloadTimer !== undefined) return;
  reloadTimer = setTimeout(() => {
    reloadTimer = undefined;
    changes.value++;
    void reloadPending();
  }, delayMs);
}

export function applyTheme(theme: string): void {
  const root = document.documentElement;
  if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  else delete root.dataset.theme;
}

export function handleUiEvent(event: UiEvent): void {
  switch (event.type) {
    case "request_received":
      if (event.summary !== null) pendingChanges({ kind: "upsert", row: event.summary });
      else scheduleReload();
      break;
    case "status_changed":
      pendingChanges({
        kind: "status",
        id: event.request_id,
        state: event.state,
        approvals: event.approvals,
        min_approvals: event.min_approvals,
        stages: event.stages,
      });
      break;
    case "decision_delivered":
      dismissErrorsAbout(event.request_id);
      if (event.request_state !== "pending") pendingChanges({ kind: "remove", id: event.request_id });
      else void refreshRequest(event.request_id);
      break;
    case "decision_queued":
      dismissErrorsAbout(event.request_id);
      void refreshRequest(event.request_id);
      break;
    case "resync":
      scheduleReload();
      break;
    case "decision_refused":
      void refreshRequest(event.request_id);
      showToast({
        tone: "error",
        title: "Decision refused by the gateway",
        message: `${event.code}: ${event.message}`,
        requestId: event.request_id,
      });
      break;
    case "request_rejected":
      showToast({ tone: "warning", title: "A request was rejected", message: event.reason });
      break;
    case "audit_rolled_back":
      showToast({
        tone: "error",
        title: "Audit log rolled back",
        message: `${event.damage}: ${event.problem}`,
      });
      break;
    case "log_history_changed":
      showToast({
        tone: "error",
        title: "This gateway's log changed history",
        message: event.problem,
      });
      break;
    case "link_refused":
      showToast({ tone: "error", title: "Link refused", message: event.message });
      break;
    case "connection": {
      const next = new Map(connections.value);
      next.set(event.gateway, { up: event.up, error: event.error });
      connections.value = next;
      break;
    }
    case "connection_removed": {
      const next = new Map(connections.value);
      next.delete(event.gateway);
      connections.value = next;
      break;
    }
    case "navigate":
      navigate({ view: "request", id: event.request_id });
      break;
    case "pairing_link":
      offeredPairingLink.value = event.link;
      navigate({ view: "pair" });
      break;
    case "security_key":
      keyAsk.value = event.ask;
      break;
    case "gateway_paired":
      // However the pairing happened (this window's form, a link confirmed here, or the
      // development pairing at start-up), the inbox now has a source: leave the pairing screen.
      firstRun.value = false;
      pairedThisSession.value = true;
      showToast({
        tone: "info",
        title: `Paired with ${event.name}`,
        message: `Requests for ${event.approver} from this gateway now reach this device.`,
      });
      scheduleReload();
      if (route.value.view === "pair") navigate({ view: "inbox", tab: "pending" });
      break;
  }
}
