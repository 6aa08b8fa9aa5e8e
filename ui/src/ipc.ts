/**
 * Typed wrappers over the Tauri IPC surface declared in `crates/ipc/src/lib.rs`: one function
 * per command in `COMMANDS`, returning the ts-rs generated types, every failure normalised to
 * an `IpcFailure` (an `Error` that is also an `IpcError`).
 */
import { invoke, type InvokeArgs } from "@tauri-apps/api/core";
import { listen, type UnlistenFn } from "@tauri-apps/api/event";
import type { AuditEntryView } from "./bindings/AuditEntryView";
import type { AuditVerifyView } from "./bindings/AuditVerifyView";
import type { AuthenticatorView } from "./bindings/AuthenticatorView";
import type { DecisionView } from "./bindings/DecisionView";
import type { ErrorCode } from "./bindings/ErrorCode";
import type { GatewayView } from "./bindings/GatewayView";
import type { HoopConnectionView } from "./bindings/HoopConnectionView";
import type { IpcError } from "./bindings/IpcError";
import type { KeyAnswer } from "./bindings/KeyAnswer";
import type { ListKind } from "./bindings/ListKind";
import type { PasskeyView } from "./bindings/PasskeyView";
import type { RequestDetail } from "./bindings/RequestDetail";
import type { RequestSummary } from "./bindings/RequestSummary";
import type { Settings } from "./bindings/Settings";
import type { UiEvent } from "./bindings/UiEvent";
import { asErrorCode } from "./errors";

/** The Tauri event name every `UiEvent` is emitted under (`EVENT_NAME` in the Rust crate). */
export const EVENT_NAME = "countersign://event";

/** A rejected command: a stable `code` to switch on and a `message` to show. */
export class IpcFailure extends Error implements IpcError {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string) {
    super(message);
    this.name = "IpcFailure";
    this.code = code;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null;
}

/** Whatever `invoke` rejected with, as an `IpcFailure`. */
export function toIpcFailure(error: unknown): IpcFailure {
  if (error instanceof IpcFailure) return error;
  if (isRecord(error) && typeof error.code === "string" && typeof error.message === "string") {
    // A code this build does not know (a mismatched shell) is shown as unknown, with its text.
    const code = asErrorCode(error.code);
    return new IpcFailure(code, code === error.code ? error.message : `${error.code}: ${error.message}`);
  }
  if (typeof error === "string") return new IpcFailure("ipc", error);
  if (error instanceof Error) return new IpcFailure("ipc", error.message);
  return new IpcFailure("ipc", "The desktop shell did not answer.");
}

async function call<T>(command: string, args?: InvokeArgs): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (error) {
    throw toIpcFailure(error);
  }
}

/** Every command, keyed by the wrapper name; the values are the Tauri command names. */
export const ipc = {
  listRequests: (kind: ListKind) => call<RequestSummary[]>("list_requests", { kind }),
  getRequest: (id: string) => call<RequestDetail>("get_request", { id }),
  /** Runs the passkey ceremony on the Rust side: may take seconds. */
  approve: (id: string, matchCode: string | null) =>
    call<DecisionView>("approve", { id, matchCode }),
  deny: (id: string, reason: string) => call<DecisionView>("deny", { id, reason }),
  /** "I did not expect this": denies and reports in one step. */
  reportUnexpected: (id: string) => call<DecisionView>("report_unexpected", { id }),
  /** Acknowledges a request approved without asking you (break-glass). */
  acknowledge: (id: string) => call<RequestDetail>("acknowledge", { id }),
  /** Revokes your live approval of a request, with your passkey. */
  revoke: (id: string, reason: string) => call<RequestDetail>("revoke", { id, reason }),
  pair: (link: string) => call<GatewayView>("pair", { link }),
  listGateways: () => call<GatewayView[]>("list_gateways"),
  authenticatorInfo: () => call<AuthenticatorView>("authenticator_info"),
  auditList: (query: string | null, limit: number) =>
    call<AuditEntryView[]>("audit_list", { query, limit }),
  auditVerify: () => call<AuditVerifyView>("audit_verify"),
  /** Returns the path written. */
  auditExport: () => call<string>("audit_export"),
  getSettings: () => call<Settings>("get_settings"),
  setSettings: (settings: Settings) => call<Settings>("set_settings", { settings }),
  /** A request id the app was asked to open before the UI was ready. */
  pendingNavigation: () => call<string | null>("pending_navigation"),
  /** Ends Countersign (the background service and every window). */
  quit: () => call<null>("quit"),
  /** Answers what the security key asked (a `security_key` event): a PIN, continue, cancel. */
  keyAnswer: (answer: KeyAnswer) => call<null>("key_answer", { answer }),
  /** Sets a first PIN on a security key that has none (a ceremony; asks for the new PIN). */
  keySetPin: () => call<null>("key_set_pin"),
  passkeyList: (gateway: string) => call<PasskeyView[]>("passkey_list", { gateway }),
  /** Registers a backup key: the registered key first, then the new one. */
  passkeyAdd: (gateway: string) => call<PasskeyView[]>("passkey_add", { gateway }),
  passkeyRemove: (gateway: string, credId: string) =>
    call<PasskeyView[]>("passkey_remove", { gateway, credId }),
  /** The connected hoop.dev gateways, with whether their polls reach hoop. */
  hoopList: () => call<HoopConnectionView[]>("hoop_list"),
  /** Checks the token with hoop, then registers a passkey for the connection (a ceremony). */
  hoopConnect: (url: string, token: string) => call<HoopConnectionView>("hoop_connect", { url, token }),
  /** Forgets a hoop connection; resolves to the connections left. */
  hoopDisconnect: (id: string) => call<HoopConnectionView[]>("hoop_disconnect", { id }),
} as const;

export type Ipc = typeof ipc;

/** Subscribes to the shell's events; resolves to the function that unsubscribes. */
export function onUiEvent(handler: (event: UiEvent) => void): Promise<UnlistenFn> {
  return listen<UiEvent>(EVENT_NAME, (event) => {
    handler(event.payload);
  });
}
