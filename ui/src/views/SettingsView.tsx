import { useEffect, useState } from "preact/hooks";
import type { GatewayView } from "../bindings/GatewayView";
import type { Settings } from "../bindings/Settings";
import { AuthenticatorNote } from "../components/AuthenticatorNote";
import { GatewayPasskeys, SetPin } from "../components/KeyActions";
import { formatTime, now } from "../clock";
import { ipc, toIpcFailure, type IpcFailure } from "../ipc";
import { hrefFor } from "../route";
import { applyTheme, authenticator, connections, settings } from "../store";
import { visible } from "../text";
import { HoopGateways } from "./HoopSettings";

const THEMES = [
  { value: "system", label: "System" },
  { value: "light", label: "Light" },
  { value: "dark", label: "Dark" },
] as const;

function Gateways() {
  const [gateways, setGateways] = useState<GatewayView[] | null>(null);
  const [error, setError] = useState<IpcFailure | null>(null);
  useEffect(() => {
    ipc.listGateways().then(setGateways, (e: unknown) => setError(toIpcFailure(e)));
  }, []);
  return (
    <section class="card" aria-labelledby="gateways-title">
      <div class="card-head">
        <h2 id="gateways-title">Gateways</h2>
        <a class="button" href={hrefFor({ view: "pair" })}>
          Pair a gateway
        </a>
      </div>
      {error !== null && (
        <div class="notice notice-error" role="alert">
          <code class="error-code">{error.code}</code> {error.message}
        </div>
      )}
      {gateways === null ? (
        <p class="muted">Loading…</p>
      ) : gateways.length === 0 ? (
        <p class="muted">No gateway paired yet.</p>
      ) : (
        <ul class="gateway-list">
          {gateways.map((g) => {
            const link = connections.value.get(g.fingerprint) ?? connections.value.get(g.name);
            return (
              <li key={g.fingerprint} class="gateway">
                <div class="gateway-line">
                  <strong>{visible(g.name)}</strong>
                  <span class={link === undefined ? "link-state" : link.up ? "link-state link-up" : "link-state link-down"}>
                    {link === undefined ? "no news yet" : link.up ? "connected" : "unreachable"}
                  </span>
                </div>
                {g.log_history_changed !== null && (
                  <div class="notice notice-error" role="alert">
                    <strong>This gateway's log changed history.</strong> {visible(g.log_history_changed)}
                  </div>
                )}
                <dl class="facts-list compact">
                  <dt>URL</dt>
                  <dd class="mono">{visible(g.url)}</dd>
                  <dt>You are</dt>
                  <dd>{visible(g.approver)}</dd>
                  <dt>Key fingerprint</dt>
                  <dd class="mono digest">{visible(g.fingerprint)}</dd>
                  <dt>Device</dt>
                  <dd class="mono small">{visible(g.device_id)}</dd>
                  <dt>Paired</dt>
                  <dd>{formatTime(g.paired_at)}</dd>
                </dl>
                <GatewayPasskeys gateway={g.fingerprint} canAdd={authenticator.value?.kind === "security-key"} />
              </li>
            );
          })}
        </ul>
      )}
    </section>
  );
}

function Toggle(props: { id: string; label: string; hint: string; checked: boolean; onChange: (v: boolean) => void }) {
  return (
    <div class="toggle-row">
      <input
        id={props.id}
        type="checkbox"
        role="switch"
        class="switch"
        checked={props.checked}
        onChange={(e) => props.onChange(e.currentTarget.checked)}
      />
      <label for={props.id}>
        {props.label}
        <span class="muted small block">{props.hint}</span>
      </label>
    </div>
  );
}

