import { useEffect, useRef, useState } from "preact/hooks";
import { AuthenticatorNote, PasskeyInstruction } from "../components/AuthenticatorNote";
import { SetPin } from "../components/KeyActions";
import { KeyDialog } from "../components/KeyDialog";
import { Spinner } from "../components/Spinner";
import { formatTime } from "../clock";
import { ipc, toIpcFailure, type IpcFailure } from "../ipc";
import { navigate } from "../route";
import { authenticator, keyAsk, offeredPairingLink, scheduleReload } from "../store";
import { visible } from "../text";

export interface PairingLinkParts {
  gateway: string;
  fingerprint: string;
  expires: number | null;
}

/** What a `countersign://pair?...` link says, for the user to check; null when it is not one. */
export function readPairingLink(link: string): PairingLinkParts | null {
  const trimmed = link.trim();
  if (!trimmed.startsWith("countersign://pair?")) return null;
  const params = new URLSearchParams(trimmed.slice("countersign://pair?".length));
  const gateway = params.get("gateway");
  const fingerprint = params.get("fp");
  if (gateway === null || fingerprint === null || params.get("code") === null) return null;
  const exp = Number(params.get("exp"));
  return { gateway, fingerprint, expires: Number.isFinite(exp) && exp > 0 ? exp : null };
}

type Phase =
  | { step: "edit" }
  | { step: "registering" }
  | { step: "failed"; error: IpcFailure };

export function Pairing({ firstRun }: { firstRun: boolean }) {
  const offered = offeredPairingLink.value;
  const [link, setLink] = useState(offered ?? "");
  const [phase, setPhase] = useState<Phase>({ step: "edit" });
  const [touched, setTouched] = useState(false);
  const confirmRef = useRef<HTMLButtonElement>(null);
  const info = authenticator.value;

  // A deep link only pre-fills the form; the user still has to confirm.
  useEffect(() => {
    if (offered !== null) {
      setLink(offered);
      setPhase({ step: "edit" });
      confirmRef.current?.focus();
    }
  }, [offered]);

  const parts = readPairingLink(link);
  const noAuthenticator = info?.kind === "none";

  const register = async (e: Event) => {
    e.preventDefault();
    setTouched(true);
    if (parts === null || noAuthenticator) return;
    setPhase({ step: "registering" });
    keyAsk.value = null;
    try {
      await ipc.pair(link.trim()).finally(() => (keyAsk.value = null));
      offeredPairingLink.value = null;
      // The inbox is where a paired device lives; the engine's `gateway_paired` event says
      // with which gateway (a toast), whichever way the pairing was started.
      setPhase({ step: "edit" });
      scheduleReload();
      navigate({ view: "inbox", tab: "pending" });
    } catch (error) {
      setPhase({ step: "failed", error: toIpcFailure(error) });
    }
  };

  return (
    <section class="pairing card narrow" aria-labelledby="pair-title">
      <h1 id="pair-title">{firstRun ? "Welcome to Countersign" : "Pair a gateway"}</h1>
      <p class="muted">
        Your administrator gives you a one-time pairing link (from <code>countersign-gateway invite</code>). It pins
        the gateway's key and registers a passkey so that only you, with your key, can approve.
      </p>
      {offered !== null && (
        <div class="notice notice-warning" role="alert">
          A pairing link was opened from outside the app. Pair only if you asked for it and the details below match
          what your administrator told you.
        </div>
      )}
      {/* The key's own forms (its PIN, a new PIN) cannot nest in this one: the submit button
          below names this form instead of sitting in it. */}
      <form id="pair-form" onSubmit={(e) => void register(e)} noValidate>
        <div class="field">
          <label for="pair-link">Pairing link</label>
          <textarea
            id="pair-link"
            class="input mono"
            rows={3}
            spellcheck={false}
            placeholder="countersign://pair?gateway=…&code=…&fp=…"
            value={link}
            aria-invalid={touched && parts === null}
            onInput={(e) => {
              setLink(e.currentTarget.value);
              if (phase.step === "failed") setPhase({ step: "edit" });
            }}
          />
          {touched && parts === null && (
            <p class="field-error" role="alert">
              This is not a countersign://pair link with a gateway, code and fingerprint.
            </p>
          )}
        </div>
        {parts !== null && (
          <dl class="facts-list compact link-parts" aria-label="What the link says">
            <dt>Gateway</dt>
            <dd class="mono">{visible(parts.gateway)}</dd>
            <dt>Key fingerprint</dt>
            <dd class="mono digest">{visible(parts.fingerprint)}</dd>
            {parts.expires !== null && (
              <>
                <dt>Link valid until</dt>
                <dd>{formatTime(parts.expires)}</dd>
              </>
            )}
          </dl>
        )}
      </form>
      <div class="pair-passkey">
        <h2 class="section-title">Passkey</h2>
        <AuthenticatorNote info={info} />
        {phase.step === "registering" && (
          <div class="passkey-inline" role="status">
            <Spinner label="Registering a passkey" />
            <div>
              <strong>Registering a passkey…</strong>
              {info?.kind === "security-key" ? <KeyDialog ask={keyAsk.value} /> : <PasskeyInstruction info={info} />}
            </div>
          </div>
        )}
        {phase.step === "failed" && (
          <div class="notice notice-error" role="alert">
            <code class="error-code">{phase.error.code}</code> {phase.error.message}
          </div>
        )}
        {phase.step === "failed" && phase.error.code === "uv_unavailable" && (
          <SetPin intro="Once the key has a PIN, register the passkey again." />
        )}
        <div class="decision-buttons">
          <button
            ref={confirmRef}
            type="submit"
            form="pair-form"
            class="button button-primary"
            disabled={phase.step === "registering" || noAuthenticator}
          >
            Register a passkey
          </button>
          {offered !== null && (
            <button
              type="button"
              class="button"
              onClick={() => {
                offeredPairingLink.value = null;
                setLink("");
              }}
            >
              Ignore this link
            </button>
          )}
        </div>
      </div>
    </section>
  );
}
