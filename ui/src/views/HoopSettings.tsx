import { useEffect, useState } from "preact/hooks";
import type { HoopConnectionView } from "../bindings/HoopConnectionView";
import { PasskeyInstruction } from "../components/AuthenticatorNote";
import { KeyDialog } from "../components/KeyDialog";
import { Spinner } from "../components/Spinner";
import { formatTime } from "../clock";
import { HINTS } from "../errors";
import { ipc, toIpcFailure, type IpcFailure } from "../ipc";
import { authenticator, changes, keyAsk, scheduleReload } from "../store";
import { visible } from "../text";

function Health({ c }: { c: HoopConnectionView }) {
  if (c.unreachable_since === null) return <span class="link-state link-up">reachable</span>;
  return (
    <span class="link-state link-down" title={c.error ?? undefined}>
      unreachable since {formatTime(c.unreachable_since)}
    </span>
  );
}

function Connection({ c, onGone }: { c: HoopConnectionView; onGone: (left: HoopConnectionView[]) => void }) {
  const [confirming, setConfirming] = useState(false);
  const [error, setError] = useState<IpcFailure | null>(null);
  return (
    <li class="gateway">
      <div class="gateway-line">
        <span>
          <strong>{c.name}</strong> <span class="chip chip-unsigned">hoop · unsigned</span>
        </span>
        <Health c={c} />
      </div>
      {c.unreachable_since !== null && c.error !== null && <p class="muted small">{c.error}</p>}
      <dl class="facts-list compact">
        <dt>URL</dt>
        <dd class="mono">{visible(c.url)}</dd>
        <dt>You are</dt>
        <dd>
          {c.user_email}
          {c.user_name !== "" && <> ({c.user_name})</>}
          {c.role !== "" && <span class="muted small"> · {c.role} in hoop</span>}
        </dd>
        <dt>Token</dt>
        <dd>kept in {c.token_kept_in}</dd>
        <dt>Connected</dt>
        <dd>{formatTime(c.connected_at)}</dd>
      </dl>
      {error !== null && (
        <div class="notice notice-error" role="alert">
          <code class="error-code">{error.code}</code> {error.message}
        </div>
      )}
      {confirming ? (
        <div class="hoop-form" role="group" aria-label={`Disconnect ${c.name}`}>
          <p>Forget this hoop gateway? Its reviews leave the inbox and its token is deleted; your audit log keeps every decision.</p>
          <div class="actions">
            <button
              type="button"
              class="button button-danger"
              onClick={() => {
                ipc.hoopDisconnect(c.id).then(
                  (left) => {
                    onGone(left);
                    scheduleReload();
                  },
                  (e: unknown) => setError(toIpcFailure(e)),
                );
              }}
            >
              Disconnect
            </button>
            <button type="button" class="button" onClick={() => setConfirming(false)}>
              Cancel
            </button>
          </div>
        </div>
      ) : (
        <button type="button" class="button button-link hoop-disconnect" onClick={() => setConfirming(true)}>
          Disconnect…
        </button>
      )}
    </li>
  );
}

type Phase = { step: "closed" } | { step: "open" } | { step: "connecting" } | { step: "failed"; error: IpcFailure };

/** Connecting a hoop gateway: its address and an API key or access token. hoop checks the
 * token, then a passkey is registered for the connection; the token field is cleared the moment
 * it is sent, and the token is kept in the Secret Service (or an owner-only file). */