export function SettingsView() {
  const current = settings.value;
  const [error, setError] = useState<IpcFailure | null>(null);

  useEffect(() => {
    if (settings.value === null) {
      ipc.getSettings().then(
        (s) => {
          settings.value = s;
        },
        (e: unknown) => setError(toIpcFailure(e)),
      );
    }
  }, []);

  const save = async (next: Settings) => {
    const previous = settings.value;
    settings.value = next;
    applyTheme(next.theme);
    try {
      const saved = await ipc.setSettings(next);
      settings.value = saved;
      applyTheme(saved.theme);
      setError(null);
    } catch (e) {
      settings.value = previous;
      if (previous) applyTheme(previous.theme);
      setError(toIpcFailure(e));
    }
  };

  // The agent answers, then closes every window (this one too, by its `quit` message).
  const quitApp = async () => {
    try {
      await ipc.quit();
    } catch (e) {
      const failure = toIpcFailure(e);
      // A closed connection is the quit itself; any other failure is shown.
      if (failure.code !== "agent_unavailable") setError(failure);
    }
  };

  const pausedUntil = current?.notifications_paused_until ?? null;
  const paused = pausedUntil !== null && pausedUntil > now.value;

  return (
    <section class="settings" aria-labelledby="settings-title">
      <div class="view-head">
        <h1 id="settings-title">Settings</h1>
      </div>
      {error !== null && (
        <div class="notice notice-error" role="alert">
          Could not save: <code class="error-code">{error.code}</code> {error.message}
        </div>
      )}
      <div class="settings-grid">
        <div class="settings-col">
          <Gateways />
          <HoopGateways />
        </div>
        <div class="settings-col">
          <section class="card" aria-labelledby="passkey-title-settings">
            <h2 id="passkey-title-settings">{authenticator.value?.kind === "security-key" ? "Security key" : "Passkey"}</h2>
            <AuthenticatorNote info={authenticator.value} />
            {authenticator.value?.kind === "security-key" && (
              <SetPin intro="Countersign never uses a key unverified: a key with neither a PIN nor a fingerprint reader cannot approve until it has a PIN. Plug such a key in and set one here." />
            )}
          </section>
          {current === null ? (
            <p class="muted">Loading settings…</p>
          ) : (
            <>
              <section class="card" aria-labelledby="notify-title">
                <h2 id="notify-title">Notifications</h2>
                <Toggle
                  id="notifications-enabled"
                  label="Notify me of new requests"
                  hint="A desktop notification opens the request; it never approves anything."
                  checked={current.notifications_enabled}
                  onChange={(v) => void save({ ...current, notifications_enabled: v })}
                />
                <div class="pause-row">
                  {paused ? (
                    <>
                      <span>Paused until {formatTime(pausedUntil)}</span>
                      <button
                        type="button"
                        class="button"
                        onClick={() => void save({ ...current, notifications_paused_until: null })}
                      >
                        Resume now
                      </button>
                    </>
                  ) : (
                    <button
                      type="button"
                      class="button"
                      disabled={!current.notifications_enabled}
                      onClick={() => void save({ ...current, notifications_paused_until: now.value + 3600 })}
                    >
                      Pause for 1 hour
                    </button>
                  )}
                </div>
              </section>
              <section class="card" aria-labelledby="startup-title">
                <h2 id="startup-title">Start-up</h2>
                <Toggle
                  id="autostart"
                  label="Start Countersign when I log in"
                  hint="Requests can only reach you while the app runs."
                  checked={current.autostart}
                  onChange={(v) => void save({ ...current, autostart: v })}
                />
                <p class="muted small">
                  Closing this window leaves Countersign running, so requests still arrive and
                  notify. To stop it (where there is no tray icon to quit from):
                </p>
                <button type="button" class="button" onClick={() => void quitApp()}>
                  Quit Countersign
                </button>
              </section>
              <section class="card" aria-labelledby="theme-title">
                <h2 id="theme-title">Appearance</h2>
                <div class="segmented" role="radiogroup" aria-labelledby="theme-title">
                  {THEMES.map((t) => (
                    <label key={t.value} class={current.theme === t.value ? "segment segment-on" : "segment"}>
                      <input
                        type="radio"
                        name="theme"
                        value={t.value}
                        checked={current.theme === t.value}
                        onChange={() => void save({ ...current, theme: t.value })}
                      />
                      {t.label}
                    </label>
                  ))}
                </div>
              </section>
            </>
          )}
        </div>
      </div>
    </section>
  );
}
