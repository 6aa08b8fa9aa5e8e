/** App-wide state: what the header, toasts and views share, fed by commands and UiEvents. */
import { computed, signal } from "@preact/signals";
import type { AuthenticatorView } from "./bindings/AuthenticatorView";
import type { RequestSummary } from "./bindings/RequestSummary";
import type { Settings } from "./bindings/Settings";
import type { UiEvent } from "./bindings/UiEvent";
import { ipc, toIpcFailure } from "./ipc";
import { navigate } from "./route";

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

/** Pending requests, newest state from `list_requests({kind: "pending"})`. */
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

export async function reloadPending(): Promise<void> {
  try {
    pending.value = await ipc.listRequests("pending");
    pendingError.value = null;
  } catch (error) {
    pendingError.value = toIpcFailure(error).message;
  } finally {
    pendingLoaded.value = true;
  }
}

let reloadTimer: ReturnType<typeof setTimeout> | undefined;

/** Coalesces a burst of events into one reload. */
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
    case "status_changed":
    case "decision_queued":
    case "decision_delivered":
      scheduleReload();
      break;
    case "decision_refused":
      scheduleReload();
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
    case "link_refused":
      showToast({ tone: "error", title: "Link refused", message: event.message });
      break;
    case "connection": {
      const next = new Map(connections.value);
      next.set(event.gateway, { up: event.up, error: event.error });
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
  }
}
