import { createPortal } from "preact/compat";
import { useLayoutEffect, useRef, useState } from "preact/hooks";
import type { DecisionView } from "../bindings/DecisionView";
import type { RequestDetail } from "../bindings/RequestDetail";
import { AuthenticatorNote, PasskeyInstruction } from "../components/AuthenticatorNote";
import { SetPin } from "../components/KeyActions";
import { KeyDialog } from "../components/KeyDialog";
import { Spinner } from "../components/Spinner";
import { ipc, toIpcFailure, type IpcFailure } from "../ipc";
import { now } from "../clock";
import { HINTS } from "../errors";
import { authenticator, keyAsk } from "../store";
import { DecisionResult } from "./DecisionResult";

type Phase =
  | { step: "choose" }
  | { step: "approve" }
  | { step: "deny" }
  | { step: "report" }
  | { step: "passkey" }
  | { step: "sending"; what: string }
  | { step: "done"; decision: DecisionView }
  | { step: "failed"; error: IpcFailure; attempted: "approve" | "deny" | "report" };

export const MATCH_CODE = /^\d{6}$/;

/** Keys typed into a field are text, not shortcuts. */
function isTyping(target: EventTarget | null): boolean {
  if (!(target instanceof HTMLElement)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

interface DecisionPanelProps {
  request: RequestDetail;
  onDecided: () => void;
}

/** Approve (deliberate: confirm, then passkey), deny (with a reason), or report as unexpected. */
export function DecisionPanel({ request, onDecided }: DecisionPanelProps) {
  const summary = request.summary;
  const [phase, setPhase] = useState<Phase>({ step: "choose" });
  const [matchCode, setMatchCode] = useState("");
  const [reason, setReason] = useState("");
  const [invalid, setInvalid] = useState<string | null>(null);

  const approveButton = useRef<HTMLButtonElement>(null);
  const denyButton = useRef<HTMLButtonElement>(null);
  const reportButton = useRef<HTMLButtonElement>(null);
  const matchInput = useRef<HTMLInputElement>(null);
  const confirmApprove = useRef<HTMLButtonElement>(null);
  const reasonInput = useRef<HTMLInputElement>(null);
  const confirmReport = useRef<HTMLButtonElement>(null);
  const resultRef = useRef<HTMLDivElement>(null);
  const returnFocus = useRef<"approve" | "deny" | "report">("approve");

  const expired = summary.expires_at !== null && now.value >= summary.expires_at;
  const hoop = summary.kind === "hoop";
  // A decision the gateway refused for good (say, a mistyped match code) may be made again;
  // one hoop refused may not (hoop's refusals are final: self-approval, not eligible).
  const refused = !hoop && summary.decision !== null && summary.decision.delivery === "refused";
  const decidable = summary.state === "pending" && (summary.decision === null || refused) && !expired;
  // Once a call is in flight its outcome is shown, whatever a reload says meanwhile.
  const inFlight = phase.step === "passkey" || phase.step === "sending";

  // Focus follows the flow: into the form when it opens, back to its button when it closes.
  useLayoutEffect(() => {
    switch (phase.step) {
      case "approve":
        (summary.match_required ? matchInput : confirmApprove).current?.focus();
        break;
      case "deny":
        reasonInput.current?.focus();
        break;
      case "report":
        confirmReport.current?.focus();
        break;
      case "choose": {
        const back = { approve: approveButton, deny: denyButton, report: reportButton }[returnFocus.current];
        if (document.activeElement === document.body || document.activeElement === null) back.current?.focus();
        break;
      }
      case "done":
      case "failed":
        resultRef.current?.querySelector<HTMLElement>("[tabindex='-1']")?.focus();
        break;
      default:
        break;
    }
  }, [phase.step, summary.match_required]);

  // `a` opens the approve flow, `d` the deny flow, from anywhere on the screen.
  useLayoutEffect(() => {
    if (!decidable || phase.step !== "choose") return;
    const onKey = (e: KeyboardEvent) => {
      if (e.ctrlKey || e.metaKey || e.altKey || isTyping(e.target)) return;
      if (e.key === "a") {
        e.preventDefault();
        open("approve");
      } else if (e.key === "d") {
        e.preventDefault();
        open("deny");
      }
    };
    document.addEventListener("keydown", onKey);
    return () => document.removeEventListener("keydown", onKey);
  });

  function open(step: "approve" | "deny" | "report") {
    returnFocus.current = step;
    setInvalid(null);
    setPhase({ step });
  }

  function cancel() {
    setInvalid(null);
    setPhase({ step: "choose" });
    // Focus is restored by the effect once the buttons are back.
    (document.activeElement as HTMLElement | null)?.blur();
  }

  async function run(attempted: "approve" | "deny" | "report", action: () => Promise<DecisionView>) {
    try {
      const decision = await action();
      setPhase({ step: "done", decision });
      onDecided();
    } catch (e) {
      setPhase({ step: "failed", error: toIpcFailure(e), attempted });
    }
  }

  function submitApprove(e: Event) {
    e.preventDefault();
    let code: string | null = null;
    if (summary.match_required) {
      code = matchCode.replace(/\s+/g, "");
      if (!MATCH_CODE.test(code)) {
        setInvalid("Type the 6-digit code the requester sees.");
        matchInput.current?.focus();
        return;
      }
    }
    keyAsk.value = null;
    setPhase({ step: "passkey" });
    void run("approve", () => ipc.approve(summary.id, code).finally(() => (keyAsk.value = null)));
  }

  function submitDeny(e: Event) {
    e.preventDefault();
    const why = reason.trim();
    if (why === "") {
      setInvalid("A reason is required to deny.");
      reasonInput.current?.focus();
      return;
    }
    keyAsk.value = null;
    setPhase({ step: "sending", what: hoop ? "Rejecting: confirm with your passkey…" : "Denying…" });
    void run("deny", () => ipc.deny(summary.id, why).finally(() => (keyAsk.value = null)));
  }

  function submitReport() {
    setPhase({ step: "sending", what: "Denying and reporting…" });
    void run("report", () => ipc.reportUnexpected(summary.id));
  }

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Escape" && (phase.step === "approve" || phase.step === "deny" || phase.step === "report")) {
      e.preventDefault();
      cancel();
    }
  };

  if (phase.step === "done") {
    // The request is reloaded on every engine event: a queued decision that has since been
    // delivered (or refused) shows its new state and receipt, not the one it had when made.
    const fresh = summary.decision;
    const shown = fresh !== null && fresh.decision_id === phase.decision.decision_id ? fresh : phase.decision;
    return (
      <section class="decision-panel" aria-label="Decision" ref={resultRef}>
        <DecisionResult decision={shown} hoop={hoop} />
      </section>
    );
  }

  if (phase.step === "failed") {
    const verb = { approve: "Approval", deny: hoop ? "Rejection" : "Denial", report: "Report" }[phase.attempted];
    return (
      <section class="decision-panel" aria-label="Decision" ref={resultRef}>
        <div class="notice notice-error" role="alert">
          <h3 tabIndex={-1}>{verb} failed</h3>
          <p>
            <code class="error-code">{phase.error.code}</code> {phase.error.message}
          </p>
          {HINTS[phase.error.code] !== null && <p class="error-hint">{HINTS[phase.error.code]}</p>}
        </div>
        {phase.error.code === "uv_unavailable" && <SetPin />}
        <button
          type="button"
          class="button"
          onClick={() => {
            // A code the gateway refused is not offered again.
            if (phase.error.code === "wrong_match_code") setMatchCode("");
            setPhase({ step: "choose" });
          }}
        >
          Back to the decision
        </button>
      </section>
    );
  }

  if (!decidable && !inFlight) {
    return (
      <section class="decision-panel" aria-label="Decision">
        {summary.decision !== null ? (
          <DecisionResult decision={summary.decision} hoop={hoop} />
        ) : (
          <p class="closed">
            This request is <span class={`state state-${expired ? "expired" : summary.state}`}>{expired ? "expired" : summary.state}</span>;
            there is nothing left to decide.
          </p>
        )}
      </section>
    );
  }

  return (
    <section class="decision-panel" aria-label="Decision" onKeyDown={onKeyDown}>
      <h2 class="section-title">Your decision</h2>
      {phase.step === "choose" && (
        <>
          {refused && (
            <p class="notice notice-warning" role="status">
              The gateway refused your last decision ({summary.decision?.last_error ?? "no reason given"}). Nothing
              was counted; you can decide again.
            </p>
          )}
          <div class="decision-buttons">
            <button
              ref={approveButton}
              type="button"
              class="button button-primary"
              aria-keyshortcuts="a"
              onClick={() => open("approve")}
            >
              Approve… <kbd>A</kbd>
            </button>
            <button
              ref={denyButton}
              type="button"
              class="button button-danger"
              aria-keyshortcuts="d"
              onClick={() => open("deny")}
            >
              Deny… <kbd>D</kbd>
            </button>
          </div>
          {/* Reporting blocks the requester at a Countersign gateway; hoop has no such thing. */}
          {!hoop && (
            <button ref={reportButton} type="button" class="button button-link unexpected" onClick={() => open("report")}>
              I did not expect this
            </button>
          )}
        </>
      )}

      {phase.step === "approve" && (
        <form class="decision-form" onSubmit={submitApprove} aria-label="Approve" noValidate>
          <p>
            {hoop
              ? "Approving confirms with your passkey, signs your decision on this device, bound to this exact script (digest below), and sends hoop APPROVED. Read it all first."
              : "Approving binds your passkey to this exact request (digest below). Read it all first."}
          </p>
          {summary.match_required && (
            <div class="field">
              <label for="match-code">Match code the requester sees</label>
              <input
                ref={matchInput}
                id="match-code"
                class="input mono match-input"
                inputMode="numeric"
                autoComplete="off"
                spellcheck={false}
                maxLength={7}
                placeholder="6 digits"
                aria-describedby="match-help"
                aria-invalid={invalid !== null}
                value={matchCode}
                onInput={(e) => {
                  setMatchCode(e.currentTarget.value);
                  setInvalid(null);
                }}
              />
              <span id="match-help" class="muted small">
                Ask the requester for the code on their screen. Never guess it.
              </span>
            </div>
          )}
          {invalid !== null && (
            <p class="field-error" role="alert">
              {invalid}
            </p>
          )}
          <AuthenticatorNote info={authenticator.value} />
          <div class="decision-buttons">
            <button ref={confirmApprove} type="submit" class="button button-primary">
              Confirm with your passkey
            </button>
            <button type="button" class="button" onClick={cancel}>
              Cancel <kbd>Esc</kbd>
            </button>
          </div>
        </form>
      )}

      {phase.step === "deny" && (
        <form class="decision-form" onSubmit={submitDeny} aria-label="Deny" noValidate>
          <div class="field">
            <label for="deny-reason">{hoop ? "Reason for rejecting (hoop shows it to the requester)" : "Reason for denying (sent to the requester)"}</label>
            <input
              ref={reasonInput}
              id="deny-reason"
              class="input"
              autoComplete="off"
              maxLength={500}
              required
              aria-invalid={invalid !== null}
              value={reason}
              onInput={(e) => {
                setReason(e.currentTarget.value);
                setInvalid(null);
              }}
            />
          </div>
          {invalid !== null && (
            <p class="field-error" role="alert">
              {invalid}
            </p>
          )}
          <div class="decision-buttons">
            <button type="submit" class="button button-danger">
              {hoop ? "Reject with your passkey" : "Deny request"}
            </button>
            <button type="button" class="button" onClick={cancel}>
              Cancel <kbd>Esc</kbd>
            </button>
          </div>
        </form>
      )}

      {phase.step === "report" && (
        <div class="decision-form" role="group" aria-label="Report unexpected request">
          <p>
            <strong>Deny this request and report it as unexpected?</strong> Use this when you did not ask for it
            and nobody told you it was coming: it may be someone trying their luck. The gateway then stops this
            requester from sending you requests (and denies their other pending ones) until its operator lifts
            the block.
          </p>
          <div class="decision-buttons">
            <button ref={confirmReport} type="button" class="button button-danger" onClick={submitReport}>
              Deny and report
            </button>
            <button type="button" class="button" onClick={cancel}>
              Cancel <kbd>Esc</kbd>
            </button>
          </div>
        </div>
      )}

      {phase.step === "sending" && (
        <>
          <p class="sending">
            <Spinner label={phase.what} /> {phase.what}
          </p>
          {/* A gateway that wants a passkey to deny: the key's questions, as for approving. */}
          {keyAsk.value !== null && <KeyDialog ask={keyAsk.value} />}
          {/* A hoop rejection always runs the connection's passkey. */}
          {hoop && keyAsk.value === null && <PasskeyInstruction info={authenticator.value} />}
        </>
      )}

      {phase.step === "passkey" && <PasskeyPrompt request={request} />}
    </section>
  );
}

/** Shown while the Rust side runs the passkey ceremony. */
function PasskeyPrompt({ request }: { request: RequestDetail }) {
  const card = useRef<HTMLDivElement>(null);
  useLayoutEffect(() => card.current?.focus(), []);
  // On <body>, above the header: nothing else is usable while the ceremony runs.
  return createPortal(
    <div class="overlay">
      <div
        ref={card}
        class="passkey-card"
        role="alertdialog"
        aria-modal="true"
        aria-labelledby="passkey-title"
        aria-describedby="passkey-what"
        tabIndex={-1}
      >
        <Spinner label="Waiting for the passkey" />
        <h2 id="passkey-title">Confirm with your passkey</h2>
        <p id="passkey-what">
          Approving <span class="mono">{request.summary.action.visible}</span> on{" "}
          <span class="mono">{request.summary.resource.visible}</span>
        </p>
        {authenticator.value?.kind === "security-key" ? (
          <KeyDialog ask={keyAsk.value} />
        ) : (
          <PasskeyInstruction info={authenticator.value} />
        )}
        <p class="muted small mono digest">
          {request.hoop !== null ? "script" : "request"} {request.digest}
        </p>
      </div>
    </div>,
    document.body,
  );
}
