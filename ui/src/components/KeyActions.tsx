import { useEffect, useState } from "preact/hooks";
import type { PasskeyView } from "../bindings/PasskeyView";
import { formatTime } from "../clock";
import { ipc, toIpcFailure, type IpcFailure } from "../ipc";
import { keyAsk } from "../store";
import { KeyDialog } from "./KeyDialog";

function Failure({ error }: { error: IpcFailure }) {
  return (
    <div class="notice notice-error" role="alert">
      <code class="error-code">{error.code}</code> {error.message}
    </div>
  );
}

/** Runs one key ceremony started from a button (set a PIN, add a backup key): the key's
 * questions while it runs, then the outcome. */
export function useKeyCeremony<T>() {
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<IpcFailure | null>(null);
  /** The call's value, or null when it failed (the failure is then in `error`). */
  async function run(call: () => Promise<T>): Promise<{ value: T } | null> {
    keyAsk.value = null;
    setError(null);
    setRunning(true);
    try {
      return { value: await call() };
    } catch (e) {
      setError(toIpcFailure(e));
      return null;
    } finally {
      keyAsk.value = null;
      setRunning(false);
    }
  }
  return { running, error, run, clear: () => setError(null) };
}

/** "Set a PIN": for a key with neither a PIN nor built-in verification, which Countersign
 * never uses unverified. The key asks for the new PIN twice (setPIN). */
export function SetPin({ intro }: { intro?: string }) {
  const ceremony = useKeyCeremony<null>();
  const [done, setDone] = useState(false);
  return (
    <div class="key-action" aria-label="Set a security key PIN" role="group">
      {intro !== undefined && <p>{intro}</p>}
      {ceremony.running ? (
        <KeyDialog ask={keyAsk.value} />
      ) : (
        <button
          type="button"
          class="button"
          onClick={() =>
            void ceremony.run(() => ipc.keySetPin()).then((r) => setDone(r !== null))
          }
        >
          Set a PIN on the key…
        </button>
      )}
      {done && !ceremony.running && (
        <p class="notice notice-ok" role="status">
          The key has a PIN now. It asks for it at every approval.
        </p>
      )}
      {ceremony.error !== null && <Failure error={ceremony.error} />}
    </div>
  );
}

function shortId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-6)}` : id;
}

/** The approver's passkeys at one gateway, as the gateway signed the list: add a backup key
 * (the registered key first, then the new one), remove one (never the last). */
export function GatewayPasskeys({ gateway, canAdd }: { gateway: string; canAdd: boolean }) {
  const [list, setList] = useState<PasskeyView[] | null>(null);
  const [confirm, setConfirm] = useState<string | null>(null);
  const ceremony = useKeyCeremony<PasskeyView[]>();
  const [loadError, setLoadError] = useState<IpcFailure | null>(null);

  const take = (next: { value: PasskeyView[] } | null) => {
    if (next !== null) setList(next.value);
    setConfirm(null);
  };
  useEffect(() => {
    ipc.passkeyList(gateway).then(setList, (e: unknown) => setLoadError(toIpcFailure(e)));
  }, [gateway]);

  const last = list !== null && list.length <= 1;
  return (
    <div class="passkeys" aria-label="Passkeys at this gateway" role="group">
      <h3 class="small-title">Passkeys</h3>
      {loadError !== null && <Failure error={loadError} />}
      {list === null ? (
        loadError === null && <p class="muted small">Asking the gateway…</p>
      ) : (
        <ul class="passkey-list">
          {list.map((p) => (
            <li key={p.cred_id} class="passkey-row">
              <div>
                <span class="mono small" title={p.cred_id}>
                  {shortId(p.cred_id)}
                </span>
                {p.this_device && <span class="tag">this device</span>}
                <span class="muted small block">
                  added {formatTime(p.created_at)}
                  {p.last_used_at !== null ? `, last used ${formatTime(p.last_used_at)}` : ", never used"}
                  {p.aaguid !== null ? ` · AAGUID ${p.aaguid}` : ""}
                </span>
              </div>
              {confirm === p.cred_id ? (
                <span class="passkey-confirm">
                  <button
                    type="button"
                    class="button button-danger"
                    disabled={ceremony.running}
                    onClick={() => void ceremony.run(() => ipc.passkeyRemove(gateway, p.cred_id)).then(take)}
                  >
                    Remove it
                  </button>
                  <button type="button" class="button" onClick={() => setConfirm(null)}>
                    Keep
                  </button>
                </span>
              ) : (
                <button
                  type="button"
                  class="button button-link"
                  disabled={last || ceremony.running}
                  title={last ? "The last passkey cannot be removed: add another first." : undefined}
                  onClick={() => {
                    ceremony.clear();
                    setConfirm(p.cred_id);
                  }}
                >
                  Remove…
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
      {last && <p class="muted small">Your only passkey here. Add a backup key so that a lost key does not lock you out.</p>}
      {canAdd &&
        (ceremony.running && confirm === null ? (
          <KeyDialog ask={keyAsk.value} />
        ) : (
          <button
            type="button"
            class="button"
            disabled={list === null || ceremony.running}
            onClick={() => void ceremony.run(() => ipc.passkeyAdd(gateway)).then(take)}
          >
            Add a backup key…
          </button>
        ))}
      {ceremony.error !== null && <Failure error={ceremony.error} />}
    </div>
  );
}