function ConnectForm({ onConnected }: { onConnected: (c: HoopConnectionView) => void }) {
  const [phase, setPhase] = useState<Phase>({ step: "closed" });
  const [url, setUrl] = useState("");
  const [token, setToken] = useState("");
  const [invalid, setInvalid] = useState<string | null>(null);

  function submit(e: Event) {
    e.preventDefault();
    const address = url.trim();
    if (address === "") return setInvalid("Type the hoop gateway's address, https://…");
    if (token.trim() === "") return setInvalid("Paste an API key or access token from hoop.");
    const sent = token;
    setToken("");
    keyAsk.value = null;
    setPhase({ step: "connecting" });
    ipc
      .hoopConnect(address, sent)
      .then((c) => {
        setUrl("");
        setPhase({ step: "closed" });
        onConnected(c);
      })
      .catch((err: unknown) => setPhase({ step: "failed", error: toIpcFailure(err) }))
      .finally(() => (keyAsk.value = null));
  }

  if (phase.step === "closed") {
    return (
      <button type="button" class="button" onClick={() => setPhase({ step: "open" })}>
        Connect a hoop gateway
      </button>
    );
  }
  if (phase.step === "connecting") {
    return (
      <div class="hoop-form" aria-live="polite">
        <p class="sending">
          <Spinner label="Connecting" /> Checking the token with hoop, then registering a passkey for this connection…
        </p>
        {authenticator.value?.kind === "security-key" ? <KeyDialog ask={keyAsk.value} /> : <PasskeyInstruction info={authenticator.value} />}
      </div>
    );
  }
  return (
    <form class="hoop-form" onSubmit={submit} aria-label="Connect a hoop gateway" noValidate>
      {phase.step === "failed" && (
        <div class="notice notice-error" role="alert">
          <code class="error-code">{phase.error.code}</code> {phase.error.message}
          {HINTS[phase.error.code] !== null && <p class="error-hint">{HINTS[phase.error.code]}</p>}
        </div>
      )}
      <div class="field">
        <label for="hoop-url">hoop gateway address</label>
        <input
          id="hoop-url"
          class="input mono"
          type="url"
          autoComplete="off"
          spellcheck={false}
          placeholder="https://hoop.example.com"
          value={url}
          onInput={(e) => {
            setUrl(e.currentTarget.value);
            setInvalid(null);
          }}
        />
      </div>
      <div class="field">
        <label for="hoop-token">API key or access token</label>
        <input
          id="hoop-token"
          class="input mono"
          type="password"
          autoComplete="off"
          spellcheck={false}
          value={token}
          onInput={(e) => {
            setToken(e.currentTarget.value);
            setInvalid(null);
          }}
        />
        <span class="muted small">Kept beside this device's key (the Secret Service, or an owner-only file); never shown or logged.</span>
      </div>
      {invalid !== null && (
        <p class="field-error" role="alert">
          {invalid}
        </p>
      )}
      <div class="actions">
        <button type="submit" class="button button-primary">
          Connect
        </button>
        <button
          type="button"
          class="button"
          onClick={() => {
            setToken("");
            setPhase({ step: "closed" });
          }}
        >
          Cancel
        </button>
      </div>
    </form>
  );
}

/** Settings' hoop.dev gateways: each with who it is connected as and whether it is reachable,
 * and the form that connects one. */
export function HoopGateways() {
  const [list, setList] = useState<HoopConnectionView[] | null>(null);
  const [error, setError] = useState<IpcFailure | null>(null);
  const version = changes.value;
  useEffect(() => {
    ipc.hoopList().then(setList, (e: unknown) => setError(toIpcFailure(e)));
  }, [version]);
  return (
    <section class="card" aria-labelledby="hoop-gateways-title">
      <div class="card-head">
        <h2 id="hoop-gateways-title">hoop.dev gateways</h2>
      </div>
      <p class="muted small">
        hoop's reviews join this inbox and are decided with a passkey registered here. hoop signs nothing, so they are shown as
        unsigned. The passkey protects this device and its audit log, not hoop: anyone with your hoop token or web session can
        still decide in hoop without it.
      </p>
      {error !== null && (
        <div class="notice notice-error" role="alert">
          <code class="error-code">{error.code}</code> {error.message}
        </div>
      )}
      {list !== null && list.length > 0 && (
        <ul class="gateway-list">
          {list.map((c) => (
            <Connection key={c.id} c={c} onGone={setList} />
          ))}
        </ul>
      )}
      <ConnectForm
        onConnected={(c) => {
          setList((l) => [...(l ?? []).filter((x) => x.id !== c.id), c]);
          scheduleReload();
        }}
      />
    </section>
  );
}
