import type { AuthenticatorView } from "../bindings/AuthenticatorView";

export const DEVELOPMENT_LABEL = "Development mode — software passkey, not a security key";
export const DEV_KEY_LABEL = "Development mode — a test key on a local socket, not a security key";

function developmentLabel(info: AuthenticatorView): string {
  return info.kind === "security-key" ? DEV_KEY_LABEL : DEVELOPMENT_LABEL;
}

/** Which authenticator will be used; the software one is always labelled as such. */
export function AuthenticatorNote({ info }: { info: AuthenticatorView | null }) {
  if (info === null) return <p class="muted">Checking the passkey authenticator…</p>;
  if (info.development_mode || info.kind === "software") {
    return (
      <div class="dev-mode" role="note">
        <strong>{developmentLabel(info)}</strong>
        <span class="muted">{info.label}</span>
      </div>
    );
  }
  if (info.kind === "none") {
    return (
      <div class="notice notice-error" role="alert">
        No passkey authenticator is available. Plug in a security key and try again.
      </div>
    );
  }
  return (
    <div class="authenticator">
      <span class="key-icon" aria-hidden="true">🔑</span>
      <span>
        <strong>Security key</strong> <span class="muted">{info.label}</span>
      </span>
    </div>
  );
}

/** What to do while a software passkey's ceremony runs (a security key asks its own
 * questions: `KeyDialog`). */
export function PasskeyInstruction({ info }: { info: AuthenticatorView | null }) {
  if (info?.kind === "software") {
    return (
      <>
        <p class="dev-mode-inline">{DEVELOPMENT_LABEL}</p>
        <p>The software passkey answers by itself; nothing to touch.</p>
      </>
    );
  }
  return <p>Touch your security key now. Enter its PIN if it asks for one.</p>;
}
